-- quantum_flow: privileges and the DROP EXTENSION hook, after every function exists.
--
-- Every API function runs as SECURITY DEFINER with a pinned search_path, so a role needs no
-- privilege on the tables or on pgmq: EXECUTE on the functions its role lists is enough.
-- Nothing is granted to PUBLIC.

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

-- The row rules of the hot tables (see sql/bootstrap.sql): one CHECK constraint per table,
-- whose stored expression, which PostgreSQL parses again at every statement that writes the
-- table, is one call of a function of the library (src/engine/invariants.rs) instead of one
-- expression per rule.
ALTER TABLE runs ADD CONSTRAINT runs_valid
    CHECK (run_row_valid(status, remaining_steps, completed_at, failed_at));
ALTER TABLE step_states ADD CONSTRAINT step_states_valid
    CHECK (step_state_row_valid(status, remaining_deps, tasks_total, tasks_completed, fan_out_next));
ALTER TABLE step_tasks ADD CONSTRAINT step_tasks_valid
    CHECK (step_task_row_valid(task_index, status, attempts_count, attempts_base));
ALTER TABLE step_task_shards ADD CONSTRAINT step_task_shards_valid
    CHECK (task_shard_row_valid(shard, tasks_total, tasks_completed));

-- DROP EXTENSION quantum_flow drops the workflows' pgmq queues first (they are pgmq's tables,
-- not this extension's, so nothing else would), and says that the roles stay.
CREATE FUNCTION on_drop_extension() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'quantum_flow_on_drop_extension';
REVOKE EXECUTE ON FUNCTION on_drop_extension() FROM PUBLIC;
CREATE EVENT TRIGGER quantum_flow_drop_extension ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION on_drop_extension();
