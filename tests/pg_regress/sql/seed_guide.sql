--
-- seed_guide: the three reference workflows of the README and docs, written in SQL with
-- named arguments as the README shows them: the Quick Start (ai_data_pipeline), the
-- Migration Path (my_workflow) and the Claude-generated ETL pipeline (claude_etl). Each is
-- defined, inspected with get_flow, listed with list_flows, and run once with its step
-- functions played by SQL. Every workflow is deleted at the end.
--
\set VERBOSITY terse
\pset null '(null)'
\set flow_cols 'workflow_slug, max_attempts, timeout, base_delay'
\set step_cols 'step_slug, step_type, step_index, deps_count, initial_tasks, max_attempts, timeout, base_delay'

--
-- Quick Start: AI-generated workflow
--
SELECT :flow_cols FROM quantum_flow.create_flow('ai_data_pipeline', max_attempts => 5, timeout => 60);
SELECT :step_cols FROM quantum_flow.add_step('ai_data_pipeline', 'fetch_data');
SELECT :step_cols FROM quantum_flow.add_step('ai_data_pipeline', 'process_batch', ARRAY['fetch_data'],
                                             step_type => 'map', initial_tasks => 100);
SELECT :step_cols FROM quantum_flow.add_step('ai_data_pipeline', 'save_results', ARRAY['process_batch']);
SELECT jsonb_pretty(quantum_flow.get_flow('ai_data_pipeline') - 'created_at');

--
-- Migration Path: from static to dynamic
--
SELECT :flow_cols FROM quantum_flow.create_flow('my_workflow');
SELECT :step_cols FROM quantum_flow.add_step('my_workflow', 'step1');
SELECT jsonb_pretty(quantum_flow.get_flow('my_workflow') - 'created_at');

--
-- Example: Claude-generated ETL pipeline
--
SELECT :flow_cols FROM quantum_flow.create_flow('claude_etl');
SELECT :step_cols FROM quantum_flow.add_step('claude_etl', 'extract_csv');
SELECT :step_cols FROM quantum_flow.add_step('claude_etl', 'validate_rows', ARRAY['extract_csv'],
                                             step_type => 'map', initial_tasks => 50);
SELECT :step_cols FROM quantum_flow.add_step('claude_etl', 'load_db', ARRAY['validate_rows']);
SELECT jsonb_pretty(quantum_flow.get_flow('claude_etl') - 'created_at');

-- the three workflows, ordered by workflow_slug
SELECT :flow_cols FROM quantum_flow.list_flows();
-- checking names before using them: is_valid_slug on its names
SELECT slug, quantum_flow.is_valid_slug(slug)
FROM unnest(ARRAY['ai_data_pipeline', 'my_workflow', 'claude_etl', 'fetch_data', 'process_batch',
                  'save_results', 'step1', 'extract_csv', 'validate_rows', 'load_db']) WITH ORDINALITY AS t(slug, n)
ORDER BY n;

--
-- Quick Start, executed with input {"initial": "data"}: fetch_data returns [1..100],
-- process_batch doubles each item in 100 tasks, save_results runs after all 100.
--
SELECT quantum_flow.start_flow('ai_data_pipeline', '{"initial": "data"}', '5eed0000-0000-0000-0000-000000000001');
-- before fetch_data completes, process_batch shows its declared 100 tasks
SELECT s->>'step_slug' AS step_slug, s->>'status' AS status, s->'tasks_total' AS tasks_total
FROM jsonb_array_elements(quantum_flow.get_run('5eed0000-0000-0000-0000-000000000001')->'steps') AS s;
SELECT * FROM quantum_flow.poll_tasks('ai_data_pipeline') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task('5eed0000-0000-0000-0000-000000000001', 'fetch_data', 0,
                                  (SELECT jsonb_agg(i ORDER BY i) FROM generate_series(1, 100) AS i));
-- one poll claims the 100 map tasks; task i gets item i + 1
CREATE TEMP TABLE claimed AS SELECT * FROM quantum_flow.poll_tasks('ai_data_pipeline', batch_size => 100);
SELECT count(*) AS tasks, min(task_index), max(task_index),
       bool_and((input->>'item')::int = task_index + 1) AS item_matches_index,
       bool_and((input->>'index')::int = task_index) AS index_matches,
       bool_and(input->'run' = '{"initial": "data"}') AS run_input_in_every_task
FROM claimed;
SELECT * FROM claimed WHERE task_index IN (0, 99) ORDER BY task_index;
-- the 100 workers answer {"processed": item * 2}, last task first
SELECT count(*) FILTER (WHERE quantum_flow.complete_task(run_id, step_slug, task_index,
                               jsonb_build_object('processed', (input->>'item')::int * 2))) AS completed
FROM (SELECT * FROM claimed ORDER BY task_index DESC) AS last_first;
DROP TABLE claimed;
-- save_results gets process_batch's 100 outputs in task order
SELECT step_slug, input->'run' AS run, jsonb_array_length(input->'process_batch') AS outputs,
       input->'process_batch'->0 AS first, input->'process_batch'->99 AS last
FROM quantum_flow.poll_tasks('ai_data_pipeline');
SELECT quantum_flow.complete_task('5eed0000-0000-0000-0000-000000000001', 'save_results', 0, '{"saved": true}');
SELECT r->>'status' AS status, r->'output' AS output FROM quantum_flow.get_run('5eed0000-0000-0000-0000-000000000001') AS r;
SELECT s->>'step_slug' AS step_slug, s->>'status' AS status, s->'tasks_total' AS tasks_total,
       s->'tasks_completed' AS tasks_completed
FROM jsonb_array_elements(quantum_flow.get_run('5eed0000-0000-0000-0000-000000000001')->'steps') AS s;
SELECT (SELECT jsonb_agg(i * 2 ORDER BY i) FROM generate_series(1, 100) AS i)
     = (SELECT jsonb_agg(o->'processed')
        FROM jsonb_array_elements(quantum_flow.get_run('5eed0000-0000-0000-0000-000000000001')
                                  #> '{steps,1,output}') AS o) AS process_batch_output_in_order;

--
-- Migration Path, executed: step1 returns its input
--
SELECT quantum_flow.start_flow('my_workflow', '{"x": 1}', '5eed0000-0000-0000-0000-000000000002');
SELECT * FROM quantum_flow.poll_tasks('my_workflow');
SELECT quantum_flow.complete_task('5eed0000-0000-0000-0000-000000000002', 'step1', 0, '{"run": {"x": 1}}');
SELECT jsonb_pretty(quantum_flow.get_run('5eed0000-0000-0000-0000-000000000002')
                    - 'started_at' - 'completed_at' - 'failed_at');

--
-- ETL, executed: extract_csv returns three rows, validate_rows transforms each row in its own
-- task (50 expected, 3 actual), load_db receives the transformed rows
--
SELECT quantum_flow.start_flow('claude_etl', run_id => '5eed0000-0000-0000-0000-000000000003');
SELECT * FROM quantum_flow.poll_tasks('claude_etl');
SELECT quantum_flow.complete_task('5eed0000-0000-0000-0000-000000000003', 'extract_csv', 0,
                                  '[["1", "ada"], ["2", "grace"], ["3", "edsger"]]');
SELECT * FROM quantum_flow.poll_tasks('claude_etl') ORDER BY step_slug, task_index;
SELECT quantum_flow.complete_task('5eed0000-0000-0000-0000-000000000003', 'validate_rows', 2, '{"id": 3, "name": "EDSGER"}');
SELECT quantum_flow.complete_task('5eed0000-0000-0000-0000-000000000003', 'validate_rows', 0, '{"id": 1, "name": "ADA"}');
SELECT quantum_flow.complete_task('5eed0000-0000-0000-0000-000000000003', 'validate_rows', 1, '{"id": 2, "name": "GRACE"}');
SELECT * FROM quantum_flow.poll_tasks('claude_etl');
SELECT quantum_flow.complete_task('5eed0000-0000-0000-0000-000000000003', 'load_db', 0, '{"loaded": true}');
SELECT jsonb_pretty(quantum_flow.get_run('5eed0000-0000-0000-0000-000000000003')
                    - 'started_at' - 'completed_at' - 'failed_at');

-- clean up: the three workflows, their runs and their queues are gone
SELECT quantum_flow.delete_flow('ai_data_pipeline');
SELECT quantum_flow.delete_flow('my_workflow');
SELECT quantum_flow.delete_flow('claude_etl');
SELECT count(*) AS workflows FROM quantum_flow.list_flows();
SELECT count(*) AS queues FROM pgmq.meta
WHERE queue_name IN ('qf_ai_data_pipeline', 'qf_my_workflow', 'qf_claude_etl');
