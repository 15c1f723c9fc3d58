// The archive as users really have it: gaps, gzip'd segments, and backups made by
// pg_basebackup itself. A gap must never pass silently.

import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildHistory, type History } from './support/history.js';
import {
  binDir,
  chownToServer,
  removeTree,
  runAsServer,
  startCluster,
  type Cluster,
} from './support/postgres.js';
import { copyArchive, queryRestored, restoredRowCount, runCli } from './support/pitr.js';
import { formatLsn, parseSegmentFileName, segmentStartLsn } from '../src/wal-names.js';

const majors = process.env.PITR_TEST_MAJORS
  ? process.env.PITR_TEST_MAJORS.split(',')
      .map(Number)
      .filter((m) => [10, 15, 18].includes(m))
  : [10, 15, 18];

function segmentsOf(names: string[]): string[] {
  return names.filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
}

for (const major of majors) {
  describe(`PostgreSQL ${major} archives`, () => {
    let history: History;
    let run = 0;
    const dataDirectory = () => path.join(history.rootDir, `restored-${run++}`);
    const restore = (archive: string, args: string[], target = dataDirectory()) =>
      runCli([
        '--base-backup',
        history.backupDir,
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

    /**
     * A copy of the archive whose segment `fromEnd` places before the last (0: the last) has
     * the header of its page `page` zeroed, as a damaged copy would have.
     */
    async function archiveWithZeroedPage(name: string, fromEnd: number, page: number) {
      const segments = segmentsOf(await fs.readdir(history.archiveDir));
      const damaged = segments[segments.length - 1 - fromEnd];
      const archive = path.join(history.rootDir, name);
      await copyArchive(history.archiveDir, archive);
      const handle = await fs.open(path.join(archive, damaged), 'r+');
      await handle.write(Buffer.alloc(16), 0, 16, page * 8192);
      await handle.close();
      return { archive, damaged, segments };
    }
    after(async () => {
      if (history) await removeTree(history.rootDir);
    });

    it('fails naming the missing segment when the archive has a gap, before starting replay', async () => {
      const segments = segmentsOf(await fs.readdir(history.archiveDir));
      const missing = segments[segments.length - 2];
      const archive = path.join(history.rootDir, 'gap-archive');
      await copyArchive(history.archiveDir, archive, (name) =>
        name === missing ? 'drop' : 'keep',
      );

      const result = await restore(archive, []);
      assert.equal(result.status, 1);
      assert.equal(result.outputs['error-code'], 'WAL_GAP');
      assert.match(result.stderr, new RegExp(`segment ${missing} is missing`));
      assert.match(result.stderr, /HINT: /);
    });

    it('fails naming the gap when a target lies beyond it, on every major alike', async () => {
      // 10 to 12 promote silently when the target never comes; 13+ stop with a FATAL.
      const segments = segmentsOf(await fs.readdir(history.archiveDir));
      const missing = segments[segments.length - 2];
      const archive = path.join(history.rootDir, 'gap-archive-2');
      await copyArchive(history.archiveDir, archive, (name) =>
        name === missing ? 'drop' : 'keep',
      );

      const result = await restore(archive, ['--target-name', history.targets.name]);
      assert.equal(result.status, 1, result.stderr);
      assert.equal(result.outputs['error-code'], 'TARGET_NOT_REACHED');
      assert.match(
        result.stderr,
        new RegExp(`at the gap in the archive: segment ${missing} is missing`),
      );
    });

    it('fails naming the damaged segment when replay ends early at a corrupted page', async () => {
      // PostgreSQL takes the first WAL page that fails its checks for the end of WAL and
      // promotes without an error; only the archive listing shows that more was there.
      const { archive, damaged } = await archiveWithZeroedPage('damaged-archive', 1, 2);

      const result = await restore(archive, []);
      assert.equal(result.status, 1, result.stderr);
      assert.equal(result.outputs['error-code'], 'WAL_DAMAGED');
      assert.match(result.stderr, new RegExp(`in segment ${damaged}`));
      // 10 ends replay there without logging why; 11 and later log the bad page header.
      if (major >= 11) assert.match(result.stderr, /invalid magic number 0000/);
    });

    it('fails naming the last segment when replay ends at a corrupted page inside it', async () => {
      // No later segment gives this away: the server promotes, 10 without a word, and only the
      // WAL pages after the place it stopped show the damage.
      const { archive, damaged } = await archiveWithZeroedPage('damaged-last', 0, 1);

      const result = await restore(archive, []);
      assert.equal(result.status, 1, result.stderr);
      assert.equal(result.outputs['error-code'], 'WAL_DAMAGED');
      assert.match(result.stderr, new RegExp(`Replay ended at [0-9A-F/]+ in segment ${damaged}`));
    });

    it('names the damaged segment, not the end of the archive, when a target lies beyond it', async () => {
      // 13+ stop with "recovery ended before configured recovery target was reached", 10 to
      // 12 promote without a word; either way the cause is the damage, not the target.
      const { archive, damaged, segments } = await archiveWithZeroedPage('damaged-archive-2', 1, 2);
      const last = parseSegmentFileName(segments[segments.length - 1], history.segmentSize);
      assert.ok(last);
      const target = formatLsn(segmentStartLsn(last.segno, history.segmentSize) + 0x100n);

      const result = await restore(archive, ['--target-lsn', target]);
      assert.equal(result.status, 1, result.stderr);
      assert.equal(result.outputs['error-code'], 'WAL_DAMAGED');
      assert.match(
        result.stderr,
        new RegExp(
          `Recovery never reached LSN ${target}\\. Replay ended at .* in segment ${damaged}`,
        ),
      );
      assert.doesNotMatch(result.stderr, /at the end of the archive/);
    });

    it('names a truncated segment before replay, with the sizes', async () => {
      const segments = segmentsOf(await fs.readdir(history.archiveDir));
      const cut = segments[segments.length - 2];
      const archive = path.join(history.rootDir, 'truncated-archive');
      await copyArchive(history.archiveDir, archive);
      await fs.truncate(path.join(archive, cut), history.segmentSize / 2);

      const result = await restore(archive, []);
      assert.equal(result.status, 1, result.stderr);
      assert.equal(result.outputs['error-code'], 'WAL_DAMAGED');
      assert.match(result.stderr, new RegExp(`${cut}`));
      assert.match(result.stderr, new RegExp(`${history.segmentSize / 2}`));
      assert.doesNotMatch(result.stderr, /Starting PostgreSQL/, 'found before the server starts');
    });

    it('restores from an archive of gzip-compressed segments', async () => {
      const archive = path.join(history.rootDir, 'gz-archive');
      await copyArchive(history.archiveDir, archive, () => 'gzip');
      const target = dataDirectory();
      const result = await restore(archive, ['--target-xid', history.targets.xid], target);
      assert.equal(result.status, 0, result.stderr);
      assert.equal(await restoredRowCount(major, target), history.expected.xid);
    });

    it('restores from an archive whose files are compressed with zstd, lz4, bzip2, xz and gzip', async () => {
      // Every kind in turn, .history and .backup files too, as an archive_command piping
      // through one of them (and changed along the way) would leave it.
      const kinds = ['zstd', 'lz4', 'bzip2', 'xz', 'gzip'] as const;
      let next = 0;
      const archive = path.join(history.rootDir, 'mixed-compression');
      await copyArchive(history.archiveDir, archive, () => kinds[next++ % kinds.length]);
      const target = dataDirectory();
      const result = await restore(archive, [], target);
      assert.equal(result.status, 0, result.stderr);
      assert.equal(await restoredRowCount(major, target), history.expected.latest);
    });

    it('says which program to install, before replay, when the archive needs one that is missing', async () => {
      const archive = path.join(history.rootDir, 'zstd-archive');
      await copyArchive(history.archiveDir, archive, () => 'zstd');
      const result = await runCli(
        [
          '--base-backup',
          history.backupDir,
          '--wal-archive',
          archive,
          '--postgres-bin',
          binDir(major),
          '--data-directory',
          dataDirectory(),
        ],
        { PATH: path.join(history.rootDir, 'no-programs') },
      );
      assert.equal(result.outputs['error-code'], 'INPUT_INVALID', result.stderr);
      assert.match(result.stderr, /reading it takes the zstd program, which is not on PATH/);
      assert.match(result.stderr, /apt-get install zstd/);
      assert.doesNotMatch(result.stderr, /Starting PostgreSQL/);
    });

    it('fails with TARGET_NOT_REACHED for a restore point that does not exist', async () => {
      const result = await restore(history.archiveDir, ['--target-name', 'no_such_point']);
      assert.equal(result.status, 1);
      assert.equal(result.outputs['error-code'], 'TARGET_NOT_REACHED');
      assert.match(result.stderr, /restore point "no_such_point"/);
    });

    it('fails verification with the query and what it returned', async () => {
      const result = await restore(history.archiveDir, [
        '--verify-query',
        'SELECT count(*) = 6000 FROM tab_int',
        '--verify-query',
        'SELECT count(*) FROM tab_int',
        '--check-indexes',
        'false',
        '--check-read-all',
        'false',
      ]);
      assert.equal(result.status, 1);
      assert.equal(result.outputs['error-code'], 'VERIFY_FAILED');
      assert.match(result.stderr, /1 of 3 checks failed/);
      assert.match(
        result.stderr,
        /"SELECT count\(\*\) FROM tab_int": expected one row whose first value is true, got 1 row whose first column is of type bigint, not boolean: \(6000\)/,
      );
    });
  });
}

describe('backups made by pg_basebackup', () => {
  let cluster: Cluster;
  let restores = 0;
  const backupOf = (name: string) => path.join(cluster.rootDir, name);

  /** Debian's pg_basebackup 15 against the same major's server, as users run it. */
  const basebackup = (name: string, flags: string[]) =>
    runAsServer(
      '/usr/lib/postgresql/15/bin/pg_basebackup',
      [
        '-h',
        cluster.socketDir,
        '-p',
        String(cluster.port),
        '-U',
        'postgres',
        '-D',
        backupOf(name),
        ...flags,
      ],
      '/',
    );

  /** Restores with the CLI (with the cluster's archive unless told otherwise); returns rows of t. */
  async function restoreRows(backup: string, args: string[] = [], archive = true) {
    const target = path.join(cluster.rootDir, `restored-${restores++}`);
    const result = await runCli([
      '--base-backup',
      backup,
      ...(archive ? ['--wal-archive', cluster.archiveDir] : []),
      '--postgres-bin',
      binDir(15),
      '--data-directory',
      target,
      ...args,
    ]);
    assert.equal(result.status, 0, result.stderr);
    const [row] = await queryRestored<{ n: number; standby: boolean }>(
      15,
      target,
      'SELECT count(*)::int AS n, pg_is_in_recovery() AS standby FROM t',
    );
    assert.equal(row.standby, false, 'promoted, not left in recovery');
    return { rows: row.n, stderr: result.stderr };
  }

  before(async () => {
    cluster = await startCluster(15);
    await cluster.query('CREATE TABLE t (a int)');
    await cluster.query('INSERT INTO t SELECT generate_series(1, 100)');
    await basebackup('tar-gz', ['-Ft', '-z', '-X', 'stream']);
    // A plain copy made for a standby (-R: standby.signal, primary_conninfo), WAL left to the
    // archive (-X none): what a replica's provisioning job writes, and a common restore source.
    await basebackup('standby-copy', ['-Fp', '-R', '-X', 'none']);
    // PostgreSQL 15's own lz4 and zstd compression: base.tar.lz4 / base.tar.zst beside an
    // uncompressed pg_wal.tar.
    for (const method of ['lz4', 'zstd']) {
      await basebackup(`tar-${method}`, ['-Ft', `--compress=client-${method}`, '-X', 'stream']);
    }
    await cluster.query('INSERT INTO t SELECT generate_series(101, 250)');
    await cluster.waitArchived(await cluster.switchWal());
    await cluster.stop();
  });
  after(async () => {
    if (cluster) await removeTree(cluster.rootDir);
  });

  it('restores -Ft -z -X stream (base.tar.gz with pg_wal.tar.gz) without an archive', async () => {
    assert.deepEqual((await fs.readdir(backupOf('tar-gz'))).sort(), [
      'backup_manifest',
      'base.tar.gz',
      'pg_wal.tar.gz',
    ]);
    const { rows } = await restoreRows(backupOf('tar-gz'), ['--target', 'immediate'], false);
    assert.equal(rows, 100);
  });

  it('restores -Ft -z -X stream plus the archive to the end', async () => {
    const { rows } = await restoreRows(path.join(backupOf('tar-gz'), 'base.tar.gz'));
    assert.equal(rows, 250);
  });

  for (const [method, suffix] of [
    ['lz4', '.lz4'],
    ['zstd', '.zst'],
  ]) {
    it(`restores -Ft --compress=${method} (base.tar${suffix}) plus the archive to the end`, async () => {
      assert.deepEqual((await fs.readdir(backupOf(`tar-${method}`))).sort(), [
        'backup_manifest',
        `base.tar${suffix}`,
        'pg_wal.tar',
      ]);
      assert.equal((await restoreRows(backupOf(`tar-${method}`))).rows, 250);
    });
  }

  it('restores a -Fp -R copy made for a standby as a promoted cluster, with WAL from the archive', async () => {
    const signal = path.join(backupOf('standby-copy'), 'standby.signal');
    assert.ok(existsSync(signal), 'pg_basebackup -R wrote it');
    const { rows, stderr } = await restoreRows(backupOf('standby-copy'));
    assert.equal(rows, 250);
    assert.match(stderr, /Removed standby\.signal from the restored copy/);
    assert.ok(existsSync(signal), 'the backup is untouched');
  });

  it('replays without the delay of a delayed standby whose settings came along in the copy', async () => {
    // A copy taken from a standby kept an hour behind, to undo mistakes: its
    // recovery_min_apply_delay (a setting from 12 on) would hold every commit back an hour.
    const delayed = backupOf('delayed-copy');
    await fs.cp(backupOf('standby-copy'), delayed, { recursive: true });
    await fs.appendFile(
      path.join(delayed, 'postgresql.auto.conf'),
      "recovery_min_apply_delay = '1h'\n",
    );
    await chownToServer(delayed, true);
    assert.equal((await restoreRows(delayed, ['--timeout', '60'])).rows, 250);
  });
});
