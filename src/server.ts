// Runs the restored cluster's postmaster as a child process. pitr starts `postgres`
// itself rather than through pg_ctl so that it holds the process: it sees the exit at
// once when startup fails, reads the log as it is written, and stops it with a signal.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import type { ServerAccount } from './os-user.js';
import { spawnIdentity } from './os-user.js';
import { RecoveryLog } from './server-log.js';

export interface ServerOptions {
  bin: string;
  dataDirectory: string;
  account: ServerAccount;
  args: string[];
  logFile: string;
  socketDirectory: string;
  port: number;
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

  /** A client connected over the private socket, as the first of `users` that exists. */
  async connect(users: string[], database = 'postgres'): Promise<pg.Client> {
    let lastError: Error | undefined;
    for (const user of users) {
      const client = new pg.Client({
        host: this.options.socketDirectory,
        port: this.options.port,
        user,
        database,
      });
      try {
        await client.connect();
        return client;
      } catch (error) {
        lastError = error as Error;
        await client.end().catch(() => undefined);
        // Only a missing role is worth another try; anything else will not get better.
        if (!/role .* does not exist/.test(lastError.message)) break;
      }
    }
    throw lastError ?? new Error('no user to connect as');
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
