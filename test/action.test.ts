// The action run as the runner runs it: node dist/index.js with INPUT_* variables (input
// names keep their hyphens, defaults come from action.yml) and the GITHUB_OUTPUT and
// GITHUB_STEP_SUMMARY files.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildHistory, type History } from './support/history.js';
import { binDir, removeTree } from './support/postgres.js';
import { queryRestored } from './support/pitr.js';

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

interface ActionRun {
  status: number;
  stdout: string;
  outputs: Record<string, string>;
  summary: string;
}

async function runAction(dir: string, inputs: Record<string, string>): Promise<ActionRun> {
  const outputFile = path.join(dir, `output-${Date.now()}`);
  const summaryFile = path.join(dir, `summary-${Date.now()}`);
  await fs.writeFile(outputFile, '');
  await fs.writeFile(summaryFile, '');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    RUNNER_TEMP: dir,
    GITHUB_OUTPUT: outputFile,
    GITHUB_STEP_SUMMARY: summaryFile,
  };
  for (const [name, value] of Object.entries({ ...actionDefaults(), ...inputs })) {
    env[`INPUT_${name.toUpperCase()}`] = value;
  }
  const { status, stdout } = await new Promise<{ status: number; stdout: string }>((resolve) => {
    execFile(
      process.execPath,
      ['dist/index.js'],
      { env, maxBuffer: 64 * 1024 * 1024 },
      (error, out) =>
        resolve({ status: error ? ((error as { code?: number }).code ?? 1) : 0, stdout: out }),
    );
  });
  return {
    status,
    stdout,
    outputs: parseOutputFile(await fs.readFile(outputFile, 'utf8')),
    summary: await fs.readFile(summaryFile, 'utf8'),
  };
}

describe(`the action on PostgreSQL ${MAJOR}`, () => {
  let history: History;

  before(async () => {
    history = await buildHistory(MAJOR);
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
    assert.equal(run.outputs['checks-passed'], '2');
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
      /^::error::INPUT_INVALID: Input target-time: "2026-12-03 18:17:29" is not a time with a zone/m,
    );
    assert.equal(run.outputs['error-code'], 'INPUT_INVALID');
    assert.match(run.summary, /restore failed/);
  });
});
