--
-- row_rules: the CHECK constraints of the runtime tables (runs, step_states, step_tasks,
-- step_task_shards), one per table, calling the library's *_row_valid functions. Each
-- statement below is tried and undone; try() prints "ok" or the SQLSTATE and the constraint
-- it violated. The engine never writes such rows: these are the guards against a bug.
--
\set VERBOSITY terse
\pset null '(null)'

SELECT conrelid::regclass AS "table", conname, pg_get_constraintdef(oid) AS definition
FROM pg_constraint
WHERE contype = 'c'
  AND conrelid IN ('quantum_flow.runs'::regclass, 'quantum_flow.step_states'::regclass,
                   'quantum_flow.step_tasks'::regclass, 'quantum_flow.step_task_shards'::regclass)
ORDER BY 1, 2;

CREATE FUNCTION pg_temp.try(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text;
    constraint_name text;
BEGIN
    BEGIN
        EXECUTE statement;
        RAISE EXCEPTION USING ERRCODE = 'QFTRY';
    EXCEPTION
        WHEN SQLSTATE 'QFTRY' THEN RETURN 'ok';
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, constraint_name = CONSTRAINT_NAME;
            RETURN state || ' ' || constraint_name;
    END;
END $$;

SELECT workflow_slug FROM quantum_flow.create_flow('rules_map');
SELECT step_slug FROM quantum_flow.add_step('rules_map', 'items', step_type => 'map');
SELECT quantum_flow.start_flow('rules_map', '[1, 2, 3]',
                               run_id => '00000000-0000-0000-0000-0000000000a1') IS NOT NULL AS started;
SELECT count(*) AS claimed FROM quantum_flow.poll_tasks('rules_map', 1);

\set run '''00000000-0000-0000-0000-0000000000a1'''

-- runs: a known status, remaining_steps >= 0, completed_at exactly when completed,
-- failed_at exactly when failed, no remaining step once completed
SELECT statement, pg_temp.try(statement) AS result FROM (VALUES
    ('UPDATE quantum_flow.runs SET status = ''paused'' WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.runs SET status = ''running'' WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.runs SET remaining_steps = -1 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.runs SET completed_at = now() WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.runs SET status = ''failed'' WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.runs SET status = ''failed'', failed_at = now() WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.runs SET status = ''completed'', completed_at = now() WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.runs SET status = ''completed'', completed_at = now(), remaining_steps = 0 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1''')
) AS s(statement);

-- step_states: a known status, counters >= 0, 0 < fan_out_next < tasks_total, no more
-- tasks completed than there are, no remaining dependency past created (but skipped), every
-- task completed once completed; a NULL tasks_total leaves the last rule unknown, as in SQL
SELECT statement, pg_temp.try(statement) AS result FROM (VALUES
    ('UPDATE quantum_flow.step_states SET status = ''done'' WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_states SET tasks_completed = -1 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_states SET tasks_completed = 4 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_states SET tasks_total = -1, tasks_completed = 0 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_states SET remaining_deps = 1 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_states SET status = ''skipped'', remaining_deps = 1 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_states SET fan_out_next = 0 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_states SET fan_out_next = 3 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_states SET fan_out_next = 2 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_states SET status = ''completed'' WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_states SET status = ''completed'', tasks_completed = 3 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_states SET status = ''completed'', tasks_total = NULL WHERE run_id = ''00000000-0000-0000-0000-0000000000a1''')
) AS s(statement);

-- step_tasks: task_index >= 0, a known status, attempts >= 0, at least one attempt past
-- queued
SELECT statement, pg_temp.try(statement) AS result FROM (VALUES
    ('UPDATE quantum_flow.step_tasks SET task_index = -1 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'' AND task_index = 2'),
    ('UPDATE quantum_flow.step_tasks SET status = ''claimed'' WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'' AND task_index = 0'),
    ('UPDATE quantum_flow.step_tasks SET attempts_base = -1 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'' AND task_index = 0'),
    ('UPDATE quantum_flow.step_tasks SET attempts_count = 0 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'' AND task_index = 0'),
    ('UPDATE quantum_flow.step_tasks SET status = ''started'' WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'' AND task_index = 1'),
    ('UPDATE quantum_flow.step_tasks SET status = ''started'', attempts_count = 1 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'' AND task_index = 1'),
    ('UPDATE quantum_flow.step_tasks SET attempts_count = -1 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'' AND task_index = 2')
) AS s(statement);

-- step_task_shards: shard >= 0, tasks_total > 0, 0 <= tasks_completed <= tasks_total
SELECT statement, pg_temp.try(statement) AS result FROM (VALUES
    ('UPDATE quantum_flow.step_task_shards SET shard = -1 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_task_shards SET tasks_total = 0, tasks_completed = 0 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_task_shards SET tasks_completed = -1 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_task_shards SET tasks_completed = tasks_total + 1 WHERE run_id = ''00000000-0000-0000-0000-0000000000a1'''),
    ('UPDATE quantum_flow.step_task_shards SET tasks_completed = tasks_total WHERE run_id = ''00000000-0000-0000-0000-0000000000a1''')
) AS s(statement);

-- nothing above was kept: the run goes on
SELECT r.status, r.remaining_steps, s.status AS step_status, s.tasks_total, s.tasks_completed,
       (SELECT string_agg(t.status || ':' || t.attempts_count, ',' ORDER BY t.task_index)
        FROM quantum_flow.step_tasks t WHERE t.run_id = r.run_id) AS tasks
FROM quantum_flow.runs r JOIN quantum_flow.step_states s ON s.run_id = r.run_id
WHERE r.run_id = :run;
SELECT quantum_flow.cancel_run(:run);
SELECT quantum_flow.delete_flow('rules_map');
