'use strict';
// The README's complete example runs as written and prints what the README says.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { freshDatabase } = require('../support/db');

const root = path.join(__dirname, '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');

test('the README example prints the run output the README shows', async () => {
  const section = readme.split('## A complete example')[1];
  const match = /^```js\n([\s\S]*?)^```$/m.exec(section);
  assert.ok(match, 'README.md has no js block under "## A complete example"');
  const url = await freshDatabase('qf_node_readme');
  for (let i = 0; i < 2; i++) {
    // The second time, the definitions already exist.
    const out = execFileSync(process.execPath, ['-e', match[1]], {
      cwd: root,
      env: { ...process.env, QF_DATABASE_URL: url },
      encoding: 'utf8',
      timeout: 120000,
    });
    assert.equal(out, 'completed {"join":"HELLO FROM NODE"}\n');
  }
  assert.ok(readme.includes('It prints `completed {"join":"HELLO FROM NODE"}`.'));
});
