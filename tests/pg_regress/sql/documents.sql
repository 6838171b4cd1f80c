--
-- documents: workflows from one JSON document. validate_flow reports every problem at once
-- (JSONPath, code, message, hint) and writes nothing; define_flow writes all or nothing and is
-- idempotent; export_flow round-trips; flow_graph draws Mermaid and DOT, with a run's state;
-- flow_schema; the max_steps and max_map_tasks guardrails; "did you mean" in the calls.
--
\set VERBOSITY terse
\pset null '(null)'

CREATE FUNCTION pg_temp.problems(v jsonb)
RETURNS TABLE (path text, code text, message text, hint text)
LANGUAGE sql AS $$
  SELECT e->>'path', e->>'code', e->>'message', e->>'hint'
  FROM jsonb_array_elements(v->'errors') WITH ORDINALITY AS x(e, n) ORDER BY n
$$;
CREATE FUNCTION pg_temp.written() RETURNS TABLE (workflows bigint, steps bigint, queues bigint)
LANGUAGE sql AS $$
  SELECT (SELECT count(*) FROM quantum_flow.workflows), (SELECT count(*) FROM quantum_flow.workflow_steps),
         (SELECT count(*) FROM pgmq.meta WHERE queue_name LIKE 'qf\_%')
$$;

--
-- Every problem at once, in document order: a bad slug, an option out of range, a cycle, a
-- misspelt key (the hint names the key it probably meant), a dependency on a step that does
-- not exist (the hint names the closest step), a map step with two dependencies, a duplicate
-- step, a depends_on that is not an array.
--
\set many '{"workflow_slug": "claude-etl", "timeout": 0, "steps": [{"slug": "extract_csv", "depends_on": ["load_db"]}, {"slug": "validate_rows", "depends_on": ["extract_csv"], "type": "map"}, {"slug": "load_db", "depend_on": ["validate_rows"], "depends_on": ["validate_rows", "transfrom"]}, {"slug": "transform", "type": "map", "depends_on": ["extract_csv", "validate_rows"]}, {"slug": "load_db"}, {"slug": "report", "depends_on": "load_db"}]}'
SELECT v->'valid' AS valid, v->'warnings' AS warnings FROM quantum_flow.validate_flow(:'many') v;
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow(:'many'));
-- documents of the wrong shape, and SQL NULL: reported, never raised
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('[1, 2]'));
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('{}'));
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('"a string"'));
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow(NULL));
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('{"workflow_slug": "w", "steps": [{"slug": "a", "type": "Map", "timeout": 1.5, "max_attempts": 99999999999}, "b"], "description": 1}'));
-- validate_flow wrote nothing
SELECT * FROM pg_temp.written();

--
-- define_flow: a document with problems raises the first one (its code and SQLSTATE, the path
-- in the message), lists every problem in DETAIL, and writes nothing.
--
\set VERBOSITY sqlstate
SELECT quantum_flow.define_flow(:'many');
\set VERBOSITY default
SELECT quantum_flow.define_flow(:'many');
\set VERBOSITY terse
SELECT quantum_flow.define_flow(NULL);
SELECT * FROM pg_temp.written();

-- a valid document, steps in any order: created in one transaction, dependencies first
\set etl '{"workflow_slug": "claude_etl", "max_attempts": 3, "description": "Extract, validate each row, load", "steps": [{"slug": "load_db", "depends_on": ["validate_rows"]}, {"slug": "validate_rows", "depends_on": ["extract_csv"], "type": "map", "initial_tasks": 50, "max_attempts": 5, "timeout": 120, "base_delay": 2, "description": "one task per row"}, {"slug": "extract_csv"}]}'
SELECT jsonb_pretty(quantum_flow.define_flow(:'etl') - 'created_at');
SELECT * FROM pg_temp.written();
-- the same document again: the existing workflow, unchanged; validate_flow says so in a warning
SELECT quantum_flow.define_flow(:'etl') = quantum_flow.get_flow('claude_etl') AS unchanged;
SELECT * FROM pg_temp.written();
SELECT v->'valid' AS valid, jsonb_pretty(v->'warnings') AS warnings FROM quantum_flow.validate_flow(:'etl') v;
-- a different document for the same slug: workflow_exists, naming the first difference
\set other '{"workflow_slug": "claude_etl", "max_attempts": 3, "description": "Extract, validate each row, load", "steps": [{"slug": "load_db", "depends_on": ["validate_rows"]}, {"slug": "validate_rows", "depends_on": ["extract_csv"], "type": "map", "initial_tasks": 50, "max_attempts": 5, "timeout": 60, "base_delay": 2, "description": "one task per row"}, {"slug": "extract_csv"}]}'
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow(:'other'));
\set VERBOSITY sqlstate
SELECT quantum_flow.define_flow(:'other');
\set VERBOSITY terse
SELECT quantum_flow.define_flow(:'other');
-- a step of the existing workflow given a condition and a sub-flow that does not exist: both
-- problems in one answer (the sub-flow's, then the difference from the existing workflow)
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('{"workflow_slug": "claude_etl", "max_attempts": 3, "description": "Extract, validate each row, load", "steps": [{"slug": "extract_csv", "if": {"go": true}, "flow": "no_such_flow"}, {"slug": "validate_rows", "depends_on": ["extract_csv"], "type": "map", "initial_tasks": 50, "max_attempts": 5, "timeout": 60, "base_delay": 2, "description": "one task per row"}, {"slug": "load_db", "depends_on": ["validate_rows"]}]}'));
-- a slug that differs only in letter case from an existing one
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('{"workflow_slug": "Claude_ETL", "steps": [{"slug": "a"}]}'));

--
-- export_flow: the document of a workflow, options a step does not set left out;
-- define_flow(export_flow(s)) is a no-op and validate_flow of it is valid.
--
SELECT jsonb_pretty(quantum_flow.export_flow('claude_etl'));
SELECT quantum_flow.define_flow(quantum_flow.export_flow('claude_etl')) = quantum_flow.get_flow('claude_etl') AS no_op;
SELECT quantum_flow.validate_flow(quantum_flow.export_flow('claude_etl')) -> 'valid' AS valid;
-- a workflow made with create_flow / add_step exports the same way
SELECT workflow_slug FROM quantum_flow.create_flow('ai_data_pipeline', max_attempts => 5, timeout => 60);
SELECT step_slug FROM quantum_flow.add_step('ai_data_pipeline', 'fetch_data');
SELECT step_slug FROM quantum_flow.add_step('ai_data_pipeline', 'process_batch', ARRAY['fetch_data'],
                                            step_type => 'map', initial_tasks => 100);
SELECT step_slug FROM quantum_flow.add_step('ai_data_pipeline', 'save_results', ARRAY['process_batch']);
SELECT quantum_flow.export_flow('ai_data_pipeline');
SELECT quantum_flow.define_flow(quantum_flow.export_flow('ai_data_pipeline')) = quantum_flow.get_flow('ai_data_pipeline') AS no_op;

--
-- "did you mean": lookups name the closest existing slug
--
SELECT quantum_flow.export_flow('claude_et');
SELECT quantum_flow.get_flow('ai_data_pipline');
SELECT quantum_flow.start_flow('claude_etl_', '{}');
SELECT step_slug FROM quantum_flow.add_step('ai_data_pipeline', 'notify', ARRAY['save_result']);
SELECT quantum_flow.export_flow('nothing_like_it');

--
-- flow_graph: Mermaid (default) and DOT; map steps drawn differently; with a run, each step's
-- status and completed/total tasks, coloured by status.
--
SELECT quantum_flow.flow_graph('ai_data_pipeline');
SELECT quantum_flow.flow_graph('ai_data_pipeline', 'dot');
SELECT quantum_flow.start_flow('ai_data_pipeline', '{}', '30000000-0000-0000-0000-000000000001');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '[1, 2, 3]') FROM quantum_flow.poll_tasks('ai_data_pipeline');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '"done"')
FROM quantum_flow.poll_tasks('ai_data_pipeline', 1);
SELECT quantum_flow.flow_graph('ai_data_pipeline', run_id => '30000000-0000-0000-0000-000000000001');
SELECT quantum_flow.flow_graph('ai_data_pipeline', 'dot', '30000000-0000-0000-0000-000000000001');
SELECT quantum_flow.cancel_run('30000000-0000-0000-0000-000000000001');
SELECT quantum_flow.flow_graph('ai_data_pipeline', run_id => '30000000-0000-0000-0000-000000000001');
-- errors
SELECT quantum_flow.flow_graph('ai_data_pipeline', 'mermad');
SELECT quantum_flow.flow_graph('ai_data_pipeline', 'svg');
SELECT quantum_flow.flow_graph('claude_etl', run_id => '30000000-0000-0000-0000-000000000001');
SELECT quantum_flow.flow_graph('claude_etl', run_id => '30000000-0000-0000-0000-0000000000ff');
SELECT quantum_flow.flow_graph(NULL);
SELECT quantum_flow.flow_graph('claude_etl', NULL);

--
-- flow_schema: a JSON Schema (draft 2020-12) with the document's keys
--
SELECT s->>'$schema' AS dialect, jsonb_pretty(s->'required') AS required,
       (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(s->'properties') k) AS keys,
       (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(s->'$defs'->'step'->'properties') k) AS step_keys
FROM quantum_flow.flow_schema() s;

--
-- Guardrails: quantum_flow.max_steps (every definition path) and quantum_flow.max_map_tasks
-- (when a map step fans out: its run fails with limit_exceeded).
--
SET quantum_flow.max_steps = 2;
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('{"workflow_slug": "big", "steps": [{"slug": "a"}, {"slug": "b"}, {"slug": "c"}]}'));
\set VERBOSITY sqlstate
SELECT quantum_flow.define_flow('{"workflow_slug": "big", "steps": [{"slug": "a"}, {"slug": "b"}, {"slug": "c"}]}');
\set VERBOSITY terse
SELECT workflow_slug FROM quantum_flow.create_flow('big');
SELECT step_slug FROM quantum_flow.add_step('big', 'a');
SELECT step_slug FROM quantum_flow.add_step('big', 'b');
SELECT step_slug FROM quantum_flow.add_step('big', 'c');
-- an identical add_step of an existing step is still a no-op
SELECT step_slug FROM quantum_flow.add_step('big', 'b');
RESET quantum_flow.max_steps;
SET quantum_flow.max_map_tasks = 3;
SELECT quantum_flow.start_flow('ai_data_pipeline', '{}', '30000000-0000-0000-0000-000000000002');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '[1, 2, 3, 4]') FROM quantum_flow.poll_tasks('ai_data_pipeline');
SELECT r->>'status' AS status, r->>'error_message' AS error_message
FROM quantum_flow.get_run('30000000-0000-0000-0000-000000000002') r;
SELECT count(*) AS in_queue FROM pgmq.q_qf_ai_data_pipeline;
RESET quantum_flow.max_map_tasks;

-- whole numbers written with a zero fraction, as some JSON writers (and LLMs) emit them, are
-- whole numbers, as flow_schema() (JSON Schema "integer") says: the definition takes them
SELECT d->>'workflow_slug' AS workflow_slug, d->'max_attempts' AS max_attempts FROM quantum_flow.define_flow(
  '{"workflow_slug": "doc_fraction", "max_attempts": 5.0, "timeout": 30.0,
    "steps": [{"slug": "a", "start_delay": 10.0}, {"slug": "b", "type": "map", "depends_on": ["a"], "timeout": 45.0}]}') d;
SELECT step_slug, timeout, start_delay FROM quantum_flow.workflow_steps WHERE workflow_slug = 'doc_fraction' ORDER BY step_index;
-- a fraction that is not zero is not a whole number
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('{"workflow_slug": "doc_fraction2", "steps": [{"slug": "a", "timeout": 2.5}]}'));

-- the workflow a sub-flow step names may be deleted (nothing runs it): the parent's own
-- export is still the same document, valid, and defining it again changes nothing; a new
-- workflow naming it is refused
SELECT quantum_flow.define_flow('{"workflow_slug": "doc_child", "steps": [{"slug": "c"}]}') ->> 'workflow_slug' AS defined;
SELECT quantum_flow.define_flow('{"workflow_slug": "doc_parent", "steps": [{"slug": "s", "flow": "doc_child"}]}') ->> 'workflow_slug' AS defined;
SELECT quantum_flow.delete_flow('doc_child');
SELECT quantum_flow.validate_flow(quantum_flow.export_flow('doc_parent')) ->> 'valid' AS export_is_valid;
SELECT quantum_flow.define_flow(quantum_flow.export_flow('doc_parent')) ->> 'workflow_slug' AS defined_again;
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('{"workflow_slug": "doc_parent2", "steps": [{"slug": "s", "flow": "doc_child"}]}'));

-- jsonb holds values the document reader cannot (a number beyond double precision, nesting
-- deeper than 128 levels): a located invalid_document, never an internal error
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('{"workflow_slug": "doc_huge", "steps": [{"slug": "a", "timeout": 1e400}]}'));
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow(('{"workflow_slug": "doc_deep", "steps": [{"slug": "a", "if": '
                                                          || repeat('[', 130) || repeat(']', 130) || '}]}')::jsonb));
SELECT quantum_flow.define_flow('{"workflow_slug": "doc_huge", "steps": [{"slug": "a", "timeout": 1e400}]}');
SELECT count(*) AS doc_huge FROM quantum_flow.workflows WHERE workflow_slug = 'doc_huge';

-- a pgmq queue of the name the workflow's queue would have, not quantum_flow's: validate_flow
-- says so at $.workflow_slug, as define_flow does, and nothing is written
SELECT pgmq.create('qf_doc_taken');
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('{"workflow_slug": "doc_taken", "steps": [{"slug": "a"}]}'));
SELECT quantum_flow.define_flow('{"workflow_slug": "doc_taken", "steps": [{"slug": "a"}]}');
SELECT count(*) AS doc_taken FROM quantum_flow.workflows WHERE workflow_slug = 'doc_taken';
SELECT pgmq.drop_queue('qf_doc_taken');

-- a workflow no step was added to yet exports "steps": [], which is that workflow again; a
-- new document without steps is refused
SELECT workflow_slug FROM quantum_flow.create_flow('doc_empty', max_attempts => 2);
SELECT quantum_flow.export_flow('doc_empty');
SELECT quantum_flow.validate_flow(quantum_flow.export_flow('doc_empty'));
SELECT quantum_flow.define_flow(quantum_flow.export_flow('doc_empty')) ->> 'workflow_slug' AS defined_again;
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('{"workflow_slug": "doc_empty", "steps": []}'));
SELECT * FROM pg_temp.problems(quantum_flow.validate_flow('{"workflow_slug": "doc_empty2", "steps": []}'));

SELECT count(*) AS deleted FROM (SELECT quantum_flow.delete_flow(workflow_slug) FROM quantum_flow.list_flows()) d;
