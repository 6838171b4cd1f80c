--
-- compression: the runs' large jsonb values (a run's input and output, a step's output and
-- event payload, a task's array element and output) are stored with lz4 when the server was
-- built with it, and with the server's default_toast_compression otherwise. Both ways the
-- values read back exactly as written.
--
\set VERBOSITY terse
\pset null '(null)'

SELECT 'lz4' = ANY (enumvals) AS has_lz4
FROM pg_settings WHERE name = 'default_toast_compression' \gset
-- the method a compressed value of these columns has: lz4, or the server's default
SELECT CASE WHEN :'has_lz4'::boolean THEN 'lz4' ELSE current_setting('default_toast_compression') END AS method \gset

-- every jsonb column of the extension's tables: the six above set to lz4 (when the server has
-- it), the others (definitions) left to the server's default
SELECT c.relname, a.attname,
       a.attcompression = CASE WHEN :'has_lz4'::boolean AND (c.relname, a.attname) IN (
           ('runs', 'input'), ('runs', 'output'), ('step_states', 'output'),
           ('step_states', 'event_payload'), ('step_tasks', 'item'), ('step_tasks', 'output'))
         THEN 'l' ELSE '' END AS as_expected
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'quantum_flow'::regnamespace AND c.relkind = 'r'
  AND a.atttypid = 'jsonb'::regtype AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1, 2;

-- a root map over a 10,000-element input, then a step whose output is its whole input
SELECT workflow_slug FROM quantum_flow.create_flow('squeeze');
SELECT step_slug FROM quantum_flow.add_step('squeeze', 'items', step_type => 'map');
SELECT step_slug FROM quantum_flow.add_step('squeeze', 'echo', ARRAY['items']);
SELECT quantum_flow.start_flow('squeeze',
                               (SELECT jsonb_agg(jsonb_build_object('n', g, 'tag', 'element')) FROM generate_series(1, 10000) g),
                               run_id => '00000000-0000-0000-0000-0000000000c1') IS NOT NULL AS started;
SELECT pg_column_compression(input) = :'method' AS input_compressed,
       input = (SELECT jsonb_agg(jsonb_build_object('n', g, 'tag', 'element')) FROM generate_series(1, 10000) g)
         AS input_as_sent,
       input -> 9999 AS last_element
FROM quantum_flow.runs WHERE run_id = '00000000-0000-0000-0000-0000000000c1';

-- every task answers its element (polls of 1,000 until the map has completed: the polls
-- create its later fan-out chunks); then echo answers the map's output (10,000 elements)
CREATE FUNCTION pg_temp.answer_items(run uuid) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    total bigint := 0;
    n bigint;
BEGIN
    FOR round IN 1..100 LOOP
        EXIT WHEN (SELECT status = 'completed' FROM quantum_flow.step_states
                   WHERE run_id = run AND step_slug = 'items');
        SELECT count(*) FILTER (WHERE quantum_flow.complete_task(t.run_id, t.step_slug, t.task_index, t.input -> 'item'))
        INTO n FROM quantum_flow.poll_tasks('squeeze', 1000) AS t;
        total := total + n;
    END LOOP;
    RETURN total;
END $$;
SELECT pg_temp.answer_items('00000000-0000-0000-0000-0000000000c1') AS completed;
SELECT step_slug, quantum_flow.complete_task(run_id, step_slug, task_index, input -> 'items') AS completed
FROM quantum_flow.poll_tasks('squeeze', 1);

SELECT step_slug, pg_column_compression(output) = :'method' AS output_compressed
FROM quantum_flow.step_states WHERE run_id = '00000000-0000-0000-0000-0000000000c1' ORDER BY 1;
SELECT pg_column_compression(output) = :'method' AS task_output_compressed
FROM quantum_flow.step_tasks WHERE run_id = '00000000-0000-0000-0000-0000000000c1' AND step_slug = 'echo';
SELECT pg_column_compression(output) = :'method' AS run_output_compressed,
       output -> 'echo' = (SELECT input FROM quantum_flow.runs WHERE run_id = '00000000-0000-0000-0000-0000000000c1') AS output_is_input
FROM quantum_flow.runs WHERE run_id = '00000000-0000-0000-0000-0000000000c1';
SELECT r ->> 'status' AS status, jsonb_array_length(r -> 'output' -> 'echo') AS elements,
       r -> 'output' -> 'echo' -> 0 AS first_element
FROM quantum_flow.get_run('00000000-0000-0000-0000-0000000000c1') AS r;
SELECT quantum_flow.delete_flow('squeeze');
