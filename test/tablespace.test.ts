// Tablespaces: their files live outside the data directory, and both a plain copy (a
// pg_tblspc/<oid> link plus tablespace_map) and a tar backup (<oid>.tar) name the original
// cluster's folders. A restore must read them and write only to copies of its own.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { takeLowLevelBackup } from './support/history.js';
import {
  binDir,
  chownToServer,
  makeServerDirectory,
  removeTree,
  startCluster,
  type Cluster,
} from './support/postgres.js';
import { restoredRowCount, runCli, treeDigest } from './support/pitr.js';

const execFileAsync = promisify(execFile);
const MAJOR = 16;

describe(`tablespaces on PostgreSQL ${MAJOR}`, () => {
  let cluster: Cluster;
  let backupDir: string;
  let tarDir: string;
  let oid: string;
  let digests: { original: string; backupCopy: string };
  let originalTablespace: string;
  let backupTablespace: string;

  before(async () => {
    cluster = await startCluster(MAJOR);
    originalTablespace = await makeServerDirectory(path.join(cluster.rootDir, 'ts-original'));
    await cluster.query(`CREATE TABLESPACE space_one LOCATION '${originalTablespace}'`);
    await cluster.query('CREATE TABLE t (a int) TABLESPACE space_one');
    await cluster.query('INSERT INTO t SELECT generate_series(1, 100)');
    [{ oid }] = await cluster.query<{ oid: string }>(
      "SELECT oid::text FROM pg_tablespace WHERE spcname = 'space_one'",
    );

    // A low-level copy: the data directory, and the tablespace folder copied beside it, with
    // the copy's pg_tblspc link pointing at that copy.
    backupDir = path.join(cluster.rootDir, 'backup');
    await cluster.query('CHECKPOINT');
    await takeLowLevelBackup(cluster, backupDir);
    backupTablespace = path.join(cluster.rootDir, 'ts-backup');
    await execFileAsync('cp', ['-a', originalTablespace, backupTablespace]);
    await fs.rm(path.join(backupDir, 'pg_tblspc', oid));
    await fs.symlink(backupTablespace, path.join(backupDir, 'pg_tblspc', oid));

    // The same backup as pg_basebackup -Ft lays it out: base.tar without the link, <oid>.tar.
    tarDir = path.join(cluster.rootDir, 'tar');
    await fs.mkdir(tarDir);
    const entries = (await fs.readdir(backupDir)).sort();
    await execFileAsync('tar', [
      '-cf',
      path.join(tarDir, 'base.tar'),
      `--exclude=pg_tblspc/${oid}`,
      '-C',
      backupDir,
      ...entries,
    ]);
    await execFileAsync('tar', [
      '-cf',
      path.join(tarDir, `${oid}.tar`),
      '-C',
      backupTablespace,
      ...(await fs.readdir(backupTablespace)),
    ]);
    await chownToServer(tarDir, true);

    await cluster.query('INSERT INTO t SELECT generate_series(101, 250)');
    await cluster.waitArchived(await cluster.switchWal());
    await cluster.stop();
    digests = {
      original: await treeDigest(originalTablespace),
      backupCopy: await treeDigest(backupTablespace),
    };
  });

  after(async () => {
    if (cluster) await removeTree(cluster.rootDir);
  });

  async function restoreAndCheck(backup: string, name: string) {
    const target = path.join(cluster.rootDir, name);
    const run = await runCli([
      '--base-backup',
      backup,
      '--wal-archive',
      cluster.archiveDir,
      '--postgres-bin',
      binDir(MAJOR),
      '--data-directory',
      target,
    ]);
    assert.equal(run.status, 0, run.stderr);
    assert.equal(await restoredRowCount(MAJOR, target, 't'), 250);
    const link = await fs.readlink(path.join(target, 'pg_tblspc', oid));
    assert.ok(
      link.startsWith(`${target}.tablespaces${path.sep}`),
      `the restored tablespace is pitr's copy, not ${link}`,
    );
    assert.equal(
      await treeDigest(originalTablespace),
      digests.original,
      'the original tablespace is untouched',
    );
    assert.equal(
      await treeDigest(backupTablespace),
      digests.backupCopy,
      "the backup's tablespace is untouched",
    );
  }

  it('restores a plain copy with a tablespace into a copy of its own', async () => {
    await restoreAndCheck(backupDir, 'restored-plain');
  });

  it('restores base.tar with <oid>.tar, pointing tablespace_map at the extracted copy', async () => {
    await restoreAndCheck(tarDir, 'restored-tar');
  });

  it('refuses a tablespace_map whose tablespace has no files in the backup', async () => {
    const bare = path.join(cluster.rootDir, 'tar-without-tablespace');
    await fs.mkdir(bare);
    await fs.copyFile(path.join(tarDir, 'base.tar'), path.join(bare, 'base.tar'));
    await chownToServer(bare, true);
    const run = await runCli([
      '--base-backup',
      bare,
      '--data-directory',
      path.join(cluster.rootDir, 'restored-bare'),
    ]);
    assert.equal(run.outputs['error-code'], 'BACKUP_NOT_FOUND');
    assert.match(
      run.stderr,
      new RegExp(
        `tablespace_map lists tablespace ${oid}, but there is no ${oid}\\.tar beside base\\.tar`,
      ),
    );
  });
});
