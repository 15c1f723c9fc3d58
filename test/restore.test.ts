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

    interface TargetCase {
      behaviour: string;
      args: () => string[];
      rows: () => number;
    }
    const cases: TargetCase[] = [
      {
        behaviour: 'restores everything archived when the target is latest',
        args: () => [],
        rows: () => history.expected.latest,
      },
      {
        behaviour: 'stops as soon as the backup is consistent with target immediate',
        args: () => ['--target', 'immediate'],
        rows: () => history.expected.immediate,
      },
      {
        behaviour: 'stops after the named transaction with target-xid',
        args: () => ['--target-xid', history.targets.xid],
        rows: () => history.expected.xid,
      },
      {
        behaviour: 'stops before the named transaction with target-inclusive false',
        args: () => ['--target-xid', history.targets.xid, '--target-inclusive', 'false'],
        rows: () => history.expected.xid - 1000,
      },
      {
        behaviour: 'stops at the time given with target-time',
        args: () => ['--target-time', history.targets.time],
        rows: () => history.expected.time,
      },
      {
        behaviour: 'stops at the WAL location given with target-lsn',
        args: () => ['--target-lsn', history.targets.lsn],
        rows: () => history.expected.lsn,
      },
      {
        behaviour: 'stops at the restore point given with target-name',
        args: () => ['--target-name', history.targets.name],
        rows: () => history.expected.name,
      },
      {
        behaviour: 'passes a restore point name with a quote, newline and backslash as one value',
        args: () => ['--target-name', history.targets.hostileName],
        rows: () => history.expected.name,
      },
    ];

    cases.forEach((testCase, index) => {
      it(`${testCase.behaviour}, from a plain copy`, async () => {
        const { rows, run } = await restoreAndCount(history.backupDir, testCase.args());
        assert.equal(rows, testCase.rows());
        assert.ok(Number(run.outputs.timeline) > 1, 'promotion starts a new timeline');
      });

      // The tar variants alternate between base.tar (named directly) and a folder of base.tar.gz.
      const gzip = index % 2 === 1;
      it(`${testCase.behaviour}, from ${gzip ? 'a folder holding base.tar.gz' : 'base.tar'}`, async () => {
        const backup = gzip ? tarGzDir : path.join(tarDir, 'base.tar');
        const { rows } = await restoreAndCount(backup, testCase.args());
        assert.equal(rows, testCase.rows());
      });
    });

    it('reports the last replayed commit before a time target', async () => {
      const { run } = await restoreAndCount(history.backupDir, [
        '--target-time',
        history.targets.time,
      ]);
      const recovered = Date.parse(run.outputs['recovered-time']);
      assert.ok(
        recovered < Date.parse(history.targets.time.replace(' ', 'T').replace(/\+00$/, 'Z')),
      );
    });

    it('runs the verification queries against the restored data', async () => {
      const { run } = await restoreAndCount(
        tarGzDir,
        [],
        ['--verify-query', 'SELECT count(*) = 6000 FROM tab_int', '--check-heap', 'true'],
      );
      // The recovery point, the query, and amcheck and the full read of postgres and template1;
      // verify_heapam of both from 14 on. Before 14 it is skipped, which is no failure.
      assert.equal(run.outputs['checks-passed'], major >= 14 ? '8' : '6');
      assert.equal(run.outputs['checks-failed'], '0');
      if (major < 14) assert.match(run.stderr, /verify_heapam: database postgres: skipped/);
    });

    it('leaves the backup and the archive exactly as they were', async () => {
      assert.equal(await treeDigest(history.backupDir), digests.backup);
      assert.equal(await treeDigest(history.archiveDir), digests.archive);
    });
  });
}
