-- Event steps (contract group D): a step without worker tasks that send_event completes with
-- its payload; events sent before, while and after the step is ready; duplicates; the event
-- timeout.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.steps(run uuid) RETURNS TABLE (step_slug text, status text, output jsonb, error_message text)
LANGUAGE sql AS $$
    SELECT s->>'step_slug', s->>'status', s->'output', s->>'error_message'
    FROM jsonb_array_elements(quantum_flow.get_run(run)->'steps') s
$$;
-- prepare -> approval (event) -> publish
SELECT workflow_slug FROM quantum_flow.create_flow('ev');
SELECT step_slug FROM quantum_flow.add_step('ev', 'prepare');
SELECT step_slug, step_type, timeout FROM quantum_flow.add_step('ev', 'approval', ARRAY['prepare'], 'event', timeout => 3600);
SELECT step_slug FROM quantum_flow.add_step('ev', 'publish', ARRAY['approval']);

-- an event while the step is ready (waiting): it completes with the payload at once, and
-- publish receives it under the step's key
SELECT quantum_flow.start_flow('ev', '{"doc": 7}', 'e0000000-0000-0000-0000-000000000001');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '"draft"') FROM quantum_flow.poll_tasks('ev');
SELECT * FROM pg_temp.steps('e0000000-0000-0000-0000-000000000001');
-- workers get nothing for the event step; its timer waits in the queue, hidden for an hour
SELECT count(*) AS claimable FROM quantum_flow.poll_tasks('ev');
SELECT message->>'timer' AS timer, message->>'step_slug' AS step_slug, vt > now() + interval '59 minutes' AS hidden_for_an_hour
FROM pgmq.q_qf_ev;
-- flow_graph shows the step waiting for its event
SELECT quantum_flow.flow_graph('ev', 'mermaid', 'e0000000-0000-0000-0000-000000000001');
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000001', 'approval', '{"approved_by": "ana"}');
SELECT count(*) AS timers_left FROM pgmq.q_qf_ev WHERE message ? 'timer';
SELECT step_slug, input FROM quantum_flow.poll_tasks('ev');
-- a duplicate event changes nothing
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000001', 'approval', '{"approved_by": "bo"}');
SELECT * FROM pg_temp.steps('e0000000-0000-0000-0000-000000000001');

-- an event before the step is ready is kept, and completes it the moment it becomes ready
SELECT quantum_flow.start_flow('ev', '{"doc": 8}', 'e0000000-0000-0000-0000-000000000002');
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000002', 'approval', '{"approved_by": "early"}');
-- a second early event is a duplicate
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000002', 'approval', '{"approved_by": "later"}');
SELECT * FROM pg_temp.steps('e0000000-0000-0000-0000-000000000002');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '"draft 2"')
FROM quantum_flow.poll_tasks('ev') WHERE run_id = 'e0000000-0000-0000-0000-000000000002';
SELECT * FROM pg_temp.steps('e0000000-0000-0000-0000-000000000002');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '"published"') FROM quantum_flow.poll_tasks('ev');
SELECT r->>'status' AS status, r->'output' AS output FROM quantum_flow.get_run('e0000000-0000-0000-0000-000000000002') r;
-- an event after the run completed changes nothing
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000002', 'approval', '{}');

-- errors: no such run, no such step (with a hint), not an event step, NULLs; nothing written
\set VERBOSITY sqlstate
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-00000000dead', 'approval', '{}');
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000001', 'aproval', '{}');
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000001', 'publish', '{}');
\set VERBOSITY terse
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-00000000dead', 'approval', '{}');
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000001', 'aproval', '{}');
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000001', 'publish', '{}');
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000001', 'bad slug', '{}');
SELECT quantum_flow.send_event(NULL, 'approval', '{}');
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000001', NULL, '{}');
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000001', 'approval', NULL);

-- the event timeout counts from when the step becomes ready; past it the run fails with
-- event_timeout (not retried), found by a poll or by maintain()
SELECT workflow_slug FROM quantum_flow.create_flow('ev_late', max_attempts => 5);
SELECT step_slug FROM quantum_flow.add_step('ev_late', 'callback', step_type => 'event', timeout => 1);
SELECT step_slug FROM quantum_flow.add_step('ev_late', 'after', ARRAY['callback']);
SELECT quantum_flow.start_flow('ev_late', '{}', 'e0000000-0000-0000-0000-000000000003');
SELECT quantum_flow.start_flow('ev_late', '{}', 'e0000000-0000-0000-0000-000000000004');
SELECT pg_sleep(1.2);
SELECT count(*) AS claimed FROM quantum_flow.poll_tasks('ev_late', 1);
SELECT quantum_flow.maintain() - 'workflows' AS report;
SELECT r->>'run_id' AS run_id, r->>'status' AS status, r->>'error_message' AS error_message
FROM (VALUES ('e0000000-0000-0000-0000-000000000003'::uuid), ('e0000000-0000-0000-0000-000000000004')) v(id),
     quantum_flow.get_run(v.id) r;
SELECT * FROM pg_temp.steps('e0000000-0000-0000-0000-000000000003');
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000003', 'callback', '{}');
SELECT count(*) AS in_queue FROM pgmq.q_qf_ev_late;

-- an event step can be skipped by its condition: events for it are then refused
SELECT workflow_slug FROM quantum_flow.create_flow('ev_cond');
SELECT step_slug FROM quantum_flow.add_step('ev_cond', 'gate', step_type => 'event', if_matches => '{"run": {"needs_review": true}}');
SELECT quantum_flow.start_flow('ev_cond', '{"needs_review": false}', 'e0000000-0000-0000-0000-000000000005');
SELECT quantum_flow.send_event('e0000000-0000-0000-0000-000000000005', 'gate', '{}');
SELECT r->>'status' AS status, r->'output' AS output FROM quantum_flow.get_run('e0000000-0000-0000-0000-000000000005') r;

-- a run scheduled for later: its event step's timeout counts from the run's start_at
SELECT workflow_slug FROM quantum_flow.create_flow('ev_later', timeout => 30);
SELECT step_slug FROM quantum_flow.add_step('ev_later', 'approve', step_type => 'event');
SELECT quantum_flow.start_flow('ev_later', '{}', 'e7000000-0000-0000-0000-0000000000a1',
                               start_at => now() + interval '1 hour') IS NOT NULL AS scheduled;
SELECT vt - now() BETWEEN interval '1 hour 25 seconds' AND interval '1 hour 31 seconds' AS times_out_30s_after_start_at
FROM pgmq.q_qf_ev_later WHERE message->>'timer' = 'event_timeout';

-- definition rules for event steps
SELECT quantum_flow.add_step('ev', 'bad', step_type => 'event', start_delay => 5);
SELECT quantum_flow.add_step('ev', 'bad', step_type => 'event', flow => 'ev_late');
SELECT quantum_flow.add_step('ev', 'bad', step_type => 'event', initial_tasks => 3);
SELECT count(*) AS bad_steps FROM quantum_flow.workflow_steps WHERE step_slug = 'bad';

-- clean up: the other files of this suite share the database
SELECT count(quantum_flow.cancel_run(run_id)) AS cancelled FROM quantum_flow.runs
WHERE (workflow_slug LIKE 'ev\_%' OR workflow_slug = 'ev') AND status IN ('started', 'paused');
SELECT count(*) AS deleted FROM (SELECT quantum_flow.delete_flow(workflow_slug) FROM quantum_flow.workflows
                                 WHERE workflow_slug LIKE 'ev\_%' OR workflow_slug = 'ev') d;
