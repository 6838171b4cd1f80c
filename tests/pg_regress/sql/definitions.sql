--
-- definitions: the definition functions (create_flow, add_step, list_flows, get_flow,
-- delete_flow, is_valid_slug) called as a psql user calls them, their idempotency, every
-- definition error code with its SQLSTATE, and hostile input that must write nothing.
--
-- Errors are shown with VERBOSITY terse ("ERROR:  <code>: <explanation>"); the first case of
-- each error code is repeated under VERBOSITY sqlstate to show its SQLSTATE.
-- Every workflow created here is named defs_* (or is deleted before the file ends).
--
\set VERBOSITY terse
\pset null '(null)'
SET client_encoding = 'UTF8';
-- columns of the returned rows, without created_at (it varies)
\set flow_cols 'workflow_slug, max_attempts, timeout, base_delay'
\set step_cols 'workflow_slug, step_slug, step_type, step_index, deps_count, initial_tasks, max_attempts, timeout, base_delay'
-- row counts of the definition tables and of pgmq's queue list: snapshotted before refused
-- calls and compared after them, to show that a refused call writes nothing
CREATE TEMP VIEW defs_counts AS
SELECT (SELECT count(*) FROM quantum_flow.workflows) AS workflows,
       (SELECT count(*) FROM quantum_flow.workflow_steps) AS steps,
       (SELECT count(*) FROM quantum_flow.workflow_step_dependencies_def) AS dependencies,
       (SELECT count(*) FROM pgmq.meta) AS queues;

-- the database starts with no workflow (earlier test files delete theirs)
SELECT count(*) AS workflows FROM quantum_flow.list_flows();

--
-- create_flow
--

-- defaults: max_attempts 3, timeout 30 s, base_delay 1 s
SELECT :flow_cols FROM quantum_flow.create_flow('defs_defaults');
-- every option positionally
SELECT :flow_cols FROM quantum_flow.create_flow('defs_positional', 5, 60, 2);
-- named options, as the README shows them; the others keep their defaults
SELECT :flow_cols FROM quantum_flow.create_flow('defs_named', max_attempts => 5, timeout => 60);
-- every argument named, in another order; the smallest valid options (base_delay 0 is valid)
SELECT :flow_cols FROM quantum_flow.create_flow(base_delay => 0, timeout => 1, max_attempts => 1,
                                                workflow_slug => 'defs_minimal');
-- the whole row, created_at included, is a quantum_flow.workflows row
SELECT pg_typeof(w), w.created_at IS NOT NULL AS has_created_at
FROM quantum_flow.create_flow('defs_defaults') w;
-- each workflow got its pgmq queue, named qf_<lower(slug)>
SELECT queue_name FROM pgmq.meta WHERE queue_name LIKE 'qf\_defs\_%' ORDER BY queue_name;

-- idempotency: the same options again (positional, named, or left to their defaults) return
-- the existing row unchanged, created_at included
CREATE TEMP TABLE first_flow AS SELECT * FROM quantum_flow.workflows WHERE workflow_slug = 'defs_named';
SELECT w = f AS same_row FROM quantum_flow.create_flow('defs_named', 5, 60) w, first_flow f;
SELECT w = f AS same_row FROM quantum_flow.create_flow('defs_named', 5, 60, 1) w, first_flow f;
SELECT w = f AS same_row
FROM quantum_flow.create_flow('defs_named', timeout => 60, max_attempts => 5, base_delay => 1) w, first_flow f;
SELECT count(*) AS defs_named_rows FROM quantum_flow.workflows WHERE workflow_slug = 'defs_named';

-- workflow_exists (23505): the same slug with different options
SELECT * INTO TEMP before_calls FROM defs_counts;
\set VERBOSITY sqlstate
SELECT quantum_flow.create_flow('defs_named', max_attempts => 5, timeout => 61);
\set VERBOSITY terse
SELECT quantum_flow.create_flow('defs_named', max_attempts => 5, timeout => 61);
-- workflow_exists: different base_delay only; default options against a non-default workflow
SELECT quantum_flow.create_flow('defs_named', 5, 60, 0);
SELECT quantum_flow.create_flow('defs_named');
-- workflow_exists: a slug differing only in letter case, even with the same options (pgmq
-- lower-cases queue names, so the two queues would collide)
SELECT quantum_flow.create_flow('DEFS_NAMED', 5, 60);
SELECT quantum_flow.create_flow('Defs_Defaults');
-- the stored row is untouched, and nothing was written
SELECT :flow_cols FROM quantum_flow.workflows WHERE lower(workflow_slug) = 'defs_named';
SELECT n.*, n = b AS unchanged FROM defs_counts n, before_calls b;
DROP TABLE before_calls;

-- workflow_exists: the queue name is already taken by a pgmq queue quantum_flow does not own;
-- the workflow row is not kept and the foreign queue is left alone
SELECT pgmq.create('qf_defs_foreign');
SELECT * INTO TEMP before_calls FROM defs_counts;
SELECT quantum_flow.create_flow('defs_foreign');
SELECT n.*, n = b AS unchanged FROM defs_counts n, before_calls b;
SELECT count(*) AS defs_foreign_rows FROM quantum_flow.workflows WHERE workflow_slug = 'defs_foreign';
SELECT pgmq.drop_queue('qf_defs_foreign');
DROP TABLE before_calls;

--
-- add_step
--

SELECT :flow_cols FROM quantum_flow.create_flow('defs_steps');
-- a root single step, every default: depends_on '{}', step_type 'single', options inherited
SELECT :step_cols FROM quantum_flow.add_step('defs_steps', 'fetch');
-- positional: a map step over fetch's output, expecting 10 tasks
SELECT :step_cols FROM quantum_flow.add_step('defs_steps', 'split', ARRAY['fetch'], 'map', 10);
-- named step_type: a map step over split's output, no initial_tasks
SELECT :step_cols FROM quantum_flow.add_step('defs_steps', 'each', ARRAY['split'], step_type => 'map');
-- two dependencies in a chosen order (kept as given, not sorted), with per-step overrides
SELECT :step_cols
FROM quantum_flow.add_step('defs_steps', 'merge', ARRAY['each', 'fetch'],
                           max_attempts => 5, timeout => 90, base_delay => 0);
-- every argument named; depends_on as an array literal
SELECT :step_cols
FROM quantum_flow.add_step(workflow_slug => 'defs_steps', step_slug => 'notify',
                           depends_on => '{merge}', step_type => 'single',
                           max_attempts => 1, timeout => 1);
-- a root map step (maps over the flow input) declaring 0 tasks: initial_tasks 0 is valid
SELECT :step_cols FROM quantum_flow.add_step('defs_steps', 'batch', step_type => 'map', initial_tasks => 0);
-- every option positionally; NULL options mean "inherit from the workflow"
SELECT :step_cols FROM quantum_flow.add_step('defs_steps', 'audit', ARRAY['fetch'], 'single', NULL, 2, NULL, 3);
-- the returned row is a quantum_flow.workflow_steps row
SELECT pg_typeof(s), s.created_at IS NOT NULL AS has_created_at
FROM quantum_flow.add_step('defs_steps', 'fetch') s;
-- the stored edges (dep_slug -> step_slug)
SELECT dep_slug, step_slug FROM quantum_flow.workflow_step_dependencies_def
WHERE workflow_slug = 'defs_steps' ORDER BY step_slug, dep_slug;

-- idempotency: an identical definition returns the existing row (created_at included),
-- however its arguments are spelled
CREATE TEMP TABLE first_step AS
SELECT * FROM quantum_flow.workflow_steps WHERE workflow_slug = 'defs_steps' AND step_slug = 'merge';
SELECT s = f AS same_row
FROM quantum_flow.add_step('defs_steps', 'merge', ARRAY['each', 'fetch'],
                           max_attempts => 5, timeout => 90, base_delay => 0) s, first_step f;
SELECT s = f AS same_row
FROM quantum_flow.add_step('defs_steps', 'merge', '{each,fetch}', 'single', NULL, 5, 90, 0) s, first_step f;
SELECT :step_cols FROM quantum_flow.add_step('defs_steps', 'fetch', '{}', 'single', NULL, NULL, NULL, NULL);
SELECT :step_cols FROM quantum_flow.add_step('defs_steps', 'split', '{fetch}', step_type => 'map', initial_tasks => 10);
SELECT count(*) AS steps FROM quantum_flow.workflow_steps WHERE workflow_slug = 'defs_steps';

-- step_exists (23505): re-adding a step with a different definition
SELECT * INTO TEMP before_calls FROM defs_counts;
\set VERBOSITY sqlstate
SELECT quantum_flow.add_step('defs_steps', 'merge', ARRAY['each', 'fetch'], max_attempts => 4, timeout => 90, base_delay => 0);
\set VERBOSITY terse
SELECT quantum_flow.add_step('defs_steps', 'merge', ARRAY['each', 'fetch'], max_attempts => 4, timeout => 90, base_delay => 0);
-- step_exists: the same options but the overrides left out
SELECT quantum_flow.add_step('defs_steps', 'merge', ARRAY['each', 'fetch']);
-- step_exists: the same dependencies in another order
SELECT quantum_flow.add_step('defs_steps', 'merge', ARRAY['fetch', 'each'], max_attempts => 5, timeout => 90, base_delay => 0);
-- step_exists: another step type, another initial_tasks, another dependency list
SELECT quantum_flow.add_step('defs_steps', 'fetch', step_type => 'map');
SELECT quantum_flow.add_step('defs_steps', 'split', ARRAY['fetch'], 'map', 11);
SELECT quantum_flow.add_step('defs_steps', 'audit', ARRAY['split'], 'single', NULL, 2, NULL, 3);
-- nothing was written
SELECT n.*, n = b AS unchanged FROM defs_counts n, before_calls b;
DROP TABLE before_calls;

--
-- get_flow and list_flows
--

-- the workflow's columns plus its steps in step_index order, depends_on in the given order
SELECT jsonb_pretty(quantum_flow.get_flow('defs_steps') - 'created_at');
SELECT jsonb_pretty(quantum_flow.get_flow(workflow_slug => 'defs_minimal') - 'created_at');
-- created_at is there (it is masked above because it varies)
SELECT jsonb_typeof(quantum_flow.get_flow('defs_steps') -> 'created_at') AS created_at;
-- list_flows: every workflow, ordered by workflow_slug
SELECT :flow_cols FROM quantum_flow.list_flows();
SELECT pg_typeof(w) FROM quantum_flow.list_flows() w LIMIT 1;

-- workflow_not_found (P0002): get_flow of a workflow that does not exist
\set VERBOSITY sqlstate
SELECT quantum_flow.get_flow('defs_missing');
\set VERBOSITY terse
SELECT quantum_flow.get_flow('defs_missing');
-- workflow_not_found: lookups are exact, not case-insensitive
SELECT quantum_flow.get_flow('DEFS_STEPS');
-- workflow_not_found: add_step and delete_flow name a workflow that does not exist
SELECT * INTO TEMP before_calls FROM defs_counts;
SELECT quantum_flow.add_step('defs_missing', 'fetch');
SELECT quantum_flow.delete_flow('defs_missing');
SELECT n.*, n = b AS unchanged FROM defs_counts n, before_calls b;
DROP TABLE before_calls;

--
-- Definition errors, one violation per call. Each error code's first case shows its SQLSTATE.
-- Nothing is written by any of them.
--

SELECT :flow_cols FROM quantum_flow.create_flow('defs_rules');
SELECT :step_cols FROM quantum_flow.add_step('defs_rules', 'a');
SELECT :step_cols FROM quantum_flow.add_step('defs_rules', 'b');
SELECT :flow_cols FROM quantum_flow.create_flow('defs_other');
SELECT :step_cols FROM quantum_flow.add_step('defs_other', 'elsewhere');
SELECT * INTO TEMP before_calls FROM defs_counts;

-- invalid_workflow_slug (22023): a slug starting with a digit
\set VERBOSITY sqlstate
SELECT quantum_flow.create_flow('9lives');
\set VERBOSITY terse
SELECT quantum_flow.create_flow('9lives');

-- invalid_step_slug (22023): a step slug with a dash
\set VERBOSITY sqlstate
SELECT quantum_flow.add_step('defs_rules', 'bad-step');
\set VERBOSITY terse
SELECT quantum_flow.add_step('defs_rules', 'bad-step');
-- invalid_step_slug: `run` is reserved (it is a key of every step's input)
SELECT quantum_flow.add_step('defs_rules', 'run');
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['run']);
-- invalid_step_slug: a dependency that is not a valid slug
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a', 'bad-dep']);
-- null_argument: a NULL inside depends_on
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a', NULL]);

-- invalid_step_type (22023): step_type is 'single' or 'map', spelled exactly
\set VERBOSITY sqlstate
SELECT quantum_flow.add_step('defs_rules', 'c', step_type => 'parallel');
\set VERBOSITY terse
SELECT quantum_flow.add_step('defs_rules', 'c', step_type => 'parallel');
SELECT quantum_flow.add_step('defs_rules', 'c', step_type => 'MAP');
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a'], '');

-- dependency_not_found (23503): a dependency that is not a step of the workflow
\set VERBOSITY sqlstate
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a', 'nope']);
\set VERBOSITY terse
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a', 'nope']);
-- dependency_not_found: a step of another workflow does not count
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['elsewhere']);
-- dependency_not_found: dependency slugs are case-sensitive
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['A']);

-- self_dependency (23514): a step that depends on itself
\set VERBOSITY sqlstate
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a', 'c']);
\set VERBOSITY terse
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a', 'c']);

-- duplicate_dependency (23505): a dependency listed twice
\set VERBOSITY sqlstate
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a', 'b', 'a']);
\set VERBOSITY terse
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a', 'b', 'a']);

-- map_step_too_many_dependencies (23514): a map step with two dependencies
\set VERBOSITY sqlstate
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a', 'b'], 'map');
\set VERBOSITY terse
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a', 'b'], 'map');

-- invalid_option (22023): max_attempts 0 for a workflow
\set VERBOSITY sqlstate
SELECT quantum_flow.create_flow('defs_bad_options', max_attempts => 0);
\set VERBOSITY terse
SELECT quantum_flow.create_flow('defs_bad_options', max_attempts => 0);
-- invalid_option: zero and negative workflow options (base_delay 0 is valid, -1 is not)
SELECT quantum_flow.create_flow('defs_bad_options', max_attempts => -1);
SELECT quantum_flow.create_flow('defs_bad_options', timeout => 0);
SELECT quantum_flow.create_flow('defs_bad_options', timeout => -30);
SELECT quantum_flow.create_flow('defs_bad_options', base_delay => -1);
SELECT quantum_flow.create_flow('defs_bad_options', 3, 30, -2147483648);
-- invalid_option: zero and negative step options (base_delay 0 and initial_tasks 0 are valid)
SELECT quantum_flow.add_step('defs_rules', 'c', max_attempts => 0);
SELECT quantum_flow.add_step('defs_rules', 'c', max_attempts => -1);
SELECT quantum_flow.add_step('defs_rules', 'c', timeout => 0);
SELECT quantum_flow.add_step('defs_rules', 'c', timeout => -1);
SELECT quantum_flow.add_step('defs_rules', 'c', base_delay => -1);
SELECT quantum_flow.add_step('defs_rules', 'c', step_type => 'map', initial_tasks => -1);
-- invalid_option: initial_tasks on a single step, even 0
SELECT quantum_flow.add_step('defs_rules', 'c', initial_tasks => 5);
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a'], 'single', 0);

-- nothing was written by any of the refused calls above
SELECT n.*, n = b AS unchanged FROM defs_counts n, before_calls b;
SELECT step_slug FROM quantum_flow.workflow_steps WHERE workflow_slug = 'defs_rules' ORDER BY step_index;
SELECT count(*) AS defs_bad_options FROM quantum_flow.workflows WHERE workflow_slug = 'defs_bad_options';
DROP TABLE before_calls;

--
-- null_argument (22004): a NULL for any required argument of a definition function
--
SELECT * INTO TEMP before_calls FROM defs_counts;
\set VERBOSITY sqlstate
SELECT quantum_flow.create_flow(NULL);
\set VERBOSITY terse
SELECT quantum_flow.create_flow(NULL);
SELECT quantum_flow.create_flow('defs_nulls', NULL);
SELECT quantum_flow.create_flow('defs_nulls', 3, NULL);
SELECT quantum_flow.create_flow('defs_nulls', 3, 30, NULL);
SELECT quantum_flow.create_flow('defs_nulls', max_attempts => NULL);
SELECT quantum_flow.create_flow('defs_nulls', timeout => NULL);
SELECT quantum_flow.create_flow('defs_nulls', base_delay => NULL);
SELECT quantum_flow.add_step(NULL, 'c');
SELECT quantum_flow.add_step('defs_rules', NULL);
SELECT quantum_flow.add_step('defs_rules', 'c', NULL);
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['a'], NULL);
SELECT quantum_flow.add_step('defs_rules', 'c', depends_on => NULL);
SELECT quantum_flow.add_step('defs_rules', 'c', step_type => NULL);
SELECT quantum_flow.get_flow(NULL);
SELECT quantum_flow.delete_flow(NULL);
-- is_valid_slug(NULL) is false, not NULL and not an error
SELECT quantum_flow.is_valid_slug(NULL);
SELECT n.*, n = b AS unchanged FROM defs_counts n, before_calls b;
DROP TABLE before_calls;

--
-- Hostile and malformed slugs. Every refused call leaves the tables and pgmq.meta as they were.
--
SELECT * INTO TEMP before_calls FROM defs_counts;
-- quotes, whitespace, punctuation, an SQL fragment, non-ASCII letters, empty, too long
SELECT quantum_flow.create_flow('it''s');
SELECT quantum_flow.create_flow('say"hi"');
SELECT quantum_flow.create_flow('has space');
SELECT quantum_flow.create_flow(' leading_space');
SELECT quantum_flow.create_flow('dash-ed');
SELECT quantum_flow.create_flow('semi;colon');
SELECT quantum_flow.create_flow('x''; DROP TABLE quantum_flow.workflows; --');
SELECT quantum_flow.create_flow('qf_x; DROP EXTENSION pgmq CASCADE');
SELECT quantum_flow.create_flow('naïve');
SELECT quantum_flow.create_flow('');
SELECT quantum_flow.create_flow(repeat('w', 45));
-- the same strings as step slugs
SELECT quantum_flow.add_step('defs_rules', 'it''s');
SELECT quantum_flow.add_step('defs_rules', 'say"hi"');
SELECT quantum_flow.add_step('defs_rules', 'has space');
SELECT quantum_flow.add_step('defs_rules', 'semi;colon');
SELECT quantum_flow.add_step('defs_rules', 'x''; DROP TABLE quantum_flow.workflows; --');
SELECT quantum_flow.add_step('defs_rules', 'naïve');
SELECT quantum_flow.add_step('defs_rules', '');
SELECT quantum_flow.add_step('defs_rules', repeat('s', 64));
SELECT quantum_flow.add_step('defs_rules', 'c', ARRAY['x''; DROP TABLE quantum_flow.workflows; --']);
-- and as the workflow slug of add_step, get_flow and delete_flow
SELECT quantum_flow.add_step('x''; DROP TABLE quantum_flow.workflows; --', 'c');
SELECT quantum_flow.get_flow('x''; DROP TABLE quantum_flow.workflows; --');
SELECT quantum_flow.delete_flow('x''; DROP TABLE quantum_flow.workflows; --');
SELECT quantum_flow.get_flow('naïve');
SELECT quantum_flow.delete_flow(repeat('w', 45));
-- the tables are all there and nothing was written
SELECT n.*, n = b AS unchanged FROM defs_counts n, before_calls b;
DROP TABLE before_calls;

-- is_valid_slug on every one of them, with no side effects; it applies the workflow slug
-- limit (44), so a 63-character slug is valid only as a step slug
-- (slugs shown as JSON strings, so that "" and the tab are visible)
SELECT length(slug) AS len, to_jsonb(slug) AS slug, quantum_flow.is_valid_slug(slug)
FROM (VALUES (1, 'a'), (2, '_'), (3, 'A'), (4, 'ai_data_pipeline'), (5, 'Step_2'),
             (6, 'run'), (7, repeat('w', 44)), (8, repeat('w', 45)), (9, repeat('s', 63)),
             (10, repeat('s', 64)), (11, ''), (12, '9lives'), (13, 'it''s'), (14, 'say"hi"'),
             (15, 'has space'), (16, ' leading_space'), (17, 'dash-ed'), (18, 'semi;colon'),
             (19, 'x''; DROP TABLE quantum_flow.workflows; --'), (20, 'naïve'),
             (21, 'tab' || chr(9)), (22, 'dot.ted')) AS v(n, slug)
ORDER BY n;

-- a one-character slug is valid, as a workflow and as a step
SELECT :flow_cols FROM quantum_flow.create_flow('d');
SELECT :step_cols FROM quantum_flow.add_step('d', 'x');
SELECT quantum_flow.delete_flow('d');
-- a 44-character workflow slug is valid: its queue name is 47 characters, pgmq's maximum
SELECT length(workflow_slug) AS len FROM quantum_flow.create_flow(repeat('w', 44));
SELECT queue_name, length(queue_name) AS len FROM pgmq.meta WHERE queue_name = 'qf_' || repeat('w', 44);
-- a 63-character step slug is valid
SELECT length(step_slug) AS len, step_index FROM quantum_flow.add_step(repeat('w', 44), repeat('s', 63));
SELECT jsonb_pretty(quantum_flow.get_flow(repeat('w', 44)) - 'created_at');
SELECT quantum_flow.delete_flow(repeat('w', 44));
SELECT count(*) AS queues FROM pgmq.meta WHERE queue_name = 'qf_' || repeat('w', 44);
-- a 45-character workflow slug is refused by quantum_flow's own check (shown above), and a
-- 64-character step slug too; `run` is accepted as a workflow slug (it is only reserved
-- among step slugs)
SELECT :flow_cols FROM quantum_flow.create_flow('run');
SELECT quantum_flow.delete_flow('run');

--
-- delete_flow
--

-- delete_flow returns void, and removes the definition, its steps, edges and queue
SELECT quantum_flow.delete_flow('defs_steps');
SELECT quantum_flow.get_flow('defs_steps');
SELECT count(*) AS steps FROM quantum_flow.workflow_steps WHERE workflow_slug = 'defs_steps';
SELECT count(*) AS edges FROM quantum_flow.workflow_step_dependencies_def WHERE workflow_slug = 'defs_steps';
SELECT count(*) AS queues FROM pgmq.meta WHERE queue_name = 'qf_defs_steps';
-- deleting it again: workflow_not_found
SELECT quantum_flow.delete_flow('defs_steps');
-- named argument; then the slug can be created again, with other options, and gets a new queue
SELECT quantum_flow.delete_flow(workflow_slug => 'defs_named');
SELECT :flow_cols FROM quantum_flow.create_flow('defs_named', max_attempts => 2);
SELECT queue_name FROM pgmq.meta WHERE queue_name = 'qf_defs_named';
-- a slug differing only in case from a deleted workflow is free again
SELECT quantum_flow.delete_flow('defs_named');
SELECT :flow_cols FROM quantum_flow.create_flow('DEFS_Named');
SELECT queue_name FROM pgmq.meta WHERE queue_name = 'qf_defs_named';
SELECT quantum_flow.get_flow('defs_named');
SELECT quantum_flow.delete_flow('DEFS_Named');

-- clean up: delete every remaining defs_* workflow; no workflow, step, edge or qf_ queue is left
SELECT :flow_cols FROM quantum_flow.list_flows();
SELECT quantum_flow.delete_flow(workflow_slug) FROM quantum_flow.list_flows()
WHERE workflow_slug LIKE 'defs\_%' ORDER BY workflow_slug;
SELECT * FROM defs_counts;
SELECT count(*) AS qf_queues FROM pgmq.meta WHERE queue_name LIKE 'qf\_%';
