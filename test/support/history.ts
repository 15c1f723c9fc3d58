// A real backup and WAL archive with one recovery target of every kind, built the way
// PostgreSQL's own src/test/recovery/t/003_recovery_targets.pl builds its history: rows are
// inserted in batches of 1000, and each target is taken between two batches, so the number of
// rows a restore shows says exactly where recovery stopped.

import { execFile } from 'node:child_process';
import { copyFile, lstat, mkdir, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import {
  chownToServer,
  makeServerDirectory,
  removeTree,
  sleep,
  startCluster,
  type Cluster,
} from './postgres.js';

const execFileAsync = promisify(execFile);

export interface RecoveryTargets {
  /** recovery_target_time: between the commits of rows 2001..3000 and 3001..4000, UTC offset. */
  time: string;
  /** recovery_target_xid: the transaction that inserted rows 1001..2000. */
  xid: string;
  /** recovery_target_lsn: just after the commit of rows 3001..4000. */
  lsn: string;
  /** recovery_target_name: a restore point after the commit of rows 4001..5000. */
  name: string;
  /** A second restore point at the same place, named with a quote, a newline and a backslash. */
  hostileName: string;
}

/** Rows in tab_int after restoring to each target with the default (inclusive) settings. */
export interface ExpectedRows {
  immediate: number;
  time: number;
  xid: number;
  lsn: number;
  name: number;
  latest: number;
}

export interface History {
  /** The cluster the history was made on, already stopped. */
  cluster: Cluster;
  major: number;
  segmentSize: number;
  /** Plain copy of the data directory with backup_label (low-level API backup), empty pg_wal. */
  backupDir: string;
  archiveDir: string;
  /** The pitr-test-... directory holding all of it; removeTree(rootDir) cleans up. */
  rootDir: string;
  /** Where the base backup's WAL ends: recovery_target 'immediate' stops here. */
  backupStopLsn: string;
  targets: RecoveryTargets;
  expected: ExpectedRows;
}

const BACKUP_LABEL = 'pitr-test';
const RESTORE_POINT = 'pitr_point';
export const HOSTILE_RESTORE_POINT = "it's\nrestore_command = 'false' # \\";

// More than a second between the recorded time and the commits on either side of it keeps a
// time target unambiguous even where a tool or a log line rounds times to whole seconds.
const TIME_GAP_MS = 1100;

export async function buildHistory(major: number): Promise<History> {
  const cluster = await startCluster(major);
  try {
    await cluster.query('CREATE TABLE tab_int (a int)');
    await insertRows(cluster, 1, 1000);

    const backupDir = path.join(cluster.rootDir, 'backup');
    const backupStopLsn = await takeLowLevelBackup(cluster, backupDir);

    const targets = await writeTargets(cluster);

    // The last batch must be in the archive for a restore to the end to see it.
    await cluster.waitArchived(await cluster.switchWal());
    await cluster.stop();

    return {
      cluster,
      major,
      segmentSize: cluster.segmentSize,
      backupDir,
      archiveDir: cluster.archiveDir,
      rootDir: cluster.rootDir,
      backupStopLsn,
      targets,
      expected: { immediate: 1000, xid: 2000, time: 3000, lsn: 4000, name: 5000, latest: 6000 },
    };
  } catch (error) {
    // The error carries the server log's last lines where the server was at fault.
    await cluster.stop();
    await removeTree(cluster.rootDir);
    throw error;
  }
}

interface Runs {
  query(sql: string, params: unknown[]): Promise<unknown>;
}

/** Rows first..last in one statement, so in one transaction unless one is open. */
async function insertRows(target: Runs, first: number, last: number): Promise<void> {
  await target.query('INSERT INTO tab_int SELECT generate_series($1::int, $2::int)', [first, last]);
}

/** Rows 1001..6000 in five transactions, with a target recorded between each. */
async function writeTargets(cluster: Cluster): Promise<RecoveryTargets> {
  // One session throughout, so that "the next statement" is a new transaction of ours and
  // nothing of the test's own making lands between a target and the batch after it.
  const session = await cluster.connect();
  try {
    await session.query('BEGIN');
    await insertRows(session, 1001, 2000);
    const xid = await scalar(session, 'SELECT txid_current()::text');
    await session.query('COMMIT');

    await insertRows(session, 2001, 3000);
    await sleep(TIME_GAP_MS);
    // now() is the start of this new transaction, so after the commit above; written in UTC
    // with an explicit offset so that it means the same under any server TimeZone.
    const time = `${await scalar(
      session,
      `SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')`,
    )}+00`;
    await sleep(TIME_GAP_MS);

    // Taken after the commit and before the next insert: an inclusive LSN target replays the
    // first record that starts at or after it and stops, long before the next batch commits.
    await insertRows(session, 3001, 4000);
    const lsn = await scalar(session, 'SELECT pg_current_wal_lsn()::text');

    await insertRows(session, 4001, 5000);
    await session.query('SELECT pg_create_restore_point($1)', [RESTORE_POINT]);
    // A second point at the same place whose name would break out of a naively quoted
    // setting: restoring to it proves the name reaches the server as one value.
    await session.query('SELECT pg_create_restore_point($1)', [HOSTILE_RESTORE_POINT]);

    // The last batch goes into a segment of its own, so that the archive has a segment
    // between the backup's and the last one: removing it makes a gap in the middle.
    await cluster.switchWal();
    await insertRows(session, 5001, 6000);
    return { time, xid, lsn, name: RESTORE_POINT, hostileName: HOSTILE_RESTORE_POINT };
  } finally {
    await session.end();
  }
}

async function scalar(session: pg.Client, sql: string): Promise<string> {
  const result = await session.query<Record<string, string>>(sql);
  const value = Object.values(result.rows[0] ?? {})[0];
  if (typeof value !== 'string' || value === '') throw new Error(`${sql} returned nothing`);
  return value;
}

// ---- the low-level (SQL) base backup --------------------------------------------------------

interface BackupStop {
  lsn: string;
  labelfile: string;
  spcmapfile: string | null;
}

/**
 * A non-exclusive base backup over SQL, as for builds without pg_basebackup: start, copy the
 * data directory, stop, all in one session (the backup ends if the session does). Returns the
 * stop LSN, once the segment holding it is in the archive.
 */
export async function takeLowLevelBackup(cluster: Cluster, backupDir: string): Promise<string> {
  // 15 renamed the functions and dropped the exclusive mode (and with it that argument).
  const [start, stop] =
    cluster.major >= 15
      ? ['SELECT pg_backup_start($1, true)', 'SELECT * FROM pg_backup_stop(true)']
      : ['SELECT pg_start_backup($1, true, false)', 'SELECT * FROM pg_stop_backup(false, true)'];

  const session = await cluster.connect();
  let result: BackupStop;
  try {
    await session.query(start, [BACKUP_LABEL]);
    await copyDataDirectory(cluster.dataDir, backupDir);
    result = (await session.query<BackupStop>(stop)).rows[0]!;
  } finally {
    await session.end();
  }

  // The stop call returns the files a backup must carry instead of the server writing them
  // into its own data directory; they go in byte for byte.
  await writeFile(path.join(backupDir, 'backup_label'), result.labelfile);
  if (result.spcmapfile) await writeFile(path.join(backupDir, 'tablespace_map'), result.spcmapfile);
  await chownToServer(backupDir, true);

  // With wait_for_archive the stop call already waited for the archiver; checking the file is
  // cheap and catches an archive_command that reports success without copying.
  const [{ segment }] = await cluster.query<{ segment: string }>(
    'SELECT pg_walfile_name($1::pg_lsn) AS segment',
    [result.lsn],
  );
  await cluster.waitArchived(segment);
  return result.lsn;
}

// Not copied: the running server's pid and options files, which would make a restored copy look
// like a running server; and the WAL itself, which a restore takes from the archive. pg_wal and
// pg_wal/archive_status stay, empty, because the server expects to find them.
const SKIPPED_FILES = new Set(['postmaster.pid', 'postmaster.opts']);
const EMPTIED_DIRECTORIES = new Set(['pg_wal']);

async function copyDataDirectory(dataDir: string, backupDir: string): Promise<void> {
  await makeServerDirectory(backupDir);
  await copyTree(dataDir, backupDir, '');
  await mkdir(path.join(backupDir, 'pg_wal', 'archive_status'), { recursive: true, mode: 0o700 });
}

async function copyTree(sourceRoot: string, destRoot: string, relative: string): Promise<void> {
  const names = await ignoreVanished(readdir(path.join(sourceRoot, relative)), []);
  for (const name of names) {
    const entry = path.join(relative, name);
    if (relative === '' && SKIPPED_FILES.has(name)) continue;
    await copyEntry(sourceRoot, destRoot, entry);
  }
}

async function copyEntry(sourceRoot: string, destRoot: string, entry: string): Promise<void> {
  const source = path.join(sourceRoot, entry);
  const dest = path.join(destRoot, entry);

  // The server keeps writing while the copy runs; a file that disappears in between (a
  // temporary stats file, a removed WAL segment) is simply not part of the backup.
  const stat = await ignoreVanished(lstat(source), undefined);
  if (!stat) return;

  if (stat.isDirectory()) {
    await mkdir(dest, { mode: 0o700 });
    if (!EMPTIED_DIRECTORIES.has(entry)) await copyTree(sourceRoot, destRoot, entry);
  } else if (stat.isSymbolicLink()) {
    // pg_tblspc entries stay links; tablespace_map records where each one pointed.
    await symlink(await readlink(source), dest);
  } else if (stat.isFile()) {
    await ignoreVanished(copyFile(source, dest), undefined);
  }
}

async function ignoreVanished<T>(operation: Promise<T>, fallback: T): Promise<T> {
  try {
    return await operation;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return fallback;
    throw error;
  }
}

// ---- tar format -----------------------------------------------------------------------------

/**
 * Packs a plain backup as pg_basebackup -Ft would: one base.tar (or base.tar.gz) whose entries
 * are relative to the data directory ("PG_VERSION", "base/1/1259"), without a leading "./".
 * Returns the path of the archive, created in destDir.
 */
export async function makeTarBackup(
  plainBackupDir: string,
  destDir: string,
  options: { gzip: boolean },
): Promise<string> {
  await mkdir(destDir, { recursive: true });
  const tarPath = path.join(destDir, options.gzip ? 'base.tar.gz' : 'base.tar');

  // Naming the top-level entries instead of "." is what keeps "./" off every path; ustar is the
  // format pg_basebackup writes.
  const entries = (await readdir(plainBackupDir)).sort();
  const args = ['--create', '--file', tarPath, '--format=ustar', '--sort=name', '--numeric-owner'];
  if (options.gzip) args.push('--gzip');
  args.push('--directory', plainBackupDir, '--', ...entries);
  await execFileAsync('tar', args);
  return tarPath;
}
