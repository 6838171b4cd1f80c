-- Batch calls (contract group C): complete_tasks and start_flows, and the data flow of a
-- map over the flow input (no "run" in its tasks' input).
\set VERBOSITY terse

-- a map over the flow input: {"item", "index"}; a map over a step's output keeps "run"
SELECT workflow_slug FROM quantum_flow.create_flow('bt_root');
SELECT step_slug FROM quantum_flow.add_step('bt_root', 'm', step_type => 'map');
SELECT step_slug FROM quantum_flow.add_step('bt_root', 'sum', ARRAY['m']);
SELECT workflow_slug FROM quantum_flow.create_flow('bt_dep');
SELECT step_slug FROM quantum_flow.add_step('bt_dep', 'list');
SELECT step_slug FROM quantum_flow.add_step('bt_dep', 'm', ARRAY['list'], 'map');
SELECT quantum_flow.start_flow('bt_root', '[10, 20, 30]', 'b7000000-0000-0000-0000-000000000001');
SELECT step_slug, task_index, input FROM quantum_flow.poll_tasks('bt_root') ORDER BY task_index;
SELECT quantum_flow.start_flow('bt_dep', '{"k": 1}', 'b7000000-0000-0000-0000-000000000002');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '["a", "b"]') FROM quantum_flow.poll_tasks('bt_dep');
SELECT step_slug, task_index, input FROM quantum_flow.poll_tasks('bt_dep') ORDER BY task_index;

-- complete_tasks: one call, each element as complete_task would answer it; a repeat of an
-- element, a late answer and a stale attempt are false (with a NOTICE each)
SELECT quantum_flow.complete_tasks(
  ARRAY['b7000000-0000-0000-0000-000000000001', 'b7000000-0000-0000-0000-000000000001',
        'b7000000-0000-0000-0000-000000000001', 'b7000000-0000-0000-0000-000000000001']::uuid[],
  ARRAY['m', 'm', 'm', 'm'], ARRAY[0, 1, 0, 2], ARRAY['"ten"', '"twenty"', '"again"', '"thirty"']::jsonb[],
  ARRAY[1, 1, 1, 7]);
SELECT s->>'step_slug' AS step_slug, s->>'status' AS status, s->>'tasks_completed' AS done
FROM jsonb_array_elements(quantum_flow.get_run('b7000000-0000-0000-0000-000000000001')->'steps') s;
-- the last task, with attempts left out; the step completes and sum starts with the outputs in order
SELECT quantum_flow.complete_tasks(ARRAY['b7000000-0000-0000-0000-000000000001']::uuid[], ARRAY['m'], ARRAY[2], ARRAY['"thirty"']::jsonb[]);
SELECT step_slug, input FROM quantum_flow.poll_tasks('bt_root');
-- across runs and workflows in one call; a NULL output is JSON null
SELECT quantum_flow.complete_tasks(
  ARRAY['b7000000-0000-0000-0000-000000000002', 'b7000000-0000-0000-0000-000000000002',
        'b7000000-0000-0000-0000-000000000001']::uuid[],
  ARRAY['m', 'm', 'sum'], ARRAY[0, 1, 0], ARRAY['1', NULL, '"total"']::jsonb[]);
SELECT r->>'status' AS status, r->'output' AS output
FROM (VALUES ('b7000000-0000-0000-0000-000000000001'::uuid), ('b7000000-0000-0000-0000-000000000002')) v(id),
     quantum_flow.get_run(v.id) r;
-- a repeat counts when the earlier copy did not (it named a stale attempt), as two
-- complete_task calls would
SELECT quantum_flow.start_flow('bt_root', '[7]', 'b7000000-0000-0000-0000-000000000004');
SELECT count(*) AS claimed FROM quantum_flow.poll_tasks('bt_root') WHERE run_id = 'b7000000-0000-0000-0000-000000000004';
SELECT quantum_flow.complete_tasks(
  ARRAY['b7000000-0000-0000-0000-000000000004', 'b7000000-0000-0000-0000-000000000004',
        'b7000000-0000-0000-0000-000000000004']::uuid[],
  ARRAY['m', 'm', 'm'], ARRAY[0, 0, 0], ARRAY['"stale"', '"first"', '"second"']::jsonb[], ARRAY[7, 1, NULL]);
SELECT quantum_flow.get_run('b7000000-0000-0000-0000-000000000004')->'steps'->0->'output' AS m_output;
-- an empty batch
SELECT quantum_flow.complete_tasks('{}', '{}', '{}', '{}');

-- errors: an element naming no task (or no run) raises and completes none; arrays of
-- different lengths; NULLs
SELECT quantum_flow.start_flow('bt_root', '[1, 2]', 'b7000000-0000-0000-0000-000000000003');
SELECT count(*) AS claimed FROM quantum_flow.poll_tasks('bt_root');
SELECT quantum_flow.complete_tasks(
  ARRAY['b7000000-0000-0000-0000-000000000003', 'b7000000-0000-0000-0000-000000000003']::uuid[],
  ARRAY['m', 'm'], ARRAY[0, 5], ARRAY['1', '2']::jsonb[]);
SELECT quantum_flow.complete_tasks(
  ARRAY['b7000000-0000-0000-0000-000000000003', 'b7000000-0000-0000-0000-00000000dead']::uuid[],
  ARRAY['m', 'm'], ARRAY[0, 0], ARRAY['1', '2']::jsonb[]);
SELECT (quantum_flow.get_run('b7000000-0000-0000-0000-000000000003')->'steps'->0->>'tasks_completed')::int AS completed_after_errors;
SELECT quantum_flow.complete_tasks(ARRAY['b7000000-0000-0000-0000-000000000003']::uuid[], ARRAY['m', 'm'], ARRAY[0], ARRAY['1']::jsonb[]);
SELECT quantum_flow.complete_tasks(ARRAY['b7000000-0000-0000-0000-000000000003']::uuid[], ARRAY['m'], ARRAY[0], ARRAY['1']::jsonb[], ARRAY[1, 1]);
SELECT quantum_flow.complete_tasks(NULL, ARRAY['m'], ARRAY[0], ARRAY['1']::jsonb[]);
SELECT quantum_flow.complete_tasks(ARRAY[NULL]::uuid[], ARRAY['m'], ARRAY[0], ARRAY['1']::jsonb[]);
SELECT quantum_flow.complete_tasks(ARRAY['b7000000-0000-0000-0000-000000000003']::uuid[], ARRAY['bad slug'], ARRAY[0], ARRAY['1']::jsonb[]);
SELECT quantum_flow.complete_tasks(ARRAY['b7000000-0000-0000-0000-000000000003']::uuid[], ARRAY['m'], ARRAY[NULL]::int[], ARRAY['1']::jsonb[]);
\set VERBOSITY sqlstate
SELECT quantum_flow.complete_tasks(ARRAY['b7000000-0000-0000-0000-000000000003']::uuid[], ARRAY['m', 'm'], ARRAY[0], ARRAY['1']::jsonb[]);
SELECT quantum_flow.complete_tasks(ARRAY['b7000000-0000-0000-0000-000000000003']::uuid[], ARRAY['m'], ARRAY[9], ARRAY['1']::jsonb[]);
\set VERBOSITY terse
-- the claimed tasks are still there to complete
SELECT quantum_flow.complete_tasks(
  ARRAY['b7000000-0000-0000-0000-000000000003', 'b7000000-0000-0000-0000-000000000003']::uuid[],
  ARRAY['m', 'm'], ARRAY[1, 0], ARRAY['"b"', '"a"']::jsonb[]);
SELECT quantum_flow.get_run('b7000000-0000-0000-0000-000000000003')->'steps'->0->'output' AS m_output;

-- start_flows: many runs, one call, in order; NULL run ids get new ones
SELECT workflow_slug FROM quantum_flow.create_flow('bt_chain');
SELECT step_slug FROM quantum_flow.add_step('bt_chain', 'a');
SELECT step_slug FROM quantum_flow.add_step('bt_chain', 'b', ARRAY['a']);
SELECT quantum_flow.start_flows('bt_chain', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[],
  ARRAY['b7000000-0000-0000-0000-0000000000c1', NULL, 'b7000000-0000-0000-0000-0000000000c3']::uuid[]) AS ids
\gset
SELECT cardinality(:'ids'::uuid[]) AS started, (:'ids'::uuid[])[1] AS first, (:'ids'::uuid[])[3] AS third;
SELECT p.input FROM quantum_flow.poll_tasks('bt_chain') p ORDER BY p.input->'run'->>'n';
SELECT array_length(quantum_flow.start_flows('bt_chain', ARRAY['{}']::jsonb[]), 1) AS without_ids;
SELECT quantum_flow.start_flows('bt_chain', '{}') AS none;
-- one run that cannot start: none starts
SELECT count(*) AS runs_before FROM quantum_flow.runs WHERE workflow_slug = 'bt_chain';
SELECT quantum_flow.start_flows('bt_chain', ARRAY['{}', '{}']::jsonb[],
  ARRAY['b7000000-0000-0000-0000-0000000000c9', 'b7000000-0000-0000-0000-0000000000c1']::uuid[]);
SELECT quantum_flow.start_flows('bt_root', ARRAY['[1]', '{"not": "an array"}']::jsonb[]);
SELECT quantum_flow.start_flows('bt_chain', ARRAY['{}']::jsonb[], ARRAY[]::uuid[]);
SELECT quantum_flow.start_flows('bt_chain', ARRAY[NULL]::jsonb[]);
SELECT quantum_flow.start_flows('bt_missing', ARRAY['{}']::jsonb[]);
SELECT count(*) AS runs_after FROM quantum_flow.runs WHERE workflow_slug = 'bt_chain';

-- complete_tasks on a backend that never claimed a task (a worker's answering connection)
-- looks each run's workflow up. Past 10,000 runs that backend starts its memory of runs over:
-- the batch that crosses the limit (batches of 64 cross it in the middle of one) keeps every
-- answer.
SELECT workflow_slug FROM quantum_flow.create_flow('bt_many', max_attempts => 1);
SELECT step_slug FROM quantum_flow.add_step('bt_many', 'a');
CREATE TABLE bt_claimed (ord serial, run_id uuid, task_index int, attempt int, n int);
DO $$
BEGIN
  FOR chunk IN 0..10 LOOP
    PERFORM quantum_flow.start_flows('bt_many',
      (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(chunk * 1000 + 1, least(chunk * 1000 + 1000, 10050)) i));
    INSERT INTO bt_claimed (run_id, task_index, attempt, n)
      SELECT run_id, task_index, attempt, (input->'run'->>'n')::int
      FROM quantum_flow.poll_tasks('bt_many', batch_size => 1000);
  END LOOP;
END
$$;
SELECT count(*) AS claimed, count(DISTINCT run_id) AS runs FROM bt_claimed;
\c
\set VERBOSITY terse
CREATE TABLE bt_answered (batch int, completed boolean[]);
DO $$
BEGIN
  FOR b IN 0..(10050 / 64) LOOP
    INSERT INTO bt_answered
      SELECT b, quantum_flow.complete_tasks(array_agg(run_id ORDER BY ord), array_agg('a'::text ORDER BY ord),
               array_agg(task_index ORDER BY ord), array_agg(to_jsonb(n * 2) ORDER BY ord),
               array_agg(attempt ORDER BY ord))
      FROM bt_claimed WHERE (ord - 1) / 64 = b;
  END LOOP;
END
$$;
SELECT count(DISTINCT batch) AS batches, count(*) FILTER (WHERE c) AS answers_completed, count(*) FILTER (WHERE NOT c) AS not_completed
FROM bt_answered, unnest(completed) c;
SELECT r.status, count(*) AS runs, count(*) FILTER (WHERE (quantum_flow.get_run(r.run_id)->'output'->>'a')::int = c.n * 2) AS right_output
FROM quantum_flow.runs r JOIN bt_claimed c USING (run_id) WHERE r.workflow_slug = 'bt_many' GROUP BY r.status;
DROP TABLE bt_claimed, bt_answered;

-- clean up: the other files of this suite share the database
SELECT count(quantum_flow.cancel_run(run_id)) AS cancelled FROM quantum_flow.runs
WHERE workflow_slug LIKE 'bt\_%' AND status IN ('started', 'paused');
SELECT count(*) AS deleted FROM (SELECT quantum_flow.delete_flow(workflow_slug) FROM quantum_flow.workflows
                                 WHERE workflow_slug LIKE 'bt\_%') d;
