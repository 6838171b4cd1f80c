--
-- finish: after the update, a worker loop answers every task with the same step functions as
-- before the upgrade (upgrade_check.drive) until every run that was in flight has ended, within
-- 60 s. Then: exact final states, outputs and attempts; the runs that had ended before the
-- upgrade unchanged (but for how get_run now shows unfinished steps of a failed run); the
-- definitions unchanged; every queue empty; the new functions working on the upgraded data.
--
\set VERBOSITY terse
\pset null '(null)'

-- the worker: one poll per workflow per round, a commit after each; what it did goes to claims
CREATE TABLE upgrade_check.claims (run_id uuid, step_slug text, task_index int, attempt int, outcome text);
DO $$
DECLARE
    deadline constant timestamptz := clock_timestamp() + interval '60 seconds';
    slugs text[];
    slug text;
    got bigint;
    n bigint;
BEGIN
    SELECT array_agg(workflow_slug ORDER BY workflow_slug) INTO slugs FROM quantum_flow.list_flows();
    LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM upgrade_check.runs AS l
                              WHERE quantum_flow.get_run(l.run_id) ->> 'status' = 'started');
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'runs still started after 60 s: %',
                (SELECT string_agg(l.label, ', ' ORDER BY l.label) FROM upgrade_check.runs AS l
                 WHERE quantum_flow.get_run(l.run_id) ->> 'status' = 'started');
        END IF;
        got := 0;
        FOREACH slug IN ARRAY slugs LOOP
            INSERT INTO upgrade_check.claims SELECT * FROM upgrade_check.drive(slug);
            GET DIAGNOSTICS n = ROW_COUNT;
            got := got + n;
            COMMIT;
        END LOOP;
        IF got = 0 THEN
            PERFORM pg_sleep(0.1);
        END IF;
    END LOOP;
END
$$;

-- what the worker did, in order of label, task and attempt
SELECT l.label, c.step_slug, c.task_index, c.attempt, c.outcome
FROM upgrade_check.claims AS c JOIN upgrade_check.runs AS l USING (run_id)
ORDER BY l.label, c.step_slug, c.task_index, c.attempt;

-- every run: its status and error
SELECT l.label, l.before, r ->> 'status' AS status, r ->> 'error_message' AS error_message
FROM upgrade_check.runs AS l, quantum_flow.get_run(l.run_id) AS r
ORDER BY l.label;
-- the runs that were in flight: output, and each step's status, tasks, output and error
SELECT l.label, r ->> 'status' AS status, r -> 'output' AS output
FROM upgrade_check.runs AS l, quantum_flow.get_run(l.run_id) AS r
WHERE l.before = 'in flight'
ORDER BY l.label;
SELECT l.label, s ->> 'step_slug' AS step_slug, s ->> 'status' AS status,
       format('%s/%s', s ->> 'tasks_completed', s ->> 'tasks_total') AS tasks,
       s -> 'output' AS output, s ->> 'error_message' AS error_message
FROM upgrade_check.runs AS l, quantum_flow.get_run(l.run_id) AS r,
     jsonb_array_elements(r -> 'steps') WITH ORDINALITY AS x(s, i)
WHERE l.before = 'in flight'
ORDER BY l.label, x.i;
-- their tasks: each claimed once per attempt, no more
SELECT l.label, t.step_slug, t.task_index, t.status, t.attempts_count, t.error_message
FROM upgrade_check.runs AS l JOIN quantum_flow.step_tasks AS t ON t.run_id = l.run_id
WHERE l.before = 'in flight'
ORDER BY l.label, t.step_slug, t.task_index;

-- the runs that had ended before the upgrade: get_run as it was, but for the steps that a
-- failed run left unfinished, which get_run now shows as cancelled
SELECT b.label, b.doc = a.doc AS identical,
       (b.doc - 'steps') = (a.doc - 'steps') AS run_identical,
       (SELECT string_agg(format('%s (%s)', bs ->> 'step_slug', upgrade_check.changes(bs, s)), ', ' ORDER BY i)
        FROM jsonb_array_elements(b.doc -> 'steps') WITH ORDINALITY AS x(bs, i)
        JOIN jsonb_array_elements(a.doc -> 'steps') WITH ORDINALITY AS y(s, j) ON i = j
        WHERE bs <> s) AS step_changes
FROM upgrade_check.runs_before AS b
JOIN upgrade_check.runs AS l USING (label),
LATERAL (SELECT quantum_flow.get_run(l.run_id) AS doc) AS a
WHERE l.before <> 'in flight'
ORDER BY b.label;

-- the definitions: get_flow and list_flows as before the upgrade (but the keys it adds)
SELECT workflow_slug, upgrade_check.without_added(quantum_flow.get_flow(workflow_slug)) = doc AS get_flow_unchanged
FROM upgrade_check.flows_before ORDER BY workflow_slug;
SELECT (SELECT jsonb_agg(to_jsonb(f) - upgrade_check.added_columns()) FROM quantum_flow.list_flows() AS f) = doc
       AS list_flows_unchanged
FROM upgrade_check.list_before;

-- every queue is empty; what the runs' failures archived
SELECT workflow_slug, jsonb_array_length(upgrade_check.messages(workflow_slug)) AS queued_messages,
       jsonb_array_length(upgrade_check.messages(workflow_slug, 'a')) AS archived_messages
FROM quantum_flow.list_flows() ORDER BY workflow_slug;

-- a late answer for a task of the run cancelled under the previous version changes nothing
SELECT quantum_flow.complete_task(run_id, 'process_batch', 1, '{"processed": 4}', attempt => 1)
FROM upgrade_check.runs WHERE label = 'a4';

-- the new functions on the upgraded data
SELECT quantum_flow.maintain();
SELECT quantum_flow.prune_runs(older_than => '1 hour');

-- every run has ended: prune_runs deletes them all, those of the previous version too, with
-- their step states, tasks, counters and archived messages
SELECT quantum_flow.prune_runs(older_than => '0 seconds');
SELECT workflow_slug, jsonb_array_length(upgrade_check.messages(workflow_slug)) AS queued_messages,
       jsonb_array_length(upgrade_check.messages(workflow_slug, 'a')) AS archived_messages
FROM quantum_flow.list_flows() ORDER BY workflow_slug;
-- delete_flow removes a workflow made by the previous version with what is left of it
SELECT count(quantum_flow.delete_flow(workflow_slug)) AS deleted FROM quantum_flow.list_flows()
WHERE workflow_slug NOT IN ('ai_data_pipeline', 'claude_etl');
SELECT table_name, rows FROM upgrade_check.table_hashes() ORDER BY table_name;
SELECT queue_name FROM pgmq.meta WHERE queue_name LIKE 'qf\_%' ORDER BY 1;
-- DROP EXTENSION (its event trigger came with the update) drops the remaining workflows' queues
DROP EXTENSION quantum_flow;
SELECT count(*) AS queues_left FROM pgmq.meta WHERE queue_name LIKE 'qf\_%';
