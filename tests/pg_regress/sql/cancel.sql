-- cancel_run fails a started run on request and discards its queued tasks; late answers are
-- ignored, and the workflow can then be deleted.
\set VERBOSITY terse
SELECT workflow_slug FROM quantum_flow.create_flow('cx');
SELECT step_slug FROM quantum_flow.add_step('cx', 'm', step_type => 'map');
SELECT step_slug FROM quantum_flow.add_step('cx', 'z', ARRAY['m']);
SELECT quantum_flow.start_flow('cx', '[1, 2, 3]', 'cccccccc-0000-0000-0000-000000000001');
-- a worker holds task 0; tasks 1 and 2 are still queued
SELECT step_slug, task_index, attempt FROM quantum_flow.poll_tasks('cx', 1);
-- delete_flow refuses while the run is started
SELECT quantum_flow.delete_flow('cx');
SELECT quantum_flow.cancel_run('cccccccc-0000-0000-0000-000000000001', 'operator gave up');
SELECT r->>'status' AS status, r->>'error_message' AS error_message
FROM quantum_flow.get_run('cccccccc-0000-0000-0000-000000000001') r;
-- nothing is left to poll; the held task's late answer is ignored
SELECT count(*) AS in_queue FROM pgmq.q_qf_cx;
SELECT count(*) AS archived FROM pgmq.a_qf_cx;
SELECT count(*) AS pollable FROM quantum_flow.poll_tasks('cx');
SELECT quantum_flow.complete_task('cccccccc-0000-0000-0000-000000000001', 'm', 0, '1');
-- cancelling again, or a finished run, changes nothing
SELECT quantum_flow.cancel_run('cccccccc-0000-0000-0000-000000000001');
-- a completed run: m maps over [] and completes at once, then z completes
SELECT quantum_flow.start_flow('cx', '[]', 'cccccccc-0000-0000-0000-000000000002');
SELECT quantum_flow.complete_task(run_id, step_slug, task_index, '"done"') FROM quantum_flow.poll_tasks('cx');
SELECT quantum_flow.cancel_run('cccccccc-0000-0000-0000-000000000002');
SELECT r->>'status' AS status, r->'output' AS output FROM quantum_flow.get_run('cccccccc-0000-0000-0000-000000000002') r;
-- the default reason
SELECT quantum_flow.start_flow('cx', '[5]', 'cccccccc-0000-0000-0000-000000000003');
SELECT quantum_flow.cancel_run('cccccccc-0000-0000-0000-000000000003');
SELECT quantum_flow.get_run('cccccccc-0000-0000-0000-000000000003')->>'error_message' AS error_message;
-- errors
\set VERBOSITY sqlstate
SELECT quantum_flow.cancel_run('cccccccc-0000-0000-0000-00000000dead');
\set VERBOSITY terse
SELECT quantum_flow.cancel_run('cccccccc-0000-0000-0000-00000000dead');
SELECT quantum_flow.cancel_run(NULL);
SELECT quantum_flow.cancel_run('cccccccc-0000-0000-0000-000000000001', NULL);
-- with no started run left, the workflow can be deleted
SELECT quantum_flow.delete_flow('cx');
SELECT count(*) AS cx_queues FROM pgmq.meta WHERE queue_name = 'qf_cx';
