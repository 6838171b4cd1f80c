'use strict';
// A workflow defined, run and worked from Node.js with nothing but the `pg` package and the
// extension's SQL functions, against the cluster of QF_TEST_DATABASE_URL
// (postgres://USER@127.0.0.1:PORT/postgres). The test works in a database of its own.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('pg');

const { freshDatabase } = require('../support/db');

const RUN_ID = '00000000-0000-0000-0000-00000000b001';

let client;

before(async () => {
  client = new Client({ connectionString: await freshDatabase('qf_node_test') });
  await client.connect();
});

after(async () => {
  if (client) await client.end();
});

async function pollTasks(slug) {
  const { rows } = await client.query(
    'SELECT run_id, step_slug, task_index, attempt, input ' +
      'FROM quantum_flow.poll_tasks($1, batch_size => 10, max_wait_ms => 1000)',
    [slug],
  );
  return rows;
}

async function completeTask(task, output) {
  const { rows } = await client.query(
    'SELECT quantum_flow.complete_task($1, $2, $3, $4::jsonb, $5) AS completed',
    [task.run_id, task.step_slug, task.task_index, JSON.stringify(output), task.attempt],
  );
  return rows[0].completed;
}

async function failTask(task, message) {
  const { rows } = await client.query(
    'SELECT quantum_flow.fail_task($1, $2, $3, $4, $5) AS status',
    [task.run_id, task.step_slug, task.task_index, message, task.attempt],
  );
  return rows[0].status;
}

async function getRun(runId) {
  const { rows } = await client.query('SELECT quantum_flow.get_run($1) AS run', [runId]);
  return rows[0].run;
}

test('define, start, poll, complete and fail: the run ends with the exact output', async () => {
  const flow = await client.query(
    "SELECT * FROM quantum_flow.create_flow('node_proof', max_attempts => 3, base_delay => 0)",
  );
  assert.deepEqual(
    [flow.rows[0].workflow_slug, flow.rows[0].max_attempts, flow.rows[0].timeout, flow.rows[0].base_delay],
    ['node_proof', 3, 30, 0],
  );
  await client.query("SELECT quantum_flow.add_step('node_proof', 'split')");
  const square = await client.query(
    "SELECT step_slug, step_type, step_index, deps_count, initial_tasks " +
      "FROM quantum_flow.add_step('node_proof', 'square', ARRAY['split'], step_type => 'map', initial_tasks => 3)",
  );
  assert.deepEqual(square.rows[0], {
    step_slug: 'square',
    step_type: 'map',
    step_index: 1,
    deps_count: 1,
    initial_tasks: 3,
  });
  await client.query("SELECT quantum_flow.add_step('node_proof', 'total', ARRAY['square'])");

  const started = await client.query(
    "SELECT quantum_flow.start_flow('node_proof', $1::jsonb, $2) AS run_id",
    [JSON.stringify({ numbers: [1, 2, 3] }), RUN_ID],
  );
  assert.equal(started.rows[0].run_id, RUN_ID);

  // The worker: what each step does with its input.
  const functions = {
    split: (input) => input.run.numbers,
    square: (input) => input.item * input.item,
    total: (input) => ({ sum: input.square.reduce((a, b) => a + b, 0) }),
  };
  const seen = [];
  let failedOnce = false;
  // Bounded only against a hang: every round claims something until the run ends.
  for (let round = 0; round < 50 && (await getRun(RUN_ID)).status === 'started'; round++) {
    for (const task of await pollTasks('node_proof')) {
      seen.push([task.step_slug, task.task_index, task.attempt]);
      if (task.step_slug === 'square' && task.task_index === 1 && !failedOnce) {
        failedOnce = true;
        // The first attempt of square[1] fails; with base_delay 0 it is retried at once.
        assert.equal(await failTask(task, 'transient failure'), 'queued');
        continue;
      }
      assert.equal(await completeTask(task, functions[task.step_slug](task.input)), true);
    }
  }

  seen.sort((a, b) => a[0].localeCompare(b[0]) || a[1] - b[1] || a[2] - b[2]);
  assert.deepEqual(seen, [
    ['split', 0, 1],
    ['square', 0, 1],
    ['square', 1, 1],
    ['square', 1, 2],
    ['square', 2, 1],
    ['total', 0, 1],
  ]);

  const run = await getRun(RUN_ID);
  assert.equal(run.run_id, RUN_ID);
  assert.equal(run.workflow_slug, 'node_proof');
  assert.equal(run.status, 'completed');
  assert.deepEqual(run.input, { numbers: [1, 2, 3] });
  assert.deepEqual(run.output, { total: { sum: 14 } });
  assert.equal(run.error_message, null);
  assert.equal(run.failed_at, null);
  assert.ok(run.completed_at);
  assert.deepEqual(run.steps, [
    { step_slug: 'split', status: 'completed', tasks_total: 1, tasks_completed: 1, output: [1, 2, 3], error_message: null },
    { step_slug: 'square', status: 'completed', tasks_total: 3, tasks_completed: 3, output: [1, 4, 9], error_message: null },
    { step_slug: 'total', status: 'completed', tasks_total: 1, tasks_completed: 1, output: { sum: 14 }, error_message: null },
  ]);

  // A late answer after the end is a harmless no-op.
  assert.equal(
    await completeTask({ run_id: RUN_ID, step_slug: 'total', task_index: 0, attempt: 1 }, { sum: 0 }),
    false,
  );
});

test('errors carry their SQLSTATE and code word', async () => {
  await assert.rejects(
    client.query('SELECT quantum_flow.start_flow($1)', ['no_such_flow']),
    (err) => {
      assert.equal(err.code, 'P0002');
      assert.equal(err.message, 'workflow_not_found: workflow "no_such_flow" does not exist');
      return true;
    },
  );
  await assert.rejects(client.query("SELECT quantum_flow.create_flow('9lives')"), (err) => {
    assert.equal(err.code, '22023');
    assert.match(err.message, /^invalid_workflow_slug: /);
    return true;
  });
  await assert.rejects(
    client.query("SELECT quantum_flow.start_flow('node_proof', '{}', $1)", [RUN_ID]),
    (err) => {
      assert.equal(err.code, '23505');
      assert.match(err.message, /^run_exists: /);
      return true;
    },
  );
});
