--
-- seed_as_roles: the reference workflows (seed_guide.sql) run end to end by LOGIN roles that each hold
-- exactly one of the extension's roles, switching connections with \c (trust over TCP):
--   qf_app_admin  (quantum_flow_admin)   defines the Quick Start's ai_data_pipeline and the
--                                        Claude ETL flow, later runs maintain, prune_runs and
--                                        delete_flow
--   qf_app_client (quantum_flow_client)  starts runs and reads their outputs with get_run
--   qf_app_worker (quantum_flow_worker)  polls, completes and fails tasks (with retries)
--   qf_app_nobody (no role: PUBLIC)      can call nothing at all
-- Then every attempt to do more than a role is for fails with insufficient_privilege
-- (SQLSTATE 42501, printed after each statement by "\echo SQLSTATE :SQLSTATE") and, as
-- the superuser proves afterwards with a digest of every row (xmin and ctid included) of
-- every table of schemas quantum_flow and pgmq and pgmq's sequences, changes nothing.
--
-- Roles belong to the cluster, not to this database: leftovers of an aborted earlier run
-- are dropped first, and the four roles are dropped at the end. Role sessions create no
-- lasting object (their temporary tables are dropped before each \c), so DROP ROLE never
-- waits for a closing session's cleanup.
--
\set VERBOSITY terse
\pset null '(null)'
SELECT current_user AS superuser \gset
\set ai_run '00000000-0000-4000-8000-0000000000a1'
\set etl_run '00000000-0000-4000-8000-0000000000e1'
\set bad_etl_run '00000000-0000-4000-8000-0000000000e2'
\set pending_run '00000000-0000-4000-8000-0000000000a2'

SET client_min_messages = warning;
DROP ROLE IF EXISTS qf_app_admin, qf_app_client, qf_app_worker, qf_app_nobody;
RESET client_min_messages;
CREATE ROLE qf_app_admin LOGIN IN ROLE quantum_flow_admin;
CREATE ROLE qf_app_client LOGIN IN ROLE quantum_flow_client;
CREATE ROLE qf_app_worker LOGIN IN ROLE quantum_flow_worker;
CREATE ROLE qf_app_nobody LOGIN;
SELECT m.rolname AS login_role, m.rolcanlogin, m.rolsuper,
       (SELECT string_agg(r.rolname, ', ' ORDER BY r.rolname)
        FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid
        WHERE a.member = m.oid) AS member_of
FROM pg_roles m WHERE m.rolname LIKE 'qf\_app\_%' ORDER BY 1;

-- the superuser's digest of every table, to compare with after the denied attempts
CREATE SCHEMA qf_test;
CREATE FUNCTION qf_test.snapshot() RETURNS TABLE (relation text, row_count bigint, digest text)
LANGUAGE plpgsql AS $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT c.oid::regclass FROM pg_class c
               WHERE c.relnamespace IN ('quantum_flow'::regnamespace, 'pgmq'::regnamespace)
                 AND c.relkind IN ('r', 'S')
               ORDER BY c.oid::regclass::text LOOP
        relation := rel::text;
        IF (SELECT relkind FROM pg_class WHERE oid = rel) = 'S' THEN
            EXECUTE format('SELECT 1::bigint, md5(last_value::text || is_called::text) FROM %s', rel)
                INTO row_count, digest;
        ELSE
            EXECUTE format('SELECT count(*), md5(coalesce(string_agg(t.xmin::text || '' '' || t.ctid::text'
                           ' || '' '' || t::text, E''\n'' ORDER BY t.ctid), '''')) FROM %s AS t', rel)
                INTO row_count, digest;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

--
-- The admin defines the Quick Start's ai_data_pipeline and the Claude ETL pipeline
--
\c - qf_app_admin
SELECT current_user, pg_has_role('quantum_flow_admin', 'USAGE') AS admin,
       pg_has_role('quantum_flow_client', 'USAGE') AS client, pg_has_role('quantum_flow_worker', 'USAGE') AS worker;
SELECT workflow_slug, max_attempts, timeout, base_delay
FROM quantum_flow.create_flow('ai_data_pipeline', max_attempts => 5, timeout => 60);
SELECT step_slug, step_type, step_index, deps_count, initial_tasks
FROM quantum_flow.add_step('ai_data_pipeline', 'fetch_data');
SELECT step_slug, step_type, step_index, deps_count, initial_tasks
FROM quantum_flow.add_step('ai_data_pipeline', 'process_batch', ARRAY['fetch_data'],
                           step_type => 'map', initial_tasks => 100);
SELECT step_slug, step_type, step_index, deps_count, initial_tasks
FROM quantum_flow.add_step('ai_data_pipeline', 'save_results', ARRAY['process_batch']);
SELECT workflow_slug, max_attempts, timeout, base_delay FROM quantum_flow.create_flow('claude_etl');
SELECT step_slug, step_type, step_index, deps_count, initial_tasks
FROM quantum_flow.add_step('claude_etl', 'extract_csv');
SELECT step_slug, step_type, step_index, deps_count, initial_tasks
FROM quantum_flow.add_step('claude_etl', 'validate_rows', ARRAY['extract_csv'],
                           step_type => 'map', initial_tasks => 50);
SELECT step_slug, step_type, step_index, deps_count, initial_tasks
FROM quantum_flow.add_step('claude_etl', 'load_db', ARRAY['validate_rows']);
-- is_valid_slug (checking names first), and the client's read functions, through membership
SELECT quantum_flow.is_valid_slug('ai_data_pipeline') AS valid, quantum_flow.is_valid_slug('9lives') AS invalid;
SELECT workflow_slug FROM quantum_flow.list_flows();

--
-- The client reads the definitions and starts runs
--
\c - qf_app_client
SELECT current_user;
SELECT workflow_slug, max_attempts, timeout, base_delay FROM quantum_flow.list_flows();
SELECT s->>'step_slug' AS step_slug, s->>'step_type' AS step_type, s->'depends_on' AS depends_on,
       s->'initial_tasks' AS initial_tasks
FROM unnest(ARRAY['ai_data_pipeline', 'claude_etl']) AS f(slug),
     jsonb_array_elements(quantum_flow.get_flow(f.slug)->'steps') AS s
ORDER BY f.slug DESC, (s->>'step_index')::int;
SELECT quantum_flow.start_flow('ai_data_pipeline', '{"initial": "data"}', run_id => :'ai_run');
SELECT quantum_flow.start_flow('claude_etl', '{"file": "customers.csv"}', run_id => :'etl_run');
SELECT quantum_flow.start_flow('claude_etl', '{"file": "broken.csv"}', run_id => :'bad_etl_run');
SELECT r->>'workflow_slug' AS workflow_slug, r->>'status' AS status,
       (SELECT string_agg(format('%s %s %s/%s', s->>'step_slug', s->>'status', s->>'tasks_completed',
                                 coalesce(s->>'tasks_total', '?')), ' | ')
        FROM jsonb_array_elements(r->'steps') AS s) AS steps
FROM unnest(ARRAY[:'ai_run', :'etl_run', :'bad_etl_run']::uuid[]) WITH ORDINALITY AS id(run_id, n),
     quantum_flow.get_run(id.run_id) AS r
ORDER BY n;

--
-- The worker plays the workflows' step functions
--
\c - qf_app_worker
SELECT current_user;
-- ai_data_pipeline: fetch_data returns [1..100]
SELECT * FROM quantum_flow.poll_tasks('ai_data_pipeline');
SELECT quantum_flow.complete_task(:'ai_run', 'fetch_data', 0,
                                  (SELECT jsonb_agg(i ORDER BY i) FROM generate_series(1, 100) AS i),
                                  attempt => 1);
-- one poll claims the 100 map tasks; task i gets item i + 1
CREATE TEMP TABLE claimed AS SELECT * FROM quantum_flow.poll_tasks('ai_data_pipeline', batch_size => 100);
SELECT count(*) AS tasks, min(task_index), max(task_index), bool_and(attempt = 1) AS first_attempts,
       bool_and((input->>'item')::int = task_index + 1) AS item_matches_index,
       bool_and(input->'run' = '{"initial": "data"}') AS run_input_in_every_task
FROM claimed;
-- task 41 fails (a transient error: retried after base_delay 1 s); the 99 others complete
-- with {"processed": item * 2}
SELECT quantum_flow.fail_task(:'ai_run', 'process_batch', 41, 'HTTP 503 from the model API', attempt => 1);
SELECT count(*) FILTER (WHERE quantum_flow.complete_task(run_id, step_slug, task_index,
                               jsonb_build_object('processed', (input->>'item')::int * 2), attempt))
       AS completed
FROM claimed WHERE task_index <> 41;
DROP TABLE claimed;

-- claude_etl: extract_csv of customers.csv returns three rows; broken.csv's extract_csv
-- returns an object instead of an array, which fails its run at once (invalid_map_input)
SELECT run_id, step_slug, task_index, attempt, input
FROM quantum_flow.poll_tasks('claude_etl') ORDER BY input->'run'->>'file' DESC;
SELECT quantum_flow.complete_task(:'etl_run', 'extract_csv', 0,
    '[["1", "ada", "ada@example.com"], ["2", "grace", "grace@"], ["3", "edsger", "edsger@example.com"]]',
    attempt => 1);
SELECT quantum_flow.complete_task(:'bad_etl_run', 'extract_csv', 0, '{"error": "no header line"}', attempt => 1);
-- validate_rows validates and transforms each row in its own task; row 0's first attempt
-- fails (retried after 1 s)
CREATE TEMP TABLE claimed AS SELECT * FROM quantum_flow.poll_tasks('claude_etl');
SELECT run_id, step_slug, task_index, attempt, input FROM claimed ORDER BY task_index;
SELECT quantum_flow.fail_task(:'etl_run', 'validate_rows', 0, 'connection reset by peer', attempt => 1);
CREATE TEMP TABLE validate(task_index int, item jsonb, output jsonb);
INSERT INTO validate
SELECT task_index, input->'item',
       CASE WHEN input->'item'->>2 ~ '^[^@]+@[^@]+\.[a-z]+$'
            THEN jsonb_build_object('id', (input->'item'->>0)::int, 'name', upper(input->'item'->>1),
                                    'email', input->'item'->>2)
            ELSE jsonb_build_object('rejected', format('line %s: invalid email "%s"', task_index + 1,
                                                       input->'item'->>2))
       END
FROM claimed;
SELECT quantum_flow.complete_task(c.run_id, c.step_slug, c.task_index, v.output, c.attempt)
FROM claimed c JOIN validate v USING (task_index) WHERE c.task_index <> 0 ORDER BY c.task_index;
DROP TABLE claimed;

-- the two retries: a waiting poll gets each as attempt 2 once its 1 s backoff is over
SELECT run_id, step_slug, task_index, attempt, input->'item' AS item
FROM quantum_flow.poll_tasks('ai_data_pipeline', max_wait_ms => 5000);
SELECT quantum_flow.complete_task(:'ai_run', 'process_batch', 41, '{"processed": 84}', attempt => 2);
SELECT run_id, step_slug, task_index, attempt, input->'item' AS item
FROM quantum_flow.poll_tasks('claude_etl', max_wait_ms => 5000);
SELECT quantum_flow.complete_task(:'etl_run', 'validate_rows', 0, v.output, attempt => 2)
FROM validate v WHERE v.task_index = 0;
DROP TABLE validate;

-- save_results gets process_batch's 100 outputs in order and saves them
CREATE TEMP TABLE claimed AS SELECT * FROM quantum_flow.poll_tasks('ai_data_pipeline');
SELECT step_slug, attempt, input->'run' AS run, jsonb_array_length(input->'process_batch') AS outputs,
       input->'process_batch'->0 AS first, input->'process_batch'->41 AS retried,
       input->'process_batch'->99 AS last
FROM claimed;
SELECT quantum_flow.complete_task(run_id, step_slug, task_index,
           jsonb_build_object('saved', jsonb_array_length(input->'process_batch'),
                              'sum', (SELECT sum((o->>'processed')::int)
                                      FROM jsonb_array_elements(input->'process_batch') AS o)),
           attempt)
FROM claimed;
DROP TABLE claimed;
-- load_db gets the validated rows in order, loads the valid ones and reports the others
CREATE TEMP TABLE claimed AS SELECT * FROM quantum_flow.poll_tasks('claude_etl');
SELECT step_slug, attempt, jsonb_pretty(input) AS input FROM claimed;
SELECT quantum_flow.complete_task(run_id, step_slug, task_index,
           jsonb_build_object('loaded', (SELECT count(*) FROM jsonb_array_elements(input->'validate_rows') AS r
                                         WHERE r ? 'id'),
                              'rejected', (SELECT jsonb_agg(r->'rejected') FROM jsonb_array_elements(input->'validate_rows') AS r
                                           WHERE r ? 'rejected')),
           attempt)
FROM claimed;
DROP TABLE claimed;
-- nothing is left to do
SELECT count(*) AS ai_tasks FROM quantum_flow.poll_tasks('ai_data_pipeline');
SELECT count(*) AS etl_tasks FROM quantum_flow.poll_tasks('claude_etl');

--
-- The client reads the exact final outputs
--
\c - qf_app_client
SELECT r->>'status' AS status, r->'output' AS output,
       r->'output' = '{"save_results": {"sum": 10100, "saved": 100}}' AS exact
FROM quantum_flow.get_run(:'ai_run') AS r;
SELECT s->>'step_slug' AS step_slug, s->>'status' AS status, s->'tasks_total' AS tasks_total,
       s->'tasks_completed' AS tasks_completed, s->'error_message' AS error_message
FROM jsonb_array_elements(quantum_flow.get_run(:'ai_run')->'steps') AS s;
SELECT quantum_flow.get_run(:'ai_run') #> '{steps,1,output}'
     = (SELECT jsonb_agg(jsonb_build_object('processed', i * 2) ORDER BY i) FROM generate_series(1, 100) AS i)
       AS process_batch_output_exact;
SELECT jsonb_pretty(quantum_flow.get_run(:'etl_run') - 'started_at' - 'completed_at' - 'failed_at');
SELECT r->'output' = '{"load_db": {"loaded": 2, "rejected": ["line 2: invalid email \"grace@\""]}}' AS exact
FROM quantum_flow.get_run(:'etl_run') AS r;
SELECT jsonb_pretty(quantum_flow.get_run(:'bad_etl_run') - 'started_at' - 'completed_at' - 'failed_at');
-- one more run, left waiting in the queue while the roles try what they may not
SELECT quantum_flow.start_flow('ai_data_pipeline', '{"initial": "more data"}', run_id => :'pending_run');

--
-- What nobody may do. The superuser's digest first.
--
\c - :superuser
CREATE TABLE qf_test.before AS SELECT * FROM qf_test.snapshot();
SELECT relation, row_count FROM qf_test.before ORDER BY relation;
-- who besides their owner may use the workflows' queue tables: none of the extension's roles,
-- not PUBLIC; pgmq's own default privileges (ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq) give
-- pg_monitor, which also has USAGE on schema pgmq, SELECT on every queue and archive table
SELECT c.oid::regclass AS queue_table,
       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE acl.grantee::regrole::text END AS grantee,
       acl.privilege_type
FROM pg_class c, aclexplode(c.relacl) AS acl
WHERE c.relnamespace = 'pgmq'::regnamespace AND c.relname ~ '^[qa]_qf_' AND acl.grantee <> c.relowner
ORDER BY c.relname, 2, 3;

-- the client: no table, no worker or admin function, no pgmq
\c - qf_app_client
SELECT count(*) FROM quantum_flow.workflows; \echo SQLSTATE :SQLSTATE
SELECT count(*) FROM quantum_flow.step_tasks; \echo SQLSTATE :SQLSTATE
SELECT count(*) FROM quantum_flow.runs; \echo SQLSTATE :SQLSTATE
INSERT INTO quantum_flow.workflows (workflow_slug) VALUES ('intruder'); \echo SQLSTATE :SQLSTATE
UPDATE quantum_flow.runs SET status = 'completed'; \echo SQLSTATE :SQLSTATE
DELETE FROM quantum_flow.step_tasks; \echo SQLSTATE :SQLSTATE
SELECT * FROM quantum_flow.poll_tasks('ai_data_pipeline'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.complete_task(:'pending_run', 'fetch_data', 0, '[]'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.fail_task(:'pending_run', 'fetch_data', 0, 'no'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.create_flow('intruder'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.add_step('claude_etl', 'exfiltrate', ARRAY['load_db']); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.delete_flow('claude_etl'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.maintain(); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.prune_runs('0 seconds'); \echo SQLSTATE :SQLSTATE
SELECT * FROM pgmq.read('qf_ai_data_pipeline', 30, 1); \echo SQLSTATE :SQLSTATE
SELECT * FROM pgmq.q_qf_ai_data_pipeline; \echo SQLSTATE :SQLSTATE
SET ROLE quantum_flow_worker; \echo SQLSTATE :SQLSTATE
SET ROLE quantum_flow_admin; \echo SQLSTATE :SQLSTATE

-- the worker: no table, no client or admin function, no pgmq
\c - qf_app_worker
SELECT count(*) FROM quantum_flow.workflows; \echo SQLSTATE :SQLSTATE
SELECT count(*) FROM quantum_flow.step_tasks; \echo SQLSTATE :SQLSTATE
SELECT count(*) FROM quantum_flow.runs; \echo SQLSTATE :SQLSTATE
INSERT INTO quantum_flow.workflows (workflow_slug) VALUES ('intruder'); \echo SQLSTATE :SQLSTATE
UPDATE quantum_flow.step_tasks SET status = 'completed', output = '"forged"'; \echo SQLSTATE :SQLSTATE
DELETE FROM quantum_flow.runs; \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.create_flow('intruder'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.add_step('ai_data_pipeline', 'exfiltrate', ARRAY['save_results']); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.delete_flow('ai_data_pipeline'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.start_flow('ai_data_pipeline', '{}'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.get_run(:'ai_run'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.cancel_run(:'pending_run'); \echo SQLSTATE :SQLSTATE
SELECT * FROM quantum_flow.list_flows(); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.get_flow('ai_data_pipeline'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.maintain(); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.prune_runs('0 seconds'); \echo SQLSTATE :SQLSTATE
SELECT * FROM pgmq.read('qf_ai_data_pipeline', 30, 1); \echo SQLSTATE :SQLSTATE
SELECT * FROM pgmq.q_qf_ai_data_pipeline; \echo SQLSTATE :SQLSTATE
SELECT pgmq.send('qf_claude_etl', '{"run_id": "00000000-0000-4000-8000-0000000000e1", "step_slug": "load_db", "task_index": 0}'); \echo SQLSTATE :SQLSTATE
SET ROLE quantum_flow_client; \echo SQLSTATE :SQLSTATE

-- the admin: every API function, but still no table, no internal helper and no pgmq
\c - qf_app_admin
SELECT count(*) FROM quantum_flow.workflows; \echo SQLSTATE :SQLSTATE
SELECT count(*) FROM quantum_flow.step_tasks; \echo SQLSTATE :SQLSTATE
SELECT count(*) FROM quantum_flow.runs; \echo SQLSTATE :SQLSTATE
INSERT INTO quantum_flow.workflows (workflow_slug) VALUES ('intruder'); \echo SQLSTATE :SQLSTATE
UPDATE quantum_flow.workflows SET max_attempts = 100; \echo SQLSTATE :SQLSTATE
DELETE FROM quantum_flow.step_tasks; \echo SQLSTATE :SQLSTATE
TRUNCATE quantum_flow.runs CASCADE; \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.jsonb_raw_size('{}'); \echo SQLSTATE :SQLSTATE
CREATE TABLE quantum_flow.intruder (); \echo SQLSTATE :SQLSTATE
SELECT * FROM pgmq.read('qf_ai_data_pipeline', 30, 1); \echo SQLSTATE :SQLSTATE
SELECT * FROM pgmq.q_qf_ai_data_pipeline; \echo SQLSTATE :SQLSTATE
SELECT * FROM pgmq.a_qf_claude_etl; \echo SQLSTATE :SQLSTATE
SELECT pgmq.purge_queue('qf_ai_data_pipeline'); \echo SQLSTATE :SQLSTATE
SELECT pgmq.drop_queue('qf_claude_etl'); \echo SQLSTATE :SQLSTATE
-- nor hand its role on: the extension's roles are granted without ADMIN OPTION
GRANT quantum_flow_admin TO qf_app_nobody; \echo SQLSTATE :SQLSTATE
GRANT quantum_flow_worker TO qf_app_client; \echo SQLSTATE :SQLSTATE

-- PUBLIC (a login with none of the roles) can call nothing at all: not one API function,
-- not even is_valid_slug
\c - qf_app_nobody
SELECT quantum_flow.is_valid_slug('ai_data_pipeline'); \echo SQLSTATE :SQLSTATE
SELECT * FROM quantum_flow.list_flows(); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.get_flow('ai_data_pipeline'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.get_run(:'ai_run'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.start_flow('ai_data_pipeline', '{}'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.cancel_run(:'pending_run'); \echo SQLSTATE :SQLSTATE
SELECT * FROM quantum_flow.poll_tasks('ai_data_pipeline'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.complete_task(:'pending_run', 'fetch_data', 0, '[]'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.fail_task(:'pending_run', 'fetch_data', 0, 'no'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.create_flow('intruder'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.add_step('claude_etl', 'exfiltrate', ARRAY['load_db']); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.delete_flow('claude_etl'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.maintain(); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.prune_runs('0 seconds'); \echo SQLSTATE :SQLSTATE
SELECT count(*) FROM quantum_flow.workflows; \echo SQLSTATE :SQLSTATE
DELETE FROM quantum_flow.runs; \echo SQLSTATE :SQLSTATE
SELECT * FROM pgmq.read('qf_ai_data_pipeline', 30, 1); \echo SQLSTATE :SQLSTATE
SELECT * FROM pgmq.q_qf_ai_data_pipeline; \echo SQLSTATE :SQLSTATE

-- the superuser: not one row, sequence or message changed (same rows, same xmin and ctid)
\c - :superuser
SELECT coalesce(a.relation, b.relation) AS relation, b.row_count AS rows_before, a.row_count AS rows_after,
       a.digest IS NOT DISTINCT FROM b.digest AS unchanged
FROM qf_test.snapshot() AS a FULL JOIN qf_test.before AS b USING (relation)
ORDER BY 1;

--
-- What only the admin may do: housekeeping and deleting flows
--
\c - qf_app_admin
-- nothing has timed out and nothing is stale
SELECT quantum_flow.maintain();
-- a workflow with a started run cannot be deleted: cancel it first (a client function)
SELECT quantum_flow.delete_flow('ai_data_pipeline'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.cancel_run(:'pending_run', 'the demo is over');
SELECT r->>'status' AS status, r->>'error_message' AS error_message FROM quantum_flow.get_run(:'pending_run') AS r;
-- retention: the two completed runs, then the two failed ones
SELECT quantum_flow.prune_runs('0 seconds', keep_failed => true) AS pruned_completed;
SELECT quantum_flow.prune_runs('0 seconds') AS pruned_failed;
SELECT quantum_flow.get_run(:'ai_run'); \echo SQLSTATE :SQLSTATE
SELECT quantum_flow.delete_flow('ai_data_pipeline');
SELECT quantum_flow.delete_flow('claude_etl');
SELECT count(*) AS workflows FROM quantum_flow.list_flows();

-- the superuser sees that everything is gone: rows, queues, archived messages
\c - :superuser
SELECT relation, row_count FROM qf_test.snapshot()
WHERE relation NOT LIKE 'pgmq.%' OR row_count > 0 ORDER BY relation;
SELECT count(*) AS queues FROM pgmq.meta WHERE queue_name IN ('qf_ai_data_pipeline', 'qf_claude_etl');

-- clean up: the helper schema and the four login roles
DROP SCHEMA qf_test CASCADE;
DROP ROLE qf_app_admin, qf_app_client, qf_app_worker, qf_app_nobody;
SELECT count(*) AS login_roles_left FROM pg_roles WHERE rolname LIKE 'qf\_app\_%';
