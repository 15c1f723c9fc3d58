// Runs pitr as users do (the bundled CLI, or the action's bundle with INPUT_* variables)
// and opens what it restored independently, with a plain pg_ctl start.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import pg from 'pg';
import { promisify } from 'node:util';
import { binDir, chownToServer, makeServerDirectory, runAsServer } from './postgres.js';

const CLI = path.resolve('dist/cli/index.js');
const execFileAsync = promisify(execFile);

export interface CliRun {
  status: number;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args, '--json'],
      { env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const status = error ? ((error as { code?: number }).code ?? 1) : 0;
        let outputs: Record<string, string> = {};
        try {
          outputs = JSON.parse(stdout) as Record<string, string>;
        } catch {
          // left empty: the assertion on status or outputs will show stderr
        }
        resolve({ status, stdout, stderr, outputs });
      },
    );
  });
}

let nextPort = 55000 + Math.floor(Math.random() * 1000);

/**
 * Starts a restored data directory the plain way (pg_ctl start, only the socket moved so
 * that it cannot clash with another server), runs a query, and stops it again.
 */
export async function queryRestored<T = Record<string, unknown>>(
  major: number,
  dataDirectory: string,
  sql: string,
  user = 'postgres',
): Promise<T[]> {
  const socket = await makeServerDirectory(`${dataDirectory}.check-socket`);
  const port = nextPort++;
  const bin = binDir(major);
  const options = `-c listen_addresses='' -c unix_socket_directories='${socket}' -c port=${port}`;
  const logFile = path.join(socket, 'check.log');
  await runAsServer(
    path.join(bin, 'pg_ctl'),
    ['-D', dataDirectory, '-o', options, '-l', logFile, '-w', 'start'],
    '/',
  );
  try {
    const client = new pg.Client({ host: socket, port, user, database: 'postgres' });
    await client.connect();
    try {
      return (await client.query(sql)).rows as T[];
    } finally {
      await client.end();
    }
  } finally {
    await runAsServer(
      path.join(bin, 'pg_ctl'),
      ['-D', dataDirectory, '-m', 'fast', '-w', 'stop'],
      '/',
    );
    await fs.rm(socket, { recursive: true, force: true });
  }
}

/** The number of rows in a table of a restored data directory, opened the plain way. */
export async function restoredRowCount(
  major: number,
  dataDirectory: string,
  table = 'tab_int',
  user = 'postgres',
): Promise<number> {
  const [row] = await queryRestored<{ n: number }>(
    major,
    dataDirectory,
    `SELECT count(*)::int AS n FROM ${table}`,
    user,
  );
  return row.n;
}

/** A digest of every file's name, size, mode and content under a folder. */
export async function treeDigest(root: string): Promise<string> {
  const hash = createHash('sha256');
  async function walk(dir: string): Promise<void> {
    const entries = (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    );
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      const stat = await fs.lstat(full);
      hash.update(`${path.relative(root, full)}\0${stat.mode}\0${stat.size}\0${stat.mtimeMs}\0`);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) hash.update(await fs.readFile(full));
    }
  }
  await walk(root);
  return hash.digest('hex');
}

/** The programs an archive_command may compress with, and the suffix each one adds. */
const COMPRESSORS = { gzip: '.gz', zstd: '.zst', lz4: '.lz4', bzip2: '.bz2', xz: '.xz' };
export type ArchiveAction = 'drop' | 'keep' | keyof typeof COMPRESSORS;

/** A copy of an archive folder for a test to break: each file kept, dropped or compressed. */
export async function copyArchive(
  from: string,
  to: string,
  transform?: (name: string) => ArchiveAction,
) {
  await fs.mkdir(to, { recursive: true });
  for (const name of await fs.readdir(from)) {
    const action = transform?.(name) ?? 'keep';
    if (action === 'drop') continue;
    if (action === 'keep') {
      await fs.copyFile(path.join(from, name), path.join(to, name));
    } else {
      const { stdout } = await execFileAsync(action, ['-c', path.join(from, name)], {
        encoding: 'buffer',
        maxBuffer: 1024 * 1024 * 1024,
      });
      await fs.writeFile(path.join(to, `${name}${COMPRESSORS[action]}`), stdout);
    }
  }
  await chownToServer(to, true);
}
