-- Flow control (contract group D): start_delay and start_at, run_timeout, pause and resume,
-- retry_run and fail_task(retry => false), sub-flows, concurrency keys.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.steps(run uuid) RETURNS TABLE (step_slug text, status text, done int, total int, output jsonb)
LANGUAGE sql AS $$
    SELECT s->>'step_slug', s->>'status', (s->>'tasks_completed')::int, (s->>'tasks_total')::int, s->'output'
    FROM jsonb_array_elements(quantum_flow.get_run(run)->'steps') s
$$;

-- start_delay: the step's tasks become visible that long after it becomes ready
SELECT workflow_slug FROM quantum_flow.create_flow('fc_delay');
SELECT step_slug FROM quantum_flow.add_step('fc_delay', 'first');
SELECT step_slug, start_delay FROM quantum_flow.add_step('fc_delay', 'later', ARRAY['first'], start_delay => 1);
SELECT quantum_flow.start_flow('fc_delay', '{}', 'f0000000-0000-0000-0000-000000000001');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '1') FROM quantum_flow.poll_tasks('fc_delay');
SELECT count(*) AS claimable_now FROM quantum_flow.poll_tasks('fc_delay');
SELECT quantum_flow.flow_graph('fc_delay', 'mermaid', 'f0000000-0000-0000-0000-000000000001');
SELECT vt > clock_timestamp() + interval '0.5 s' AS hidden FROM pgmq.q_qf_fc_delay;
SELECT pg_sleep(1.1);
SELECT step_slug, attempt FROM quantum_flow.poll_tasks('fc_delay');

-- start_at: a scheduled run is started (its status says so) but its tasks wait for the time
SELECT quantum_flow.start_flow('fc_delay', '{}', 'f0000000-0000-0000-0000-000000000002',
                               start_at => clock_timestamp() + interval '1 second');
SELECT r->>'status' AS status, (r->>'start_at')::timestamptz > now() AS scheduled
FROM quantum_flow.get_run('f0000000-0000-0000-0000-000000000002') r;
SELECT count(*) AS claimable_now FROM quantum_flow.poll_tasks('fc_delay');
SELECT pg_sleep(1.1);
SELECT run_id, step_slug FROM quantum_flow.poll_tasks('fc_delay');

-- run_timeout: a run not finished in time fails with run_timeout, its queued tasks discarded
SELECT workflow_slug, run_timeout FROM quantum_flow.create_flow('fc_timeout', run_timeout => 1);
SELECT step_slug FROM quantum_flow.add_step('fc_timeout', 'm', step_type => 'map');
SELECT quantum_flow.start_flow('fc_timeout', '[1, 2, 3]', 'f0000000-0000-0000-0000-000000000003');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '"one"') FROM quantum_flow.poll_tasks('fc_timeout', 1);
SELECT pg_sleep(1.2);
SELECT count(*) AS claimed FROM quantum_flow.poll_tasks('fc_timeout', 1);
SELECT r->>'status' AS status, r->>'error_message' AS error_message
FROM quantum_flow.get_run('f0000000-0000-0000-0000-000000000003') r;
SELECT count(*) AS in_queue FROM pgmq.q_qf_fc_timeout;
-- a run that finishes in time keeps no timer behind
SELECT quantum_flow.start_flow('fc_timeout', '[1]', 'f0000000-0000-0000-0000-000000000004');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '"ok"') FROM quantum_flow.poll_tasks('fc_timeout');
SELECT quantum_flow.get_run('f0000000-0000-0000-0000-000000000004')->>'status' AS status;
SELECT count(*) AS in_queue FROM pgmq.q_qf_fc_timeout;

-- pause and resume: a paused run's tasks are not handed out; a claim in flight may answer
SELECT workflow_slug FROM quantum_flow.create_flow('fc_pause');
SELECT step_slug FROM quantum_flow.add_step('fc_pause', 'm', step_type => 'map');
SELECT step_slug FROM quantum_flow.add_step('fc_pause', 'z', ARRAY['m']);
SELECT quantum_flow.start_flow('fc_pause', '[1, 2, 3]', 'f0000000-0000-0000-0000-000000000005');
SELECT step_slug, task_index FROM quantum_flow.poll_tasks('fc_pause', 1);
SELECT quantum_flow.pause_run('f0000000-0000-0000-0000-000000000005') AS paused;
SELECT quantum_flow.pause_run('f0000000-0000-0000-0000-000000000005') AS paused_again;
SELECT quantum_flow.get_run('f0000000-0000-0000-0000-000000000005')->>'status' AS status;
SELECT count(*) AS claimable FROM quantum_flow.poll_tasks('fc_pause');
SELECT quantum_flow.flow_graph('fc_pause', 'dot', 'f0000000-0000-0000-0000-000000000005');
SELECT count(*) FILTER (WHERE vt = 'infinity') AS parked, count(*) AS in_queue FROM pgmq.q_qf_fc_pause;
SELECT quantum_flow.complete_task('f0000000-0000-0000-0000-000000000005', 'm', 0, '10') AS in_flight_answer;
SELECT * FROM pg_temp.steps('f0000000-0000-0000-0000-000000000005');
SELECT quantum_flow.resume_run('f0000000-0000-0000-0000-000000000005') AS resumed;
SELECT quantum_flow.resume_run('f0000000-0000-0000-0000-000000000005') AS resumed_again;
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, to_jsonb(task_index * 10))
FROM quantum_flow.poll_tasks('fc_pause') ORDER BY task_index;
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '"sum"') FROM quantum_flow.poll_tasks('fc_pause');
SELECT r->>'status' AS status, r->'output' AS output FROM quantum_flow.get_run('f0000000-0000-0000-0000-000000000005') r;
-- a paused run can be cancelled; errors
SELECT quantum_flow.start_flow('fc_pause', '[1]', 'f0000000-0000-0000-0000-000000000006');
SELECT quantum_flow.pause_run('f0000000-0000-0000-0000-000000000006');
SELECT quantum_flow.cancel_run('f0000000-0000-0000-0000-000000000006', 'not needed');
SELECT quantum_flow.resume_run('f0000000-0000-0000-0000-000000000006') AS resumed_cancelled;
SELECT quantum_flow.pause_run('f0000000-0000-0000-0000-00000000dead');
SELECT quantum_flow.resume_run(NULL);

-- fail_task(retry => false) fails at once, whatever attempts are left; retry_run starts the
-- run again from its failed and unfinished steps, keeping completed outputs, with fresh attempts
SELECT workflow_slug FROM quantum_flow.create_flow('fc_retry', max_attempts => 5, base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('fc_retry', 'm', step_type => 'map');
SELECT step_slug FROM quantum_flow.add_step('fc_retry', 'z', ARRAY['m']);
SELECT quantum_flow.start_flow('fc_retry', '[1, 2, 3]', 'f0000000-0000-0000-0000-000000000007');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, to_jsonb(task_index))
FROM quantum_flow.poll_tasks('fc_retry', 2) ORDER BY task_index;
SELECT step_slug, task_index, attempt FROM quantum_flow.poll_tasks('fc_retry');
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000007', 'm', 2, 'output is not JSON', retry => false);
SELECT r->>'status' AS status, r->>'error_message' AS error_message
FROM quantum_flow.get_run('f0000000-0000-0000-0000-000000000007') r;
SELECT quantum_flow.retry_run('f0000000-0000-0000-0000-000000000007') AS retried;
SELECT quantum_flow.retry_run('f0000000-0000-0000-0000-000000000007') AS retried_again;
SELECT r->>'status' AS status, r->>'error_message' AS error_message
FROM quantum_flow.get_run('f0000000-0000-0000-0000-000000000007') r;
SELECT * FROM pg_temp.steps('f0000000-0000-0000-0000-000000000007');
-- the failed task comes back as its next attempt; attempts count afresh (5 more)
SELECT step_slug, task_index, attempt FROM quantum_flow.poll_tasks('fc_retry');
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000007', 'm', 2, 'flaky');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '2') FROM quantum_flow.poll_tasks('fc_retry');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '"total"') FROM quantum_flow.poll_tasks('fc_retry');
SELECT r->>'status' AS status, r->'output' AS output FROM quantum_flow.get_run('f0000000-0000-0000-0000-000000000007') r;
SELECT * FROM pg_temp.steps('f0000000-0000-0000-0000-000000000007');
-- a cancelled run can be retried too; a completed one cannot; unknown runs raise
SELECT quantum_flow.start_flow('fc_retry', '[1]', 'f0000000-0000-0000-0000-000000000008');
SELECT quantum_flow.cancel_run('f0000000-0000-0000-0000-000000000008');
SELECT quantum_flow.retry_run('f0000000-0000-0000-0000-000000000008') AS retried_cancelled;
SELECT step_slug, task_index, attempt FROM quantum_flow.poll_tasks('fc_retry');
SELECT quantum_flow.retry_run('f0000000-0000-0000-0000-000000000007') AS retried_completed;
SELECT quantum_flow.retry_run('f0000000-0000-0000-0000-00000000dead');
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000008', 'm', 0, 'x', retry => NULL);
-- a run that failed after every task had answered (a map step's output, or the run's, did
-- not fit in one jsonb: past 256 MB, so the two failures are set up by hand here) has no task
-- to queue again: retry_run finishes that work again at once, and the run completes (or
-- fails again), instead of staying started with nothing to do. So does a map step whose
-- tasks all completed but whose run ended first (left started: run ...a3)
SELECT workflow_slug FROM quantum_flow.create_flow('fc_agg');
SELECT step_slug FROM quantum_flow.add_step('fc_agg', 'm', step_type => 'map');
SELECT quantum_flow.start_flow('fc_agg', '[1, 2]', 'f0000000-0000-0000-0000-0000000000a1');
SELECT quantum_flow.start_flow('fc_agg', '[3]', 'f0000000-0000-0000-0000-0000000000a2');
SELECT quantum_flow.start_flow('fc_agg', '[4, 5]', 'f0000000-0000-0000-0000-0000000000a3');
SELECT count(quantum_flow.complete_task(run_id, step_slug, task_index, input->'item')) AS completed
FROM quantum_flow.poll_tasks('fc_agg', 10);
UPDATE quantum_flow.step_states SET status = 'started', output = NULL, completed_at = NULL
WHERE run_id = 'f0000000-0000-0000-0000-0000000000a3' AND step_slug = 'm';
UPDATE quantum_flow.runs SET status = 'failed', output = NULL, completed_at = NULL, failed_at = now(),
       error_message = 'run_timeout: the run did not finish within its 60s run_timeout'
WHERE run_id = 'f0000000-0000-0000-0000-0000000000a3';
UPDATE quantum_flow.step_states SET status = 'failed', output = NULL, completed_at = NULL, failed_at = now(),
       error_message = 'step m: output_too_large: the step''s output would be too large'
WHERE run_id = 'f0000000-0000-0000-0000-0000000000a1' AND step_slug = 'm';
UPDATE quantum_flow.runs SET status = 'failed', output = NULL, completed_at = NULL, failed_at = now(),
       error_message = CASE WHEN run_id = 'f0000000-0000-0000-0000-0000000000a1'
                            THEN 'step m: output_too_large: the step''s output would be too large'
                            ELSE 'run output: output_too_large: the run''s output would be too large' END
WHERE run_id IN ('f0000000-0000-0000-0000-0000000000a1', 'f0000000-0000-0000-0000-0000000000a2');
SELECT quantum_flow.retry_run('f0000000-0000-0000-0000-0000000000a1') AS retried_map_output,
       quantum_flow.retry_run('f0000000-0000-0000-0000-0000000000a2') AS retried_run_output,
       quantum_flow.retry_run('f0000000-0000-0000-0000-0000000000a3') AS retried_left_started;
SELECT r->>'run_id' AS run_id, r->>'status' AS status, r->'output' AS output, r->>'error_message' AS error_message
FROM unnest(ARRAY['f0000000-0000-0000-0000-0000000000a1', 'f0000000-0000-0000-0000-0000000000a2',
                  'f0000000-0000-0000-0000-0000000000a3']::uuid[]) AS id,
     quantum_flow.get_run(id) r ORDER BY 1;
SELECT * FROM pg_temp.steps('f0000000-0000-0000-0000-0000000000a1');

-- sub-flows: a child run's output becomes the step's output; a map starts one child per
-- element and keeps their order
SELECT workflow_slug FROM quantum_flow.create_flow('fc_child', base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('fc_child', 'work');
SELECT workflow_slug FROM quantum_flow.create_flow('fc_parent', base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('fc_parent', 'list');
SELECT step_slug, flow FROM quantum_flow.add_step('fc_parent', 'one', ARRAY['list'], flow => 'fc_child');
SELECT step_slug, flow FROM quantum_flow.add_step('fc_parent', 'each', ARRAY['list'], 'map', flow => 'fc_child',
                                                  max_attempts => 2);
SELECT quantum_flow.start_flow('fc_parent', '{"n": 1}', 'f0000000-0000-0000-0000-000000000009');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '["a", "b", "c"]') FROM quantum_flow.poll_tasks('fc_parent');
-- four child runs: one with the step's input, three with the elements
SELECT r.input, r.parent_step_slug, r.parent_task_index FROM quantum_flow.runs r
WHERE r.parent_run_id = 'f0000000-0000-0000-0000-000000000009' ORDER BY r.parent_step_slug, r.parent_task_index;
SELECT quantum_flow.flow_graph('fc_parent', 'mermaid', 'f0000000-0000-0000-0000-000000000009');
SELECT s->>'step_slug' AS step_slug, jsonb_array_length(s->'child_run_ids') AS children
FROM jsonb_array_elements(quantum_flow.get_run('f0000000-0000-0000-0000-000000000009')->'steps') s
WHERE s ? 'child_run_ids';
-- a worker cannot answer or fail a sub-flow step's task itself (single or map): only its child
-- run completes it (not_claimed)
SELECT quantum_flow.complete_task('f0000000-0000-0000-0000-000000000009', 'one', 0, '"forged"') AS single_answered;
SELECT quantum_flow.complete_task('f0000000-0000-0000-0000-000000000009', 'each', 1, '"forged"', attempt => 1) AS map_answered;
SELECT quantum_flow.fail_task('f0000000-0000-0000-0000-000000000009', 'each', 2, 'forged') AS map_failed;
SELECT step_slug, task_index, status, output FROM quantum_flow.step_tasks
WHERE run_id = 'f0000000-0000-0000-0000-000000000009' AND step_slug IN ('one', 'each') ORDER BY 1, 2;
-- the children's workers answer in reverse order; the map output keeps task order
SELECT quantum_flow.complete_task(p.run_id, p.step_slug, p.task_index, jsonb_build_object('got', p.input->'run'))
FROM (SELECT * FROM quantum_flow.poll_tasks('fc_child', 10)) p
ORDER BY (SELECT parent_task_index FROM quantum_flow.runs WHERE run_id = p.run_id) DESC;
SELECT * FROM pg_temp.steps('f0000000-0000-0000-0000-000000000009');
SELECT r->>'status' AS status, jsonb_pretty(r->'output') AS output FROM quantum_flow.get_run('f0000000-0000-0000-0000-000000000009') r;

-- a failed child is a failed attempt: retried as a new child run, then it fails the parent
SELECT quantum_flow.start_flow('fc_parent', '{}', 'f0000000-0000-0000-0000-000000000010');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '["x"]') FROM quantum_flow.poll_tasks('fc_parent');
-- the child of 'one' completes; the child of task 0 of 'each' fails for good
SELECT r.parent_step_slug,
       CASE WHEN r.parent_step_slug = 'one'
            THEN quantum_flow.complete_task(p.run_id, p.step_slug, p.task_index, '"fine"')::text
            ELSE quantum_flow.fail_task(p.run_id, p.step_slug, p.task_index, 'bad element', retry => false) END AS answer
FROM quantum_flow.poll_tasks('fc_child', 10) p
JOIN quantum_flow.runs r ON r.run_id = p.run_id ORDER BY 1;
SELECT r.status, r.parent_task_index, left(r.error_message, 60) AS error FROM quantum_flow.runs r
WHERE r.parent_run_id = 'f0000000-0000-0000-0000-000000000010' AND r.parent_step_slug = 'each' ORDER BY r.started_at;
SELECT quantum_flow.get_run('f0000000-0000-0000-0000-000000000010')->>'status' AS parent_status;
SELECT quantum_flow.fail_task(run_id, step_slug, task_index, 'bad again', retry => false) FROM quantum_flow.poll_tasks('fc_child');
SELECT r.status, count(*) FROM quantum_flow.runs r
WHERE r.parent_run_id = 'f0000000-0000-0000-0000-000000000010' GROUP BY r.status ORDER BY 1;
SELECT r->>'status' AS status,
       regexp_replace(r->>'error_message', '[0-9a-f-]{36}', '<child run id>') AS error_message
FROM quantum_flow.get_run('f0000000-0000-0000-0000-000000000010') r;

-- cancelling the parent cancels its children
SELECT quantum_flow.start_flow('fc_parent', '{}', 'f0000000-0000-0000-0000-000000000011');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '[1, 2]') FROM quantum_flow.poll_tasks('fc_parent');
SELECT quantum_flow.cancel_run('f0000000-0000-0000-0000-000000000011', 'changed my mind');
SELECT r.status, r.error_message, count(*) FROM quantum_flow.runs r
WHERE r.parent_run_id = 'f0000000-0000-0000-0000-000000000011' GROUP BY 1, 2;
SELECT count(*) AS child_tasks_left FROM quantum_flow.poll_tasks('fc_child');

-- a child workflow that starts its parent, directly or not, is refused when defined
SELECT workflow_slug FROM quantum_flow.create_flow('fc_grandchild');
SELECT step_slug FROM quantum_flow.add_step('fc_grandchild', 'g');
SELECT step_slug FROM quantum_flow.add_step('fc_child', 'deeper', flow => 'fc_grandchild');
SELECT quantum_flow.add_step('fc_grandchild', 'loop', flow => 'fc_parent');
SELECT quantum_flow.add_step('fc_child', 'self', flow => 'fc_child');
SELECT quantum_flow.add_step('fc_child', 'nowhere', flow => 'fc_missing');
SELECT count(*) AS refused_steps FROM quantum_flow.workflow_steps WHERE step_slug IN ('loop', 'self', 'nowhere');

-- concurrency keys: at most max_concurrency tasks per value of the key have a message
SELECT workflow_slug FROM quantum_flow.create_flow('fc_keyed', concurrency_key => 'tenant_id', max_concurrency => 2);
SELECT step_slug FROM quantum_flow.add_step('fc_keyed', 'prep');
SELECT step_slug FROM quantum_flow.add_step('fc_keyed', 'rows', ARRAY['prep'], 'map');
SELECT quantum_flow.start_flow('fc_keyed', '{"tenant_id": "a"}', 'f0000000-0000-0000-0000-000000000013');
SELECT quantum_flow.start_flow('fc_keyed', '{"tenant_id": "b"}', 'f0000000-0000-0000-0000-000000000014');
SELECT quantum_flow.start_flow('fc_keyed', '{"tenant_id": "a"}', 'f0000000-0000-0000-0000-000000000015');
SELECT quantum_flow.start_flow('fc_keyed', '{}', 'f0000000-0000-0000-0000-000000000016');
SELECT key_value, in_use FROM quantum_flow.concurrency_slots WHERE workflow_slug = 'fc_keyed' ORDER BY 1;
SELECT count(*) AS waiting FROM quantum_flow.waiting_tasks WHERE workflow_slug = 'fc_keyed';
-- tenant a's two runs share two slots; the run without the key is not limited
SELECT r.input->>'tenant_id' AS tenant, count(*) FROM quantum_flow.poll_tasks('fc_keyed', 100) p
JOIN quantum_flow.runs r USING (run_id) GROUP BY 1 ORDER BY 1;
SELECT quantum_flow.complete_task('f0000000-0000-0000-0000-000000000013', 'prep', 0, '[1, 2, 3, 4]');
-- the map of run ...13 fanned out into waiting tasks; the slot its prep freed went to the
-- oldest of them, the other three wait
SELECT p.run_id, p.step_slug, p.task_index FROM quantum_flow.poll_tasks('fc_keyed', 100) p ORDER BY 1, 2, 3;
SELECT key_value, in_use FROM quantum_flow.concurrency_slots WHERE workflow_slug = 'fc_keyed' ORDER BY 1;
SELECT count(*) AS waiting FROM quantum_flow.waiting_tasks WHERE workflow_slug = 'fc_keyed';
-- a cancelled run gives its slots back, and its waiting tasks go
SELECT quantum_flow.cancel_run('f0000000-0000-0000-0000-000000000013');
SELECT key_value, in_use FROM quantum_flow.concurrency_slots WHERE workflow_slug = 'fc_keyed' ORDER BY 1;
SELECT count(*) AS waiting FROM quantum_flow.waiting_tasks WHERE workflow_slug = 'fc_keyed';
SELECT p.run_id, p.step_slug, p.task_index FROM quantum_flow.poll_tasks('fc_keyed', 100) p ORDER BY 1, 2, 3;
-- a key value's slot row goes when its last task lets go of its slot with none waiting:
-- tenant b's run completes, tenant a's run is cancelled
SELECT quantum_flow.complete_task('f0000000-0000-0000-0000-000000000014', 'prep', 0, '[]');
SELECT quantum_flow.cancel_run('f0000000-0000-0000-0000-000000000015');
SELECT key_value, in_use FROM quantum_flow.concurrency_slots WHERE workflow_slug = 'fc_keyed' ORDER BY 1;
SELECT r->>'status' AS status FROM quantum_flow.get_run('f0000000-0000-0000-0000-000000000014') r;
-- and comes back with the next task of that value
SELECT quantum_flow.start_flow('fc_keyed', '{"tenant_id": "b"}', 'f0000000-0000-0000-0000-000000000017');
SELECT key_value, in_use FROM quantum_flow.concurrency_slots WHERE workflow_slug = 'fc_keyed' ORDER BY 1;
-- definition errors
SELECT quantum_flow.create_flow('fc_bad', concurrency_key => 'tenant_id');
SELECT quantum_flow.create_flow('fc_bad', max_concurrency => 3);
SELECT quantum_flow.create_flow('fc_bad', concurrency_key => 'tenant_id', max_concurrency => 0);
SELECT quantum_flow.create_flow('fc_bad', run_timeout => 0);
SELECT quantum_flow.add_step('fc_keyed', 'bad', start_delay => -1);
SELECT count(*) AS bad FROM quantum_flow.workflows WHERE workflow_slug = 'fc_bad';

-- a sub-flow child that fails as it starts (its first step's condition, when_unmet 'fail')
-- uses up its parent task's attempts in the same call, which fails the parent: the parent's
-- other ready step is not started after that, so it queues no task and takes no slot of its
-- concurrency key
SELECT workflow_slug FROM quantum_flow.create_flow('fc_refusing', max_attempts => 2, base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('fc_refusing', 'a', if_matches => '{"run": {"ok": true}}', when_unmet => 'fail');
SELECT workflow_slug FROM quantum_flow.create_flow('fc_refused', concurrency_key => 'tenant', max_concurrency => 1);
SELECT step_slug FROM quantum_flow.add_step('fc_refused', 'sub', flow => 'fc_refusing');
SELECT step_slug FROM quantum_flow.add_step('fc_refused', 'work');
SELECT quantum_flow.start_flow('fc_refused', '{"tenant": "t1"}', 'fc000000-0000-0000-0000-0000000000f1');
SELECT r->>'status' AS status, left(r->>'error_message', 39) AS error,
       (SELECT string_agg((s->>'step_slug') || '=' || (s->>'status'), ' ' ORDER BY s->>'step_slug')
        FROM jsonb_array_elements(r->'steps') s) AS steps
FROM quantum_flow.get_run('fc000000-0000-0000-0000-0000000000f1') r;
SELECT count(*) AS work_tasks FROM quantum_flow.step_tasks
WHERE run_id = 'fc000000-0000-0000-0000-0000000000f1' AND step_slug = 'work';
SELECT coalesce(sum(in_use), 0) AS slots_in_use FROM quantum_flow.concurrency_slots WHERE workflow_slug = 'fc_refused';
SELECT count(*) AS children, count(*) FILTER (WHERE status = 'failed') AS failed
FROM quantum_flow.runs WHERE parent_run_id = 'fc000000-0000-0000-0000-0000000000f1';

-- clean up: the other files of this suite share the database
SELECT count(quantum_flow.cancel_run(run_id)) AS cancelled FROM quantum_flow.runs
WHERE workflow_slug LIKE 'fc\_%' AND status IN ('started', 'paused');
SELECT count(*) AS deleted FROM (SELECT quantum_flow.delete_flow(workflow_slug) FROM quantum_flow.workflows
                                 WHERE workflow_slug LIKE 'fc\_%' OR workflow_slug = 'fc') d;
