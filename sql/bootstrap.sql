-- quantum_flow schema: definition tables (names fixed by the SQL contract) and runtime tables,
-- the three roles, and what pg_dump must keep. Everything lives in schema quantum_flow (set by
-- the control file). Functions come after this file (pgrx), grants in finalize.sql.
--
-- A fresh install must end up with exactly the catalogue an upgrade produces (the upgrade tier
-- compares them): add new columns at the end of their table, here and in the upgrade script.
--
-- The tables have no foreign keys between them. Only the extension's own functions write
-- them (no role has a privilege on them), each change happens in one transaction under the
-- locks the engine documents, and deletes name every table (delete_flow, prune_runs). With
-- foreign keys, pg_restore --jobs fails: it loads the data of an extension's tables in
-- parallel, in any order, while their constraints already exist.

------------------------------------------------------------------------------------------------
-- Preconditions and roles
------------------------------------------------------------------------------------------------

-- The API functions run as SECURITY DEFINER (as the role that creates this extension, a
-- superuser) and call pgmq's functions. Were pgmq owned by another role, that role could
-- replace pgmq's functions and have them run with our privileges.
DO $$
DECLARE
    pgmq_owner name;
    owner_is_superuser boolean;
BEGIN
    SELECT r.rolname, r.rolsuper INTO pgmq_owner, owner_is_superuser
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_roles r ON r.oid = e.extowner
    WHERE e.extname = 'pgmq';
    IF NOT coalesce(owner_is_superuser, false) THEN
        RAISE EXCEPTION 'quantum_flow: extension pgmq is owned by role %, which is not a superuser', pgmq_owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'quantum_flow''s functions call pgmq''s with elevated privileges; install pgmq as a superuser (CREATE EXTENSION quantum_flow CASCADE does).';
    END IF;
END
$$;

-- Three NOLOGIN roles, created where absent (roles belong to the cluster, not to a database,
-- so DROP EXTENSION leaves them). Grant them to your LOGIN roles; see the README's Operations.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['quantum_flow_client', 'quantum_flow_worker', 'quantum_flow_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a CREATE EXTENSION in another database
            END;
        END IF;
    END LOOP;
    -- quantum_flow_admin can do everything the other two can
    FOREACH role_name IN ARRAY ARRAY['quantum_flow_client', 'quantum_flow_worker'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                       WHERE m.roleid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = role_name)
                         AND m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'quantum_flow_admin')) THEN
            BEGIN
                EXECUTE pg_catalog.format('GRANT %I TO quantum_flow_admin', role_name);
            EXCEPTION WHEN unique_violation THEN
                NULL;  -- granted meanwhile by a CREATE EXTENSION in another database
            END;
        END IF;
    END LOOP;
END
$$;

-- Only the three roles may use the schema; the tables stay the owner's alone (no grants).
REVOKE ALL ON SCHEMA quantum_flow FROM PUBLIC;
GRANT USAGE ON SCHEMA quantum_flow TO quantum_flow_client, quantum_flow_worker, quantum_flow_admin;

------------------------------------------------------------------------------------------------
-- Definitions
------------------------------------------------------------------------------------------------

CREATE TABLE workflows (
    workflow_slug text PRIMARY KEY
        CONSTRAINT workflows_slug_format CHECK (workflow_slug ~ '^[a-zA-Z_][a-zA-Z0-9_]*$'
                                                AND length(workflow_slug) <= 44),
    max_attempts  int NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    timeout       int NOT NULL DEFAULT 30 CHECK (timeout >= 1),
    base_delay    int NOT NULL DEFAULT 1 CHECK (base_delay >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- free text from define_flow's document (0.2.0)
    description   text,
    -- seconds a run may take; past it the run fails with run_timeout (0.2.0)
    run_timeout   int CHECK (run_timeout >= 1),
    -- a top-level key of the flow input, and how many tasks of runs with the same value of it
    -- may be in the queue or claimed at once (0.2.0)
    concurrency_key text CHECK (length(concurrency_key) BETWEEN 1 AND 63),
    max_concurrency int CHECK (max_concurrency >= 1),
    CONSTRAINT workflows_concurrency CHECK ((concurrency_key IS NULL) = (max_concurrency IS NULL))
);
-- pgmq lower-cases queue table names, so two slugs that differ only in case would share a
-- queue: refuse them.
CREATE UNIQUE INDEX workflows_slug_lower_key ON workflows (lower(workflow_slug));

CREATE TABLE workflow_steps (
    workflow_slug text NOT NULL,
    step_slug     text NOT NULL
        CONSTRAINT workflow_steps_slug_format CHECK (step_slug ~ '^[a-zA-Z_][a-zA-Z0-9_]*$'
                                                     AND length(step_slug) <= 63
                                                     AND step_slug <> 'run'),
    step_type     text NOT NULL DEFAULT 'single' CHECK (step_type IN ('single', 'map', 'event')),
    step_index    int NOT NULL CHECK (step_index >= 0),
    deps_count    int NOT NULL DEFAULT 0 CHECK (deps_count >= 0),
    initial_tasks int CHECK (initial_tasks >= 0),
    max_attempts  int CHECK (max_attempts >= 1),
    timeout       int CHECK (timeout >= 1),
    base_delay    int CHECK (base_delay >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- free text from define_flow's document (0.2.0)
    description   text,
    -- the step runs only if its input contains if_matches and not if_not_matches (@>);
    -- otherwise it is skipped, skipped with its dependents, or fails the run (0.2.0)
    if_matches     jsonb,
    if_not_matches jsonb,
    when_unmet    text NOT NULL DEFAULT 'skip' CHECK (when_unmet IN ('skip', 'skip_cascade', 'fail')),
    -- seconds between the step becoming ready and its tasks becoming visible (0.2.0)
    start_delay   int CHECK (start_delay >= 0),
    -- the workflow whose runs the step's tasks are (a sub-flow step, 0.2.0)
    flow          text,
    PRIMARY KEY (workflow_slug, step_slug),
    UNIQUE (workflow_slug, step_index),
    CONSTRAINT workflow_steps_initial_tasks_on_map CHECK (step_type = 'map' OR initial_tasks IS NULL),
    CONSTRAINT workflow_steps_map_deps CHECK (step_type <> 'map' OR deps_count <= 1),
    CONSTRAINT workflow_steps_event_has_no_tasks
        CHECK (step_type <> 'event' OR (flow IS NULL AND start_delay IS NULL))
);

CREATE TABLE workflow_step_dependencies_def (
    workflow_slug text NOT NULL,
    dep_slug      text NOT NULL,
    step_slug     text NOT NULL,
    -- position in add_step's depends_on, so get_flow shows dependencies in the order given
    dep_index     int NOT NULL CHECK (dep_index >= 0),
    PRIMARY KEY (workflow_slug, dep_slug, step_slug),
    UNIQUE (workflow_slug, step_slug, dep_index),
    CHECK (dep_slug <> step_slug)
);

------------------------------------------------------------------------------------------------
-- Runtime: runs, per-run step states, tasks. Read them through get_run(); their shape may
-- change between versions.
--
-- Each of the four tables below has one CHECK constraint, <table>_valid, added by
-- sql/finalize.sql once its function exists: it calls a function of the library that checks
-- every rule written in the table's comments (src/engine/invariants.rs). PostgreSQL re-reads
-- SQL CHECK expressions from their stored text at every statement that writes the table; on
-- these tables, written at every call of the hot path, that was 14-16% of a complete_task.
------------------------------------------------------------------------------------------------

CREATE TABLE runs (
    run_id          uuid PRIMARY KEY,
    workflow_slug   text NOT NULL,
    -- started, paused, completed or failed; completed_at is set exactly when completed,
    -- failed_at exactly when failed
    status          text NOT NULL DEFAULT 'started',
    input           jsonb NOT NULL,
    output          jsonb,
    error_message   text,
    -- steps not completed yet (>= 0); the run completes when it reaches 0
    remaining_steps int NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at    timestamptz,
    failed_at       timestamptz,
    -- when the run fails with run_timeout (the workflow's run_timeout after it started) (0.2.0)
    deadline        timestamptz,
    -- a run scheduled with start_flow(..., start_at): its first tasks become visible then (0.2.0)
    start_at        timestamptz,
    -- the value of the workflow's concurrency_key in the input (NULL: not limited) (0.2.0)
    concurrency_value text,
    -- a child run started by a sub-flow step: that step's task (0.2.0)
    parent_run_id     uuid,
    parent_step_slug  text,
    parent_task_index int,
    -- the message that fails the run at its deadline (run_timeout)
    timer_message_id  bigint
);
-- add_step / delete_flow ask "does this workflow have a started run?", and delete_flow finds
-- the workflow's runs
CREATE INDEX runs_workflow_status_idx ON runs (workflow_slug, status);
-- prune_runs finds ended runs by when they ended
CREATE INDEX runs_ended_at_idx ON runs ((coalesce(completed_at, failed_at))) WHERE status IN ('completed', 'failed');
-- run_list, newest first
CREATE INDEX runs_started_at_idx ON runs (started_at);
-- cancel_run finds a run's child runs
CREATE INDEX runs_parent_idx ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

CREATE TABLE step_states (
    run_id          uuid NOT NULL,
    step_slug       text NOT NULL,
    workflow_slug   text NOT NULL,
    -- created, started, completed, failed or skipped; a completed step has completed all its
    -- tasks (tasks_completed = tasks_total)
    status          text NOT NULL DEFAULT 'created',
    -- dependencies not completed yet (>= 0); the step starts when it reaches 0, so a step
    -- that is neither created nor skipped has none
    remaining_deps  int NOT NULL,
    -- NULL until the step starts (a map step's count is known only then); >= 0
    tasks_total     int,
    -- >= 0, and at most tasks_total
    tasks_completed int NOT NULL DEFAULT 0,
    output          jsonb,
    error_message   text,
    started_at      timestamptz,
    completed_at    timestamptz,
    failed_at       timestamptz,
    -- an event step's event, when it arrived before the step was ready (0.2.0)
    event_payload   jsonb,
    event_at        timestamptz,
    -- a map step that fans out in chunks (quantum_flow.fan_out_chunk): the index of the next
    -- task to create (0 < fan_out_next < tasks_total); NULL once every task exists (0.2.0)
    fan_out_next    int,
    -- (workflow_slug, step_slug) names a workflow_steps row
    PRIMARY KEY (run_id, step_slug)
) WITH (fillfactor = 70);

CREATE TABLE step_tasks (
    run_id         uuid NOT NULL,
    step_slug      text NOT NULL,
    -- >= 0
    task_index     int NOT NULL,
    -- queued, started, completed or failed
    status         text NOT NULL DEFAULT 'queued',
    -- attempts made so far (>= 0), the current one included once claimed: a task past
    -- queued has made at least one
    attempts_count int NOT NULL DEFAULT 0,
    -- the pgmq message that carries this task (NULL: a sub-flow step's task, whose child run
    -- carries it, or a task waiting for its concurrency key's slot)
    message_id     bigint,
    -- a map task's array element, fixed at fan-out so polls never re-read the whole array
    item           jsonb,
    output         jsonb,
    error_message  text,
    worker_id      text,
    queued_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at     timestamptz,
    completed_at   timestamptz,
    failed_at      timestamptz,
    -- a sub-flow step's task: the child run of its current attempt (0.2.0)
    child_run_id   uuid,
    -- attempts made before retry_run started the task again (>= 0): max_attempts counts from
    -- here
    attempts_base  int NOT NULL DEFAULT 0,
    -- when error_message was last set (an attempt failed or timed out)
    last_error_at  timestamptz,
    PRIMARY KEY (run_id, step_slug, task_index)
) WITH (fillfactor = 70);
-- A map step's completed-task counter, split in shards ((task_index / 4) % shard count) so
-- that workers completing tasks of one step rarely wait for each other's commits, and a batch
-- of consecutive tasks locks a few shards; only the last completer of a shard adds the
-- shard's total to step_states.tasks_completed.
CREATE TABLE step_task_shards (
    run_id          uuid NOT NULL,
    step_slug       text NOT NULL,
    -- >= 0; tasks_total > 0; 0 <= tasks_completed <= tasks_total
    shard           int NOT NULL,
    tasks_total     int NOT NULL,
    tasks_completed int NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, step_slug, shard)
) WITH (fillfactor = 50);

-- No index mentions step_tasks.status or step_states' counters, and both tables leave room
-- in each page, so the hot path's updates (claim, complete, count) stay HOT updates.

-- The map steps whose fan-out is unfinished, by workflow: polls look here first (0.2.0).
CREATE INDEX step_states_fan_out_idx ON step_states (workflow_slug) WHERE fan_out_next IS NOT NULL;

-- Concurrency keys (0.2.0): for a workflow with a concurrency_key, at most max_concurrency
-- tasks of runs with the same key value have a message (queued, claimed or waiting for a
-- retry) at once. in_use counts them; the other ready tasks wait in waiting_tasks, oldest
-- first, and get their message when a task of the same key value ends. A key value's row
-- is deleted when its last task lets go of its slot with none waiting.
CREATE TABLE concurrency_slots (
    workflow_slug text NOT NULL,
    key_value     text NOT NULL,
    in_use        int NOT NULL DEFAULT 0 CHECK (in_use >= 0),
    PRIMARY KEY (workflow_slug, key_value)
);
CREATE TABLE waiting_tasks (
    workflow_slug text NOT NULL,
    key_value     text NOT NULL,
    queued_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    run_id        uuid NOT NULL,
    step_slug     text NOT NULL,
    task_index    int NOT NULL,
    -- the task's message is not visible before this (start_delay, start_at)
    not_before    timestamptz,
    PRIMARY KEY (workflow_slug, key_value, queued_at, run_id, step_slug, task_index)
);
-- a run's waiting tasks go when the run ends
CREATE INDEX waiting_tasks_run_idx ON waiting_tasks (run_id);

-- The large values of a run (its input, step outputs, map elements, event payloads) are
-- compressed with lz4 when the server was built with it (0.2.0): on a 100,000-element flow
-- input, start_flow took 83-85 ms instead of 109-112 with pglz. Without lz4 they keep the
-- server's default_toast_compression.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE runs ALTER COLUMN input SET COMPRESSION lz4,
                         ALTER COLUMN output SET COMPRESSION lz4;
        ALTER TABLE step_states ALTER COLUMN output SET COMPRESSION lz4,
                                ALTER COLUMN event_payload SET COMPRESSION lz4;
        ALTER TABLE step_tasks ALTER COLUMN item SET COMPRESSION lz4,
                               ALTER COLUMN output SET COMPRESSION lz4;
    END IF;
END
$$;

COMMENT ON TABLE workflows IS 'quantum_flow workflow definitions, one row per workflow';
COMMENT ON TABLE workflow_steps IS 'quantum_flow steps, one row per step of a workflow';
COMMENT ON TABLE workflow_step_dependencies_def IS 'quantum_flow step dependencies, one row per edge';
COMMENT ON TABLE runs IS 'quantum_flow runs (internal; read with get_run)';
COMMENT ON TABLE step_states IS 'quantum_flow per-run step states (internal; read with get_run)';
COMMENT ON TABLE step_tasks IS 'quantum_flow tasks (internal; read with get_run)';
COMMENT ON TABLE step_task_shards IS 'quantum_flow map-step completion counters (internal)';
COMMENT ON TABLE concurrency_slots IS 'quantum_flow tasks per concurrency key value (internal)';
COMMENT ON TABLE waiting_tasks IS 'quantum_flow tasks waiting for a concurrency slot (internal)';

-- Each step of each run as get_run and flow_graph show it (internal). In a run that failed,
-- the steps that had not finished show as cancelled (their rows keep the status they had:
-- every path that changes a step or task first checks that its run is started). A map step
-- that has not completed counts its completed tasks on its shards; a step that has not
-- started shows its expected task count (initial_tasks, or 1 for a single step).
CREATE VIEW step_progress AS
SELECT ss.run_id, ss.step_slug, ws.step_index, ws.step_type,
       CASE WHEN r.status = 'failed' AND ss.status IN ('created', 'started') THEN 'cancelled'
            ELSE ss.status END AS status,
       coalesce(ss.tasks_total, ws.initial_tasks, CASE WHEN ws.step_type <> 'map' THEN 1 END) AS tasks_total,
       CASE WHEN ss.status <> 'completed' AND ws.step_type = 'map'
            THEN (SELECT coalesce(sum(sh.tasks_completed), 0)::int FROM step_task_shards sh
                  WHERE sh.run_id = ss.run_id AND sh.step_slug = ss.step_slug)
            ELSE ss.tasks_completed END AS tasks_completed,
       ss.output,
       -- a step whose task is being retried shows that task's last error meanwhile
       coalesce(ss.error_message,
                CASE WHEN ss.status = 'started' AND r.status IN ('started', 'paused') THEN
                  (SELECT t.error_message FROM step_tasks t
                   WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug
                     AND t.status IN ('queued', 'started') AND t.error_message IS NOT NULL
                   ORDER BY t.last_error_at DESC NULLS LAST LIMIT 1) END) AS error_message,
       ss.started_at, ss.completed_at, ss.failed_at
FROM step_states ss
JOIN runs r ON r.run_id = ss.run_id
JOIN workflow_steps ws ON ws.workflow_slug = ss.workflow_slug AND ws.step_slug = ss.step_slug;

-- One row per run, for dashboards and alerts: status, progress and times. `steps_done` counts
-- completed and skipped steps; task counts add up the steps' (a map step's, once known).
CREATE VIEW run_list AS
SELECT r.run_id, r.workflow_slug, r.status, r.parent_run_id,
       r.started_at, r.start_at, r.deadline, r.completed_at, r.failed_at,
       coalesce(r.completed_at, r.failed_at, clock_timestamp()) - r.started_at AS duration,
       r.error_message,
       p.steps_total, p.steps_done, p.steps_started, p.tasks_total, p.tasks_completed
FROM runs r,
LATERAL (SELECT count(*) AS steps_total,
                count(*) FILTER (WHERE sp.status IN ('completed', 'skipped')) AS steps_done,
                count(*) FILTER (WHERE sp.status = 'started') AS steps_started,
                coalesce(sum(sp.tasks_total), 0) AS tasks_total,
                coalesce(sum(sp.tasks_completed), 0) AS tasks_completed
         FROM step_progress sp WHERE sp.run_id = r.run_id) p;

-- How long the workflow's oldest claimable task has been claimable, in seconds (NULL: none):
-- its current message in the workflow's queue is visible (vt, the time it became so: sent,
-- its retry backoff or start delay over, its claim timed out, its run's start_at reached or
-- its run resumed) and its run is started. Timers are not tasks; a paused run's tasks, a task waiting
-- for an event or for its concurrency slot, and a retry still backing off are not claimable.
-- (Internal: the view below reads it. Runs as its owner, who can read the queue.)
CREATE FUNCTION oldest_ready_task_seconds(workflow_slug text) RETURNS float8
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    queue_table text := 'q_qf_' || lower(workflow_slug);
    age float8;
BEGIN
    IF to_regclass(format('pgmq.%I', queue_table)) IS NULL THEN
        RETURN NULL;
    END IF;
    -- on pgmq's index of vt, bounded by now (a parameter, so that it bounds the scan rather
    -- than filters it): only visible messages are read, oldest first. A message counts when
    -- it is its task's current one, the task is unfinished and the run started.
    EXECUTE format(
        'SELECT extract(epoch FROM $1 - m.vt)::float8 FROM pgmq.%I m
         JOIN quantum_flow.step_tasks t
           ON t.run_id = CASE WHEN m.message->>''run_id'' ~ ''^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$''
                              THEN (m.message->>''run_id'')::uuid END
          AND t.step_slug = m.message->>''step_slug''
          AND t.task_index = CASE WHEN m.message->>''task_index'' ~ ''^[0-9]{1,9}$''
                                  THEN (m.message->>''task_index'')::int END
          AND t.message_id = m.msg_id AND t.status IN (''queued'', ''started'')
         JOIN quantum_flow.runs r ON r.run_id = t.run_id AND r.status = ''started''
         WHERE m.vt <= $1 AND NOT m.message ? ''timer''
         ORDER BY m.vt LIMIT 1', queue_table)
    INTO age USING clock_timestamp();
    RETURN age;
END
$$;

-- Per workflow, for dashboards and alerts: runs by status; tasks of live (started or paused)
-- runs that are queued (event steps' tasks wait for their event, not for a worker: not
-- counted) or claimed, and tasks failed for good in any run kept; how long the oldest
-- claimable task has been claimable (seconds); tasks completed in the last minute.
CREATE VIEW workflow_stats AS
SELECT w.workflow_slug,
       coalesce(rs.started, 0) AS runs_started, coalesce(rs.paused, 0) AS runs_paused,
       coalesce(rs.completed, 0) AS runs_completed, coalesce(rs.failed, 0) AS runs_failed,
       coalesce(ts.queued, 0) AS tasks_queued, coalesce(ts.started, 0) AS tasks_started,
       coalesce(tf.failed, 0) AS tasks_failed,
       oldest_ready_task_seconds(w.workflow_slug) AS oldest_queued_seconds,
       coalesce(tc.completed, 0) AS completed_last_minute
FROM workflows w
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE r.status = 'started') AS started,
           count(*) FILTER (WHERE r.status = 'paused') AS paused,
           count(*) FILTER (WHERE r.status = 'completed') AS completed,
           count(*) FILTER (WHERE r.status = 'failed') AS failed
    FROM runs r WHERE r.workflow_slug = w.workflow_slug) rs ON true
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE t.status = 'queued' AND ws.step_type <> 'event') AS queued,
           count(*) FILTER (WHERE t.status = 'started') AS started
    FROM runs r
    JOIN step_tasks t ON t.run_id = r.run_id
    JOIN workflow_steps ws ON ws.workflow_slug = r.workflow_slug AND ws.step_slug = t.step_slug
    WHERE r.workflow_slug = w.workflow_slug AND r.status IN ('started', 'paused')
      AND t.status IN ('queued', 'started')) ts ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS failed FROM runs r JOIN step_tasks t ON t.run_id = r.run_id
    WHERE r.workflow_slug = w.workflow_slug AND r.status = 'failed' AND t.status = 'failed') tf ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS completed FROM runs r JOIN step_tasks t ON t.run_id = r.run_id
    WHERE r.workflow_slug = w.workflow_slug
      AND (r.status IN ('started', 'paused')
           OR coalesce(r.completed_at, r.failed_at) > clock_timestamp() - interval '1 minute')
      AND t.completed_at > clock_timestamp() - interval '1 minute') tc ON true;

COMMENT ON VIEW run_list IS 'quantum_flow runs with status, progress and times (granted to quantum_flow_client)';
COMMENT ON VIEW workflow_stats IS 'quantum_flow runs and tasks per workflow (granted to quantum_flow_client)';

------------------------------------------------------------------------------------------------
-- Backups: pg_dump dumps the rows of these tables (their definitions come from CREATE
-- EXTENSION), as pgmq does for its own; the queues' tables are ordinary tables of schema pgmq
-- and are dumped with their messages.
------------------------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('workflows', '');
SELECT pg_catalog.pg_extension_config_dump('workflow_steps', '');
SELECT pg_catalog.pg_extension_config_dump('workflow_step_dependencies_def', '');
SELECT pg_catalog.pg_extension_config_dump('runs', '');
SELECT pg_catalog.pg_extension_config_dump('step_states', '');
SELECT pg_catalog.pg_extension_config_dump('step_tasks', '');
SELECT pg_catalog.pg_extension_config_dump('step_task_shards', '');
SELECT pg_catalog.pg_extension_config_dump('concurrency_slots', '');
SELECT pg_catalog.pg_extension_config_dump('waiting_tasks', '');
