--
-- populate: run by the PREVIOUS release (0.1.0) in database qf_upgrade, before the upgrade.
-- Defines the reference workflows and three of this test's own, and leaves runs in every
-- state: completed, failed (attempts exhausted), cancelled, and in flight (a map step partly
-- completed, tasks claimed and never answered, tasks queued, tasks waiting for a retry).
-- Schema upgrade_check (not part of the extension) holds the worker's step functions, the
-- runs' labels and snapshots that update.sql and finish.sql compare with.
--
\set VERBOSITY terse
\pset null '(null)'
\set flow_cols 'workflow_slug, max_attempts, timeout, base_delay'
\set step_cols 'step_slug, step_type, step_index, deps_count, initial_tasks, max_attempts, timeout, base_delay'
SELECT extversion FROM pg_extension WHERE extname = 'quantum_flow';

CREATE SCHEMA upgrade_check;
-- the runs of this test; "before" is what each run is when the upgrade happens
CREATE TABLE upgrade_check.runs (
    label  text PRIMARY KEY,
    run_id uuid NOT NULL UNIQUE,
    before text NOT NULL,
    what   text NOT NULL
);
-- The worker's step functions: a task's output from its input, the same before and after the
-- upgrade. A task fails (on every attempt) when the flow input's "fail" names its step.
CREATE FUNCTION upgrade_check.work(workflow_slug text, step_slug text, input jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE workflow_slug || '.' || step_slug
    WHEN 'ai_data_pipeline.fetch_data' THEN
        (SELECT jsonb_agg(i ORDER BY i) FROM generate_series(1, coalesce((input #>> '{run,n}')::int, 100)) AS i)
    WHEN 'ai_data_pipeline.process_batch' THEN jsonb_build_object('processed', (input ->> 'item')::int * 2)
    WHEN 'ai_data_pipeline.save_results' THEN
        jsonb_build_object('saved', jsonb_array_length(input -> 'process_batch'),
                           'sum', (SELECT sum((o ->> 'processed')::int)
                                   FROM jsonb_array_elements(input -> 'process_batch') AS o))
    WHEN 'my_workflow.step1' THEN input
    WHEN 'claude_etl.extract_csv' THEN '[["1", "ada"], ["2", "grace"], ["3", "edsger"]]'::jsonb
    WHEN 'claude_etl.validate_rows' THEN
        jsonb_build_object('id', (input #>> '{item,0}')::int, 'name', upper(input #>> '{item,1}'))
    WHEN 'claude_etl.load_db' THEN jsonb_build_object('loaded', jsonb_array_length(input -> 'validate_rows'))
    WHEN 'upgrade_inflight.prepare' THEN
        coalesce((SELECT jsonb_agg(i ORDER BY i) FROM generate_series(1, (input #>> '{run,n}')::int) AS i), '[]')
    WHEN 'upgrade_inflight.fan' THEN to_jsonb((input ->> 'item')::int * 2)
    WHEN 'upgrade_inflight.side' THEN jsonb_build_object('n', input #> '{run,n}')
    WHEN 'upgrade_inflight.combine' THEN
        jsonb_build_object('sum', (SELECT sum(x::int) FROM jsonb_array_elements_text(input -> 'fan') AS x),
                           'side', input -> 'side')
END
$$;
CREATE FUNCTION upgrade_check.fails(step_slug text, input jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(input #>> '{run,fail}' = step_slug, false) $$;
-- One poll of a workflow, every claimed task answered as above (with its attempt); returns
-- what it did. The worker after the upgrade (finish.sql) calls this too.
CREATE FUNCTION upgrade_check.drive(workflow_slug text, batch_size int DEFAULT 100)
RETURNS TABLE (run_id uuid, step_slug text, task_index int, attempt int, outcome text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM quantum_flow.poll_tasks(drive.workflow_slug, batch_size => drive.batch_size,
                                                  worker_id => 'upgrade-test') LOOP
        run_id := t.run_id;
        step_slug := t.step_slug;
        task_index := t.task_index;
        attempt := t.attempt;
        IF upgrade_check.fails(t.step_slug, t.input) THEN
            outcome := 'fail_task -> ' || quantum_flow.fail_task(t.run_id, t.step_slug, t.task_index,
                                                                 t.step_slug || ' failed on purpose',
                                                                 attempt => t.attempt);
        ELSIF quantum_flow.complete_task(t.run_id, t.step_slug, t.task_index,
                                         upgrade_check.work(drive.workflow_slug, t.step_slug, t.input),
                                         attempt => t.attempt) THEN
            outcome := 'completed';
        ELSE
            outcome := 'complete_task -> false';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
-- drive, summed up per step
CREATE FUNCTION upgrade_check.drive_summary(workflow_slug text, batch_size int DEFAULT 100)
RETURNS TABLE (step_slug text, tasks bigint, attempts text, outcomes text)
LANGUAGE sql AS $$
    SELECT d.step_slug, count(*), string_agg(DISTINCT d.attempt::text, ','), string_agg(DISTINCT d.outcome, ', ')
    FROM upgrade_check.drive(workflow_slug, batch_size) AS d
    GROUP BY d.step_slug ORDER BY d.step_slug
$$;

--
-- The reference workflows (as tests/pg_regress/sql/seed_guide.sql defines them)
--
SELECT :flow_cols FROM quantum_flow.create_flow('ai_data_pipeline', max_attempts => 5, timeout => 60);
SELECT :step_cols FROM quantum_flow.add_step('ai_data_pipeline', 'fetch_data');
SELECT :step_cols FROM quantum_flow.add_step('ai_data_pipeline', 'process_batch', ARRAY['fetch_data'],
                                             step_type => 'map', initial_tasks => 100);
SELECT :step_cols FROM quantum_flow.add_step('ai_data_pipeline', 'save_results', ARRAY['process_batch']);
SELECT :flow_cols FROM quantum_flow.create_flow('my_workflow');
SELECT :step_cols FROM quantum_flow.add_step('my_workflow', 'step1');
SELECT :flow_cols FROM quantum_flow.create_flow('claude_etl');
SELECT :step_cols FROM quantum_flow.add_step('claude_etl', 'extract_csv');
SELECT :step_cols FROM quantum_flow.add_step('claude_etl', 'validate_rows', ARRAY['extract_csv'],
                                             step_type => 'map', initial_tasks => 50);
SELECT :step_cols FROM quantum_flow.add_step('claude_etl', 'load_db', ARRAY['validate_rows']);

--
-- This test's workflows
--
-- upgrade_inflight: 2 s timeouts, so that claims made here time out after the upgrade
SELECT :flow_cols FROM quantum_flow.create_flow('upgrade_inflight', max_attempts => 3, timeout => 2, base_delay => 1);
SELECT :step_cols FROM quantum_flow.add_step('upgrade_inflight', 'prepare');
SELECT :step_cols FROM quantum_flow.add_step('upgrade_inflight', 'fan', ARRAY['prepare'],
                                             step_type => 'map', initial_tasks => 5);
SELECT :step_cols FROM quantum_flow.add_step('upgrade_inflight', 'side');
SELECT :step_cols FROM quantum_flow.add_step('upgrade_inflight', 'combine', ARRAY['fan', 'side']);
-- upgrade_failing: two attempts, the retry due at once
SELECT :flow_cols FROM quantum_flow.create_flow('upgrade_failing', max_attempts => 2, base_delay => 0);
SELECT :step_cols FROM quantum_flow.add_step('upgrade_failing', 'attempt');
-- a definition with every option, mixed-case slugs and dependencies not in slug order; no runs
SELECT :flow_cols FROM quantum_flow.create_flow('Upgrade_Keeps_Definitions_Exactly', max_attempts => 7,
                                                timeout => 45, base_delay => 0);
SELECT :step_cols FROM quantum_flow.add_step('Upgrade_Keeps_Definitions_Exactly', 'Zeta_Root');
SELECT :step_cols FROM quantum_flow.add_step('Upgrade_Keeps_Definitions_Exactly', 'alpha_map',
                                             step_type => 'map', initial_tasks => 0, max_attempts => 1);
SELECT :step_cols FROM quantum_flow.add_step('Upgrade_Keeps_Definitions_Exactly', 'Middle_9',
                                             ARRAY['alpha_map', 'Zeta_Root'], timeout => 3600, base_delay => 60);
SELECT :step_cols FROM quantum_flow.add_step('Upgrade_Keeps_Definitions_Exactly', 'fan_out', ARRAY['Middle_9'],
                                             step_type => 'map', initial_tasks => 12345);
SELECT :step_cols FROM quantum_flow.add_step('Upgrade_Keeps_Definitions_Exactly', 'z_leaf',
                                             ARRAY['fan_out', 'Zeta_Root', 'alpha_map'],
                                             max_attempts => 10, timeout => 1, base_delay => 5);
SELECT :step_cols FROM quantum_flow.add_step('Upgrade_Keeps_Definitions_Exactly', 'lone_leaf');
SELECT jsonb_pretty(quantum_flow.get_flow('Upgrade_Keeps_Definitions_Exactly') - 'created_at');
SELECT :flow_cols FROM quantum_flow.list_flows();

--
-- Runs
--
\set a1 '00000000-0000-0000-0000-000000000011'
\set a2 '00000000-0000-0000-0000-000000000012'
\set a3 '00000000-0000-0000-0000-000000000013'
\set a4 '00000000-0000-0000-0000-000000000014'
\set c1 '00000000-0000-0000-0000-000000000031'
\set c2 '00000000-0000-0000-0000-000000000032'
\set f1 '00000000-0000-0000-0000-000000000041'
\set f2 '00000000-0000-0000-0000-000000000042'
\set m1 '00000000-0000-0000-0000-000000000021'
\set u1 '00000000-0000-0000-0000-000000000051'
\set u2 '00000000-0000-0000-0000-000000000052'
\set u3 '00000000-0000-0000-0000-000000000053'
INSERT INTO upgrade_check.runs VALUES
    ('a1', :'a1', 'completed', 'ai_data_pipeline: the Quick Start, 100 items'),
    ('a2', :'a2', 'in flight', 'ai_data_pipeline: map 6 of 10 done, 4 queued'),
    ('a3', :'a3', 'in flight', 'ai_data_pipeline: nothing claimed yet'),
    ('a4', :'a4', 'cancelled', 'ai_data_pipeline: cancelled in its map'),
    ('c1', :'c1', 'completed', 'claude_etl: 3 rows'),
    ('c2', :'c2', 'in flight', 'claude_etl: a row waits for its retry'),
    ('f1', :'f1', 'failed', 'upgrade_failing: both attempts failed'),
    ('f2', :'f2', 'in flight', 'upgrade_failing: attempt 1 failed, retry due'),
    ('m1', :'m1', 'completed', 'my_workflow: the Migration Path'),
    ('u1', :'u1', 'in flight', 'upgrade_inflight: prepare claimed, never answered'),
    ('u2', :'u2', 'in flight', 'upgrade_inflight: map 2 done, 1 retry, 2 claimed'),
    ('u3', :'u3', 'in flight', 'upgrade_inflight: nothing claimed yet');

-- a1: the Quick Start, to the end (fetch_data returns [1..100], each item doubled)
SELECT quantum_flow.start_flow('ai_data_pipeline', '{"initial": "data"}', :'a1');
SELECT * FROM upgrade_check.drive_summary('ai_data_pipeline');
SELECT * FROM upgrade_check.drive_summary('ai_data_pipeline');
SELECT * FROM upgrade_check.drive_summary('ai_data_pipeline');
-- m1: the Migration Path, to the end
SELECT quantum_flow.start_flow('my_workflow', '{"x": 1}', :'m1');
SELECT * FROM upgrade_check.drive_summary('my_workflow');
-- c1: the ETL, to the end
SELECT quantum_flow.start_flow('claude_etl', run_id => :'c1');
SELECT * FROM upgrade_check.drive_summary('claude_etl');
SELECT * FROM upgrade_check.drive_summary('claude_etl');
SELECT * FROM upgrade_check.drive_summary('claude_etl');
-- a4: fetch_data returns [1..4]; two map tasks claimed, one completed; then cancelled
SELECT quantum_flow.start_flow('ai_data_pipeline', '{"initial": "data", "n": 4}', :'a4');
SELECT * FROM upgrade_check.drive_summary('ai_data_pipeline');
CREATE TEMP TABLE claimed AS SELECT * FROM quantum_flow.poll_tasks('ai_data_pipeline', batch_size => 2);
SELECT step_slug, task_index, attempt, input FROM claimed ORDER BY task_index;
SELECT quantum_flow.complete_task(:'a4', 'process_batch', 0, '{"processed": 2}', attempt => 1);
SELECT quantum_flow.cancel_run(:'a4', 'upgrade test');
DROP TABLE claimed;
-- a2: fetch_data returns [1..10]; six map tasks claimed and completed, four queued
SELECT quantum_flow.start_flow('ai_data_pipeline', '{"initial": "data", "n": 10}', :'a2');
SELECT * FROM upgrade_check.drive_summary('ai_data_pipeline');
SELECT * FROM upgrade_check.drive_summary('ai_data_pipeline', batch_size => 6);
-- a3: queued
SELECT quantum_flow.start_flow('ai_data_pipeline', '{"initial": "data", "n": 3}', :'a3');
-- c2: extract_csv done; rows 0 and 1 claimed: 1 completed, 0 failed (retried after 1 s); row 2 queued
SELECT quantum_flow.start_flow('claude_etl', '{"file": "customers.csv"}', :'c2');
SELECT * FROM upgrade_check.drive_summary('claude_etl');
CREATE TEMP TABLE claimed AS SELECT * FROM quantum_flow.poll_tasks('claude_etl', batch_size => 2);
SELECT step_slug, task_index, attempt, input FROM claimed ORDER BY task_index;
SELECT quantum_flow.complete_task(:'c2', 'validate_rows', 1, '{"id": 2, "name": "GRACE"}', attempt => 1);
SELECT quantum_flow.fail_task(:'c2', 'validate_rows', 0, 'HTTP 429 (simulated)', attempt => 1);
DROP TABLE claimed;
-- f1: both attempts fail, so the run fails (with 0.1.0's error message)
SELECT quantum_flow.start_flow('upgrade_failing', '{"fail": "attempt"}', :'f1');
SELECT * FROM upgrade_check.drive_summary('upgrade_failing');
SELECT * FROM upgrade_check.drive_summary('upgrade_failing');
-- f2: the first attempt fails; the second is due at once (the worker after the upgrade fails it)
SELECT quantum_flow.start_flow('upgrade_failing', '{"fail": "attempt"}', :'f2');
SELECT * FROM upgrade_check.drive_summary('upgrade_failing');
-- u1: prepare and side claimed; side completed, prepare never answered (times out after 2 s)
SELECT quantum_flow.start_flow('upgrade_inflight', '{"n": 3}', :'u1');
CREATE TEMP TABLE claimed AS SELECT * FROM quantum_flow.poll_tasks('upgrade_inflight');
SELECT step_slug, task_index, attempt, input FROM claimed ORDER BY step_slug;
SELECT quantum_flow.complete_task(:'u1', 'side', 0, '{"n": 3}', attempt => 1);
DROP TABLE claimed;
-- u2: prepare returns [1..5]; the map's tasks 0 and 1 completed, 2 failed (retried after 1 s),
-- 3 and 4 claimed and never answered
SELECT quantum_flow.start_flow('upgrade_inflight', '{"n": 5}', :'u2');
SELECT * FROM upgrade_check.drive_summary('upgrade_inflight');
CREATE TEMP TABLE claimed AS SELECT * FROM quantum_flow.poll_tasks('upgrade_inflight', batch_size => 5);
SELECT step_slug, task_index, attempt, input FROM claimed ORDER BY task_index;
SELECT quantum_flow.complete_task(:'u2', 'fan', 0, '2', attempt => 1),
       quantum_flow.complete_task(:'u2', 'fan', 1, '4', attempt => 1),
       quantum_flow.fail_task(:'u2', 'fan', 2, 'transient error', attempt => 1);
DROP TABLE claimed;
-- u3: queued
SELECT quantum_flow.start_flow('upgrade_inflight', '{"n": 2}', :'u3');

--
-- The state at the upgrade
--
SELECT l.label, l.before, r ->> 'status' AS status, r ->> 'error_message' AS error_message,
       (SELECT string_agg(format('%s %s %s/%s', s ->> 'step_slug', s ->> 'status', s ->> 'tasks_completed',
                                 s ->> 'tasks_total'), ', ')
        FROM jsonb_array_elements(r -> 'steps') AS s) AS steps
FROM upgrade_check.runs l, quantum_flow.get_run(l.run_id) AS r
ORDER BY l.label;
-- the tasks of every run that did not complete
SELECT l.label, t.step_slug, t.task_index, t.status, t.attempts_count, t.error_message
FROM upgrade_check.runs l JOIN quantum_flow.step_tasks t ON t.run_id = l.run_id
WHERE l.before <> 'completed'
ORDER BY l.label, t.step_slug, t.task_index;

-- Snapshots for update.sql and finish.sql
CREATE FUNCTION upgrade_check.queue_table(workflow_slug text, prefix text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT format('pgmq.%I', prefix || '_qf_' || lower(workflow_slug)) $$;
-- a workflow's queue or archive, message by message
CREATE FUNCTION upgrade_check.messages(workflow_slug text, prefix text DEFAULT 'q') RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    doc jsonb;
BEGIN
    EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY m.msg_id), ''[]'') FROM %s AS m',
                   upgrade_check.queue_table(workflow_slug, prefix)) INTO doc;
    RETURN doc;
END
$$;
-- the columns (and get_flow keys) the update to 0.2.0 adds: NULL (or their default) for rows
-- written before it
CREATE FUNCTION upgrade_check.added_columns() RETURNS text[] LANGUAGE sql IMMUTABLE
AS $$ SELECT ARRAY['description',
                   -- workflows
                   'run_timeout', 'concurrency_key', 'max_concurrency',
                   -- workflow_steps (get_flow shows if_matches and if_not_matches as if and if_not)
                   'if_matches', 'if_not_matches', 'if', 'if_not', 'when_unmet', 'start_delay', 'flow',
                   -- runs
                   'deadline', 'start_at', 'concurrency_value', 'parent_run_id', 'parent_step_slug',
                   'parent_task_index', 'timer_message_id',
                   -- step_states and step_tasks
                   'event_payload', 'event_at', 'fan_out_next', 'child_run_id', 'attempts_base', 'last_error_at'] $$;
-- a get_flow document without the keys the update adds
CREATE FUNCTION upgrade_check.without_added(doc jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT (doc - upgrade_check.added_columns())
           || jsonb_build_object('steps', (SELECT coalesce(jsonb_agg(s - upgrade_check.added_columns() ORDER BY n), '[]')
                                           FROM jsonb_array_elements(doc -> 'steps') WITH ORDINALITY AS e(s, n)))
$$;
-- every row of the extension's tables (but the columns the update adds), hashed per table.
-- The update renumbers the counter shards of unfinished map steps (and with them which tasks
-- step_states.tasks_completed counts: those of full shards): the shards are compared as their
-- totals per step, and step_states without that count (checked against the shards after the
-- update instead).
CREATE FUNCTION upgrade_check.table_hashes() RETURNS TABLE (table_name text, rows bigint, md5 text)
LANGUAGE plpgsql AS $$
DECLARE
    source text;
BEGIN
    FOREACH table_name IN ARRAY ARRAY['workflows', 'workflow_steps', 'workflow_step_dependencies_def', 'runs',
                                      'step_states', 'step_tasks', 'step_task_shards'] LOOP
        source := CASE table_name
            WHEN 'step_task_shards' THEN
                '(SELECT run_id, step_slug, sum(tasks_total) AS tasks_total, '
                'sum(tasks_completed) AS tasks_completed FROM quantum_flow.step_task_shards GROUP BY 1, 2)'
            ELSE format('quantum_flow.%I', table_name) END;
        EXECUTE format('SELECT count(*), md5(coalesce(string_agg(r, E''\n'' ORDER BY r), '''')) '
                       'FROM (SELECT (to_jsonb(t) - upgrade_check.added_columns() - %L::text)::text AS r '
                       'FROM %s AS t) AS rows',
                       CASE table_name WHEN 'step_states' THEN 'tasks_completed' ELSE '' END, source)
            INTO rows, md5;
        RETURN NEXT;
    END LOOP;
END
$$;
-- the keys whose values differ between two objects: "key: before -> after"
CREATE FUNCTION upgrade_check.changes(before jsonb, after jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(format('%s: %s -> %s', k, coalesce((before -> k)::text, 'absent'),
                             coalesce((after -> k)::text, 'absent')), '; ' ORDER BY k)
    FROM (SELECT jsonb_object_keys(before) UNION SELECT jsonb_object_keys(after)) AS keys(k)
    WHERE before -> k IS DISTINCT FROM after -> k
$$;
CREATE TABLE upgrade_check.flows_before AS
    SELECT workflow_slug, quantum_flow.get_flow(workflow_slug) AS doc,
           upgrade_check.messages(workflow_slug) AS messages,
           upgrade_check.messages(workflow_slug, 'a') AS archived
    FROM quantum_flow.list_flows();
CREATE TABLE upgrade_check.list_before AS
    SELECT jsonb_agg(to_jsonb(f)) AS doc FROM quantum_flow.list_flows() AS f;
CREATE TABLE upgrade_check.runs_before AS
    SELECT label, quantum_flow.get_run(run_id) AS doc FROM upgrade_check.runs;
CREATE TABLE upgrade_check.tables_before AS SELECT * FROM upgrade_check.table_hashes();
SELECT workflow_slug, jsonb_array_length(messages) AS queued_messages,
       (SELECT coalesce(sum((m ->> 'read_ct')::int), 0) FROM jsonb_array_elements(messages) AS m) AS reads,
       jsonb_array_length(archived) AS archived_messages
FROM upgrade_check.flows_before ORDER BY workflow_slug;
SELECT table_name, rows FROM upgrade_check.tables_before ORDER BY table_name;
