--
-- jsonb_limits: a step's input, a map step's fan-in and a run's output can each be larger than
-- a jsonb value holds (268435455 bytes) although every task output is within
-- quantum_flow.max_output_bytes (64 MB). Such a run fails at once with output_too_large in its
-- error message; the other runs of the workflow are not held up (polls do not fail).
-- Outputs are 55 MB strings built in the server ('x' repeated: TOAST stores them compressed).
--
\set VERBOSITY terse
\pset null '(null)'

CREATE FUNCTION pg_temp.big() RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('s', repeat('x', 55000000)) $$;
CREATE FUNCTION pg_temp.run_state(id uuid)
RETURNS TABLE (status text, error_message text, steps text)
LANGUAGE sql AS $$
  SELECT r->>'status', r->>'error_message',
         (SELECT string_agg(s->>'step_slug' || '=' || (s->>'status'), ' ' ORDER BY n)
          FROM jsonb_array_elements(r->'steps') WITH ORDINALITY AS e(s, n))
  FROM quantum_flow.get_run(id) AS r
$$;

--
-- A single step whose five dependencies' outputs add up to 275 MB.
--
SELECT workflow_slug FROM quantum_flow.create_flow('big_input', base_delay => 0);
SELECT count(*) AS roots FROM (SELECT quantum_flow.add_step('big_input', 'p' || i) FROM generate_series(1, 5) i) s;
SELECT step_slug FROM quantum_flow.add_step('big_input', 'join', ARRAY['p1', 'p2', 'p3', 'p4', 'p5']);
-- run 1 gets big outputs, run 2 small ones
SELECT quantum_flow.start_flow('big_input', '{}', '20000000-0000-0000-0000-000000000001');
SELECT quantum_flow.start_flow('big_input', '{}', '20000000-0000-0000-0000-000000000002');
SELECT count(*) FILTER (WHERE quantum_flow.complete_task(
         run_id, step_slug, task_index,
         CASE WHEN run_id = '20000000-0000-0000-0000-000000000001' THEN pg_temp.big()
              ELSE to_jsonb(step_slug) END)) AS completed
FROM (SELECT * FROM quantum_flow.poll_tasks('big_input', 10) ORDER BY run_id, step_slug) t;
SELECT * FROM pg_temp.run_state('20000000-0000-0000-0000-000000000001');
-- the other run's join is claimable and completes
SELECT run_id, step_slug, input FROM quantum_flow.poll_tasks('big_input');
SELECT quantum_flow.complete_task('20000000-0000-0000-0000-000000000002', 'join', 0, '"joined"');
SELECT * FROM pg_temp.run_state('20000000-0000-0000-0000-000000000002');
SELECT count(*) AS in_queue FROM pgmq.q_qf_big_input;
SELECT quantum_flow.delete_flow('big_input');

--
-- A map step whose five tasks' outputs add up to 275 MB: its fan-in cannot be built.
--
SELECT workflow_slug FROM quantum_flow.create_flow('big_fanin', base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('big_fanin', 'm', step_type => 'map');
SELECT step_slug FROM quantum_flow.add_step('big_fanin', 'after', ARRAY['m']);
SELECT quantum_flow.start_flow('big_fanin', '[1, 2, 3, 4, 5]', '21000000-0000-0000-0000-000000000001');
SELECT quantum_flow.start_flow('big_fanin', '[1, 2]', '21000000-0000-0000-0000-000000000002');
SELECT count(*) FILTER (WHERE quantum_flow.complete_task(
         run_id, step_slug, task_index,
         CASE WHEN run_id = '21000000-0000-0000-0000-000000000001' THEN pg_temp.big()
              ELSE input->'item' END)) AS completed
FROM (SELECT * FROM quantum_flow.poll_tasks('big_fanin', 10) ORDER BY run_id, task_index) t;
SELECT * FROM pg_temp.run_state('21000000-0000-0000-0000-000000000001');
SELECT run_id, step_slug, input FROM quantum_flow.poll_tasks('big_fanin');
SELECT count(*) AS in_queue FROM pgmq.q_qf_big_fanin;
SELECT quantum_flow.cancel_run('21000000-0000-0000-0000-000000000002');
SELECT quantum_flow.delete_flow('big_fanin');

--
-- A run whose two leaves' outputs (a 220 MB map fan-in and a 55 MB single step) add up to
-- 275 MB: its output cannot be built.
--
SELECT workflow_slug FROM quantum_flow.create_flow('big_output', base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('big_output', 'm', step_type => 'map');
SELECT step_slug FROM quantum_flow.add_step('big_output', 'other');
SELECT quantum_flow.start_flow('big_output', '[1, 2, 3, 4]', '22000000-0000-0000-0000-000000000001');
SELECT count(*) FILTER (WHERE quantum_flow.complete_task(run_id, step_slug, task_index, pg_temp.big())) AS completed
FROM (SELECT * FROM quantum_flow.poll_tasks('big_output', 10) ORDER BY step_slug, task_index) t;
SELECT * FROM pg_temp.run_state('22000000-0000-0000-0000-000000000001');
-- get_run itself cannot hold the steps' 275 MB of outputs: it leaves them out, and says so
SELECT s->>'step_slug' AS step_slug, s->>'status' AS status, s->'output' AS output,
       s->'output_omitted' AS output_omitted
FROM jsonb_array_elements(quantum_flow.get_run('22000000-0000-0000-0000-000000000001')->'steps') s;
-- retry_run has no task to queue again: it builds the run's output again at once, which
-- fails the same way, instead of leaving the run started with nothing to do
SELECT quantum_flow.retry_run('22000000-0000-0000-0000-000000000001') AS retried;
SELECT * FROM pg_temp.run_state('22000000-0000-0000-0000-000000000001');
SELECT quantum_flow.delete_flow('big_output');

--
-- A map over a dependency's output whose tasks' inputs (a 60 MB element plus a 210 MB flow
-- input under "run") would not fit.
--
SELECT workflow_slug FROM quantum_flow.create_flow('big_item', base_delay => 0);
SELECT step_slug FROM quantum_flow.add_step('big_item', 'list');
SELECT step_slug FROM quantum_flow.add_step('big_item', 'each', ARRAY['list'], step_type => 'map');
SELECT quantum_flow.start_flow('big_item', jsonb_build_object('s', repeat('y', 210000000)),
                               '23000000-0000-0000-0000-000000000001');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index,
                                  jsonb_build_array(repeat('z', 60000000), 'small'))
FROM quantum_flow.poll_tasks('big_item');
SELECT * FROM pg_temp.run_state('23000000-0000-0000-0000-000000000001');
SELECT count(*) AS in_queue FROM pgmq.q_qf_big_item;
SELECT quantum_flow.delete_flow('big_item');
