// PostgreSQL refuses to run as root ("cannot be run as root"), and container jobs on
// GitHub runners run as root. When pitr itself is root, every server process runs as an
// unprivileged account, which is created when it does not exist yet.

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { PitrError } from './errors.js';

const execFileAsync = promisify(execFile);

export interface ServerAccount {
  name: string;
  uid: number;
  gid: number;
  /** True when pitr runs as root and must switch to this account for the server. */
  switchUser: boolean;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

function readPasswdEntry(name: string): PasswdEntry | undefined {
  let passwd: string;
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of passwd.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields.length >= 4) {
      return { name, uid: Number(fields[2]), gid: Number(fields[3]) };
    }
  }
  return undefined;
}

async function createSystemAccount(name: string): Promise<void> {
  // Debian, Ubuntu and RHEL images have useradd; Alpine's busybox has adduser instead.
  const attempts: [string, string[]][] = [
    ['useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/bin/sh', name]],
    ['adduser', ['-S', '-D', '-H', '-s', '/bin/sh', name]],
  ];
  const failures: string[] = [];
  for (const [command, args] of attempts) {
    try {
      await execFileAsync(command, args);
      return;
    } catch (error) {
      const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
      failures.push(`${command}: ${detail}`);
    }
  }
  throw new PitrError(
    'OS_USER_FAILED',
    `pitr runs as root, so the server needs an unprivileged account, and creating "${name}" failed (${failures.join('; ')}).`,
    [
      `Create the account before pitr runs (useradd --system ${name}), or name an existing one with os-user.`,
      'Or run pitr as an ordinary user: then the server runs as that user.',
    ],
  );
}

/**
 * The account the server runs as: the named one (created when missing) when pitr is root,
 * else the current user.
 */
export async function resolveServerAccount(name: string): Promise<ServerAccount> {
  if (!isRoot()) {
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const user = process.env.USER ?? process.env.LOGNAME ?? String(uid);
    return { name: user, uid, gid, switchUser: false };
  }
  if (name === 'root') {
    throw new PitrError(
      'INPUT_INVALID',
      'os-user is "root", but PostgreSQL refuses to run as root.',
      ['Leave os-user at its default (postgres) or name another unprivileged account.'],
    );
  }
  let entry = readPasswdEntry(name);
  if (!entry) {
    await createSystemAccount(name);
    entry = readPasswdEntry(name);
  }
  if (!entry) {
    throw new PitrError(
      'OS_USER_FAILED',
      `The account "${name}" was created but is not in /etc/passwd.`,
      ['Name an existing unprivileged account with os-user.'],
    );
  }
  if (entry.uid === 0) {
    throw new PitrError(
      'INPUT_INVALID',
      `os-user "${name}" has uid 0, and PostgreSQL refuses to run as root.`,
      ['Name an unprivileged account with os-user.'],
    );
  }
  return { ...entry, switchUser: true };
}

/** Options for child_process.spawn/execFile that run a child as the server account. */
export function spawnIdentity(account: ServerAccount): { uid?: number; gid?: number } {
  return account.switchUser ? { uid: account.uid, gid: account.gid } : {};
}
