// Every kind of target, on every major from 10 to 18, from plain and tar backups, through
// the bundled CLI; each result is checked by opening the restored cluster independently.
// PITR_TEST_MAJORS=10,15 limits the majors for a quicker run.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as path from 'node:path';
import { buildHistory, makeTarBackup, type History } from './support/history.js';
import { MAJORS, binDir, removeTree } from './support/postgres.js';
import { queryRestored, runCli, treeDigest } from './support/pitr.js';

const majors = process.env.PITR_TEST_MAJORS
  ? process.env.PITR_TEST_MAJORS.split(',').map(Number)
  : MAJORS;

for (const major of majors) {
  describe(`PostgreSQL ${major}`, () => {
    let history: History;
    let tarDir: string;
    let tarGzDir: string;
    let digests: { backup: string; archive: string };
    let restoreCount = 0;

    before(async () => {
      history = await buildHistory(major);
      tarDir = path.join(history.rootDir, 'tar');
      tarGzDir = path.join(history.rootDir, 'targz');
      await makeTarBackup(history.backupDir, tarDir, { gzip: false });
      await makeTarBackup(history.backupDir, tarGzDir, { gzip: true });
      digests = {
        backup: await treeDigest(history.backupDir),
        archive: await treeDigest(history.archiveDir),
      };
    });

    after(async () => {
      if (history) await removeTree(history.rootDir);
    });

    async function restoreAndCount(backup: string, targetArgs: string[], extra: string[] = []) {
      const dataDirectory = path.join(history.rootDir, `restored-${restoreCount++}`);
      const run = await runCli([
        '--base-backup',
        backup,
        '--wal-archive',
        history.archiveDir,
        '--postgres-bin',
        binDir(major),
        '--data-directory',
        dataDirectory,
        ...targetArgs,
        ...extra,
      ]);
      assert.equal(run.status, 0, `pitr failed:\n${run.stderr}`);
      assert.equal(run.outputs['data-directory'], dataDirectory);
      assert.equal(run.outputs['postgres-version'].split('.')[0], String(major));
      const [row] = await queryRestored<{ rows: number; in_recovery: boolean }>(
        major,
        dataDirectory,
        'SELECT count(*)::int AS rows, pg_is_in_recovery() AS in_recovery FROM tab_int',
      );
      assert.equal(
        row.in_recovery,
        false,
        'the restored cluster must be promoted, not left in recovery',
      );
      await removeTree(dataDirectory);
      return { rows: row.rows, run };
    }

    it('restores everything archived when the target is latest', async () => {
      const { rows, run } = await restoreAndCount(history.backupDir, []);
      assert.equal(rows, history.expected.latest);
      assert.ok(Number(run.outputs.timeline) > 1, 'promotion starts a new timeline');
    });

    it('stops as soon as the backup is consistent with target immediate', async () => {
      const { rows } = await restoreAndCount(history.backupDir, ['--target', 'immediate']);
      assert.equal(rows, history.expected.immediate);
    });

    it('stops after the named transaction with target-xid', async () => {
      const { rows } = await restoreAndCount(history.backupDir, [
        '--target-xid',
        history.targets.xid,
      ]);
      assert.equal(rows, history.expected.xid);
    });

    it('stops before the named transaction with target-inclusive false', async () => {
      const { rows } = await restoreAndCount(history.backupDir, [
        '--target-xid',
        history.targets.xid,
        '--target-inclusive',
        'false',
      ]);
      assert.equal(rows, history.expected.xid - 1000);
    });

    it('stops at the time given with target-time', async () => {
      const { rows, run } = await restoreAndCount(history.backupDir, [
        '--target-time',
        history.targets.time,
      ]);
      assert.equal(rows, history.expected.time);
      assert.ok(
        run.outputs['recovered-time'] < history.targets.time.replace(' ', 'T'),
        'last replayed commit precedes the target',
      );
    });

    it('stops at the WAL location given with target-lsn', async () => {
      const { rows } = await restoreAndCount(history.backupDir, [
        '--target-lsn',
        history.targets.lsn,
      ]);
      assert.equal(rows, history.expected.lsn);
    });

    it('stops at the restore point given with target-name', async () => {
      const { rows } = await restoreAndCount(history.backupDir, [
        '--target-name',
        history.targets.name,
      ]);
      assert.equal(rows, history.expected.name);
    });

    it('passes a restore point name with a quote, newline and backslash as one value', async () => {
      const { rows } = await restoreAndCount(history.backupDir, [
        '--target-name',
        history.targets.hostileName,
      ]);
      assert.equal(rows, history.expected.name);
    });

    it('restores from base.tar to a time', async () => {
      const { rows } = await restoreAndCount(path.join(tarDir, 'base.tar'), [
        '--target-time',
        history.targets.time,
      ]);
      assert.equal(rows, history.expected.time);
    });

    it('restores from a folder holding base.tar.gz to the end of the archive', async () => {
      const { rows } = await restoreAndCount(
        tarGzDir,
        [],
        ['--verify-query', 'SELECT count(*) = 6000 FROM tab_int'],
      );
      assert.equal(rows, history.expected.latest);
    });

    it('leaves the backup and the archive exactly as they were', async () => {
      assert.equal(await treeDigest(history.backupDir), digests.backup);
      assert.equal(await treeDigest(history.archiveDir), digests.archive);
    });
  });
}
