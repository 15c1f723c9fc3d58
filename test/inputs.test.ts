import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { PitrError } from '../src/errors.js';
import { buildRequest, INPUT_NAMES, splitStatements, type InputName } from '../src/request.js';

function request(inputs: Partial<Record<InputName, string>>) {
  return buildRequest((name) => inputs[name] ?? '');
}

function rejects(inputs: Partial<Record<InputName, string>>, pattern: RegExp) {
  assert.throws(
    () => request({ 'base-backup': '/b', ...inputs }),
    (error: unknown) =>
      error instanceof PitrError && error.code === 'INPUT_INVALID' && pattern.test(error.message),
  );
}

describe('inputs', () => {
  it('defaults to replaying the whole archive on the latest timeline', () => {
    const r = request({ 'base-backup': '/b' });
    assert.deepEqual(r.target, { kind: 'latest' });
    assert.equal(r.targetTimeline, 'latest');
    assert.equal(r.targetInclusive, true);
    assert.equal(r.osUser, 'postgres');
    assert.equal(r.timeoutSeconds, 3600);
    assert.equal(r.postgresDownload, true);
    assert.equal(r.postgresVersion, '');
  });

  it('requires base-backup, naming the input', () => {
    assert.throws(() => request({}), /Input base-backup: is required/);
  });

  it('refuses two targets at once, naming both', () => {
    rejects({ 'target-xid': '1234', 'target-name': 'x' }, /target-xid, target-name/);
    rejects({ target: 'immediate', 'target-lsn': '0/1' }, /target is "immediate" and target-lsn/);
  });

  it('requires a zone on target-time and a real date', () => {
    rejects({ 'target-time': '2026-12-03 18:17:29' }, /not a time with a zone/);
    rejects({ 'target-time': 'yesterday' }, /not a time with a zone/);
    rejects({ 'target-time': '2026-02-30 10:00:00+00' }, /does not exist/);
    const ok = request({ 'base-backup': '/b', 'target-time': '2026-12-03 18:17:29.5+02:00' });
    assert.deepEqual(ok.target, { kind: 'time', value: '2026-12-03 18:17:29.5+02:00' });
    assert.equal(
      request({ 'base-backup': '/b', 'target-time': '2026-12-03T18:17:29Z' }).target.kind,
      'time',
    );
  });

  it('checks target-xid, target-lsn, target-timeline, target-inclusive and timeout', () => {
    rejects({ 'target-xid': '12a' }, /target-xid: "12a" is not a transaction id/);
    rejects({ 'target-lsn': '0/XYZ' }, /target-lsn: "0\/XYZ" is not an LSN/);
    rejects({ 'target-timeline': 'newest' }, /target-timeline/);
    rejects({ 'target-inclusive': 'maybe' }, /target-inclusive/);
    rejects({ timeout: '-5' }, /timeout: "-5" is not a positive number/);
    rejects({ target: 'earliest' }, /target: "earliest" is not a target/);
  });

  it('keeps a restore point name exactly, quotes and newlines included', () => {
    const name = "it's\nrestore_command = 'rm -rf /'";
    assert.deepEqual(request({ 'base-backup': '/b', 'target-name': name }).target, {
      kind: 'name',
      value: name,
    });
  });
});

describe('verify-query statements', () => {
  it('splits on semicolons outside quotes and dollar quotes', () => {
    assert.deepEqual(splitStatements("SELECT ';' = ';'; SELECT $x$ a; b $x$ <> ''"), [
      "SELECT ';' = ';'",
      "SELECT $x$ a; b $x$ <> ''",
    ]);
  });

  it('takes one statement per line without semicolons, and joins continued lines', () => {
    assert.deepEqual(
      splitStatements(
        'SELECT count(*) > 0\n  FROM t\nSELECT true\n\n-- a comment\nWITH x AS (SELECT 1) SELECT true',
      ),
      ['SELECT count(*) > 0\n  FROM t', 'SELECT true', 'WITH x AS (SELECT 1) SELECT true'],
    );
  });
});

describe('one set of names', () => {
  const actionYml = readFileSync('action.yml', 'utf8');
  const readme = readFileSync('README.md', 'utf8');

  /** The keys at two spaces' indent under a top-level key of action.yml. */
  function actionKeys(section: string): string[] {
    const block = new RegExp(`^${section}:\\n((?: .*\\n|\\n)*)`, 'm').exec(actionYml)?.[1] ?? '';
    return [...block.matchAll(/^ {2}([a-z-]+):/gm)].map((m) => m[1]);
  }

  it('action.yml declares exactly the inputs the CLI takes as flags', () => {
    assert.deepEqual([...actionKeys('inputs')].sort(), [...INPUT_NAMES].sort());
  });

  it("the README's Inputs table lists every input, and its Outputs every output", () => {
    const inputsSection = readme.slice(readme.indexOf('## Inputs'), readme.indexOf('## Outputs'));
    const listed = [...inputsSection.matchAll(/^\| `([a-z-]+)`/gm)].map((m) => m[1]);
    assert.deepEqual(listed.sort(), [...INPUT_NAMES].sort());
    const outputsSection = readme.slice(readme.indexOf('## Outputs'), readme.indexOf('## Checks'));
    for (const output of actionKeys('outputs')) {
      assert.ok(outputsSection.includes(`\`${output}\``), `README does not list output ${output}`);
    }
  });
});
