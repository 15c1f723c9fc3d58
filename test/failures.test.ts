// Refusals that need no history of their own: the bundled example backup (PostgreSQL 16,
// tar.gz, gzip'd archive) is enough to show each one, and each must say what to do.

import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { binDir } from './support/postgres.js';
import { runCli } from './support/pitr.js';

const execFileAsync = promisify(execFile);
const backup = path.resolve('example/backup');
const archive = path.resolve('example/archive');

describe('refusals', () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pitr-test-refusals-'));
    // The server account must be able to reach the data directories made in here.
    await fs.chmod(dir, 0o755);
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('refuses a data directory that is not empty, and leaves its files alone', async () => {
    const target = path.join(dir, 'busy');
    await fs.mkdir(target);
    await fs.writeFile(path.join(target, 'keep.txt'), 'precious');
    const run = await runCli(['--base-backup', backup, '--data-directory', target]);
    assert.equal(run.status, 1);
    assert.equal(run.outputs['error-code'], 'DATA_DIRECTORY_NOT_EMPTY');
    assert.match(
      run.stderr,
      new RegExp(`data-directory ${target} exists and is not an empty folder`),
    );
    assert.equal(await fs.readFile(path.join(target, 'keep.txt'), 'utf8'), 'precious');
  });

  it('says what it found when base-backup is not a backup', async () => {
    const run = await runCli(['--base-backup', archive]);
    assert.equal(run.status, 1);
    assert.equal(run.outputs['error-code'], 'BACKUP_NOT_FOUND');
    assert.match(
      run.stderr,
      /holds neither PG_VERSION .* nor base\.tar \(\.gz, \.lz4, \.zst\); it has: 000000010000000000000005\.gz/,
    );
  });

  it('names a base-backup path that does not exist', async () => {
    const run = await runCli(['--base-backup', path.join(dir, 'nowhere')]);
    assert.equal(run.outputs['error-code'], 'BACKUP_NOT_FOUND');
    assert.match(run.stderr, /nowhere does not exist/);
  });

  it('refuses server programs of another major, naming both versions', async () => {
    const run = await runCli([
      '--base-backup',
      backup,
      '--wal-archive',
      archive,
      '--postgres-bin',
      binDir(15),
      '--data-directory',
      path.join(dir, 'r-version'),
    ]);
    assert.equal(run.status, 1);
    assert.equal(run.outputs['error-code'], 'VERSION_MISMATCH');
    assert.match(run.stderr, /needs PostgreSQL 16, and postgres-bin .* has PostgreSQL 15\.\d+/);
  });

  it('gives up after the timeout, saying how far replay got', async () => {
    const run = await runCli([
      '--base-backup',
      backup,
      '--wal-archive',
      archive,
      '--postgres-bin',
      binDir(16),
      '--data-directory',
      path.join(dir, 'r-timeout'),
      '--timeout',
      '0.01',
    ]);
    assert.equal(run.status, 1);
    assert.equal(run.outputs['error-code'], 'RECOVERY_TIMEOUT');
    assert.match(
      run.stderr,
      /did not finish within 0\.01 s: \d+ segment\(s\) restored in [\d.]+ s \([\d.]+ MB\/s\)/,
    );
  });

  it('names a wal-archive folder that does not exist before copying anything', async () => {
    const run = await runCli([
      '--base-backup',
      backup,
      '--wal-archive',
      path.join(dir, 'no-archive'),
    ]);
    assert.equal(run.outputs['error-code'], 'INPUT_INVALID');
    assert.match(run.stderr, /Input wal-archive: .*no-archive does not exist/);
    assert.doesNotMatch(run.stderr, /Extracted/);
  });

  it('refuses a backup whose pg_control fails its checksum', async () => {
    const plain = path.join(dir, 'damaged-control');
    await fs.mkdir(plain);
    await execFileAsync('tar', ['-xzf', path.join(backup, 'base.tar.gz'), '-C', plain]);
    const control = path.join(plain, 'global', 'pg_control');
    const bytes = await fs.readFile(control);
    bytes[40] ^= 0xff;
    await fs.writeFile(control, bytes);
    const run = await runCli([
      '--base-backup',
      plain,
      '--wal-archive',
      archive,
      '--postgres-bin',
      binDir(16),
      '--data-directory',
      path.join(dir, 'r-control'),
    ]);
    assert.equal(run.outputs['error-code'], 'BACKUP_DAMAGED');
    assert.match(
      run.stderr,
      /global\/pg_control fails its checksum \(stored CRC-32C [0-9a-f]+, computed [0-9a-f]+\)/,
    );
  });

  it('exits 1 on an unknown flag, as on any failure', async () => {
    const run = await runCli(['--base-backup', backup, '--target-tme', '2026-01-01 00:00:00+00']);
    assert.equal(run.status, 1);
    assert.equal(run.outputs['error-code'], 'INPUT_INVALID');
    assert.match(run.stderr, /Unknown flag --target-tme/);
  });
});
