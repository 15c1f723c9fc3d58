// The folders a restore works in. The data directory is the restored cluster; beside it
// pitr keeps its run folder (server log, authentication file, the restore_command helper)
// and, when the backup has tablespaces, their copies. The server's socket gets a folder of
// its own under the system temp folder, since a socket path may not exceed 107 bytes.

import { execFile } from 'node:child_process';
import { promises as fs, realpathSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PitrError } from './errors.js';
import { spawnIdentity, type ServerAccount } from './os-user.js';
import { quoteShellWord } from './recovery-config.js';
import { shellFrontScript } from './wal-fetch.js';

const execFileAsync = promisify(execFile);

export interface Workspace {
  dataDirectory: string;
  runDirectory: string;
  tablespaceRoot: string;
  socketDirectory: string;
  logFile: string;
  hbaFile: string;
  walFetchScript: string;
  /** The shell script the server runs as restore_command; it calls walFetchScript when needed. */
  walFetchShell: string;
}

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  try {
    return (await fs.readdir(dir)).length === 0;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return true;
    if (code === 'ENOTDIR') return false;
    throw error;
  }
}

async function makeOwnedDirectory(dir: string, account: ServerAccount): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
  if (account.switchUser) await fs.chown(dir, account.uid, account.gid);
}

/**
 * The bundled restore_command helper. The bundles live in dist/ (dist/index.js for the
 * action, dist/cli/index.js for the CLI); when run from source the built one in dist/ is used.
 */
export function locateWalFetchScript(): string {
  const override = process.env.PITR_WAL_FETCH_SCRIPT;
  if (override) return override;
  const roots = new Set<string>();
  if (process.argv[1]) roots.add(path.dirname(realpathSync(process.argv[1])));
  try {
    roots.add(path.dirname(fileURLToPath(import.meta.url)));
  } catch {
    // Bundled code may carry no usable module URL; the entry script's folder is enough.
  }
  const candidates = [...roots].flatMap((root) => [
    path.join(root, 'wal-fetch', 'index.js'),
    path.join(root, '..', 'wal-fetch', 'index.js'),
    path.join(root, '..', 'dist', 'wal-fetch', 'index.js'),
  ]);
  for (const candidate of candidates) {
    try {
      realpathSync(candidate);
      return candidate;
    } catch {
      // try the next place
    }
  }
  throw new PitrError(
    'INTERNAL',
    `pitr's restore_command helper is missing; looked in ${candidates.join(', ')}.`,
    ['The dist/ folder is incomplete: run npm run bundle, or use a released copy of pitr.'],
  );
}

export async function prepareWorkspace(
  requested: string | undefined,
  account: ServerAccount,
): Promise<Workspace> {
  let dataDirectory: string;
  let runDirectory: string;
  let tablespaceRoot: string;

  if (requested) {
    dataDirectory = path.resolve(requested);
    if (!(await isEmptyOrMissing(dataDirectory))) {
      throw new PitrError(
        'DATA_DIRECTORY_NOT_EMPTY',
        `data-directory ${dataDirectory} exists and is not an empty folder; pitr restores only into a new or empty one.`,
        ['Choose another data-directory, or empty this one if nothing in it is needed.'],
      );
    }
    runDirectory = `${dataDirectory}.pitr`;
    tablespaceRoot = `${dataDirectory}.tablespaces`;
    await fs.rm(runDirectory, { recursive: true, force: true });
  } else {
    const base = process.env.RUNNER_TEMP || os.tmpdir();
    await fs.mkdir(base, { recursive: true });
    const root = await fs.mkdtemp(path.join(base, 'pitr-'));
    await makeOwnedDirectory(root, account);
    dataDirectory = path.join(root, 'data');
    runDirectory = path.join(root, 'run');
    tablespaceRoot = path.join(root, 'tablespaces');
  }
  await makeOwnedDirectory(dataDirectory, account);
  await makeOwnedDirectory(runDirectory, account);

  const socketDirectory = await fs.mkdtemp(path.join(os.tmpdir(), 'pitr-socket-'));
  await makeOwnedDirectory(socketDirectory, account);

  // The server account runs the helper, and the user's copy of pitr may sit where that
  // account cannot read (under /root, say): it gets a copy of its own.
  const walFetchScript = path.join(runDirectory, 'wal-fetch.mjs');
  await fs.copyFile(locateWalFetchScript(), walFetchScript);
  const walFetchShell = path.join(runDirectory, 'wal-fetch.sh');
  await fs.writeFile(
    walFetchShell,
    shellFrontScript(process.execPath, walFetchScript, quoteShellWord),
  );

  // Trust over a socket in a folder only the server account and root can enter.
  const hbaFile = path.join(runDirectory, 'pg_hba.conf');
  await fs.writeFile(
    hbaFile,
    '# pitr: local connections over the private socket folder only\nlocal all all trust\n',
  );

  const logFile = path.join(runDirectory, 'postgres.log');
  await fs.writeFile(logFile, '');
  for (const file of [walFetchScript, walFetchShell, hbaFile, logFile]) {
    if (account.switchUser) await fs.chown(file, account.uid, account.gid);
  }
  return {
    dataDirectory,
    runDirectory,
    tablespaceRoot,
    socketDirectory,
    logFile,
    hbaFile,
    walFetchScript,
    walFetchShell,
  };
}

/**
 * Checks, as the server account, that it can run Node.js and read the helper and the
 * archive: restore_command runs as that account, and a failure there would otherwise
 * surface only as a terse line in the server log.
 */
export async function checkServerAccountAccess(
  workspace: Workspace,
  account: ServerAccount,
  archive: string | undefined,
): Promise<void> {
  if (!account.switchUser) return;
  const probe = `
    const fs = require('fs');
    fs.accessSync(${JSON.stringify(workspace.walFetchScript)}, fs.constants.R_OK);
    fs.accessSync(${JSON.stringify(workspace.dataDirectory)}, fs.constants.W_OK | fs.constants.X_OK);
    ${archive ? `fs.readdirSync(${JSON.stringify(path.resolve(archive))});` : ''}
  `;
  try {
    await execFileAsync(process.execPath, ['-e', probe], { ...spawnIdentity(account), cwd: '/' });
  } catch (error) {
    const detail = ((error as { stderr?: string }).stderr ?? (error as Error).message)
      .split('\n')
      .find((line) => /Error|denied|EACCES|ENOENT/.test(line));
    throw new PitrError(
      'OS_USER_FAILED',
      `The server account "${account.name}" cannot run ${process.execPath} or read what recovery needs: ${detail?.trim() ?? 'unknown error'}.`,
      [
        `Every folder above the data directory, the WAL archive and Node.js must be readable and searchable by "${account.name}".`,
        'Restore under RUNNER_TEMP or /tmp (the default), or name another os-user.',
      ],
    );
  }
}
