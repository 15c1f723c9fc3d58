// Finds the base backup the user named and lays it out as a data directory: a plain copy
// (pg_basebackup -Fp, or a low-level API copy) is copied file by file, a tar backup
// (pg_basebackup -Ft) is extracted. Either way the user's files are only ever read.

import { log } from './log.js';
import { constants as fsConstants, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PitrError } from './errors.js';
import { extractTar } from './extract.js';
import type { ServerAccount } from './os-user.js';

export type BackupSource =
  | { kind: 'directory'; path: string }
  | { kind: 'tar'; directory: string; baseTar: string; walTar?: string; tablespaceTars: string[] };

// pg_basebackup's names (-z and --compress gzip, lz4, zstd) and tar's own for gzip.
const TAR_SUFFIXES = ['.tar', '.tar.gz', '.tgz', '.tar.lz4', '.tar.zst'];

function tarStem(name: string): string | undefined {
  const suffix = TAR_SUFFIXES.find((s) => name.endsWith(s));
  return suffix ? name.slice(0, -suffix.length) : undefined;
}

async function statOrUndefined(file: string) {
  try {
    return await fs.stat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function describeTarSet(directory: string, names: string[]): BackupSource {
  const byStem = new Map<string, string>();
  for (const name of names.sort()) {
    const stem = tarStem(name);
    if (stem !== undefined && !byStem.has(stem)) byStem.set(stem, path.join(directory, name));
  }
  const baseTar = byStem.get('base');
  if (!baseTar) throw new Error('unreachable: describeTarSet without base.tar');
  return {
    kind: 'tar',
    directory,
    baseTar,
    walTar: byStem.get('pg_wal'),
    tablespaceTars: [...byStem.entries()]
      .filter(([stem]) => /^\d+$/.test(stem))
      .map(([, file]) => file),
  };
}

/** Works out what kind of backup a path holds, without changing anything there. */
export async function locateBackup(input: string): Promise<BackupSource> {
  const resolved = path.resolve(input);
  const stat = await statOrUndefined(resolved);
  if (!stat) {
    throw new PitrError('BACKUP_NOT_FOUND', `base-backup ${resolved} does not exist.`, [
      'Check the path; relative paths are taken from the working directory (the workspace in an action).',
    ]);
  }

  if (stat.isFile()) {
    const name = path.basename(resolved);
    if (tarStem(name) !== 'base') {
      throw new PitrError(
        'BACKUP_NOT_FOUND',
        `base-backup ${resolved} is a file, but not base.tar (or base.tar.gz, .lz4, .zst).`,
        ['Name the data directory copy, the folder holding base.tar, or base.tar itself.'],
      );
    }
    const directory = path.dirname(resolved);
    const source = describeTarSet(directory, await fs.readdir(directory));
    return { ...source, baseTar: resolved } as BackupSource;
  }

  const names = await fs.readdir(resolved);
  if (names.includes('PG_VERSION')) return { kind: 'directory', path: resolved };
  if (names.some((name) => tarStem(name) === 'base')) return describeTarSet(resolved, names);

  const shown = names.slice(0, 12).join(', ') + (names.length > 12 ? ', ...' : '');
  throw new PitrError(
    'BACKUP_NOT_FOUND',
    `base-backup ${resolved} holds neither PG_VERSION (a data directory copy) nor base.tar (.gz, .lz4, .zst); it has: ${shown || 'nothing'}.`,
    [
      'Point base-backup at the folder pg_basebackup wrote (-Fp: the data directory; -Ft: the folder with base.tar).',
      'Backups made by other tools (pgBackRest, Barman, WAL-G) must be restored to a folder with that tool first.',
    ],
  );
}

// Files the restored server must not see: a pid file would make it think another server
// runs, a standby signal would keep it in standby forever instead of finishing recovery.
const SKIPPED_FILES = new Set(['postmaster.pid', 'postmaster.opts']);
const REMOVED_AFTER_RESTORE = ['standby.signal', 'recovery.signal', 'recovery.conf'];

/** Configuration files a Debian or Ubuntu backup lacks, as pitr writes them into the copy. */
const DEBIAN_ELSEWHERE: [string, string][] = [
  [
    'postgresql.conf',
    '# Written by pitr: the backup had none (Debian and Ubuntu keep it in /etc/postgresql).\n',
  ],
  [
    'pg_hba.conf',
    '# Written by pitr: the backup had none (Debian and Ubuntu keep it in /etc/postgresql).\n' +
      '# Local socket connections only, without a password, as initdb sets up a new cluster.\n' +
      'local all all trust\n',
  ],
];

async function chownIfNeeded(target: string, account: ServerAccount): Promise<void> {
  if (account.switchUser) await fs.lchown(target, account.uid, account.gid);
}

interface CopyTotals {
  files: number;
  bytes: number;
  /** The tablespaces (by oid) whose files were copied under the tablespace root. */
  tablespaces: Set<string>;
}

async function copyTree(
  from: string,
  to: string,
  account: ServerAccount,
  totals: CopyTotals,
  isTopLevel: boolean,
  tablespaceRoot: string,
): Promise<void> {
  const entries = await fs.readdir(from, { withFileTypes: true });
  for (const entry of entries) {
    if (isTopLevel && SKIPPED_FILES.has(entry.name)) continue;
    const source = path.join(from, entry.name);
    const destination = path.join(to, entry.name);

    if (entry.isSymbolicLink()) {
      await copyLinkedDirectory(source, destination, account, totals, from, tablespaceRoot);
    } else if (entry.isDirectory()) {
      const mode = (await fs.stat(source)).mode & 0o777;
      await fs.mkdir(destination, { mode: mode | 0o700 });
      await chownIfNeeded(destination, account);
      await copyTree(source, destination, account, totals, false, tablespaceRoot);
    } else if (entry.isFile()) {
      // copyFile uses the kernel's copy where it can: no file is ever held in memory.
      await fs.copyFile(source, destination, fsConstants.COPYFILE_EXCL);
      await chownIfNeeded(destination, account);
      totals.files += 1;
      totals.bytes += (await fs.stat(destination)).size;
    }
  }
}

// A plain backup may hold symbolic links: pg_wal moved elsewhere (--waldir), and
// pg_tblspc/<oid> pointing at tablespace folders. Their contents are copied into pitr's own
// folders, so that the restored cluster never shares a file with the original.
async function copyLinkedDirectory(
  source: string,
  destination: string,
  account: ServerAccount,
  totals: CopyTotals,
  parent: string,
  tablespaceRoot: string,
): Promise<void> {
  const linkTarget = path.resolve(parent, await fs.readlink(source));
  const stat = await statOrUndefined(linkTarget);
  if (!stat?.isDirectory()) {
    throw new PitrError(
      'BACKUP_DAMAGED',
      `${source} is a symbolic link to ${linkTarget}, which is not a readable folder.`,
      ['A plain backup with tablespaces needs the tablespace folders at the place its links name.'],
    );
  }
  if (path.basename(parent) === 'pg_tblspc') {
    const copy = path.join(tablespaceRoot, path.basename(source));
    await fs.mkdir(copy, { recursive: true, mode: 0o700 });
    await chownIfNeeded(tablespaceRoot, account);
    await chownIfNeeded(copy, account);
    await copyTree(linkTarget, copy, account, totals, false, tablespaceRoot);
    await fs.symlink(copy, destination);
    await chownIfNeeded(destination, account);
    totals.tablespaces.add(path.basename(source));
    return;
  }
  await fs.mkdir(destination, { mode: 0o700 });
  await chownIfNeeded(destination, account);
  await copyTree(linkTarget, destination, account, totals, false, tablespaceRoot);
}

/**
 * tablespace_map tells the server, at its first start, where to link each tablespace; it
 * still names the original cluster's folders, and a restored cluster writing there would
 * change another cluster's files. Each line is pointed at pitr's copy instead.
 */
async function rewriteTablespaceMap(
  dataDirectory: string,
  tablespaceRoot: string,
  copied: Set<string>,
  format: 'directory' | 'tar',
): Promise<void> {
  const mapPath = path.join(dataDirectory, 'tablespace_map');
  const text = await fs.readFile(mapPath, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const lines = text.split('\n').map((line) => {
    const oid = /^(\d+) /.exec(line)?.[1];
    if (!oid) return line;
    if (!copied.has(oid)) {
      throw new PitrError(
        'BACKUP_NOT_FOUND',
        format === 'tar'
          ? `tablespace_map lists tablespace ${oid}, but there is no ${oid}.tar beside base.tar.`
          : `tablespace_map lists tablespace ${oid} (${line.slice(oid.length + 1)}), but the copy has no pg_tblspc/${oid} link to its files.`,
        [
          format === 'tar'
            ? 'Copy every file pg_basebackup wrote, including one <oid>.tar per tablespace.'
            : 'A copy made with the low-level backup API must carry each tablespace as a pg_tblspc/<oid> link to a copy of its folder.',
        ],
      );
    }
    return `${oid} ${path.join(tablespaceRoot, oid)}`;
  });
  await fs.writeFile(mapPath, lines.join('\n'));
}

export interface MaterializedBackup {
  files: number;
  bytes: number;
  removed: string[];
}

/**
 * Copies or extracts the backup into dataDirectory (which exists, empty, owned by the
 * account). Tablespaces go under tablespaceRoot.
 */
export async function materializeBackup(
  source: BackupSource,
  dataDirectory: string,
  tablespaceRoot: string,
  account: ServerAccount,
): Promise<MaterializedBackup> {
  const totals: CopyTotals = { files: 0, bytes: 0, tablespaces: new Set() };
  const owner = account.switchUser ? { uid: account.uid, gid: account.gid } : undefined;

  if (source.kind === 'directory') {
    try {
      await copyTree(source.path, dataDirectory, account, totals, true, tablespaceRoot);
    } catch (error) {
      if (error instanceof PitrError) throw error;
      throw new PitrError(
        'WORKSPACE_WRITE_FAILED',
        `Copying the backup ${source.path} into ${dataDirectory} failed after ${totals.files} files: ${(error as Error).message}.`,
        [
          `Check that ${path.dirname(dataDirectory)} has room for the whole backup (df -h) and that pitr may write there.`,
          'Check that every file of the backup is readable by the user running pitr.',
        ],
        { cause: error },
      );
    }
    await rewriteTablespaceMap(dataDirectory, tablespaceRoot, totals.tablespaces, 'directory');
  } else {
    const base = await extractTar(source.baseTar, dataDirectory, { owner });
    totals.files += base.entries;
    totals.bytes += base.bytes;
    if (source.walTar) {
      const walDirectory = path.join(dataDirectory, 'pg_wal');
      await fs.mkdir(walDirectory, { recursive: true, mode: 0o700 });
      await chownIfNeeded(walDirectory, account);
      const wal = await extractTar(source.walTar, walDirectory, { owner });
      totals.files += wal.entries;
      totals.bytes += wal.bytes;
    }
    const extracted = new Set<string>();
    for (const tar of source.tablespaceTars) {
      const oid = tarStem(path.basename(tar)) as string;
      const destination = path.join(tablespaceRoot, oid);
      await fs.mkdir(destination, { recursive: true, mode: 0o700 });
      await chownIfNeeded(tablespaceRoot, account);
      await chownIfNeeded(destination, account);
      const result = await extractTar(tar, destination, { owner });
      totals.files += result.entries;
      totals.bytes += result.bytes;
      extracted.add(oid);
    }
    await rewriteTablespaceMap(dataDirectory, tablespaceRoot, extracted, 'tar');
  }

  // The server insists on a private data directory (0700, or 0750 from 11 on).
  await fs.chmod(dataDirectory, 0o700);
  for (const name of ['pg_wal', path.join('pg_wal', 'archive_status')]) {
    const dir = path.join(dataDirectory, name);
    if (!(await statOrUndefined(dir))) {
      await fs.mkdir(dir, { mode: 0o700 });
      await chownIfNeeded(dir, account);
    }
  }

  const removed: string[] = [];
  for (const name of REMOVED_AFTER_RESTORE) {
    const file = path.join(dataDirectory, name);
    if (await statOrUndefined(file)) {
      await fs.rm(file);
      removed.push(name);
      log.info(`Removed ${name} from the restored copy: pitr writes its own recovery settings.`);
    }
  }
  // Debian and Ubuntu keep postgresql.conf and pg_hba.conf in /etc/postgresql/<major>/<name>,
  // outside the data directory, so their backups have neither, and the server will not start
  // without both. pitr runs the restore with its own pg_hba.conf; the files written here are
  // for the restored cluster's own later starts (pg_ctl start): every setting at its default
  // (the backup's postgresql.auto.conf still applies), and local socket connections trusted,
  // as initdb sets up a new cluster.
  const missing: string[] = [];
  for (const [name, text] of DEBIAN_ELSEWHERE) {
    const file = path.join(dataDirectory, name);
    if (await statOrUndefined(file)) continue;
    await fs.writeFile(file, text, { mode: 0o600 });
    await chownIfNeeded(file, account);
    missing.push(name);
  }
  if (missing.length > 0) {
    log.info(
      `The backup has no ${missing.join(' or ')} (Debian and Ubuntu keep them in /etc/postgresql): pitr wrote ${missing.length === 1 ? 'one' : 'them'} into the restored copy, settings at their defaults and local socket connections trusted.`,
    );
  }
  return { ...totals, removed };
}

/** The major version in PG_VERSION ("10" to "18"; "9.6" style for older releases). */
export async function readMajorVersion(dataDirectory: string): Promise<number> {
  const file = path.join(dataDirectory, 'PG_VERSION');
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) {
    throw new PitrError(
      'BACKUP_DAMAGED',
      `The backup has no PG_VERSION file (looked for ${file}).`,
      ['A base backup is a whole data directory; check that the copy or base.tar is complete.'],
    );
  }
  const value = text.trim();
  if (!/^\d+$/.test(value)) {
    throw new PitrError(
      'VERSION_MISMATCH',
      `PG_VERSION says "${value}": PostgreSQL ${value} is older than 10, which pitr does not restore.`,
      ['pitr supports PostgreSQL 10 to 18.'],
    );
  }
  const major = Number(value);
  if (major < 10 || major > 18) {
    throw new PitrError(
      'VERSION_MISMATCH',
      `PG_VERSION says ${major}; pitr restores PostgreSQL 10 to 18.`,
      ['Use a pitr release that supports this version.'],
    );
  }
  return major;
}
