--
-- execution: runs driven from one session, as a worker drives them: start_flow, poll_tasks,
-- complete_task, fail_task, get_run. Each scenario uses its own exec_* workflow and fixed run
-- ids, and deletes its workflow at the end (its pgmq queue goes with it).
--
-- Errors are shown with VERBOSITY terse; the first case of each run-time error code is
-- repeated under VERBOSITY sqlstate to show its SQLSTATE. Timestamps vary, so get_run
-- documents are shown without them (and the helpers below only say whether they are set).
--
\set VERBOSITY terse
\pset null '(null)'

-- get_run's run-level fields; timestamps reduced to "is it set"
CREATE FUNCTION pg_temp.run_row(id uuid)
RETURNS TABLE (status text, input jsonb, output jsonb, error_message text,
               started_at boolean, completed_at boolean, failed_at boolean)
LANGUAGE sql AS $$
  SELECT r->>'status', r->'input', r->'output', r->>'error_message',
         r->>'started_at' IS NOT NULL, r->>'completed_at' IS NOT NULL, r->>'failed_at' IS NOT NULL
  FROM quantum_flow.get_run(id) AS r
$$;
-- get_run's steps, in the order get_run gives them
CREATE FUNCTION pg_temp.step_rows(id uuid)
RETURNS TABLE (step_slug text, status text, tasks_total int, tasks_completed int,
               output jsonb, error_message text)
LANGUAGE sql AS $$
  SELECT s->>'step_slug', s->>'status', (s->>'tasks_total')::int, (s->>'tasks_completed')::int,
         s->'output', s->>'error_message'
  FROM jsonb_array_elements(quantum_flow.get_run(id)->'steps') WITH ORDINALITY AS e(s, n)
  ORDER BY n
$$;
-- task statuses are not part of get_run: read them from the runtime table
CREATE FUNCTION pg_temp.task_rows(id uuid)
RETURNS TABLE (step_slug text, task_index int, status text, attempts int, output jsonb,
               error_message text)
LANGUAGE sql AS $$
  SELECT step_slug, task_index, status, attempts_count, output, error_message
  FROM quantum_flow.step_tasks WHERE run_id = id ORDER BY step_slug, task_index
$$;

--
-- Scenario basic: root single steps get {"run": <input>}; a single step with two
-- dependencies gets one key per dependency; run output = the leaf step's output.
--
SELECT workflow_slug FROM quantum_flow.create_flow('exec_basic', base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('exec_basic', 'fetch');
SELECT step_slug FROM quantum_flow.add_step('exec_basic', 'lookup');
SELECT step_slug FROM quantum_flow.add_step('exec_basic', 'combine', ARRAY['lookup', 'fetch']);

-- start_flow with a chosen run_id returns that id
SELECT quantum_flow.start_flow('exec_basic', '{"user": 42}', 'a0000000-0000-0000-0000-000000000001');
-- the run is started: its root steps are started, combine waits (created, 1 task expected)
SELECT * FROM pg_temp.run_row('a0000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.step_rows('a0000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.task_rows('a0000000-0000-0000-0000-000000000001');
-- one pgmq message per queued task
SELECT count(*) AS messages FROM pgmq.q_qf_exec_basic;
-- only a claimed task can be answered: before the poll, false / 'ignored', nothing changes
SELECT quantum_flow.complete_task('a0000000-0000-0000-0000-000000000001', 'fetch', 0, '"too early"');
SELECT quantum_flow.fail_task('a0000000-0000-0000-0000-000000000001', 'fetch', 0, 'too early');
SELECT * FROM pg_temp.task_rows('a0000000-0000-0000-0000-000000000001');

-- poll_tasks claims both root tasks, attempt 1, input {"run": <flow input>}
SELECT * FROM quantum_flow.poll_tasks('exec_basic') ORDER BY step_slug, task_index;
SELECT * FROM pg_temp.task_rows('a0000000-0000-0000-0000-000000000001');
-- claimed tasks are hidden from the next poll
SELECT * FROM quantum_flow.poll_tasks('exec_basic') ORDER BY step_slug, task_index;

-- completing fetch: combine still waits for lookup
SELECT quantum_flow.complete_task('a0000000-0000-0000-0000-000000000001', 'fetch', 0, '{"rows": 3}');
SELECT * FROM quantum_flow.poll_tasks('exec_basic') ORDER BY step_slug, task_index;
SELECT * FROM pg_temp.step_rows('a0000000-0000-0000-0000-000000000001');
-- completing lookup (its output is a JSON string) makes combine ready
SELECT quantum_flow.complete_task('a0000000-0000-0000-0000-000000000001', 'lookup', 0, '"alice"');
-- combine's input: the flow input under "run", and one key per dependency
SELECT * FROM quantum_flow.poll_tasks('exec_basic') ORDER BY step_slug, task_index;
-- an SQL NULL output is stored as JSON null
SELECT quantum_flow.complete_task('a0000000-0000-0000-0000-000000000001', 'combine', 0, NULL);
-- the run is completed; its output holds the only leaf step, combine
SELECT jsonb_pretty(quantum_flow.get_run('a0000000-0000-0000-0000-000000000001')
                    - 'started_at' - 'completed_at' - 'failed_at');
SELECT * FROM pg_temp.run_row('a0000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.task_rows('a0000000-0000-0000-0000-000000000001');
-- completed tasks' messages are deleted from the queue, not archived
SELECT (SELECT count(*) FROM pgmq.q_qf_exec_basic) AS queued, (SELECT count(*) FROM pgmq.a_qf_exec_basic) AS archived;

-- late and duplicate answers are harmless no-ops: false / 'ignored', nothing changes
SELECT quantum_flow.complete_task('a0000000-0000-0000-0000-000000000001', 'fetch', 0, '{"rows": 999}');
SELECT quantum_flow.fail_task('a0000000-0000-0000-0000-000000000001', 'fetch', 0, 'too late');
SELECT quantum_flow.complete_task('a0000000-0000-0000-0000-000000000001', 'combine', 0, '"again"', attempt => 1);
SELECT * FROM pg_temp.run_row('a0000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.task_rows('a0000000-0000-0000-0000-000000000001');

-- run_exists (23505): starting a run_id that exists
\set VERBOSITY sqlstate
SELECT quantum_flow.start_flow('exec_basic', '{}', 'a0000000-0000-0000-0000-000000000001');
\set VERBOSITY terse
SELECT quantum_flow.start_flow('exec_basic', '{}', 'a0000000-0000-0000-0000-000000000001');
SELECT quantum_flow.start_flow('exec_basic', run_id => 'a0000000-0000-0000-0000-000000000001');
-- run ids are unique across workflows
SELECT workflow_slug FROM quantum_flow.create_flow('exec_other');
SELECT step_slug FROM quantum_flow.add_step('exec_other', 'only');
SELECT quantum_flow.start_flow('exec_other', '{}', 'a0000000-0000-0000-0000-000000000001');
SELECT quantum_flow.delete_flow('exec_other');
-- the existing run is untouched
SELECT * FROM pg_temp.run_row('a0000000-0000-0000-0000-000000000001');

-- run_not_found (P0002): complete_task, fail_task and get_run naming an unknown run
\set VERBOSITY sqlstate
SELECT quantum_flow.get_run('a0000000-0000-0000-0000-0000000000ff');
\set VERBOSITY terse
SELECT quantum_flow.get_run('a0000000-0000-0000-0000-0000000000ff');
SELECT quantum_flow.complete_task('a0000000-0000-0000-0000-0000000000ff', 'fetch', 0, '{}');
SELECT quantum_flow.fail_task('a0000000-0000-0000-0000-0000000000ff', 'fetch', 0, 'boom');

-- task_not_found (P0002): an existing run, but no such step or task index
\set VERBOSITY sqlstate
SELECT quantum_flow.complete_task('a0000000-0000-0000-0000-000000000001', 'fetch', 1, '{}');
\set VERBOSITY terse
SELECT quantum_flow.complete_task('a0000000-0000-0000-0000-000000000001', 'fetch', 1, '{}');
SELECT quantum_flow.complete_task('a0000000-0000-0000-0000-000000000001', 'nope', 0, '{}');
SELECT quantum_flow.fail_task('a0000000-0000-0000-0000-000000000001', 'fetch', -1, 'boom');
SELECT quantum_flow.fail_task('a0000000-0000-0000-0000-000000000001', 'nope', 0, 'boom');
-- an invalid step slug is refused before any lookup
SELECT quantum_flow.complete_task('a0000000-0000-0000-0000-000000000001', 'no-pe', 0, '{}');

-- start_flow with every default: a generated run id, input {}
SELECT quantum_flow.start_flow('exec_basic') AS generated_run \gset
SELECT :'generated_run'::uuid <> 'a0000000-0000-0000-0000-000000000001' AS new_id;
SELECT status, input FROM pg_temp.run_row(:'generated_run');

-- workflow_has_active_runs (55006): no step added, no delete, while a run is started
\set VERBOSITY sqlstate
SELECT quantum_flow.add_step('exec_basic', 'extra');
\set VERBOSITY terse
SELECT quantum_flow.add_step('exec_basic', 'extra');
SELECT quantum_flow.delete_flow('exec_basic');
-- an identical add_step is still answered with the existing row (nothing would change)
SELECT step_slug, step_index FROM quantum_flow.add_step('exec_basic', 'fetch');
SELECT count(*) AS steps FROM quantum_flow.workflow_steps WHERE workflow_slug = 'exec_basic';

-- finish the generated run (its id varies, so it is not shown)
SELECT run_id = :'generated_run' AS this_run, step_slug, task_index, attempt, input
FROM quantum_flow.poll_tasks('exec_basic') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task(:'generated_run', 'fetch', 0, '1');
SELECT quantum_flow.complete_task(:'generated_run', 'lookup', 0, '2');
SELECT run_id = :'generated_run' AS this_run, step_slug, task_index, attempt, input
FROM quantum_flow.poll_tasks('exec_basic') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task(:'generated_run', 'combine', 0, '3');
SELECT status, output FROM pg_temp.run_row(:'generated_run');

-- with no run started, add_step and delete_flow succeed
SELECT step_slug, step_index FROM quantum_flow.add_step('exec_basic', 'extra');
SELECT quantum_flow.delete_flow('exec_basic');
-- the workflow's runs went with it, and so did its queue
SELECT quantum_flow.get_run('a0000000-0000-0000-0000-000000000001');
SELECT count(*) AS runs FROM quantum_flow.runs WHERE workflow_slug = 'exec_basic';
SELECT count(*) AS queues FROM pgmq.meta WHERE queue_name = 'qf_exec_basic';

--
-- Scenario map: a map step over the flow input (no dependency), a map step over a
-- dependency's output, and the fan-in of their outputs in task_index order.
--
SELECT workflow_slug FROM quantum_flow.create_flow('exec_map', base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('exec_map', 'fetch');
SELECT step_slug FROM quantum_flow.add_step('exec_map', 'items', step_type => 'map');
SELECT step_slug FROM quantum_flow.add_step('exec_map', 'each', ARRAY['fetch'], step_type => 'map', initial_tasks => 2);
SELECT step_slug FROM quantum_flow.add_step('exec_map', 'collect', ARRAY['items', 'each']);

SELECT quantum_flow.start_flow('exec_map', '[10, 20, 30]', 'b0000000-0000-0000-0000-000000000001');
-- items has one task per element of the flow input; each, not started yet, shows its
-- declared initial_tasks (2) as tasks_total
SELECT * FROM pg_temp.step_rows('b0000000-0000-0000-0000-000000000001');
-- each task of a map over the flow input gets {"item": <element i>, "index": i} (no "run": the
-- flow input is the array being mapped)
SELECT * FROM quantum_flow.poll_tasks('exec_map') ORDER BY step_slug, task_index;

-- fetch outputs a 3-element array: each fans out to 3 tasks (not the 2 declared)
SELECT quantum_flow.complete_task('b0000000-0000-0000-0000-000000000001', 'fetch', 0, '["a", "b", "c"]');
SELECT * FROM quantum_flow.poll_tasks('exec_map') ORDER BY step_slug, task_index;
SELECT * FROM pg_temp.step_rows('b0000000-0000-0000-0000-000000000001');

-- complete the map tasks in REVERSE index order; progress is counted as they complete
SELECT quantum_flow.complete_task('b0000000-0000-0000-0000-000000000001', 'items', 2, '{"doubled": 60}');
SELECT quantum_flow.complete_task('b0000000-0000-0000-0000-000000000001', 'each', 2, '"C"');
SELECT * FROM pg_temp.step_rows('b0000000-0000-0000-0000-000000000001');
SELECT quantum_flow.complete_task('b0000000-0000-0000-0000-000000000001', 'items', 1, '{"doubled": 40}');
SELECT quantum_flow.complete_task('b0000000-0000-0000-0000-000000000001', 'each', 1, '"B"');
SELECT quantum_flow.complete_task('b0000000-0000-0000-0000-000000000001', 'items', 0, '{"doubled": 20}');
-- collect still waits for the last task of each
SELECT * FROM quantum_flow.poll_tasks('exec_map') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task('b0000000-0000-0000-0000-000000000001', 'each', 0, '"A"');
-- the map outputs are arrays in task_index order, whatever the completion order
SELECT * FROM pg_temp.step_rows('b0000000-0000-0000-0000-000000000001');
-- collect gets both arrays, one key per dependency
SELECT * FROM quantum_flow.poll_tasks('exec_map') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task('b0000000-0000-0000-0000-000000000001', 'collect', 0, '{"count": 6}');
SELECT * FROM pg_temp.run_row('b0000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.task_rows('b0000000-0000-0000-0000-000000000001');
SELECT count(*) AS messages FROM pgmq.q_qf_exec_map;
SELECT quantum_flow.delete_flow('exec_map');
SELECT count(*) AS queues FROM pgmq.meta WHERE queue_name = 'qf_exec_map';

--
-- Scenario empty: a map step over an empty array completes at once with [] and its
-- dependents proceed, through a chain of two empty maps.
--
SELECT workflow_slug FROM quantum_flow.create_flow('exec_empty', base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('exec_empty', 'first', step_type => 'map');
SELECT step_slug FROM quantum_flow.add_step('exec_empty', 'second', ARRAY['first'], 'map', 5);
SELECT step_slug FROM quantum_flow.add_step('exec_empty', 'after', ARRAY['second']);

SELECT quantum_flow.start_flow('exec_empty', '[]', 'c0000000-0000-0000-0000-000000000001');
-- first and second completed during start_flow with no tasks and output []; after is queued
SELECT * FROM pg_temp.run_row('c0000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.step_rows('c0000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.task_rows('c0000000-0000-0000-0000-000000000001');
SELECT * FROM quantum_flow.poll_tasks('exec_empty') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task('c0000000-0000-0000-0000-000000000001', 'after', 0, '"done"');
SELECT * FROM pg_temp.run_row('c0000000-0000-0000-0000-000000000001');

-- a map step's output is the array of its task outputs: one task returning [] makes first's
-- output [[]], a one-element array, so second gets one task, whose item is []
SELECT quantum_flow.start_flow('exec_empty', '[1]', 'c0000000-0000-0000-0000-000000000002');
SELECT * FROM quantum_flow.poll_tasks('exec_empty') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task('c0000000-0000-0000-0000-000000000002', 'first', 0, '[]');
SELECT * FROM quantum_flow.poll_tasks('exec_empty') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task('c0000000-0000-0000-0000-000000000002', 'second', 0, '[]');
SELECT * FROM quantum_flow.poll_tasks('exec_empty') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task('c0000000-0000-0000-0000-000000000002', 'after', 0, '"done"');
SELECT * FROM pg_temp.step_rows('c0000000-0000-0000-0000-000000000002');
SELECT quantum_flow.delete_flow('exec_empty');

-- a workflow made only of empty maps completes inside start_flow; its output holds the leaf
SELECT workflow_slug FROM quantum_flow.create_flow('exec_all_empty');
SELECT step_slug FROM quantum_flow.add_step('exec_all_empty', 'first', step_type => 'map');
SELECT step_slug FROM quantum_flow.add_step('exec_all_empty', 'second', ARRAY['first'], 'map');
SELECT quantum_flow.start_flow('exec_all_empty', '[]', 'c0000000-0000-0000-0000-000000000003');
SELECT * FROM pg_temp.run_row('c0000000-0000-0000-0000-000000000003');
SELECT * FROM pg_temp.step_rows('c0000000-0000-0000-0000-000000000003');
SELECT count(*) AS messages FROM pgmq.q_qf_exec_all_empty;
SELECT * FROM quantum_flow.poll_tasks('exec_all_empty');
SELECT quantum_flow.delete_flow('exec_all_empty');
SELECT count(*) AS queues FROM pgmq.meta WHERE queue_name IN ('qf_exec_empty', 'qf_exec_all_empty');

--
-- Scenario invalid_map_input at start: a root map step whose flow input is not an array.
-- start_flow raises, and writes no run and no message.
--
SELECT workflow_slug FROM quantum_flow.create_flow('exec_root_map');
SELECT step_slug FROM quantum_flow.add_step('exec_root_map', 'fetch');
SELECT step_slug FROM quantum_flow.add_step('exec_root_map', 'items', step_type => 'map');
\set VERBOSITY sqlstate
SELECT quantum_flow.start_flow('exec_root_map', '{"items": [1, 2]}', 'd0000000-0000-0000-0000-000000000001');
\set VERBOSITY terse
SELECT quantum_flow.start_flow('exec_root_map', '{"items": [1, 2]}', 'd0000000-0000-0000-0000-000000000001');
-- a scalar, a JSON null, and the default input {} are not arrays either
SELECT quantum_flow.start_flow('exec_root_map', '7', 'd0000000-0000-0000-0000-000000000001');
SELECT quantum_flow.start_flow('exec_root_map', 'null', 'd0000000-0000-0000-0000-000000000001');
SELECT quantum_flow.start_flow('exec_root_map');
-- no run was written, and no message was sent (not even fetch's)
SELECT quantum_flow.get_run('d0000000-0000-0000-0000-000000000001');
SELECT count(*) AS runs FROM quantum_flow.runs WHERE workflow_slug = 'exec_root_map';
SELECT (SELECT count(*) FROM pgmq.q_qf_exec_root_map) AS queued, (SELECT count(*) FROM pgmq.a_qf_exec_root_map) AS archived;
SELECT quantum_flow.delete_flow('exec_root_map');

--
-- Scenario invalid_map_input at run time: a map step's dependency outputs an object. The run
-- fails at once (no retries) with that error; other steps keep their statuses; the run's
-- unfinished messages are archived, none is left in the queue.
--
SELECT workflow_slug FROM quantum_flow.create_flow('exec_dep_map', base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('exec_dep_map', 'a');
SELECT step_slug FROM quantum_flow.add_step('exec_dep_map', 'm', ARRAY['a'], 'map');
SELECT step_slug FROM quantum_flow.add_step('exec_dep_map', 'side');
SELECT quantum_flow.start_flow('exec_dep_map', '{}', 'd0000000-0000-0000-0000-000000000002');
-- m has not started and declares no initial_tasks: tasks_total is null
SELECT * FROM pg_temp.step_rows('d0000000-0000-0000-0000-000000000002');
SELECT * FROM quantum_flow.poll_tasks('exec_dep_map') ORDER BY step_slug, task_index;
-- completing a succeeds (true), and fails the run: m cannot map over an object
SELECT quantum_flow.complete_task('d0000000-0000-0000-0000-000000000002', 'a', 0, '{"k": 1}');
SELECT * FROM pg_temp.run_row('d0000000-0000-0000-0000-000000000002');
SELECT * FROM pg_temp.step_rows('d0000000-0000-0000-0000-000000000002');
SELECT * FROM pg_temp.task_rows('d0000000-0000-0000-0000-000000000002');
-- nothing is retried: nothing to poll, the queue is empty, side's claimed message is archived
SELECT * FROM quantum_flow.poll_tasks('exec_dep_map') ORDER BY step_slug, task_index;
SELECT count(*) AS queued FROM pgmq.q_qf_exec_dep_map;
SELECT message->>'step_slug' AS step_slug, message->>'task_index' AS task_index
FROM pgmq.a_qf_exec_dep_map ORDER BY 1, 2;
-- side's worker answers late: false / 'ignored', the run stays failed
SELECT quantum_flow.complete_task('d0000000-0000-0000-0000-000000000002', 'side', 0, '"late"');
SELECT quantum_flow.fail_task('d0000000-0000-0000-0000-000000000002', 'side', 0, 'late');
SELECT * FROM pg_temp.run_row('d0000000-0000-0000-0000-000000000002');
-- a second run: a's output is an SQL NULL, stored as JSON null, which is not an array either
SELECT quantum_flow.start_flow('exec_dep_map', '{}', 'd0000000-0000-0000-0000-000000000003');
SELECT * FROM quantum_flow.poll_tasks('exec_dep_map') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task('d0000000-0000-0000-0000-000000000003', 'a', 0, NULL);
SELECT * FROM pg_temp.run_row('d0000000-0000-0000-0000-000000000003');
SELECT * FROM pg_temp.step_rows('d0000000-0000-0000-0000-000000000003');
SELECT count(*) AS queued FROM pgmq.q_qf_exec_dep_map;
-- a failed run is not started: delete_flow is allowed
SELECT quantum_flow.delete_flow('exec_dep_map');
SELECT count(*) AS queues FROM pgmq.meta WHERE queue_name = 'qf_exec_dep_map';

--
-- Scenario diamond: a -> b, a -> c, (b, c) -> d, plus a second leaf e after a.
-- The run's output holds every leaf step: d and e.
--
SELECT workflow_slug FROM quantum_flow.create_flow('exec_diamond', base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('exec_diamond', 'a');
SELECT step_slug FROM quantum_flow.add_step('exec_diamond', 'b', ARRAY['a']);
SELECT step_slug FROM quantum_flow.add_step('exec_diamond', 'c', ARRAY['a']);
SELECT step_slug FROM quantum_flow.add_step('exec_diamond', 'd', ARRAY['b', 'c']);
SELECT step_slug FROM quantum_flow.add_step('exec_diamond', 'e', ARRAY['a']);
SELECT quantum_flow.start_flow('exec_diamond', '{"n": 1}', 'e0000000-0000-0000-0000-000000000001');
-- with max_wait_ms, a poll that finds work ready returns it (it waits only when there is none)
SELECT * FROM quantum_flow.poll_tasks('exec_diamond', max_wait_ms => 60000) ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task('e0000000-0000-0000-0000-000000000001', 'a', 0, '{"a": true}');
-- b, c and e are ready together: batch_size 2 claims two of them, the next poll the third
CREATE TEMP TABLE claimed AS SELECT * FROM quantum_flow.poll_tasks('exec_diamond', batch_size => 2);
SELECT count(*) AS first_batch FROM claimed;
INSERT INTO claimed SELECT * FROM quantum_flow.poll_tasks('exec_diamond', batch_size => 2);
SELECT count(*) AS both_batches FROM claimed;
SELECT * FROM claimed ORDER BY step_slug, task_index;
DROP TABLE claimed;
SELECT quantum_flow.complete_task('e0000000-0000-0000-0000-000000000001', 'c', 0, '"from c"');
SELECT quantum_flow.complete_task('e0000000-0000-0000-0000-000000000001', 'e', 0, '"from e"');
-- d needs b too
SELECT * FROM quantum_flow.poll_tasks('exec_diamond') ORDER BY step_slug, task_index;
SELECT * FROM pg_temp.step_rows('e0000000-0000-0000-0000-000000000001');
SELECT quantum_flow.complete_task('e0000000-0000-0000-0000-000000000001', 'b', 0, '"from b"');
SELECT * FROM quantum_flow.poll_tasks('exec_diamond') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task('e0000000-0000-0000-0000-000000000001', 'd', 0, '["b", "c"]');
SELECT * FROM pg_temp.run_row('e0000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.step_rows('e0000000-0000-0000-0000-000000000001');
SELECT quantum_flow.delete_flow('exec_diamond');
SELECT count(*) AS queues FROM pgmq.meta WHERE queue_name = 'qf_exec_diamond';

--
-- Scenario retries: max_attempts counts every attempt, the first included; a step's
-- max_attempts overrides the workflow's, in both directions. base_delay 0: a failed task is
-- pollable again at once. The attempt argument pins an answer to one attempt.
--
SELECT workflow_slug, max_attempts, base_delay FROM quantum_flow.create_flow('exec_retry', max_attempts => 2, base_delay => 0);
-- flaky may take 3 attempts (more than the workflow's 2); doomed inherits 2; after waits on doomed
SELECT step_slug, max_attempts FROM quantum_flow.add_step('exec_retry', 'flaky', max_attempts => 3);
SELECT step_slug, max_attempts FROM quantum_flow.add_step('exec_retry', 'doomed');
SELECT step_slug, max_attempts FROM quantum_flow.add_step('exec_retry', 'after', ARRAY['doomed']);
SELECT quantum_flow.start_flow('exec_retry', '{"try": true}', 'f0000000-0000-0000-0000-000000000001');
SELECT * FROM quantum_flow.poll_tasks('exec_retry', worker_id => 'w1') ORDER BY step_slug, task_index;

-- flaky, attempt 1 of 3 fails: queued for a retry, with its error kept
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000001', 'flaky', 0, 'attempt 1 broke');
SELECT * FROM pg_temp.task_rows('f0000000-0000-0000-0000-000000000001');
-- a second answer for the same claim is ignored (the task is no longer started)
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000001', 'flaky', 0, 'duplicate');
SELECT quantum_flow.complete_task('f0000000-0000-0000-0000-000000000001', 'flaky', 0, '"duplicate"');
-- attempt 2, same input
SELECT * FROM quantum_flow.poll_tasks('exec_retry', 10) ORDER BY step_slug, task_index;
-- attempt 2 of 3 fails (with the workflow's max_attempts 2 this would fail the task)
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000001', 'flaky', 0, 'attempt 2 broke', attempt => 2);
SELECT * FROM quantum_flow.poll_tasks('exec_retry', batch_size => 5) ORDER BY step_slug, task_index;
-- answers naming another attempt than the current one (3) do not count
SELECT quantum_flow.complete_task('f0000000-0000-0000-0000-000000000001', 'flaky', 0, '"stale"', attempt => 2);
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000001', 'flaky', 0, 'stale', 1);
SELECT quantum_flow.complete_task('f0000000-0000-0000-0000-000000000001', 'flaky', 0, '"future"', 4);
SELECT * FROM pg_temp.task_rows('f0000000-0000-0000-0000-000000000001');
-- attempt 3 succeeds
SELECT quantum_flow.complete_task('f0000000-0000-0000-0000-000000000001', 'flaky', 0, '"third time lucky"', attempt => 3);

-- doomed fails twice: attempt 1 of 2 is queued again, attempt 2 of 2 fails the task,
-- the step and the run, with the last error message
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000001', 'doomed', 0, 'doomed 1');
SELECT * FROM quantum_flow.poll_tasks('exec_retry') ORDER BY step_slug, task_index;
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000001', 'doomed', 0, 'doomed 2');
SELECT * FROM pg_temp.run_row('f0000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.step_rows('f0000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.task_rows('f0000000-0000-0000-0000-000000000001');
-- late answers after the failure
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000001', 'doomed', 0, 'doomed 3');
SELECT quantum_flow.complete_task('f0000000-0000-0000-0000-000000000001', 'doomed', 0, '"too late"');
-- after never started, so it has no task
SELECT quantum_flow.complete_task('f0000000-0000-0000-0000-000000000001', 'after', 0, '"never ran"');
-- the queue is empty; the failed task's message is archived, the completed one's deleted
SELECT count(*) AS queued FROM pgmq.q_qf_exec_retry;
SELECT message->>'step_slug' AS step_slug, message->>'task_index' AS task_index
FROM pgmq.a_qf_exec_retry ORDER BY 1, 2;
SELECT * FROM quantum_flow.poll_tasks('exec_retry');

-- a step's max_attempts 1 beats the workflow's 2: the first failure is final
SELECT step_slug, max_attempts FROM quantum_flow.add_step('exec_retry', 'once', max_attempts => 1);
SELECT quantum_flow.start_flow('exec_retry', '{}', 'f0000000-0000-0000-0000-000000000002');
SELECT * FROM quantum_flow.poll_tasks('exec_retry') ORDER BY step_slug, task_index;
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000002', 'once', 0, 'once is enough');
SELECT * FROM pg_temp.run_row('f0000000-0000-0000-0000-000000000002');
SELECT * FROM pg_temp.step_rows('f0000000-0000-0000-0000-000000000002');
SELECT * FROM pg_temp.task_rows('f0000000-0000-0000-0000-000000000002');
-- flaky and doomed were claimed (started) when the run failed: their messages are archived
SELECT count(*) AS queued FROM pgmq.q_qf_exec_retry;
SELECT message->>'step_slug' AS step_slug, count(*) AS archived
FROM pgmq.a_qf_exec_retry WHERE message->>'run_id' = 'f0000000-0000-0000-0000-000000000002'
GROUP BY 1 ORDER BY 1;
SELECT quantum_flow.delete_flow('exec_retry');
SELECT count(*) AS queues FROM pgmq.meta WHERE queue_name = 'qf_exec_retry';

--
-- Scenario backoff: with base_delay > 0 a failed attempt n is retried after
-- base_delay * 2^(n-1) seconds. base_delay is 60 here so that no timing can make the retry
-- visible during the test; the elapsed backoff is simulated by moving the message's
-- visibility time with pgmq.set_vt (nothing sleeps).
--
SELECT workflow_slug, base_delay FROM quantum_flow.create_flow('exec_backoff', base_delay => 60);
SELECT step_slug FROM quantum_flow.add_step('exec_backoff', 'slow');
SELECT step_slug, max_attempts FROM quantum_flow.add_step('exec_backoff', 'bad', max_attempts => 1);
SELECT quantum_flow.start_flow('exec_backoff', '{}', '0b000000-0000-0000-0000-000000000001');
SELECT * FROM quantum_flow.poll_tasks('exec_backoff') ORDER BY step_slug, task_index;
SELECT quantum_flow.fail_task('0b000000-0000-0000-0000-000000000001', 'slow', 0, 'slow 1');
-- the retry is not pollable yet: it is hidden for about 60 s (attempt 1: 60 * 2^0)
SELECT * FROM quantum_flow.poll_tasks('exec_backoff') ORDER BY step_slug, task_index;
SELECT vt - clock_timestamp() > interval '30 seconds' AS hidden_30s,
       vt - clock_timestamp() <= interval '60 seconds' AS hidden_at_most_60s
FROM pgmq.q_qf_exec_backoff WHERE message->>'step_slug' = 'slow';
-- let the backoff elapse, then attempt 2 fails: hidden for about 120 s (60 * 2^1)
SELECT count(*) FROM pgmq.q_qf_exec_backoff q, pgmq.set_vt('qf_exec_backoff', q.msg_id, 0) v
WHERE q.message->>'step_slug' = 'slow';
SELECT * FROM quantum_flow.poll_tasks('exec_backoff') ORDER BY step_slug, task_index;
SELECT quantum_flow.fail_task('0b000000-0000-0000-0000-000000000001', 'slow', 0, 'slow 2');
SELECT vt - clock_timestamp() > interval '90 seconds' AS hidden_90s,
       vt - clock_timestamp() <= interval '120 seconds' AS hidden_at_most_120s
FROM pgmq.q_qf_exec_backoff WHERE message->>'step_slug' = 'slow';
SELECT * FROM quantum_flow.poll_tasks('exec_backoff') ORDER BY step_slug, task_index;
-- bad fails the run while slow waits for its retry: slow's queued message is archived too
SELECT quantum_flow.fail_task('0b000000-0000-0000-0000-000000000001', 'bad', 0, 'bad input');
SELECT * FROM pg_temp.run_row('0b000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.task_rows('0b000000-0000-0000-0000-000000000001');
SELECT count(*) AS queued FROM pgmq.q_qf_exec_backoff;
SELECT message->>'step_slug' AS step_slug, message->>'task_index' AS task_index
FROM pgmq.a_qf_exec_backoff ORDER BY 1, 2;
SELECT quantum_flow.delete_flow('exec_backoff');
SELECT count(*) AS queues FROM pgmq.meta WHERE queue_name = 'qf_exec_backoff';

--
-- Scenario timeout: a claim not answered within the step's timeout is handed to the next
-- poll as a new attempt. The timeout elapsing is simulated with pgmq.set_vt (nothing sleeps).
--
SELECT workflow_slug FROM quantum_flow.create_flow('exec_timeout', max_attempts => 2, timeout => 30, base_delay => 0);
SELECT step_slug, timeout FROM quantum_flow.add_step('exec_timeout', 'long', timeout => 600);
SELECT quantum_flow.start_flow('exec_timeout', '{}', '0c000000-0000-0000-0000-000000000001');
SELECT * FROM quantum_flow.poll_tasks('exec_timeout') ORDER BY step_slug, task_index;
-- the claim hides the message for the step's timeout (600 s), not the workflow's (30 s)
SELECT vt - clock_timestamp() > interval '300 seconds' AS hidden_300s,
       vt - clock_timestamp() <= interval '600 seconds' AS hidden_at_most_600s
FROM pgmq.q_qf_exec_timeout;
-- the timeout elapses: the next poll claims attempt 2 and records why attempt 1 ended
SELECT count(*) FROM pgmq.q_qf_exec_timeout q, pgmq.set_vt('qf_exec_timeout', q.msg_id, 0) v;
SELECT * FROM quantum_flow.poll_tasks('exec_timeout') ORDER BY step_slug, task_index;
SELECT * FROM pg_temp.task_rows('0c000000-0000-0000-0000-000000000001');
-- the first worker's late answer for attempt 1 does not count
SELECT quantum_flow.complete_task('0c000000-0000-0000-0000-000000000001', 'long', 0, '"late"', attempt => 1);
-- attempt 2 times out too: attempts are exhausted, the task, step and run fail
SELECT count(*) FROM pgmq.q_qf_exec_timeout q, pgmq.set_vt('qf_exec_timeout', q.msg_id, 0) v;
SELECT * FROM quantum_flow.poll_tasks('exec_timeout') ORDER BY step_slug, task_index;
SELECT * FROM pg_temp.run_row('0c000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.step_rows('0c000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.task_rows('0c000000-0000-0000-0000-000000000001');
SELECT quantum_flow.complete_task('0c000000-0000-0000-0000-000000000001', 'long', 0, '"late"');
SELECT (SELECT count(*) FROM pgmq.q_qf_exec_timeout) AS queued, (SELECT count(*) FROM pgmq.a_qf_exec_timeout) AS archived;
SELECT quantum_flow.delete_flow('exec_timeout');

--
-- workflow_has_no_steps (55000): start_flow of a workflow without steps; no run is written
--
SELECT workflow_slug FROM quantum_flow.create_flow('exec_no_steps');
\set VERBOSITY sqlstate
SELECT quantum_flow.start_flow('exec_no_steps', '{}', '0d000000-0000-0000-0000-000000000001');
\set VERBOSITY terse
SELECT quantum_flow.start_flow('exec_no_steps', '{}', '0d000000-0000-0000-0000-000000000001');
SELECT quantum_flow.get_run('0d000000-0000-0000-0000-000000000001');

--
-- poll_tasks arguments
--
-- invalid_option: batch_size must be >= 1, max_wait_ms >= 0
SELECT * FROM quantum_flow.poll_tasks('exec_no_steps', 0);
SELECT * FROM quantum_flow.poll_tasks('exec_no_steps', batch_size => -1);
SELECT * FROM quantum_flow.poll_tasks('exec_no_steps', max_wait_ms => -1);
-- workflow_not_found / invalid_workflow_slug
SELECT * FROM quantum_flow.poll_tasks('exec_missing');
SELECT * FROM quantum_flow.poll_tasks('exec-missing');
-- start_flow of an unknown workflow
SELECT quantum_flow.start_flow('exec_missing');
-- every argument given; a short wait with nothing to claim returns no row
SELECT * FROM quantum_flow.poll_tasks('exec_no_steps', 1, 10, 'worker-1');
SELECT * FROM quantum_flow.poll_tasks(workflow_slug => 'exec_no_steps', batch_size => 100,
                                      max_wait_ms => 0, worker_id => NULL);

--
-- null_argument (22004): a NULL for any required argument of an execution function
--
\set VERBOSITY sqlstate
SELECT quantum_flow.start_flow(NULL);
\set VERBOSITY terse
SELECT quantum_flow.start_flow(NULL);
SELECT quantum_flow.start_flow('exec_no_steps', NULL);
SELECT quantum_flow.start_flow('exec_no_steps', input => NULL);
SELECT * FROM quantum_flow.poll_tasks(NULL);
SELECT * FROM quantum_flow.poll_tasks('exec_no_steps', NULL);
SELECT * FROM quantum_flow.poll_tasks('exec_no_steps', 10, NULL);
SELECT quantum_flow.complete_task(NULL, 'a', 0, '{}');
SELECT quantum_flow.complete_task('0d000000-0000-0000-0000-000000000001', NULL, 0, '{}');
SELECT quantum_flow.complete_task('0d000000-0000-0000-0000-000000000001', 'a', NULL, '{}');
SELECT quantum_flow.fail_task(NULL, 'a', 0, 'boom');
SELECT quantum_flow.fail_task('0d000000-0000-0000-0000-000000000001', NULL, 0, 'boom');
SELECT quantum_flow.fail_task('0d000000-0000-0000-0000-000000000001', 'a', NULL, 'boom');
SELECT quantum_flow.fail_task('0d000000-0000-0000-0000-000000000001', 'a', 0, NULL);
SELECT quantum_flow.get_run(NULL);
SELECT count(*) AS runs FROM quantum_flow.runs WHERE workflow_slug = 'exec_no_steps';
SELECT quantum_flow.delete_flow('exec_no_steps');

--
-- Scenario repeat: a diamond (top -> left, right -> bottom), one task per poll, and the
-- steps' states after each answer. complete_task counts a single step's task on its step in
-- the statement that completes the task; the run and the dependents are counted after it.
-- A second run in the same session ends exactly as the first.
--
SELECT workflow_slug FROM quantum_flow.create_flow('exec_repeat');
SELECT step_slug FROM quantum_flow.add_step('exec_repeat', 'top');
SELECT step_slug FROM quantum_flow.add_step('exec_repeat', 'left', ARRAY['top']);
SELECT step_slug FROM quantum_flow.add_step('exec_repeat', 'right', ARRAY['top']);
SELECT step_slug FROM quantum_flow.add_step('exec_repeat', 'bottom', ARRAY['left', 'right']);
CREATE FUNCTION pg_temp.drive_repeat(id uuid)
RETURNS TABLE (after text, step_slug text, status text, remaining_deps int, output jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  t record;
  answered text;
BEGIN
  PERFORM quantum_flow.start_flow('exec_repeat', '{"n": 1}', id);
  -- one task per poll, answered with its step's name; the steps' state after each answer
  LOOP
    SELECT * INTO t FROM quantum_flow.poll_tasks('exec_repeat', 1) LIMIT 1;
    EXIT WHEN NOT FOUND;
    PERFORM quantum_flow.complete_task(t.run_id, t.step_slug, t.task_index, to_jsonb(t.step_slug));
    answered := t.step_slug;
    RETURN QUERY
      SELECT answered, ss.step_slug, ss.status, ss.remaining_deps, ss.output
      FROM quantum_flow.step_states ss
      JOIN quantum_flow.workflow_steps ws USING (workflow_slug, step_slug)
      WHERE ss.run_id = id ORDER BY ws.step_index;
  END LOOP;
END $$;
SELECT * FROM pg_temp.drive_repeat('a0000000-0000-0000-0000-0000000000e1');
SELECT * FROM pg_temp.drive_repeat('a0000000-0000-0000-0000-0000000000e2');
SELECT run_id, status, output, remaining_steps FROM quantum_flow.runs
WHERE workflow_slug = 'exec_repeat' ORDER BY run_id;
SELECT count(*) AS messages FROM pgmq.q_qf_exec_repeat;
SELECT quantum_flow.delete_flow('exec_repeat');

-- start_flow without a run_id makes a random version-4 UUID (RFC 4122 variant), as
-- gen_random_uuid() does; 200 of them are all different
SELECT workflow_slug FROM quantum_flow.create_flow('exec_ids');
SELECT step_slug FROM quantum_flow.add_step('exec_ids', 'only');
WITH ids AS (SELECT quantum_flow.start_flow('exec_ids') AS id FROM generate_series(1, 200))
SELECT count(DISTINCT id) AS distinct_ids,
       bool_and(substr(id::text, 15, 1) = '4') AS version_4,
       bool_and(substr(id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS rfc_4122_variant,
       count(*) FILTER (WHERE id = '00000000-0000-0000-0000-000000000000') AS nil_ids
FROM ids;
SELECT count(quantum_flow.cancel_run(run_id)) AS cancelled FROM quantum_flow.runs WHERE workflow_slug = 'exec_ids';
SELECT quantum_flow.delete_flow('exec_ids');

-- clean up check: no exec_* workflow, run or queue is left
SELECT count(*) AS workflows FROM quantum_flow.list_flows() WHERE workflow_slug LIKE 'exec\_%';
SELECT count(*) AS runs FROM quantum_flow.runs;
SELECT count(*) AS queues FROM pgmq.meta WHERE queue_name LIKE 'qf\_exec\_%';
