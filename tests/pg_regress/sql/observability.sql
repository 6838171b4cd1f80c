-- Watching runs (contract group E): wait_run, get_run(include_tasks), the run_list and
-- workflow_stats views, metrics(), and the last error of a step being retried.
\set VERBOSITY terse
SELECT workflow_slug FROM quantum_flow.create_flow('ob_flow', max_attempts => 3, base_delay => 60);
SELECT step_slug FROM quantum_flow.add_step('ob_flow', 'fetch');
SELECT step_slug FROM quantum_flow.add_step('ob_flow', 'each', ARRAY['fetch'], 'map');
SELECT quantum_flow.start_flow('ob_flow', '{"n": 3}', 'ab000000-0000-0000-0000-000000000001');
SELECT quantum_flow.start_flow('ob_flow', '{"n": 0}', 'ab000000-0000-0000-0000-000000000002');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index,
         (SELECT coalesce(jsonb_agg(i), '[]') FROM generate_series(1, (input->'run'->>'n')::int) i))
FROM quantum_flow.poll_tasks('ob_flow') ORDER BY run_id;
-- run 1 has three tasks of "each": claim them, complete one, fail one (retried in 60 s)
SELECT task_index, attempt FROM quantum_flow.poll_tasks('ob_flow', 10, worker_id => 'w-7') ORDER BY task_index;
SELECT quantum_flow.complete_task('ab000000-0000-0000-0000-000000000001', 'each', 0, '"one"');
SELECT quantum_flow.fail_task('ab000000-0000-0000-0000-000000000001', 'each', 1, 'upstream said 503');

-- the step being retried shows the task's last error while it retries
SELECT s->>'step_slug' AS step_slug, s->>'status' AS status, s->>'error_message' AS error_message
FROM jsonb_array_elements(quantum_flow.get_run('ab000000-0000-0000-0000-000000000001')->'steps') s;

-- get_run(include_tasks => true): each task with status, attempts, last error, worker,
-- claim deadline and next retry time
SELECT s->>'step_slug' AS step_slug, t->>'task_index' AS task, t->>'status' AS status, t->>'attempts' AS attempts,
       t->>'error_message' AS error_message, t->>'worker_id' AS worker_id,
       (t->>'claim_deadline')::timestamptz BETWEEN now() + interval '25 s' AND now() + interval '35 s' AS claim_deadline_in_30s,
       (t->>'next_retry_at')::timestamptz BETWEEN now() + interval '55 s' AND now() + interval '65 s' AS retry_in_60s
FROM jsonb_array_elements(quantum_flow.get_run('ab000000-0000-0000-0000-000000000001', include_tasks => true)->'steps') s,
     jsonb_array_elements(s->'tasks') t
ORDER BY 1, 2;
SELECT quantum_flow.get_run('ab000000-0000-0000-0000-000000000001') -> 'steps' -> 0 ? 'tasks' AS tasks_without_asking;

-- wait_run: an ended run at once; a started run when the time is up, as it is
SELECT r->>'status' AS status, r->'output' AS output
FROM quantum_flow.wait_run('ab000000-0000-0000-0000-000000000002', 0) r;
SELECT clock_timestamp() AS t0 \gset
SELECT r->>'status' AS status FROM quantum_flow.wait_run('ab000000-0000-0000-0000-000000000001', 300) r;
SELECT clock_timestamp() - :'t0'::timestamptz >= interval '300 ms' AS waited_the_time;
SELECT quantum_flow.wait_run('ab000000-0000-0000-0000-00000000dead', 10);
SELECT quantum_flow.wait_run('ab000000-0000-0000-0000-000000000001', -1);
SELECT quantum_flow.wait_run('ab000000-0000-0000-0000-000000000001', 3600001);
SELECT quantum_flow.wait_run(NULL);

-- run_list: one row per run
SELECT run_id, workflow_slug, status, steps_total, steps_done, steps_started, tasks_total, tasks_completed,
       error_message, duration > interval '0' AS has_duration
FROM quantum_flow.run_list WHERE workflow_slug = 'ob_flow' ORDER BY run_id;

-- workflow_stats and metrics()
SELECT workflow_slug, runs_started, runs_paused, runs_completed, runs_failed, tasks_queued, tasks_started,
       tasks_failed, oldest_queued_seconds >= 0 AS has_oldest_queued, completed_last_minute
FROM quantum_flow.workflow_stats WHERE workflow_slug = 'ob_flow';
SELECT regexp_replace(line, '^(quantum_flow_oldest_queued_task_age_seconds\S*) [0-9.]+$', '\1 <seconds>') AS line
FROM regexp_split_to_table(quantum_flow.metrics(), E'\n') AS line
WHERE line LIKE '#%' OR line LIKE '%"ob_flow"%' ORDER BY line COLLATE "C";

-- oldest_queued_seconds counts only tasks a worker could claim now (above: none, one task is
-- claimed and the other backs off for 60 s). An event step waits for its event, not for a
-- worker: not queued, not claimable. A paused run's tasks and a run scheduled for later are
-- queued but not claimable; a task is claimable once its run is resumed.
SELECT workflow_slug FROM quantum_flow.create_flow('ob_wait');
SELECT step_slug FROM quantum_flow.add_step('ob_wait', 'approval', step_type => 'event');
SELECT step_slug FROM quantum_flow.add_step('ob_wait', 'work');
SELECT quantum_flow.start_flow('ob_wait', '{}', 'ab000000-0000-0000-0000-000000000003');
SELECT quantum_flow.start_flow('ob_wait', '{}', 'ab000000-0000-0000-0000-000000000004',
                               start_at => now() + interval '1 hour');
SELECT quantum_flow.pause_run('ab000000-0000-0000-0000-000000000003');
SELECT runs_started, runs_paused, tasks_queued, tasks_started, oldest_queued_seconds
FROM quantum_flow.workflow_stats WHERE workflow_slug = 'ob_wait';
SELECT line FROM regexp_split_to_table(quantum_flow.metrics(), E'\n') AS line
WHERE line LIKE 'quantum_flow_oldest_queued_task_age_seconds%"ob_wait"%';
SELECT quantum_flow.resume_run('ab000000-0000-0000-0000-000000000003');
SELECT tasks_queued, oldest_queued_seconds BETWEEN 0 AND 60 AS claimable_since_resume
FROM quantum_flow.workflow_stats WHERE workflow_slug = 'ob_wait';
SELECT step_slug FROM quantum_flow.poll_tasks('ob_wait');
SELECT tasks_queued, tasks_started, oldest_queued_seconds
FROM quantum_flow.workflow_stats WHERE workflow_slug = 'ob_wait';
-- a retry whose backoff (1 s) runs out while its run is paused, with no poll to see it, is
-- claimable from the resume on, not from before: resume_run restarts its message's time
SELECT quantum_flow.fail_task('ab000000-0000-0000-0000-000000000003', 'work', 0, 'flaky');
SELECT quantum_flow.pause_run('ab000000-0000-0000-0000-000000000003');
SELECT pg_sleep(1.2);
SELECT clock_timestamp() AS resumed_at \gset
SELECT quantum_flow.resume_run('ab000000-0000-0000-0000-000000000003');
SELECT q.vt >= :'resumed_at'::timestamptz AS visible_from_the_resume
FROM pgmq.q_qf_ob_wait q JOIN quantum_flow.step_tasks t ON t.message_id = q.msg_id
WHERE t.run_id = 'ab000000-0000-0000-0000-000000000003' AND t.step_slug = 'work';

-- clean up: the other files of this suite share the database
SELECT quantum_flow.cancel_run('ab000000-0000-0000-0000-000000000001');
SELECT quantum_flow.cancel_run('ab000000-0000-0000-0000-000000000003');
SELECT quantum_flow.cancel_run('ab000000-0000-0000-0000-000000000004');
SELECT quantum_flow.delete_flow('ob_flow');
SELECT quantum_flow.delete_flow('ob_wait');
