'use strict';
// Test support: a fresh database with quantum_flow, on the cluster of QF_TEST_DATABASE_URL.

const { Client } = require('pg');

function serverUrl() {
  const url = process.env.QF_TEST_DATABASE_URL;
  if (!url) {
    throw new Error(
      'QF_TEST_DATABASE_URL must point at a cluster with quantum_flow installed ' +
        '(postgres://USER@127.0.0.1:PORT/postgres)',
    );
  }
  return url;
}

// Drops and creates database `name` (a plain lower-case name), creates the extension in it,
// and returns its connection URL.
async function freshDatabase(name) {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
  const admin = new Client({ connectionString: serverUrl() });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(serverUrl());
  u.pathname = '/' + name;
  const url = u.toString();
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('CREATE EXTENSION quantum_flow CASCADE');
  } finally {
    await client.end();
  }
  return url;
}

module.exports = { freshDatabase };
