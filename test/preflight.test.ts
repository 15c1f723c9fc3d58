// Problems found from the files alone, before the server starts: a target outside what the
// archive can reach, WAL the backup needs but does not have, and timelines that do not lead
// back to the backup. Also the good case of a fork after the backup, followed correctly.

import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildHistory, type History } from './support/history.js';
import { binDir, chownToServer, removeTree, startCluster } from './support/postgres.js';
import { copyArchive, restoredRowCount, runCli } from './support/pitr.js';

const majors = process.env.PITR_TEST_MAJORS
  ? process.env.PITR_TEST_MAJORS.split(',')
      .map(Number)
      .filter((m) => [10, 15, 18].includes(m))
  : [10, 15, 18];

for (const major of majors) {
  describe(`PostgreSQL ${major} preflight`, () => {
    let history: History;
    let count = 0;
    const next = () => path.join(history.rootDir, `restored-${count++}`);
    const restore = (
      args: string[],
      archive = history.archiveDir,
      backup = history.backupDir,
      target = next(),
    ) =>
      runCli([
        '--base-backup',
        backup,
        '--wal-archive',
        archive,
        '--postgres-bin',
        binDir(major),
        '--data-directory',
        target,
        ...args,
      ]);

    before(async () => {
      history = await buildHistory(major);
    });
    after(async () => {
      if (history) await removeTree(history.rootDir);
    });

    /** A copy of the backup, changed by `change` (given its folder), for the server account. */
    async function changedBackup(name: string, change: (copy: string) => Promise<unknown>) {
      const copy = path.join(history.rootDir, name);
      await fs.cp(history.backupDir, copy, { recursive: true });
      await change(copy);
      await chownToServer(copy, true);
      return copy;
    }

    it('refuses an LSN before the end of the backup, naming the earliest point', async () => {
      const run = await restore(['--target-lsn', '0/10']);
      assert.equal(run.outputs['error-code'], 'TARGET_BEFORE_CONSISTENCY');
      assert.match(
        run.stderr,
        /target-lsn 0\/10 lies before the end of the backup at [0-9A-F]+\/[0-9A-F]+/,
      );
      assert.match(run.stderr, /this archive can restore from .* to [0-9A-F]+\/[0-9A-F]+/);
      assert.doesNotMatch(run.stderr, /Starting PostgreSQL/, 'refused before the server starts');
    });

    it('refuses a time before the backup started', async () => {
      const run = await restore(['--target-time', '2001-01-01 00:00:00+00']);
      assert.equal(run.outputs['error-code'], 'TARGET_BEFORE_CONSISTENCY');
      assert.match(run.stderr, /is before the backup started/);
    });

    it('refuses an LSN after the end of the archive, saying where the archive ends', async () => {
      const run = await restore(['--target-lsn', 'FF/0']);
      assert.equal(run.outputs['error-code'], 'TARGET_NOT_REACHED');
      assert.match(
        run.stderr,
        /target-lsn FF\/0 lies after the end of the archived WAL: this archive can restore from/,
      );
      assert.doesNotMatch(run.stderr, /Starting PostgreSQL/);
    });

    it('names the segment the backup needs when it is missing', async () => {
      const label = await fs.readFile(path.join(history.backupDir, 'backup_label'), 'utf8');
      const startSegment = /\(file ([0-9A-F]{24})\)/.exec(label)?.[1] as string;
      const archive = path.join(history.rootDir, 'no-start');
      await copyArchive(history.archiveDir, archive, (name) =>
        name === startSegment ? 'drop' : 'keep',
      );
      const run = await restore([], archive);
      assert.equal(run.outputs['error-code'], 'WAL_MISSING_FOR_CONSISTENCY');
      assert.match(run.stderr, new RegExp(`segment ${startSegment}`));
    });

    it(
      'refuses an incremental backup with the pg_combinebackup hint',
      { skip: major < 17 },
      async () => {
        // PostgreSQL 17's incremental backups carry these two lines; no server starts from one.
        const copy = await changedBackup('incremental', async (dir) => {
          await fs.appendFile(
            path.join(dir, 'backup_label'),
            'INCREMENTAL FROM LSN: 0/2000028\nINCREMENTAL FROM TLI: 1\n',
          );
        });
        const run = await restore([], history.archiveDir, copy);
        assert.equal(run.outputs['error-code'], 'BACKUP_INCREMENTAL');
        assert.match(run.stderr, /INCREMENTAL FROM LSN 0\/2000028, timeline 1/);
        assert.match(run.stderr, /pg_combinebackup/);
      },
    );

    it('warns that a copy of a running server without backup_label is only good as a snapshot', async () => {
      const copy = await changedBackup('no-label', async (dir) => {
        await fs.rm(path.join(dir, 'backup_label'));
      });
      const run = await restore([], history.archiveDir, copy);
      assert.match(
        run.stderr,
        /no backup_label, yet pg_control says the server was running when it was copied \(state 6\)\. That is a backup only if the copy was an atomic snapshot/,
      );
    });

    it('restores a copy of the cleanly stopped cluster, which needs no backup_label', async () => {
      const copy = path.join(history.rootDir, 'cold-copy');
      await fs.cp(history.cluster.dataDir, copy, { recursive: true });
      await chownToServer(copy, true);
      const target = next();
      const run = await restore([], history.archiveDir, copy, target);
      assert.equal(run.status, 0, run.stderr);
      assert.match(
        run.stderr,
        /no backup_label, and pg_control says the cluster was shut down cleanly/,
      );
      assert.equal(await restoredRowCount(major, target), history.expected.latest);
    });

    it("fails with the server's own FATAL when the backup's configuration cannot start", async () => {
      const copy = await changedBackup('bad-config', async (dir) => {
        await fs.appendFile(
          path.join(dir, 'postgresql.conf'),
          "shared_preload_libraries = 'no_such_library'\n",
        );
      });
      const run = await restore([], history.archiveDir, copy);
      assert.equal(run.outputs['error-code'], 'SERVER_FAILED');
      assert.match(
        run.stderr,
        /The restored server stopped during recovery: could not access file "no_such_library"/,
      );
      assert.match(run.stderr, /Last lines of the server log:/);
      assert.ok(run.outputs['log-file'], 'the whole log is an output');
    });

    it("restores a backup of Debian's layout, whose postgresql.conf and pg_hba.conf live in /etc", async () => {
      const copy = await changedBackup('debian-layout', async (dir) => {
        for (const file of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf']) {
          await fs.rm(path.join(dir, file));
        }
      });
      const target = next();
      const run = await restore(
        ['--target-name', history.targets.name],
        history.archiveDir,
        copy,
        target,
      );
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stderr, /The backup has no postgresql\.conf or pg_hba\.conf/);
      assert.ok(!existsSync(path.join(copy, 'postgresql.conf')), 'the backup is untouched');
      assert.equal(await restoredRowCount(major, target), history.expected.name);
    });

    it("starts although the backup's configuration asks for huge pages the runner may lack", async () => {
      // huge_pages = on, right for a large primary, stops a server where none are reserved.
      const copy = await changedBackup('huge-pages', async (dir) => {
        await fs.appendFile(path.join(dir, 'postgresql.conf'), 'huge_pages = on\n');
      });
      const run = await restore([], history.archiveDir, copy);
      assert.equal(run.status, 0, run.stderr);
    });

    it('gives up after the timeout, saying how far replay got', async () => {
      const run = await restore(['--timeout', '0.01']);
      assert.equal(run.outputs['error-code'], 'RECOVERY_TIMEOUT');
      assert.match(
        run.stderr,
        /did not finish within 0\.01 s: \d+ segment\(s\) restored in [\d.]+ s/,
      );
    });

    it('refuses a backup whose pg_control fails its checksum', async () => {
      const copy = await changedBackup('bad-control', async (dir) => {
        const control = path.join(dir, 'global', 'pg_control');
        const bytes = await fs.readFile(control);
        bytes[40] ^= 0xff;
        await fs.writeFile(control, bytes);
      });
      const run = await restore([], history.archiveDir, copy);
      assert.equal(run.outputs['error-code'], 'BACKUP_DAMAGED');
      assert.match(run.stderr, /global\/pg_control fails its checksum/);
    });

    it('refuses server programs of another major, naming both', async () => {
      const other = major === 18 ? 17 : major + 1;
      const run = await runCli([
        '--base-backup',
        history.backupDir,
        '--wal-archive',
        history.archiveDir,
        '--postgres-bin',
        binDir(other),
        '--data-directory',
        next(),
      ]);
      assert.equal(run.outputs['error-code'], 'VERSION_MISMATCH');
      assert.match(
        run.stderr,
        new RegExp(`needs PostgreSQL ${major}, and postgres-bin .* has PostgreSQL ${other}\\.`),
      );
    });

    it('names a segment from another cluster before replay', async () => {
      const stranger = await startCluster(major);
      try {
        await stranger.query('SELECT 1');
        const theirs = await stranger.switchWal();
        await stranger.waitArchived(theirs);
        await stranger.stop();
        const segments = (await fs.readdir(history.archiveDir))
          .filter((n) => /^[0-9A-F]{24}$/.test(n))
          .sort();
        const replaced = segments[segments.length - 2];
        const archive = path.join(history.rootDir, 'mixed');
        await copyArchive(history.archiveDir, archive);
        await fs.copyFile(path.join(stranger.archiveDir, theirs), path.join(archive, replaced));
        await chownToServer(archive, true);
        const run = await restore([], archive);
        assert.equal(run.outputs['error-code'], 'WAL_FOREIGN_CLUSTER');
        assert.match(
          run.stderr,
          new RegExp(
            `${replaced} comes from another database cluster: expected system identifier \\d+ \\(from the backup's pg_control\\), found system identifier \\d+`,
          ),
        );
        assert.doesNotMatch(run.stderr, /Starting PostgreSQL/);
      } finally {
        await stranger.stop();
        await removeTree(stranger.rootDir);
      }
    });

    it('refuses a target timeline that has no history file', async () => {
      const run = await restore(['--target-timeline', '7']);
      assert.equal(run.outputs['error-code'], 'TIMELINE_NOT_IN_HISTORY');
      assert.match(
        run.stderr,
        /target-timeline 7 does not exist: the archive has no 00000007\.history/,
      );
    });

    it('refuses a timeline that branched off before the backup, showing its history', async () => {
      const archive = path.join(history.rootDir, 'early-fork');
      await copyArchive(history.archiveDir, archive);
      await fs.writeFile(path.join(archive, '00000002.history'), '1\t0/100\tbefore the backup\n');
      await chownToServer(archive, true);
      const run = await restore([], archive);
      assert.equal(run.outputs['error-code'], 'TIMELINE_NOT_IN_HISTORY');
      assert.match(
        run.stderr,
        /The backup is on timeline 1 at [0-9A-F]+\/[0-9A-F]+, but timeline 2's history is: timeline 1 until 0\/100, then timeline 2/,
      );
    });

    it("follows a timeline that branched off after the backup, and stays on the backup's with current", async () => {
      // A restore promoted at the restore point, whose new timeline reached the shared
      // archive: the situation test restores create when they archive into the same folder.
      const promoted = next();
      const first = await restore(
        ['--target-name', history.targets.name],
        history.archiveDir,
        history.backupDir,
        promoted,
      );
      assert.equal(first.status, 0, first.stderr);
      const historyText = await fs.readFile(
        path.join(promoted, 'pg_wal', '00000002.history'),
        'utf8',
      );
      const switchPoint = /^1\s+([0-9A-F]+)\/([0-9A-F]+)/m.exec(historyText);
      assert.ok(switchPoint, historyText);
      const lsn = (BigInt(`0x${switchPoint[1]}`) << 32n) | BigInt(`0x${switchPoint[2]}`);
      const segno = lsn / BigInt(history.segmentSize);
      const perId = 0x100000000n / BigInt(history.segmentSize);
      const hex = (n: bigint) => n.toString(16).toUpperCase().padStart(8, '0');
      const forkSegment = `00000002${hex(segno / perId)}${hex(segno % perId)}`;

      const archive = path.join(history.rootDir, 'late-fork');
      await copyArchive(history.archiveDir, archive);
      await fs.copyFile(
        path.join(promoted, 'pg_wal', '00000002.history'),
        path.join(archive, '00000002.history'),
      );
      await fs.copyFile(
        path.join(promoted, 'pg_wal', forkSegment),
        path.join(archive, forkSegment),
      );
      await chownToServer(archive, true);

      const latest = next();
      const onFork = await restore([], archive, history.backupDir, latest);
      assert.equal(onFork.status, 0, onFork.stderr);
      assert.match(onFork.stderr, /replay follows timeline 1 -> 2/);
      assert.equal(await restoredRowCount(major, latest), history.expected.name);

      const current = next();
      const onOriginal = await restore(
        ['--target-timeline', 'current'],
        archive,
        history.backupDir,
        current,
      );
      assert.equal(onOriginal.status, 0, onOriginal.stderr);
      assert.equal(await restoredRowCount(major, current), history.expected.latest);
    });
  });
}
