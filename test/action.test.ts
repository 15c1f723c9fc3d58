// The action run as the runner runs it: node dist/index.js with INPUT_* variables (input
// names keep their hyphens, defaults come from action.yml) and the GITHUB_OUTPUT and
// GITHUB_STEP_SUMMARY files.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildHistory, makeTarBackup, type History } from './support/history.js';
import { binDir, removeTree } from './support/postgres.js';
import { queryRestored } from './support/pitr.js';
import pg from 'pg';
import { readControlFile } from '../src/pg-control.js';

const MAJOR = Number(process.env.PITR_ACTION_TEST_MAJOR ?? 16);

/** The defaults action.yml declares, as the runner passes them. */
function actionDefaults(): Record<string, string> {
  const defaults: Record<string, string> = {};
  let input: string | undefined;
  let inInputs = false;
  for (const line of readFileSync('action.yml', 'utf8').split('\n')) {
    if (/^\S/.test(line)) inInputs = line.startsWith('inputs:');
    if (!inInputs) continue;
    const name = /^ {2}([a-z-]+):\s*$/.exec(line);
    if (name) input = name[1];
    const value = /^ {4}default:\s*'?([^']*)'?\s*$/.exec(line);
    if (value && input) defaults[input] = value[1];
  }
  return defaults;
}

/** Reads the name<<delimiter ... delimiter blocks @actions/core writes to GITHUB_OUTPUT. */
function parseOutputFile(text: string): Record<string, string> {
  const outputs: Record<string, string> = {};
  const pattern = /^([^\n<]+)<<(\S+)\n([\s\S]*?)\n\2$/gm;
  for (const match of text.matchAll(pattern)) outputs[match[1]] = match[3];
  return outputs;
}

function runNode(script: string, env: NodeJS.ProcessEnv, cwd: string) {
  return new Promise<{ status: number; stdout: string }>((resolve) => {
    execFile(process.execPath, [script], { env, cwd, maxBuffer: 64 * 1024 * 1024 }, (error, out) =>
      resolve({ status: error ? ((error as { code?: number }).code ?? 1) : 0, stdout: out }),
    );
  });
}

interface ActionRun {
  status: number;
  stdout: string;
  outputs: Record<string, string>;
  state: Record<string, string>;
  summary: string;
}

async function runAction(
  dir: string,
  inputs: Record<string, string>,
  workspace = process.cwd(),
): Promise<ActionRun> {
  const outputFile = path.join(dir, `output-${Date.now()}`);
  const summaryFile = path.join(dir, `summary-${Date.now()}`);
  const stateFile = path.join(dir, `state-${Date.now()}`);
  await fs.writeFile(outputFile, '');
  await fs.writeFile(summaryFile, '');
  await fs.writeFile(stateFile, '');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    RUNNER_TEMP: dir,
    GITHUB_OUTPUT: outputFile,
    GITHUB_STEP_SUMMARY: summaryFile,
    GITHUB_STATE: stateFile,
    GITHUB_WORKSPACE: workspace,
  };
  for (const [name, value] of Object.entries({ ...actionDefaults(), ...inputs })) {
    env[`INPUT_${name.toUpperCase()}`] = value;
  }
  const { status, stdout } = await runNode(path.resolve('dist/index.js'), env, workspace);
  return {
    status,
    stdout,
    outputs: parseOutputFile(await fs.readFile(outputFile, 'utf8')),
    state: parseOutputFile(await fs.readFile(stateFile, 'utf8')),
    summary: await fs.readFile(summaryFile, 'utf8'),
  };
}

describe(`the action on PostgreSQL ${MAJOR}`, () => {
  let history: History;
  let tarDir: string;

  before(async () => {
    history = await buildHistory(MAJOR);
    tarDir = path.join(history.rootDir, 'tar');
    await makeTarBackup(history.backupDir, tarDir, { gzip: true });
  });
  after(async () => {
    if (history) await removeTree(history.rootDir);
  });

  it('restores to a restore point and sets every output and the job summary', async () => {
    const run = await runAction(history.rootDir, {
      'base-backup': history.backupDir,
      'wal-archive': history.archiveDir,
      'postgres-bin': binDir(MAJOR),
      'target-name': history.targets.name,
      'verify-query': 'SELECT count(*) = 5000 FROM tab_int\nSELECT max(a) = 5000 FROM tab_int',
    });
    assert.equal(run.status, 0, run.stdout);
    for (const name of [
      'recovered-lsn',
      'recovered-time',
      'timeline',
      'postgres-version',
      'data-directory',
      'duration-seconds',
    ]) {
      assert.ok(run.outputs[name], `output ${name} is set`);
    }
    // The recovery point, both queries, and amcheck and the full read in postgres and template1.
    assert.equal(run.outputs['checks-passed'], '7');
    assert.match(run.summary, /amcheck: database postgres/);
    assert.equal(run.outputs['postgres-version'].split('.')[0], String(MAJOR));
    assert.ok(
      run.outputs['data-directory'].startsWith(history.rootDir),
      'restored under RUNNER_TEMP',
    );
    assert.match(run.summary, /restore succeeded/);
    assert.match(
      run.summary,
      /recovery stopping at restore point &quot;pitr_point&quot;|recovery stopping at restore point "pitr_point"/,
    );

    const [row] = await queryRestored<{ n: number }>(
      MAJOR,
      run.outputs['data-directory'],
      'SELECT count(*)::int AS n FROM tab_int',
    );
    assert.equal(row.n, history.expected.name);
  });

  // Every target kind through the action, alternating a plain copy and base.tar.gz, each
  // checked by opening the restored cluster on its own.
  const targets: [string, () => Record<string, string>, () => number][] = [
    ['latest', () => ({}), () => history.expected.latest],
    ['immediate', () => ({ target: 'immediate' }), () => history.expected.immediate],
    ['target-xid', () => ({ 'target-xid': history.targets.xid }), () => history.expected.xid],
    [
      'target-xid, not inclusive',
      () => ({ 'target-xid': history.targets.xid, 'target-inclusive': 'false' }),
      () => history.expected.xid - 1000,
    ],
    ['target-time', () => ({ 'target-time': history.targets.time }), () => history.expected.time],
    ['target-lsn', () => ({ 'target-lsn': history.targets.lsn }), () => history.expected.lsn],
    ['target-name', () => ({ 'target-name': history.targets.name }), () => history.expected.name],
  ];
  targets.forEach(([kind, inputs, rows], index) => {
    const fromTar = index % 2 === 1;
    it(`restores exactly the rows as of ${kind}, from ${fromTar ? 'base.tar.gz' : 'a plain copy'}`, async () => {
      const run = await runAction(history.rootDir, {
        'base-backup': fromTar ? tarDir : history.backupDir,
        'wal-archive': history.archiveDir,
        'postgres-bin': binDir(MAJOR),
        'check-indexes': 'false',
        'check-read-all': 'false',
        ...inputs(),
      });
      assert.equal(run.status, 0, run.stdout);
      const [row] = await queryRestored<{ n: number; standby: boolean }>(
        MAJOR,
        run.outputs['data-directory'],
        'SELECT count(*)::int AS n, pg_is_in_recovery() AS standby FROM tab_int',
      );
      assert.deepEqual(row, { n: rows(), standby: false });
      await removeTree(run.outputs['data-directory']);
    });
  });

  it('fails the step with an error annotation naming the code and an error-code output', async () => {
    const run = await runAction(history.rootDir, {
      'base-backup': history.backupDir,
      'wal-archive': history.archiveDir,
      'postgres-bin': binDir(MAJOR),
      'target-time': '2026-12-03 18:17:29',
    });
    assert.equal(run.status, 1);
    assert.match(
      run.stdout,
      /^::error title=pitr INPUT_INVALID::INPUT_INVALID: Input target-time: "2026-12-03 18:17:29" is not a time with a zone/m,
    );
    assert.equal(run.outputs['error-code'], 'INPUT_INVALID');
    assert.match(run.summary, /restore failed/);
  });

  it('annotates a failing check on its file and line, runs every check, and counts them', async () => {
    const workspace = path.join(history.rootDir, 'workspace');
    await fs.mkdir(path.join(workspace, 'checks'), { recursive: true });
    await fs.writeFile(
      path.join(workspace, 'checks', 'rows.sql'),
      [
        '-- Rows as of the restore point.',
        '-- check: all rows are there',
        'SELECT count(*) = 5000 FROM tab_int;',
        '',
        '-- check: nothing after the restore point',
        'SELECT max(a) > 5000',
        '  FROM tab_int;',
        "SELECT $$ a ; b $$ = ' a ; b ';",
        '',
      ].join('\n'),
    );
    const run = await runAction(
      history.rootDir,
      {
        'base-backup': history.backupDir,
        'wal-archive': history.archiveDir,
        'postgres-bin': binDir(MAJOR),
        'target-name': history.targets.name,
        'verify-sql': 'checks/*.sql',
        'check-indexes': 'false',
        'check-read-all': 'false',
      },
      workspace,
    );
    assert.equal(run.status, 1);
    assert.equal(run.outputs['error-code'], 'VERIFY_FAILED');
    assert.equal(run.outputs['checks-passed'], '3', 'later steps learn how many checks held');
    assert.equal(run.outputs['checks-failed'], '1');
    assert.match(
      run.stdout,
      /^::error title=pitr check failed%3A nothing after the restore point,file=checks\/rows\.sql,line=6,endLine=7::expected one row whose first value is true, got 1 row: \(f\)$/m,
    );
    assert.doesNotMatch(run.stdout, /check failed: all rows are there/);
    assert.match(run.summary, /Checks: 3 of 4 passed/);
    assert.match(run.summary, /checks\/rows\.sql:6/);
    const report = JSON.parse(await fs.readFile(run.outputs['summary-json'], 'utf8'));
    assert.equal(report.error.code, 'VERIFY_FAILED');
    assert.equal(report.checks.length, 4);
  });

  it('keeps the server running for later steps and stops it in the post step', async () => {
    const run = await runAction(history.rootDir, {
      'base-backup': history.backupDir,
      'wal-archive': history.archiveDir,
      'postgres-bin': binDir(MAJOR),
      'keep-running': 'true',
    });
    assert.equal(run.status, 0, run.stdout);
    assert.ok(run.outputs['connection-uri'].startsWith('postgresql://postgres@/postgres?host='));

    // A later step connects with the outputs, as a user's step would.
    const client = new pg.Client({
      host: run.outputs.host,
      port: Number(run.outputs.port),
      user: run.outputs.user,
      database: 'postgres',
    });
    await client.connect();
    const { rows } = await client.query(
      'SELECT count(*)::int AS n, pg_is_in_recovery() AS r FROM tab_int',
    );
    await client.end();
    assert.deepEqual(rows[0], { n: history.expected.latest, r: false });

    // The runner hands the saved state to the post step as STATE_<name>.
    const post = await runNode(
      path.resolve('dist/post/index.js'),
      { PATH: process.env.PATH, 'STATE_kept-server': run.state['kept-server'] },
      process.cwd(),
    );
    assert.equal(post.status, 0, post.stdout);
    assert.match(post.stdout, /Stopped the restored server/);
    const control = await readControlFile(run.outputs['data-directory']);
    assert.equal(control.state, 1, 'pg_control says the cluster was shut down cleanly');
  });
});
