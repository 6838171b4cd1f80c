-- Conditions (contract group D): if_matches / if_not_matches tested against a step's input
-- when it becomes ready; when_unmet skip, skip_cascade or fail; status skipped.
\set VERBOSITY terse
-- a worker that completes every claimed task with {"done": <step>}, showing its input's keys
CREATE FUNCTION pg_temp.work(flow text) RETURNS TABLE (step_slug text, task_index int, input_keys text)
LANGUAGE sql AS $$
    SELECT p.step_slug, p.task_index,
           (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(p.input) k)
    FROM quantum_flow.poll_tasks(flow, 100) p,
         LATERAL quantum_flow.complete_task(p.run_id, p.step_slug, p.task_index,
                                            jsonb_build_object('done', p.step_slug)) c
    ORDER BY 1, 2
$$;
CREATE FUNCTION pg_temp.steps(run uuid) RETURNS TABLE (step_slug text, status text, tasks_total int, output jsonb)
LANGUAGE sql AS $$
    SELECT s->>'step_slug', s->>'status', (s->>'tasks_total')::int, s->'output'
    FROM jsonb_array_elements(quantum_flow.get_run(run)->'steps') s
$$;

-- skip: a condition on the flow input; the skipped step's key is absent from its dependent's
-- input, which still runs
SELECT workflow_slug FROM quantum_flow.create_flow('cond_skip');
SELECT step_slug FROM quantum_flow.add_step('cond_skip', 'fetch');
SELECT step_slug, if_matches, when_unmet FROM quantum_flow.add_step('cond_skip', 'notify', ARRAY['fetch'],
       if_matches => '{"run": {"notify": true}}');
SELECT step_slug FROM quantum_flow.add_step('cond_skip', 'report', ARRAY['fetch', 'notify']);
SELECT quantum_flow.start_flow('cond_skip', '{"notify": false}', 'c0000000-0000-0000-0000-000000000001');
SELECT * FROM pg_temp.work('cond_skip');
SELECT * FROM pg_temp.work('cond_skip');
SELECT * FROM pg_temp.steps('c0000000-0000-0000-0000-000000000001');
SELECT r->>'status' AS status, r->'output' AS output FROM quantum_flow.get_run('c0000000-0000-0000-0000-000000000001') r;
-- the same workflow with the condition met runs notify
SELECT quantum_flow.start_flow('cond_skip', '{"notify": true}', 'c0000000-0000-0000-0000-000000000002');
SELECT * FROM pg_temp.work('cond_skip');
SELECT * FROM pg_temp.work('cond_skip');
SELECT * FROM pg_temp.work('cond_skip');
SELECT * FROM pg_temp.steps('c0000000-0000-0000-0000-000000000002');

-- a condition on a dependency's output, and if_not
SELECT workflow_slug FROM quantum_flow.create_flow('cond_dep');
SELECT step_slug FROM quantum_flow.add_step('cond_dep', 'check');
SELECT step_slug FROM quantum_flow.add_step('cond_dep', 'approve', ARRAY['check'],
       if_matches => '{"check": {"ok": true}}');
SELECT step_slug FROM quantum_flow.add_step('cond_dep', 'reject', ARRAY['check'],
       if_not_matches => '{"check": {"ok": true}}');
SELECT quantum_flow.start_flow('cond_dep', '{}', 'c0000000-0000-0000-0000-000000000003');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '{"ok": true, "score": 9}')
FROM quantum_flow.poll_tasks('cond_dep');
SELECT * FROM pg_temp.steps('c0000000-0000-0000-0000-000000000003');
SELECT * FROM pg_temp.work('cond_dep');
SELECT r->>'status' AS status, r->'output' AS output FROM quantum_flow.get_run('c0000000-0000-0000-0000-000000000003') r;

-- skip_cascade through a diamond: a -> (b, c) -> d; b is skipped with its dependents, so d
-- is skipped even though c completes; e depends on c only and runs
SELECT workflow_slug FROM quantum_flow.create_flow('cond_diamond');
SELECT step_slug FROM quantum_flow.add_step('cond_diamond', 'a');
SELECT step_slug FROM quantum_flow.add_step('cond_diamond', 'b', ARRAY['a'],
       if_matches => '{"run": {"mode": "full"}}', when_unmet => 'skip_cascade');
SELECT step_slug FROM quantum_flow.add_step('cond_diamond', 'c', ARRAY['a']);
SELECT step_slug FROM quantum_flow.add_step('cond_diamond', 'd', ARRAY['b', 'c']);
SELECT step_slug FROM quantum_flow.add_step('cond_diamond', 'e', ARRAY['c']);
SELECT quantum_flow.start_flow('cond_diamond', '{"mode": "quick"}', 'c0000000-0000-0000-0000-000000000004');
SELECT * FROM pg_temp.work('cond_diamond');
SELECT * FROM pg_temp.steps('c0000000-0000-0000-0000-000000000004');
SELECT * FROM pg_temp.work('cond_diamond');
SELECT * FROM pg_temp.work('cond_diamond');
SELECT * FROM pg_temp.steps('c0000000-0000-0000-0000-000000000004');
SELECT r->>'status' AS status, r->'output' AS output FROM quantum_flow.get_run('c0000000-0000-0000-0000-000000000004') r;
SELECT quantum_flow.flow_graph('cond_diamond', 'mermaid', 'c0000000-0000-0000-0000-000000000004');

-- a run whose leaves are all skipped completes with output {}
SELECT workflow_slug FROM quantum_flow.create_flow('cond_none');
SELECT step_slug FROM quantum_flow.add_step('cond_none', 'only', if_matches => '{"run": {"go": true}}');
SELECT step_slug FROM quantum_flow.add_step('cond_none', 'also', if_not_matches => '{"run": {}}');
SELECT quantum_flow.start_flow('cond_none', '{}', 'c0000000-0000-0000-0000-000000000005');
SELECT r->>'status' AS status, r->'output' AS output, r->>'completed_at' IS NOT NULL AS has_completed_at
FROM quantum_flow.get_run('c0000000-0000-0000-0000-000000000005') r;
SELECT * FROM pg_temp.steps('c0000000-0000-0000-0000-000000000005');
SELECT count(*) AS in_queue FROM pgmq.q_qf_cond_none;

-- fail: the run fails with condition_unmet, nothing else runs
SELECT workflow_slug FROM quantum_flow.create_flow('cond_fail');
SELECT step_slug FROM quantum_flow.add_step('cond_fail', 'a');
SELECT step_slug FROM quantum_flow.add_step('cond_fail', 'b', ARRAY['a'],
       if_matches => '{"a": {"valid": true}}', when_unmet => 'fail');
SELECT step_slug FROM quantum_flow.add_step('cond_fail', 'c', ARRAY['b']);
SELECT quantum_flow.start_flow('cond_fail', '{}', 'c0000000-0000-0000-0000-000000000006');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '{"valid": false}')
FROM quantum_flow.poll_tasks('cond_fail');
SELECT r->>'status' AS status, r->>'error_message' AS error_message
FROM quantum_flow.get_run('c0000000-0000-0000-0000-000000000006') r;
SELECT * FROM pg_temp.steps('c0000000-0000-0000-0000-000000000006');

-- a map step over a skipped step is skipped (there is no array to map over); a map step's
-- condition is tested against {"run": ..., "<dep>": ...} like a single step's
SELECT workflow_slug FROM quantum_flow.create_flow('cond_map');
SELECT step_slug FROM quantum_flow.add_step('cond_map', 'list', if_matches => '{"run": {"list": true}}');
SELECT step_slug FROM quantum_flow.add_step('cond_map', 'each', ARRAY['list'], 'map');
SELECT step_slug FROM quantum_flow.add_step('cond_map', 'sum', ARRAY['each']);
SELECT quantum_flow.start_flow('cond_map', '{}', 'c0000000-0000-0000-0000-000000000007');
SELECT * FROM pg_temp.work('cond_map');
SELECT * FROM pg_temp.steps('c0000000-0000-0000-0000-000000000007');
SELECT r->>'status' AS status, r->'output' AS output FROM quantum_flow.get_run('c0000000-0000-0000-0000-000000000007') r;

-- the same conditions from a document, and back out of export_flow
SELECT quantum_flow.define_flow('{
  "workflow_slug": "cond_doc",
  "steps": [
    {"slug": "classify"},
    {"slug": "escalate", "depends_on": ["classify"], "if": {"classify": {"urgent": true}},
     "when_unmet": "skip_cascade"},
    {"slug": "page_oncall", "depends_on": ["escalate"]},
    {"slug": "archive", "depends_on": ["classify"], "if_not": {"classify": {"urgent": true}}}
  ]}') ->> 'workflow_slug' AS defined;
SELECT jsonb_pretty(quantum_flow.export_flow('cond_doc'));
SELECT quantum_flow.validate_flow(quantum_flow.export_flow('cond_doc')) ->> 'valid' AS export_is_valid;
-- a null inside a condition is part of its pattern: ship runs only when the input's "error"
-- is null, and the document defines what add_step(if_matches => ...) would
SELECT quantum_flow.define_flow('{
  "workflow_slug": "cond_null", "description": null,
  "steps": [
    {"slug": "check", "timeout": null},
    {"slug": "ship", "depends_on": ["check"], "if": {"run": {"error": null}}}
  ]}') ->> 'workflow_slug' AS defined;
SELECT step_slug, if_matches FROM quantum_flow.workflow_steps WHERE workflow_slug = 'cond_null' ORDER BY step_index;
SELECT quantum_flow.define_flow(quantum_flow.export_flow('cond_null')) ->> 'workflow_slug' AS defined_again;
SELECT quantum_flow.start_flow('cond_null', '{"error": "boom"}', 'c0000000-0000-0000-0000-000000000008');
SELECT quantum_flow.start_flow('cond_null', '{"error": null}', 'c0000000-0000-0000-0000-000000000009');
SELECT * FROM pg_temp.work('cond_null');
SELECT * FROM pg_temp.work('cond_null');
SELECT * FROM pg_temp.steps('c0000000-0000-0000-0000-000000000008');
SELECT * FROM pg_temp.steps('c0000000-0000-0000-0000-000000000009');

-- definition errors, each writing nothing
SELECT quantum_flow.add_step('cond_skip', 'bad', if_matches => '[1]');
SELECT quantum_flow.add_step('cond_skip', 'bad', if_not_matches => '"x"');
SELECT quantum_flow.add_step('cond_skip', 'bad', when_unmet => 'ignore');
SELECT quantum_flow.add_step('cond_skip', 'bad', when_unmet => NULL);
SELECT count(*) AS bad_steps FROM quantum_flow.workflow_steps WHERE step_slug = 'bad';
SELECT p->>'path' AS path, p->>'code' AS code, p->>'message' AS message
FROM jsonb_array_elements(quantum_flow.validate_flow('{"workflow_slug": "cond_bad", "steps": [
  {"slug": "a", "if": [1], "when_unmet": "sometimes"},
  {"slug": "b", "if_not": "x"}]}') -> 'errors') p;

-- clean up: the other files of this suite share the database
SELECT count(quantum_flow.cancel_run(run_id)) AS cancelled FROM quantum_flow.runs
WHERE workflow_slug LIKE 'cond\_%' AND status IN ('started', 'paused');
SELECT count(*) AS deleted FROM (SELECT quantum_flow.delete_flow(workflow_slug) FROM quantum_flow.workflows
                                 WHERE workflow_slug LIKE 'cond\_%' OR workflow_slug = 'cond') d;
