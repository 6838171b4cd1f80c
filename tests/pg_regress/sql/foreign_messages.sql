-- Messages that quantum_flow did not send (malformed, or naming another workflow's task)
-- must neither break poll_tasks nor touch any task: they are archived as stale.
\set VERBOSITY terse
SELECT workflow_slug FROM quantum_flow.create_flow('fm_main');
SELECT step_slug FROM quantum_flow.add_step('fm_main', 'm', step_type => 'map');
SELECT workflow_slug FROM quantum_flow.create_flow('fm_other');
SELECT step_slug FROM quantum_flow.add_step('fm_other', 's');
SELECT quantum_flow.start_flow('fm_other', '{}', '99999999-9999-9999-9999-999999999999');
SELECT quantum_flow.start_flow('fm_main', '[10, 20]', '11111111-1111-1111-1111-111111111111');
-- not an object, an unparsable run_id and task_index, a key with no task, and a real task of
-- fm_other
SELECT count(*) FROM (
  SELECT pgmq.send('qf_fm_main', '"just a string"')
  UNION ALL SELECT pgmq.send('qf_fm_main', '{"run_id": "not-a-uuid", "step_slug": "m", "task_index": "x"}')
  UNION ALL SELECT pgmq.send('qf_fm_main', '{"run_id": "11111111-1111-1111-1111-111111111111", "step_slug": "m", "task_index": 7}')
  UNION ALL SELECT pgmq.send('qf_fm_main', jsonb_build_object('run_id', '99999999-9999-9999-9999-999999999999', 'step_slug', 's', 'task_index', 0))
) sent;
-- the two real tasks are claimed, the four foreign messages archived
SELECT step_slug, task_index, attempt, input FROM quantum_flow.poll_tasks('fm_main', 10) ORDER BY task_index;
SELECT count(*) AS archived FROM pgmq.a_qf_fm_main;
SELECT message FROM pgmq.a_qf_fm_main ORDER BY msg_id;
-- fm_other's task was not touched
SELECT status, attempts_count FROM quantum_flow.step_tasks WHERE run_id = '99999999-9999-9999-9999-999999999999';
SELECT step_slug, attempt FROM quantum_flow.poll_tasks('fm_other');
SELECT quantum_flow.complete_task('99999999-9999-9999-9999-999999999999', 's', 0, '"ok"');
SELECT quantum_flow.complete_task('11111111-1111-1111-1111-111111111111', 'm', i, to_jsonb(i)) FROM generate_series(0, 1) i;
SELECT quantum_flow.get_run('11111111-1111-1111-1111-111111111111')->'output' AS main_output;
SELECT quantum_flow.delete_flow('fm_main');
SELECT quantum_flow.delete_flow('fm_other');
