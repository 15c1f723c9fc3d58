// Runs the restored cluster's postmaster as a child process. pitr starts `postgres`
// itself rather than through pg_ctl so that it holds the process: it sees the exit at
// once when startup fails, reads the log as it is written, and stops it with a signal.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createWriteStream, type WriteStream } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import type { ServerAccount } from './os-user.js';
import { spawnIdentity } from './os-user.js';
import { RecoveryLog } from './server-log.js';
import { commandLineSettings, quoteShellWord } from './recovery-config.js';

const execFileAsync = promisify(execFile);

export interface ServerOptions {
  bin: string;
  dataDirectory: string;
  account: ServerAccount;
  args: string[];
  logFile: string;
  socketDirectory: string;
  port: number;
  /** Roles to connect as, best first: the bootstrap superuser's name read from the files. */
  superusers: string[];
}

export interface ServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class RunningServer {
  readonly log = new RecoveryLog();
  readonly exited: Promise<ServerExit>;
  exit?: ServerExit;
  private readonly child: ChildProcess;
  private readonly logStream: WriteStream;
  private readonly options: ServerOptions;

  constructor(options: ServerOptions) {
    this.options = options;
    this.logStream = createWriteStream(options.logFile, { flags: 'a' });
    this.child = spawn(
      path.join(options.bin, 'postgres'),
      ['-D', options.dataDirectory, ...options.args],
      {
        cwd: options.dataDirectory,
        stdio: ['ignore', 'pipe', 'pipe'],
        ...spawnIdentity(options.account),
        env: { ...process.env, LC_MESSAGES: 'C', LANG: 'C' },
      },
    );
    let open = 2;
    const logEnded = new Promise<void>((resolve) => {
      for (const stream of [this.child.stdout, this.child.stderr]) {
        if (!stream) continue;
        const lines = createInterface({ input: stream, crlfDelay: Infinity });
        lines.on('line', (line) => {
          this.logStream.write(`${line}\n`);
          this.log.add(line);
        });
        lines.on('close', () => {
          open -= 1;
          if (open === 0) resolve();
        });
      }
    });
    this.exited = new Promise<ServerExit>((resolve) => {
      const spawnFailed = (error: Error) => {
        this.log.add(
          `pitr: could not start ${path.join(options.bin, 'postgres')}: ${error.message}`,
        );
        this.exit = { code: 127, signal: null };
        resolve(this.exit);
      };
      this.child.once('error', spawnFailed);
      this.child.once('exit', (code, signal) => {
        // Wait for the last log lines to be read before reporting the exit.
        void logEnded.then(() => {
          this.exit = { code, signal };
          this.logStream.end();
          resolve(this.exit);
        });
      });
    });
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** The superuser role pitr connects as, once a connection has found it. */
  user?: string;

  /**
   * A client connected over the private socket as the cluster's superuser: the first of the
   * candidate roles that exists, remembered for the connections after it.
   */
  async connect(database = 'postgres'): Promise<pg.Client> {
    const candidates = this.user ? [this.user] : this.options.superusers;
    const refused: string[] = [];
    for (const user of candidates) {
      const client = new pg.Client({
        host: this.options.socketDirectory,
        port: this.options.port,
        user,
        database,
      });
      try {
        await client.connect();
        this.user = user;
        return client;
      } catch (error) {
        await client.end().catch(() => undefined);
        const message = (error as Error).message;
        // Only a missing role is worth another try; anything else will not get better.
        if (!/^role .* does not exist/.test(message)) throw error;
        refused.push(message);
      }
    }
    throw new Error(
      `no superuser role to connect as: ${refused.join('; ')} (the names were read from global/pg_authid's file)`,
    );
  }

  /**
   * Stops the server with a fast shutdown (SIGINT): sessions are ended, a shutdown
   * checkpoint is written, and the cluster is left cleanly shut down. After `graceMs` it is
   * killed, which leaves a cluster that needs crash recovery, and says so.
   */
  async stop(graceMs = 60_000): Promise<{ clean: boolean }> {
    if (!this.running) return { clean: false };
    this.child.kill('SIGINT');
    const timer = setTimeout(() => this.child.kill('SIGQUIT'), graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return { clean: exit.code === 0 };
  }
}

export interface KeptServer {
  /** A libpq connection URI over the private socket. */
  uri: string;
  host: string;
  port: number;
  user: string;
  /** The command that stops the server cleanly. */
  stop: string;
  dataDirectory: string;
  bin: string;
  uid?: number;
  gid?: number;
}

/**
 * Starts the restored, promoted cluster again with pg_ctl, which detaches it from pitr, so
 * that later steps of the job (tests, pg_dump, a schema diff) can use it. It listens on the
 * same private socket only, with archiving off, and runs until stopKeptServer().
 */
export async function startForLaterSteps(options: {
  bin: string;
  dataDirectory: string;
  account: ServerAccount;
  settings: [string, string][];
  logFile: string;
  socketDirectory: string;
  port: number;
  /** The superuser role later steps connect as. */
  user: string;
}): Promise<KeptServer> {
  // pg_ctl hands -o to /bin/sh, so every word is quoted for it.
  const serverOptions = commandLineSettings(options.settings).map(quoteShellWord).join(' ');
  const pgCtl = path.join(options.bin, 'pg_ctl');
  await execFileAsync(
    pgCtl,
    [
      'start',
      '-w',
      '-t',
      '120',
      '-D',
      options.dataDirectory,
      '-l',
      options.logFile,
      '-o',
      serverOptions,
    ],
    {
      ...spawnIdentity(options.account),
      cwd: options.dataDirectory,
      env: { ...process.env, LC_MESSAGES: 'C' },
    },
  );
  const stopCommand = `${quoteShellWord(pgCtl)} stop -m fast -D ${quoteShellWord(options.dataDirectory)}`;
  return {
    uri: `postgresql://${encodeURIComponent(options.user)}@/postgres?host=${encodeURIComponent(options.socketDirectory)}&port=${options.port}`,
    host: options.socketDirectory,
    port: options.port,
    user: options.user,
    stop: options.account.switchUser
      ? `runuser -u ${options.account.name} -- ${stopCommand}`
      : stopCommand,
    dataDirectory: options.dataDirectory,
    bin: options.bin,
    ...spawnIdentity(options.account),
  };
}

/** Stops a server left running by startForLaterSteps: a fast shutdown, then its socket folder. */
export async function stopKeptServer(kept: KeptServer): Promise<void> {
  const identity =
    kept.uid !== undefined && kept.gid !== undefined ? { uid: kept.uid, gid: kept.gid } : {};
  await execFileAsync(
    path.join(kept.bin, 'pg_ctl'),
    ['stop', '-m', 'fast', '-w', '-D', kept.dataDirectory],
    {
      ...identity,
      cwd: '/',
    },
  );
}
