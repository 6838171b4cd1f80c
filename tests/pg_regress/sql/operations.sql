--
-- operations: the limits (settings), output_too_large, why an answer changed nothing (NOTICE
-- reasons), what a failed run shows, maintain(), prune_runs() and DROP EXTENSION. (That a late
-- answer touches only its own task is shown by the isolation spec late-answer-after-cancel.)
-- Each scenario uses its own ops_* workflow and fixed run ids.
--
\set VERBOSITY terse
\pset null '(null)'

CREATE FUNCTION pg_temp.step_rows(id uuid)
RETURNS TABLE (step_slug text, status text, tasks_total int, tasks_completed int,
               error_message text)
LANGUAGE sql AS $$
  SELECT s->>'step_slug', s->>'status', (s->>'tasks_total')::int, (s->>'tasks_completed')::int,
         s->>'error_message'
  FROM jsonb_array_elements(quantum_flow.get_run(id)->'steps') WITH ORDINALITY AS e(s, n)
  ORDER BY n
$$;
CREATE FUNCTION pg_temp.task_rows(id uuid)
RETURNS TABLE (step_slug text, task_index int, status text, attempts int, error_message text)
LANGUAGE sql AS $$
  SELECT step_slug, task_index, status, attempts_count, error_message
  FROM quantum_flow.step_tasks WHERE run_id = id ORDER BY step_slug, task_index
$$;

--
-- Limits on poll_tasks: quantum_flow.max_batch_size (default 1000) and
-- quantum_flow.max_wait_ms (default 60000); beyond them, invalid_option.
--
SELECT workflow_slug FROM quantum_flow.create_flow('ops_limits', base_delay => 0);
-- (the settings exist once the library is loaded, here by the call above)
SHOW quantum_flow.max_batch_size;
SHOW quantum_flow.max_wait_ms;
SHOW quantum_flow.max_output_bytes;
SHOW quantum_flow.maintenance_interval;
SELECT step_slug FROM quantum_flow.add_step('ops_limits', 'a');
\set VERBOSITY sqlstate
SELECT * FROM quantum_flow.poll_tasks('ops_limits', batch_size => 1001);
\set VERBOSITY terse
SELECT * FROM quantum_flow.poll_tasks('ops_limits', batch_size => 1001);
SELECT * FROM quantum_flow.poll_tasks('ops_limits', max_wait_ms => 60001);
SELECT * FROM quantum_flow.poll_tasks('ops_limits', batch_size => 0);
-- the limits are the settings' values: a superuser (or ALTER ROLE ... SET) can move them
SET quantum_flow.max_batch_size = 5;
SELECT * FROM quantum_flow.poll_tasks('ops_limits', batch_size => 6);
SELECT count(*) FROM quantum_flow.poll_tasks('ops_limits', batch_size => 5);
RESET quantum_flow.max_batch_size;
-- they are superuser settings: an ordinary role cannot raise its own limit
CREATE ROLE ops_plain_role NOLOGIN;
SET ROLE ops_plain_role;
SET quantum_flow.max_batch_size = 100000;
RESET ROLE;
DROP ROLE ops_plain_role;

--
-- output_too_large: an output over quantum_flow.max_output_bytes is refused with 22001 and
-- changes nothing, so the worker can still answer.
--
SELECT quantum_flow.start_flow('ops_limits', '{}', '0b000000-0000-0000-0000-000000000001');
SELECT step_slug, task_index, attempt FROM quantum_flow.poll_tasks('ops_limits');
SET quantum_flow.max_output_bytes = '1kB';
\set VERBOSITY sqlstate
SELECT quantum_flow.complete_task('0b000000-0000-0000-0000-000000000001', 'a', 0,
                                  jsonb_build_object('blob', repeat('x', 2000)));
\set VERBOSITY terse
SELECT quantum_flow.complete_task('0b000000-0000-0000-0000-000000000001', 'a', 0,
                                  jsonb_build_object('blob', repeat('x', 2000)));
-- nothing changed: the task is still claimed, and a smaller answer completes it
SELECT * FROM pg_temp.task_rows('0b000000-0000-0000-0000-000000000001');
SELECT quantum_flow.complete_task('0b000000-0000-0000-0000-000000000001', 'a', 0,
                                  jsonb_build_object('blob', repeat('x', 900)));
SELECT quantum_flow.get_run('0b000000-0000-0000-0000-000000000001')->>'status' AS status;
RESET quantum_flow.max_output_bytes;
SELECT quantum_flow.delete_flow('ops_limits');

--
-- Why an answer changed nothing: complete_task keeps its boolean (fail_task its 'ignored')
-- and a NOTICE starts with a stable reason word.
--
SELECT workflow_slug FROM quantum_flow.create_flow('ops_reasons', max_attempts => 3, timeout => 1, base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('ops_reasons', 'a', step_type => 'map');
SELECT quantum_flow.start_flow('ops_reasons', '[1, 2, 3]', '0c000000-0000-0000-0000-000000000001');
-- not_claimed: nobody holds task 2 yet
SELECT quantum_flow.complete_task('0c000000-0000-0000-0000-000000000001', 'a', 2, '"early"');
SELECT quantum_flow.fail_task('0c000000-0000-0000-0000-000000000001', 'a', 2, 'early');
SELECT step_slug, task_index, attempt FROM quantum_flow.poll_tasks('ops_reasons', 2) ORDER BY task_index;
SELECT quantum_flow.complete_task('0c000000-0000-0000-0000-000000000001', 'a', 0, '"A"', attempt => 1);
-- duplicate: task 0 is completed already
SELECT quantum_flow.complete_task('0c000000-0000-0000-0000-000000000001', 'a', 0, '"again"', attempt => 1);
SELECT quantum_flow.complete_task('0c000000-0000-0000-0000-000000000001', 'a', 0, '"again"');
-- stale_attempt: task 1 is held as attempt 1, the caller names attempt 2
SELECT quantum_flow.complete_task('0c000000-0000-0000-0000-000000000001', 'a', 1, '"B"', attempt => 2);
-- the claim of task 1 times out and is handed on: attempt 1's answer is stale
SELECT pg_sleep(1.2);
SELECT step_slug, task_index, attempt FROM quantum_flow.poll_tasks('ops_reasons', 2) ORDER BY task_index;
SELECT quantum_flow.complete_task('0c000000-0000-0000-0000-000000000001', 'a', 1, '"B1"', attempt => 1);
SELECT quantum_flow.fail_task('0c000000-0000-0000-0000-000000000001', 'a', 1, 'late', attempt => 1);
-- run_ended: after a cancel, any answer
SELECT quantum_flow.cancel_run('0c000000-0000-0000-0000-000000000001', 'enough');
SELECT quantum_flow.complete_task('0c000000-0000-0000-0000-000000000001', 'a', 1, '"B2"', attempt => 2);
SELECT quantum_flow.fail_task('0c000000-0000-0000-0000-000000000001', 'a', 2, 'late');
SELECT quantum_flow.delete_flow('ops_reasons');

--
-- A failed run: its error message names the step, task and attempt that failed; its other
-- steps are shown as cancelled; a failed map step with more than 32 tasks (the counter's
-- shards) shows every task it completed.
--
SELECT workflow_slug FROM quantum_flow.create_flow('ops_failed', max_attempts => 2, base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('ops_failed', 'items');
SELECT step_slug FROM quantum_flow.add_step('ops_failed', 'validate_rows', ARRAY['items'], step_type => 'map');
SELECT step_slug FROM quantum_flow.add_step('ops_failed', 'side', ARRAY['items']);
SELECT step_slug FROM quantum_flow.add_step('ops_failed', 'load', ARRAY['validate_rows', 'side']);
SELECT quantum_flow.start_flow('ops_failed', '{}', '0d000000-0000-0000-0000-000000000001');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, to_jsonb(ARRAY(SELECT generate_series(1, 40))))
FROM quantum_flow.poll_tasks('ops_failed');
-- 35 of the 40 map tasks complete (task 1 fails twice), side stays unanswered
SELECT count(*) FILTER (WHERE done) AS completed
FROM (SELECT quantum_flow.complete_task(run_id, step_slug, task_index, input->'item') AS done
      FROM quantum_flow.poll_tasks('ops_failed', 100)
      WHERE step_slug = 'validate_rows' AND task_index NOT IN (1, 2, 3, 4, 5)) c;
SELECT quantum_flow.fail_task('0d000000-0000-0000-0000-000000000001', 'validate_rows', 1, 'bad row 2');
SELECT step_slug, task_index, attempt FROM quantum_flow.poll_tasks('ops_failed', 100);
SELECT quantum_flow.fail_task('0d000000-0000-0000-0000-000000000001', 'validate_rows', 1, 'bad row 2, again');
SELECT quantum_flow.get_run('0d000000-0000-0000-0000-000000000001')->>'status' AS status,
       quantum_flow.get_run('0d000000-0000-0000-0000-000000000001')->>'error_message' AS error_message;
SELECT * FROM pg_temp.step_rows('0d000000-0000-0000-0000-000000000001');
-- the run's leftover messages were archived: nothing to poll
SELECT count(*) AS in_queue FROM pgmq.q_qf_ops_failed;
SELECT count(*) AS pollable FROM quantum_flow.poll_tasks('ops_failed', 100);

--
-- maintain(): for a workflow nobody polls, a claim that outlived its timeout is put back in
-- the queue as the attempt it was; with no attempts left it fails its task and run; stale
-- messages are archived.
--
SELECT workflow_slug FROM quantum_flow.create_flow('ops_maint', max_attempts => 2, timeout => 1, base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('ops_maint', 'a');
SELECT quantum_flow.start_flow('ops_maint', '{"n": 1}', '0f000000-0000-0000-0000-000000000001');
SELECT step_slug, task_index, attempt FROM quantum_flow.poll_tasks('ops_maint');
-- within the timeout, nothing to do
SELECT quantum_flow.maintain() - 'workflows' AS report;
SELECT pg_sleep(1.2);
SELECT quantum_flow.maintain() - 'workflows' AS report;
SELECT * FROM pg_temp.task_rows('0f000000-0000-0000-0000-000000000001');
-- the next poll claims it as attempt 2
SELECT step_slug, task_index, attempt FROM quantum_flow.poll_tasks('ops_maint');
SELECT pg_sleep(1.2);
SELECT quantum_flow.maintain() - 'workflows' AS report;
SELECT r->>'status' AS status, r->>'error_message' AS error_message
FROM quantum_flow.get_run('0f000000-0000-0000-0000-000000000001') r;
SELECT * FROM pg_temp.task_rows('0f000000-0000-0000-0000-000000000001');
SELECT count(*) AS in_queue FROM pgmq.q_qf_ops_maint;
-- a foreign message that was read (so maintain looks at it) is archived as stale
SELECT pgmq.send('qf_ops_maint', '{"hello": "world"}') > 0 AS sent;
SELECT count(*) FROM pgmq.read('qf_ops_maint', 0, 1);
SELECT quantum_flow.maintain() - 'workflows' AS report;
SELECT count(*) AS in_queue FROM pgmq.q_qf_ops_maint;
-- maintain() counts every workflow
SELECT (quantum_flow.maintain()->>'workflows')::int = (SELECT count(*) FROM quantum_flow.workflows) AS every_workflow;
-- a workflow whose queue was dropped behind its back is skipped with a WARNING, instead of
-- failing every round and so stopping maintenance of the other workflows: a claim of
-- ops_maint that times out is still put back
SELECT workflow_slug FROM quantum_flow.create_flow('ops_lost_queue');
SELECT pgmq.drop_queue('qf_ops_lost_queue');
SELECT quantum_flow.start_flow('ops_maint', '{}', 'c0000000-0000-0000-0000-0000000000e1');
SELECT count(*) AS claimed FROM quantum_flow.poll_tasks('ops_maint', 10);
UPDATE pgmq.q_qf_ops_maint SET vt = clock_timestamp() - interval '1 second';
SELECT quantum_flow.maintain()->'timeouts_retried' AS timeouts_retried;
SELECT (quantum_flow.maintain()->>'workflows')::int = (SELECT count(*) - 1 FROM quantum_flow.workflows) AS all_but_the_lost_one;
SELECT quantum_flow.delete_flow('ops_lost_queue');
SELECT quantum_flow.cancel_run('c0000000-0000-0000-0000-0000000000e1');

--
-- prune_runs(older_than, keep_failed, max_runs): deletes ended runs with their step states,
-- tasks and queue messages (archived ones included), oldest first; never a started run.
--
SELECT workflow_slug FROM quantum_flow.create_flow('ops_prune', max_attempts => 1, base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('ops_prune', 'm', step_type => 'map');
SELECT quantum_flow.start_flow('ops_prune', '[1, 2]', '10000000-0000-0000-0000-000000000001');  -- will complete
SELECT quantum_flow.start_flow('ops_prune', '[1, 2]', '10000000-0000-0000-0000-000000000002');  -- will fail
SELECT quantum_flow.start_flow('ops_prune', '[1, 2]', '10000000-0000-0000-0000-000000000003');  -- will complete
SELECT quantum_flow.start_flow('ops_prune', '[1, 2]', '10000000-0000-0000-0000-000000000004');  -- stays started
SELECT count(*) FILTER (WHERE CASE WHEN run_id = '10000000-0000-0000-0000-000000000002' AND task_index = 0
                                   THEN quantum_flow.fail_task(run_id, step_slug, task_index, 'no') = 'failed'
                                   WHEN run_id = '10000000-0000-0000-0000-000000000004' THEN false
                                   ELSE quantum_flow.complete_task(run_id, step_slug, task_index, input->'item') END) AS answered
FROM (SELECT * FROM quantum_flow.poll_tasks('ops_prune', 100) ORDER BY run_id, task_index) t;
SELECT run_id, status FROM quantum_flow.runs WHERE workflow_slug = 'ops_prune' ORDER BY run_id;
SELECT count(*) AS archived FROM pgmq.a_qf_ops_prune;
-- nothing has ended a week ago
SELECT quantum_flow.prune_runs();
-- keep_failed keeps the failed run; max_runs 1 deletes the oldest ended run only
SELECT quantum_flow.prune_runs('0 seconds', keep_failed => true, max_runs => 1);
SELECT run_id, status FROM quantum_flow.runs WHERE workflow_slug = 'ops_prune' ORDER BY run_id;
SELECT quantum_flow.prune_runs('0 seconds', keep_failed => true);
-- prune_runs is not per workflow: the failed runs of the scenarios above go too (4 runs)
SELECT quantum_flow.prune_runs('0 seconds');
SELECT run_id, status FROM quantum_flow.runs WHERE workflow_slug = 'ops_prune' ORDER BY run_id;
-- their tasks and messages went with them; the started run keeps its tasks and messages
SELECT run_id, count(*) AS tasks FROM quantum_flow.step_tasks
WHERE run_id::text LIKE '10000000-%' GROUP BY run_id ORDER BY run_id;
SELECT count(*) AS archived FROM pgmq.a_qf_ops_prune;
SELECT count(*) AS in_queue FROM pgmq.q_qf_ops_prune;
SELECT quantum_flow.prune_runs('0 seconds');
\set VERBOSITY sqlstate
SELECT quantum_flow.prune_runs(max_runs => 0);
\set VERBOSITY terse
SELECT quantum_flow.prune_runs(max_runs => 0);
SELECT quantum_flow.prune_runs(NULL);
SELECT quantum_flow.cancel_run('10000000-0000-0000-0000-000000000004');
-- a failed run that was retried and then completed leaves no message behind once pruned:
-- retry_run deletes the archived messages of the tasks it starts again (nothing refers to
-- them after it)
SELECT workflow_slug FROM quantum_flow.create_flow('ops_prune_retry', max_attempts => 1, base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('ops_prune_retry', 'm', step_type => 'map');
SELECT quantum_flow.start_flow('ops_prune_retry', '[1, 2, 3]', '10000000-0000-0000-0000-000000000011');
SELECT count(*) FILTER (WHERE quantum_flow.fail_task(run_id, step_slug, task_index, 'no', retry => false) = 'failed') AS failed
FROM (SELECT * FROM quantum_flow.poll_tasks('ops_prune_retry', 10) ORDER BY task_index LIMIT 1) t;
SELECT count(*) AS archived_after_failure FROM pgmq.a_qf_ops_prune_retry;
SELECT quantum_flow.retry_run('10000000-0000-0000-0000-000000000011') AS retried;
SELECT count(*) AS archived_after_retry FROM pgmq.a_qf_ops_prune_retry;
SELECT count(*) FILTER (WHERE quantum_flow.complete_task(run_id, step_slug, task_index, input->'item', attempt)) AS completed
FROM quantum_flow.poll_tasks('ops_prune_retry', 10);
SELECT status FROM quantum_flow.runs WHERE run_id = '10000000-0000-0000-0000-000000000011';
SELECT quantum_flow.prune_runs('0 seconds') AS pruned;
SELECT (SELECT count(*) FROM pgmq.a_qf_ops_prune_retry) AS archived, (SELECT count(*) FROM pgmq.q_qf_ops_prune_retry) AS in_queue;
SELECT quantum_flow.delete_flow('ops_prune_retry');

SELECT count(*) AS deleted_flows
FROM (SELECT quantum_flow.delete_flow(workflow_slug) FROM quantum_flow.list_flows()
      WHERE workflow_slug LIKE 'ops\_%') d;

--
-- DROP EXTENSION quantum_flow drops its workflows' queues (and says the roles stay); a new
-- CREATE EXTENSION can then create workflows of the same slugs. (In a database of its own.)
--
CREATE DATABASE qf_regress_drop;
\c qf_regress_drop
SET client_min_messages = notice;
CREATE EXTENSION quantum_flow CASCADE;
SELECT workflow_slug FROM quantum_flow.create_flow('dropped_flow');
SELECT step_slug FROM quantum_flow.add_step('dropped_flow', 'a');
SELECT quantum_flow.start_flow('dropped_flow', '{}') IS NOT NULL AS started;
SELECT queue_name FROM pgmq.meta ORDER BY 1;
DROP EXTENSION quantum_flow;
SELECT queue_name FROM pgmq.meta ORDER BY 1;
SELECT count(*) AS queue_tables FROM pg_tables WHERE schemaname = 'pgmq' AND tablename LIKE '%qf_%';
-- the roles are still there
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'quantum\_flow\_%' ORDER BY 1;
-- dropping another extension does not touch quantum_flow's queues
CREATE EXTENSION quantum_flow;
SELECT workflow_slug FROM quantum_flow.create_flow('dropped_flow');
CREATE EXTENSION pg_trgm;
DROP EXTENSION pg_trgm;
SELECT queue_name FROM pgmq.meta ORDER BY 1;
-- a drop that fails keeps the queues
CREATE TABLE depends_on_it (w quantum_flow.workflows);
DROP EXTENSION quantum_flow;
SELECT queue_name FROM pgmq.meta ORDER BY 1;
DROP TABLE depends_on_it;
DROP EXTENSION IF EXISTS pg_trgm, quantum_flow;
SELECT queue_name FROM pgmq.meta ORDER BY 1;
\c qf_regress
DROP DATABASE qf_regress_drop;
