--
-- update: a new connection to qf_upgrade once the CURRENT version's files are installed. Its
-- backend loads the current library, but the database's SQL objects are still the previous
-- version's: the API refuses to run (extension_version_mismatch, SQLSTATE 55000) and writes
-- nothing, until ALTER EXTENSION quantum_flow UPDATE. Then every table row and every queued
-- message is what it was, and the API answers in this same connection.
--
\set VERBOSITY terse
\pset null '(null)'
SELECT extversion FROM pg_extension WHERE extname = 'quantum_flow';
SELECT quantum_flow.get_flow('ai_data_pipeline');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM quantum_flow.poll_tasks('upgrade_inflight');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT quantum_flow.start_flow('claude_etl');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- is_valid_slug reads no table: it works before the update too
SELECT quantum_flow.is_valid_slug('claude_etl');

-- the update
SELECT source, target, path FROM pg_extension_update_paths('quantum_flow') WHERE path IS NOT NULL
ORDER BY source, target;
ALTER EXTENSION quantum_flow UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'quantum_flow';

-- every row of every table is what it was before the update, apart from the columns the
-- update adds, which are NULL
SELECT h.table_name, h.rows, h.md5 = b.md5 AS unchanged
FROM upgrade_check.table_hashes() AS h JOIN upgrade_check.tables_before AS b USING (table_name)
ORDER BY h.table_name;
-- the renumbered counter shards of unfinished map steps: each task is counted on the shard
-- (task_index / 4) % 64, each shard counts its completed tasks, and the step the tasks of its
-- full shards
SELECT count(*) AS unfinished_map_steps,
       count(*) FILTER (WHERE c.expected = c.shards) AS consistent
FROM (SELECT ss.run_id, ss.step_slug,
             (SELECT jsonb_agg(jsonb_build_array(e.shard, e.total, e.completed) ORDER BY e.shard)
              FROM (SELECT (t.task_index / 4) % 64 AS shard, count(*) AS total,
                           count(*) FILTER (WHERE t.status = 'completed') AS completed
                    FROM quantum_flow.step_tasks t
                    WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug GROUP BY 1) AS e)
             || jsonb_build_array(ss.tasks_completed) AS expected,
             (SELECT jsonb_agg(jsonb_build_array(sh.shard, sh.tasks_total, sh.tasks_completed) ORDER BY sh.shard)
              FROM quantum_flow.step_task_shards sh
              WHERE sh.run_id = ss.run_id AND sh.step_slug = ss.step_slug)
             || jsonb_build_array((SELECT coalesce(sum(sh.tasks_total), 0)
                                   FROM quantum_flow.step_task_shards sh
                                   WHERE sh.run_id = ss.run_id AND sh.step_slug = ss.step_slug
                                     AND sh.tasks_completed = sh.tasks_total)) AS shards
      FROM quantum_flow.step_states ss
      WHERE ss.status <> 'completed'
        AND EXISTS (SELECT 1 FROM quantum_flow.step_task_shards sh
                    WHERE sh.run_id = ss.run_id AND sh.step_slug = ss.step_slug)) AS c;
SELECT upgrade_check.added_columns() AS added_columns,
       (SELECT count(*) FROM quantum_flow.workflows WHERE description IS NOT NULL)
     + (SELECT count(*) FROM quantum_flow.workflow_steps WHERE description IS NOT NULL) AS not_null;
-- and so is every queue: each message (id, reads, visibility time, body) and each archive
SELECT workflow_slug, jsonb_array_length(messages) AS queued_messages,
       upgrade_check.messages(workflow_slug) = messages AS queue_unchanged,
       upgrade_check.messages(workflow_slug, 'a') = archived AS archive_unchanged
FROM upgrade_check.flows_before ORDER BY workflow_slug;

-- the API answers in this connection now: definitions as they were (get_flow and list_flows
-- also show the keys the update adds)
SELECT workflow_slug, upgrade_check.without_added(quantum_flow.get_flow(workflow_slug)) = doc AS get_flow_unchanged
FROM upgrade_check.flows_before ORDER BY workflow_slug;
SELECT (SELECT jsonb_agg(to_jsonb(f) - upgrade_check.added_columns()) FROM quantum_flow.list_flows() AS f) = doc
       AS list_flows_unchanged
FROM upgrade_check.list_before;
