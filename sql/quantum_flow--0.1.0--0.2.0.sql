-- quantum_flow 0.1.0 -> 0.2.0, run by ALTER EXTENSION quantum_flow UPDATE.
--
-- Keeps every definition, run, task and queued message. After it, the extension's catalogue
-- equals a fresh 0.2.0 install (the upgrade tier of `make test` checks that object by object),
-- so every statement here mirrors sql/bootstrap.sql, sql/finalize.sql or a function pgrx
-- generates from src/api. See the README's "Upgrades" for the rules of the next script.
\echo Use "ALTER EXTENSION quantum_flow UPDATE TO '0.2.0'" to load this file. \quit

------------------------------------------------------------------------------------------------
-- Preconditions and roles (as in bootstrap.sql)
------------------------------------------------------------------------------------------------

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

REVOKE ALL ON SCHEMA quantum_flow FROM PUBLIC;
GRANT USAGE ON SCHEMA quantum_flow TO quantum_flow_client, quantum_flow_worker, quantum_flow_admin;

------------------------------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------------------------------

-- 0.2.0's tables have no foreign keys between them (pg_restore --jobs loads an extension's
-- tables in parallel, in any order; see bootstrap.sql): drop the ones 0.1.0 created, by the
-- names PostgreSQL gave them. delete_flow and prune_runs of 0.2.0 delete from every table.
ALTER TABLE workflow_steps DROP CONSTRAINT workflow_steps_workflow_slug_fkey;
ALTER TABLE workflow_step_dependencies_def
    DROP CONSTRAINT workflow_step_dependencies_def_workflow_slug_dep_slug_fkey,
    DROP CONSTRAINT workflow_step_dependencies_def_workflow_slug_step_slug_fkey;
ALTER TABLE runs DROP CONSTRAINT runs_workflow_slug_fkey;
ALTER TABLE step_states DROP CONSTRAINT step_states_run_id_fkey;
ALTER TABLE step_tasks DROP CONSTRAINT step_tasks_run_id_step_slug_fkey;
ALTER TABLE step_task_shards DROP CONSTRAINT step_task_shards_run_id_step_slug_fkey;

CREATE INDEX runs_ended_at_idx ON runs ((coalesce(completed_at, failed_at))) WHERE status IN ('completed', 'failed');

-- define_flow documents keep their descriptions
ALTER TABLE workflows ADD COLUMN description text;
ALTER TABLE workflow_steps ADD COLUMN description text;

-- Flow control (contract group D): conditions, delays, events, sub-flows, run timeouts,
-- pause, retry and concurrency keys. New columns go at the ends of their tables, and changed
-- checks keep the names PostgreSQL gave them, as in a fresh install.
ALTER TABLE workflows
    ADD COLUMN run_timeout int CHECK (run_timeout >= 1),
    ADD COLUMN concurrency_key text CHECK (length(concurrency_key) BETWEEN 1 AND 63),
    ADD COLUMN max_concurrency int CHECK (max_concurrency >= 1),
    ADD CONSTRAINT workflows_concurrency CHECK ((concurrency_key IS NULL) = (max_concurrency IS NULL));

ALTER TABLE workflow_steps
    ADD COLUMN if_matches jsonb,
    ADD COLUMN if_not_matches jsonb,
    ADD COLUMN when_unmet text NOT NULL DEFAULT 'skip' CHECK (when_unmet IN ('skip', 'skip_cascade', 'fail')),
    ADD COLUMN start_delay int CHECK (start_delay >= 0),
    ADD COLUMN flow text,
    DROP CONSTRAINT workflow_steps_step_type_check,
    ADD CONSTRAINT workflow_steps_step_type_check CHECK (step_type IN ('single', 'map', 'event')),
    DROP CONSTRAINT workflow_steps_map_deps,
    ADD CONSTRAINT workflow_steps_map_deps CHECK (step_type <> 'map' OR deps_count <= 1),
    ADD CONSTRAINT workflow_steps_event_has_no_tasks
        CHECK (step_type <> 'event' OR (flow IS NULL AND start_delay IS NULL));

-- The four runtime tables' CHECK constraints, one per rule, become one per table that calls
-- a function of the library (runs_valid and the others, added at the end of this script once
-- the functions exist); the rules are those of 0.1.0 with the new statuses (paused, skipped)
-- and columns (fan_out_next, attempts_base).
ALTER TABLE runs
    DROP CONSTRAINT runs_status_check,
    DROP CONSTRAINT runs_remaining_steps_check,
    DROP CONSTRAINT runs_check,
    DROP CONSTRAINT runs_check1,
    DROP CONSTRAINT runs_check2,
    ADD COLUMN deadline timestamptz,
    ADD COLUMN start_at timestamptz,
    ADD COLUMN concurrency_value text,
    ADD COLUMN parent_run_id uuid,
    ADD COLUMN parent_step_slug text,
    ADD COLUMN parent_task_index int,
    ADD COLUMN timer_message_id bigint;
CREATE INDEX runs_started_at_idx ON runs (started_at);
CREATE INDEX runs_parent_idx ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

ALTER TABLE step_states
    DROP CONSTRAINT step_states_status_check,
    DROP CONSTRAINT step_states_remaining_deps_check,
    DROP CONSTRAINT step_states_tasks_total_check,
    DROP CONSTRAINT step_states_tasks_completed_check,
    DROP CONSTRAINT step_states_check,
    DROP CONSTRAINT step_states_check1,
    DROP CONSTRAINT step_states_check2,
    ADD COLUMN event_payload jsonb,
    ADD COLUMN event_at timestamptz,
    ADD COLUMN fan_out_next int;
-- The map steps whose fan-out is unfinished (0.1.0 created every task at once: none are).
CREATE INDEX step_states_fan_out_idx ON step_states (workflow_slug) WHERE fan_out_next IS NOT NULL;

ALTER TABLE step_tasks
    DROP CONSTRAINT step_tasks_task_index_check,
    DROP CONSTRAINT step_tasks_status_check,
    DROP CONSTRAINT step_tasks_attempts_count_check,
    DROP CONSTRAINT step_tasks_check,
    ALTER COLUMN message_id DROP NOT NULL,
    ADD COLUMN child_run_id uuid,
    ADD COLUMN attempts_base int NOT NULL DEFAULT 0,
    ADD COLUMN last_error_at timestamptz;
ALTER TABLE step_task_shards
    DROP CONSTRAINT step_task_shards_shard_check,
    DROP CONSTRAINT step_task_shards_tasks_total_check,
    DROP CONSTRAINT step_task_shards_tasks_completed_check,
    DROP CONSTRAINT step_task_shards_check;

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

-- lz4 for the runs' large values, when the server has it, as a fresh install sets it (see
-- bootstrap.sql). Values stored before keep their compression until they are written again.
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

------------------------------------------------------------------------------------------------
-- Functions: the API becomes SECURITY DEFINER with a pinned search_path; the new ones
------------------------------------------------------------------------------------------------

ALTER FUNCTION cancel_run(uuid, text) SECURITY DEFINER SET search_path TO pg_catalog, pg_temp;
ALTER FUNCTION complete_task(uuid, text, integer, jsonb, integer)
    SECURITY DEFINER SET search_path TO pg_catalog, pg_temp;
ALTER FUNCTION delete_flow(text) SECURITY DEFINER SET search_path TO pg_catalog, pg_temp;
ALTER FUNCTION get_flow(text) SECURITY DEFINER SET search_path TO pg_catalog, pg_temp;
ALTER FUNCTION list_flows() SECURITY DEFINER SET search_path TO pg_catalog, pg_temp;
ALTER FUNCTION poll_tasks(text, integer, integer, text)
    SECURITY DEFINER SET search_path TO pg_catalog, pg_temp;

-- Functions with new arguments (group D): dropped and created with their 0.2.0 signatures.
DROP FUNCTION create_flow(text, integer, integer, integer);
DROP FUNCTION add_step(text, text, text[], text, integer, integer, integer, integer);
DROP FUNCTION start_flow(text, jsonb, uuid);
DROP FUNCTION fail_task(uuid, text, integer, text, integer);
DROP FUNCTION get_run(uuid);

CREATE FUNCTION "get_run"(
	"run_id" uuid,
	"include_tasks" bool DEFAULT false
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'get_run_v2_wrapper';

CREATE FUNCTION "wait_run"(
	"run_id" uuid,
	"max_wait_ms" INT DEFAULT 60000
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'wait_run_wrapper';

CREATE FUNCTION "metrics"() RETURNS TEXT
STRICT SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'metrics_wrapper';

CREATE FUNCTION "create_flow"(
	"workflow_slug" TEXT,
	"max_attempts" INT DEFAULT 3,
	"timeout" INT DEFAULT 30,
	"base_delay" INT DEFAULT 1,
	"run_timeout" INT DEFAULT NULL,
	"concurrency_key" TEXT DEFAULT NULL,
	"max_concurrency" INT DEFAULT NULL
) RETURNS workflows
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'create_flow_v2_wrapper';

CREATE FUNCTION "add_step"(
	"workflow_slug" TEXT,
	"step_slug" TEXT,
	"depends_on" TEXT[] DEFAULT '{}',
	"step_type" TEXT DEFAULT 'single',
	"initial_tasks" INT DEFAULT NULL,
	"max_attempts" INT DEFAULT NULL,
	"timeout" INT DEFAULT NULL,
	"base_delay" INT DEFAULT NULL,
	"if_matches" jsonb DEFAULT NULL,
	"if_not_matches" jsonb DEFAULT NULL,
	"when_unmet" TEXT DEFAULT 'skip',
	"start_delay" INT DEFAULT NULL,
	"flow" TEXT DEFAULT NULL
) RETURNS workflow_steps
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'add_step_v2_wrapper';

CREATE FUNCTION "start_flow"(
	"workflow_slug" TEXT,
	"input" jsonb DEFAULT '{}',
	"run_id" uuid DEFAULT NULL,
	"start_at" timestamp with time zone DEFAULT NULL
) RETURNS uuid
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'start_flow_v2_wrapper';

CREATE FUNCTION "fail_task"(
	"run_id" uuid,
	"step_slug" TEXT,
	"task_index" INT,
	"error_message" TEXT,
	"attempt" INT DEFAULT NULL,
	"retry" bool DEFAULT true
) RETURNS TEXT
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'fail_task_v2_wrapper';

CREATE FUNCTION "complete_tasks"(
	"run_ids" uuid[],
	"step_slugs" TEXT[],
	"task_indexes" INT[],
	"outputs" jsonb[],
	"attempts" INT[] DEFAULT NULL
) RETURNS bool[]
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'complete_tasks_wrapper';

CREATE FUNCTION "start_flows"(
	"workflow_slug" TEXT,
	"inputs" jsonb[],
	"run_ids" uuid[] DEFAULT NULL
) RETURNS uuid[]
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'start_flows_wrapper';

CREATE FUNCTION "pause_run"(
	"run_id" uuid
) RETURNS bool
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'pause_run_wrapper';

CREATE FUNCTION "resume_run"(
	"run_id" uuid
) RETURNS bool
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'resume_run_wrapper';

CREATE FUNCTION "retry_run"(
	"run_id" uuid
) RETURNS bool
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'retry_run_wrapper';

CREATE FUNCTION "send_event"(
	"run_id" uuid,
	"step_slug" TEXT,
	"payload" jsonb DEFAULT '{}'
) RETURNS bool
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'send_event_wrapper';

CREATE FUNCTION "jsonb_raw_size"(
	"value" jsonb
) RETURNS bigint
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'jsonb_raw_size_wrapper';

-- The functions of the runtime tables' CHECK constraints (added below, after the data is
-- migrated): internal, granted to no role.
CREATE FUNCTION "run_row_valid"(
	"status" TEXT,
	"remaining_steps" INT,
	"completed_at" timestamp with time zone,
	"failed_at" timestamp with time zone
) RETURNS bool
IMMUTABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'run_row_valid_wrapper';

CREATE FUNCTION "step_state_row_valid"(
	"status" TEXT,
	"remaining_deps" INT,
	"tasks_total" INT,
	"tasks_completed" INT,
	"fan_out_next" INT
) RETURNS bool
IMMUTABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'step_state_row_valid_wrapper';

CREATE FUNCTION "step_task_row_valid"(
	"task_index" INT,
	"status" TEXT,
	"attempts_count" INT,
	"attempts_base" INT
) RETURNS bool
IMMUTABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'step_task_row_valid_wrapper';

CREATE FUNCTION "task_shard_row_valid"(
	"shard" INT,
	"tasks_total" INT,
	"tasks_completed" INT
) RETURNS bool
IMMUTABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'task_shard_row_valid_wrapper';

CREATE FUNCTION "maintain"() RETURNS jsonb
STRICT SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'maintain_wrapper';

CREATE FUNCTION "prune_runs"(
	"older_than" interval DEFAULT '7 days',
	"keep_failed" bool DEFAULT false,
	"max_runs" INT DEFAULT 10000
) RETURNS bigint
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'prune_runs_wrapper';

CREATE FUNCTION "validate_flow"(
	"definition" jsonb
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'validate_flow_wrapper';

CREATE FUNCTION "define_flow"(
	"definition" jsonb
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'define_flow_wrapper';

CREATE FUNCTION "export_flow"(
	"workflow_slug" TEXT
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'export_flow_wrapper';

CREATE FUNCTION "flow_graph"(
	"workflow_slug" TEXT,
	"format" TEXT DEFAULT 'mermaid',
	"run_id" uuid DEFAULT NULL
) RETURNS TEXT
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'flow_graph_wrapper';

CREATE FUNCTION "flow_schema"() RETURNS jsonb
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'flow_schema_wrapper';

------------------------------------------------------------------------------------------------
-- Privileges and the DROP EXTENSION hook (as in finalize.sql)
------------------------------------------------------------------------------------------------

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA quantum_flow FROM PUBLIC;

-- quantum_flow_client: start, watch and steer runs, send events, read definitions
GRANT EXECUTE ON FUNCTION
    start_flow(text, jsonb, uuid, timestamptz),
    start_flows(text, jsonb[], uuid[]),
    get_run(uuid, boolean),
    cancel_run(uuid, text),
    pause_run(uuid),
    resume_run(uuid),
    retry_run(uuid),
    send_event(uuid, text, jsonb),
    list_flows(),
    get_flow(text),
    is_valid_slug(text),
    export_flow(text),
    validate_flow(jsonb),
    flow_graph(text, text, uuid),
    flow_schema(),
    wait_run(uuid, integer),
    metrics(),
    oldest_ready_task_seconds(text)
TO quantum_flow_client;
GRANT SELECT ON run_list, workflow_stats TO quantum_flow_client;

-- quantum_flow_worker: claim tasks and report their outcome
GRANT EXECUTE ON FUNCTION
    poll_tasks(text, integer, integer, text),
    complete_task(uuid, text, integer, jsonb, integer),
    complete_tasks(uuid[], text[], integer[], jsonb[], integer[]),
    fail_task(uuid, text, integer, text, integer, boolean),
    send_event(uuid, text, jsonb),
    is_valid_slug(text)
TO quantum_flow_worker;

-- quantum_flow_admin (also a member of the two roles above): definitions and housekeeping
GRANT EXECUTE ON FUNCTION
    create_flow(text, integer, integer, integer, integer, text, integer),
    add_step(text, text, text[], text, integer, integer, integer, integer, jsonb, jsonb, text, integer, text),
    delete_flow(text),
    define_flow(jsonb),
    prune_runs(interval, boolean, integer),
    maintain()
TO quantum_flow_admin;

CREATE FUNCTION on_drop_extension() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'quantum_flow_on_drop_extension';
REVOKE EXECUTE ON FUNCTION on_drop_extension() FROM PUBLIC;
CREATE EVENT TRIGGER quantum_flow_drop_extension ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION on_drop_extension();

-- 0.2.0 counts map task i on counter shard (i / 4) % 64 instead of i % 32, so that a batch of
-- consecutive tasks locks a few shards, not all of them. The shards of every map step that has
-- not completed (in flight, or failed and so retryable) are rebuilt from its tasks, under new
-- numbers first (64 and up) so that no key is taken twice, and its step's count of tasks in
-- full shards with them.
INSERT INTO step_task_shards (run_id, step_slug, shard, tasks_total, tasks_completed)
SELECT t.run_id, t.step_slug, 64 + (t.task_index / 4) % 64, count(*),
       count(*) FILTER (WHERE t.status = 'completed')
FROM step_states ss
JOIN step_tasks t ON t.run_id = ss.run_id AND t.step_slug = ss.step_slug
WHERE ss.status <> 'completed'
  AND EXISTS (SELECT 1 FROM step_task_shards sh WHERE sh.run_id = ss.run_id AND sh.step_slug = ss.step_slug)
GROUP BY 1, 2, 3;
DELETE FROM step_task_shards sh USING step_states ss
WHERE ss.run_id = sh.run_id AND ss.step_slug = sh.step_slug AND ss.status <> 'completed'
  AND sh.shard < 64;
UPDATE step_task_shards SET shard = shard - 64 WHERE shard >= 64;
UPDATE step_states ss SET tasks_completed = x.n
FROM (SELECT run_id, step_slug,
             coalesce(sum(tasks_total) FILTER (WHERE tasks_completed = tasks_total), 0)::int AS n
      FROM step_task_shards GROUP BY 1, 2) x
WHERE ss.run_id = x.run_id AND ss.step_slug = x.step_slug AND ss.status <> 'completed';

-- The runtime tables' row rules, one CHECK constraint per table (see sql/finalize.sql); adding
-- them checks every row the update kept.
ALTER TABLE runs ADD CONSTRAINT runs_valid
    CHECK (run_row_valid(status, remaining_steps, completed_at, failed_at));
ALTER TABLE step_states ADD CONSTRAINT step_states_valid
    CHECK (step_state_row_valid(status, remaining_deps, tasks_total, tasks_completed, fan_out_next));
ALTER TABLE step_tasks ADD CONSTRAINT step_tasks_valid
    CHECK (step_task_row_valid(task_index, status, attempts_count, attempts_base));
ALTER TABLE step_task_shards ADD CONSTRAINT step_task_shards_valid
    CHECK (task_shard_row_valid(shard, tasks_total, tasks_completed));

-- The hot path's plans are fixed: generic, with index lookups and nested loops only. Its
-- statements are prepared once per session and find every row by key, so one plan fits every
-- call. Left to choose, PostgreSQL re-plans the larger ones (complete_task's) on every call,
-- which costs more than running them; and a generic plan made while a table was still small
-- (a fresh install's first runs) would scan and hash the whole table on every call until the
-- next ANALYZE. Statements outside these functions plan as usual.
ALTER FUNCTION poll_tasks(text, integer, integer, text)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION complete_task(uuid, text, integer, jsonb, integer)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION complete_tasks(uuid[], text[], integer[], jsonb[], integer[])
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION fail_task(uuid, text, integer, text, integer, boolean)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION start_flow(text, jsonb, uuid, timestamptz)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION start_flows(text, jsonb[], uuid[])
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;
