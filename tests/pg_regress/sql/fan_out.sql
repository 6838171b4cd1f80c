-- Big maps fan out in chunks (quantum_flow.fan_out_chunk): the first chunk when the step
-- starts, the rest by polls and maintain(); every task exists before the step can complete,
-- outputs stay in task order, and a failed, retried, paused or cancelled run keeps its place.
\set VERBOSITY terse
SET quantum_flow.fan_out_chunk = 4;

SELECT workflow_slug FROM quantum_flow.create_flow('fo_root');
SELECT step_slug FROM quantum_flow.add_step('fo_root', 'm', step_type => 'map');

-- the map step's counts, its tasks and its messages in the queue
CREATE FUNCTION pg_temp.fan(run uuid)
RETURNS TABLE (step_slug text, status text, tasks_total int, fan_out_next int, tasks bigint, messages bigint)
LANGUAGE sql AS $$
  SELECT ss.step_slug, ss.status, ss.tasks_total, ss.fan_out_next,
         (SELECT count(*) FROM quantum_flow.step_tasks t WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug),
         (SELECT count(*) FROM pgmq.q_qf_fo_root q WHERE (q.message->>'run_id')::uuid = ss.run_id
                                                     AND q.message->>'step_slug' = ss.step_slug)
  FROM quantum_flow.step_states ss WHERE ss.run_id = run AND ss.step_slug = 'm'
$$;
-- completes every claimed task of the run with item * 10, until a poll claims none
CREATE FUNCTION pg_temp.drain(workflow text, run uuid, batch int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE done int := 0; n int;
BEGIN
  LOOP
    SELECT count(quantum_flow.complete_task(t.run_id, t.step_slug, t.task_index, to_jsonb((t.input->>'item')::int * 10)))
    INTO n FROM quantum_flow.poll_tasks(workflow, batch) t WHERE t.run_id = run;
    EXIT WHEN n = 0;
    done := done + n;
  END LOOP;
  RETURN done;
END $$;

-- start: 10 tasks counted, 4 created and queued
SELECT quantum_flow.start_flow('fo_root', '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]', 'f6000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.fan('f6000000-0000-0000-0000-000000000001');
-- a poll claims the oldest tasks, then creates the next chunk
SELECT task_index, input FROM quantum_flow.poll_tasks('fo_root', 3) ORDER BY task_index;
SELECT * FROM pg_temp.fan('f6000000-0000-0000-0000-000000000001');
-- maintain() creates the last chunk (one chunk per workflow per call), then has nothing to do
SELECT quantum_flow.maintain()->'tasks_fanned_out' AS fanned_out;
SELECT quantum_flow.maintain()->'tasks_fanned_out' AS fanned_out_again;
SELECT * FROM pg_temp.fan('f6000000-0000-0000-0000-000000000001');
SELECT (SELECT count(quantum_flow.complete_task('f6000000-0000-0000-0000-000000000001', 'm', i, to_jsonb(i * 10)))
        FROM generate_series(0, 2) i) AS completed,
       pg_temp.drain('fo_root', 'f6000000-0000-0000-0000-000000000001', 2) AS drained;
SELECT r->>'status' AS status, r->'output' AS output
FROM quantum_flow.get_run('f6000000-0000-0000-0000-000000000001') r;

-- a map over a step's output: the chunk is created by the completion that readies it; the
-- tasks keep the run input beside their item
SELECT workflow_slug FROM quantum_flow.create_flow('fo_dep');
SELECT step_slug FROM quantum_flow.add_step('fo_dep', 'list');
SELECT step_slug FROM quantum_flow.add_step('fo_dep', 'm', ARRAY['list'], 'map');
SELECT quantum_flow.start_flow('fo_dep', '{"k": 1}', 'f6000000-0000-0000-0000-000000000002');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '[5, 6, 7, 8, 9, 10]') FROM quantum_flow.poll_tasks('fo_dep');
SELECT fan_out_next, (SELECT count(*) FROM quantum_flow.step_tasks t WHERE t.run_id = ss.run_id AND t.step_slug = 'm') AS tasks
FROM quantum_flow.step_states ss WHERE ss.run_id = 'f6000000-0000-0000-0000-000000000002' AND ss.step_slug = 'm';
SELECT task_index, input FROM quantum_flow.poll_tasks('fo_dep', 10) ORDER BY task_index;
SELECT task_index, input FROM quantum_flow.poll_tasks('fo_dep', 10) ORDER BY task_index;
SELECT count(quantum_flow.complete_task('f6000000-0000-0000-0000-000000000002', 'm', i, to_jsonb(i)))
FROM generate_series(0, 5) i;
SELECT r->>'status' AS status, r->'output' AS output
FROM quantum_flow.get_run('f6000000-0000-0000-0000-000000000002') r;

-- a run that fails mid-fan-out: polls stop looking at its step (its fan_out_next is
-- cleared) and create none of its tasks; retry_run goes on from where it stopped
SELECT quantum_flow.start_flow('fo_root', '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]', 'f6000000-0000-0000-0000-000000000003');
SELECT task_index FROM quantum_flow.poll_tasks('fo_root', 1);
SELECT quantum_flow.fail_task('f6000000-0000-0000-0000-000000000003', 'm', 0, 'bad row', retry => false);
SELECT count(*) AS claimed FROM quantum_flow.poll_tasks('fo_root', 10);
SELECT * FROM pg_temp.fan('f6000000-0000-0000-0000-000000000003');
SELECT quantum_flow.retry_run('f6000000-0000-0000-0000-000000000003') AS retried;
SELECT * FROM pg_temp.fan('f6000000-0000-0000-0000-000000000003');
SELECT pg_temp.drain('fo_root', 'f6000000-0000-0000-0000-000000000003', 3) AS drained;
SELECT r->>'status' AS status, r->'output' AS output
FROM quantum_flow.get_run('f6000000-0000-0000-0000-000000000003') r;

-- a paused run's fan-out waits for resume_run
SELECT quantum_flow.start_flow('fo_root', '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]', 'f6000000-0000-0000-0000-000000000004');
SELECT quantum_flow.pause_run('f6000000-0000-0000-0000-000000000004') AS paused;
SELECT count(*) AS claimed FROM quantum_flow.poll_tasks('fo_root', 10);
SELECT quantum_flow.maintain()->'tasks_fanned_out' AS fanned_out_while_paused;
SELECT * FROM pg_temp.fan('f6000000-0000-0000-0000-000000000004');
SELECT quantum_flow.resume_run('f6000000-0000-0000-0000-000000000004') AS resumed;
SELECT pg_temp.drain('fo_root', 'f6000000-0000-0000-0000-000000000004', 4) AS drained;
SELECT r->>'status' AS status, r->'output' AS output
FROM quantum_flow.get_run('f6000000-0000-0000-0000-000000000004') r;

-- a cancelled run: its queued tasks are discarded, the rest are never created
SELECT quantum_flow.start_flow('fo_root', '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]', 'f6000000-0000-0000-0000-000000000005');
SELECT quantum_flow.cancel_run('f6000000-0000-0000-0000-000000000005', 'not needed') AS cancelled;
SELECT quantum_flow.maintain()->'tasks_fanned_out' AS fanned_out_after_cancel;
SELECT * FROM pg_temp.fan('f6000000-0000-0000-0000-000000000005');

-- fairness: while another run's task is among the newest messages, no chunk is created (it
-- would bury that task under the map's); a poll claims that task first (its fair share), and
-- then creates the chunk
SELECT quantum_flow.start_flow('fo_root', '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]', 'f6000000-0000-0000-0000-000000000007');
SELECT quantum_flow.start_flow('fo_root', '[99]', 'f6000000-0000-0000-0000-000000000008');
SELECT quantum_flow.maintain()->'tasks_fanned_out' AS fanned_out_behind_another_run;
SELECT * FROM pg_temp.fan('f6000000-0000-0000-0000-000000000007');
SELECT run_id, task_index FROM quantum_flow.poll_tasks('fo_root', 4) ORDER BY run_id, task_index;
SELECT * FROM pg_temp.fan('f6000000-0000-0000-0000-000000000007');
SELECT quantum_flow.cancel_run('f6000000-0000-0000-0000-000000000007', 'done') AS cancelled,
       quantum_flow.cancel_run('f6000000-0000-0000-0000-000000000008', 'done') AS cancelled_small;

-- a chunk larger than the map creates every task at once
SET quantum_flow.fan_out_chunk = 10;
SELECT quantum_flow.start_flow('fo_root', '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]', 'f6000000-0000-0000-0000-000000000006');
SELECT * FROM pg_temp.fan('f6000000-0000-0000-0000-000000000006');
SELECT pg_temp.drain('fo_root', 'f6000000-0000-0000-0000-000000000006', 10) AS drained;
SELECT r->>'status' AS status FROM quantum_flow.get_run('f6000000-0000-0000-0000-000000000006') r;

-- the setting takes 1 and up
SET quantum_flow.fan_out_chunk = 0;
RESET quantum_flow.fan_out_chunk;
SHOW quantum_flow.fan_out_chunk;

-- the workflows go, with their runs (the tests after this one count both)
SELECT quantum_flow.delete_flow('fo_root') AS deleted_root, quantum_flow.delete_flow('fo_dep') AS deleted_dep;
