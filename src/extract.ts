// Extracts the tar archives pg_basebackup -Ft writes (base.tar, <oid>.tar, pg_wal.tar, each
// optionally compressed with gzip, lz4 or zstd) and tars of a data directory made with GNU tar. Archives can be many
// gigabytes, so everything streams: no entry is ever held in memory whole.
//
// An archive is input pitr did not make, and pitr runs as root in CI containers, so every
// entry is checked before anything is written for it: nothing may land outside the
// destination, nothing is written through a symlink, and no device nodes are made.

import { link, lstat, lutimes, lchown, mkdir, open, stat, symlink, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { decompressedStream, testCommand, type Compression } from './decompress.js';
import { PitrError } from './errors.js';

export interface ExtractOptions {
  /**
   * chown every created file/dir/link to this uid/gid (pitr runs as root and the server as
   * an unprivileged user)
   */
  owner?: { uid: number; gid: number };
}

export interface ExtractResult {
  /** Entries extracted: files, directories (the archive's "./" too), symlinks, hard links. */
  entries: number;
  /** Bytes of file contents written. */
  bytes: number;
}

export type { Compression };

/** Large writes: with the 16 KB default, per-chunk overhead dominates. */
const IO_CHUNK = 1024 * 1024;

// The leading bytes of each format; names lie (pg_basebackup's .tar.gz renamed to .tar, a
// .zst that was decompressed in place), magic bytes do not.
const MAGIC: [Exclude<Compression, 'none'>, number[]][] = [
  ['gzip', [0x1f, 0x8b]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['lz4', [0x04, 0x22, 0x4d, 0x18]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
];

/** The compression of a file, judged by its first bytes; 'none' for anything unrecognised. */
export async function detectCompression(path: string): Promise<Compression> {
  let head: Buffer;
  try {
    const handle = await open(path, 'r');
    try {
      const { buffer, bytesRead } = await handle.read(Buffer.alloc(6), 0, 6, 0);
      head = buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw archiveUnreadable(path, error);
  }
  for (const [compression, magic] of MAGIC) {
    if (magic.every((byte, i) => head[i] === byte)) return compression;
  }
  return 'none';
}

/**
 * Extracts a tar archive (plain or compressed) into destination, which is created when missing.
 * Refuses unsafe entries with BACKUP_UNSAFE_ENTRY and damaged archives with BACKUP_DAMAGED;
 * the archive itself is only ever read.
 */
export async function extractTar(
  archivePath: string,
  destination: string,
  options: ExtractOptions = {},
): Promise<ExtractResult> {
  const compression = await detectCompression(archivePath);

  const extraction = new Extraction(archivePath, destination, compression, options.owner);
  await extraction.prepareDestination();

  const parser = tar.extract();
  let running: Promise<void> = Promise.resolve();
  parser.on('entry', (header, body, next) => {
    // tar-stream holds back the next header until next() is called, so entries are written
    // one at a time, in archive order; an error passed to next() tears the whole pipeline down.
    running = extraction.extractEntry(header, body);
    running.then(
      () => next(),
      (error: Error) => next(error),
    );
  });
  const trailer = new TrailerWatch();

  try {
    await pipeline(decompressedStream(archivePath, compression), trailer, parser);
    // tar-stream may finish while the handler of a last, bodiless entry is still at work.
    await running;
  } catch (error) {
    // Settle the entry being written before reporting, so no file is left open behind us. A
    // failed write reaches the pipeline raw before the entry's own, clearer error is ready.
    const entryError = await running.then(
      () => undefined,
      (failure: unknown) => failure,
    );
    throw extraction.explainFailure(entryError instanceof PitrError ? entryError : error);
  }

  if (!trailer.sawEndOfArchive()) {
    throw extraction.damaged(
      trailer.bytes === 0
        ? 'it is empty'
        : 'it ends without the two zero blocks that close every tar archive, so it was cut short',
    );
  }
  await extraction.finishDirectories();
  return { entries: extraction.entries, bytes: extraction.bytes };
}

type Owner = NonNullable<ExtractOptions['owner']>;

// tar-stream's own types; its type list omits the null it gives for typeflags it does not know.
type EntryHeader = Omit<tar.Header, 'type'> & { type: tar.Header['type'] | null };
type EntryBody = tar.ExtractEvents['entry'][1];

interface DeferredDirectory {
  path: string;
  mode: number;
  mtime: Date | undefined;
}

/** The state of one extraction: what has been written, and which directories are real. */
class Extraction {
  entries = 0;
  bytes = 0;
  /** The entry being written, for error messages; undefined between entries. */
  private current: string | undefined;
  /**
   * Paths (relative, '/'-joined) known to be real directories, not symlinks. Entries never
   * replace anything, so once true this stays true for the whole extraction.
   */
  private readonly directories = new Set<string>(['']);
  private readonly deferred: DeferredDirectory[] = [];

  constructor(
    private readonly archivePath: string,
    private readonly destination: string,
    private readonly compression: Compression,
    private readonly owner: Owner | undefined,
  ) {}

  async prepareDestination(): Promise<void> {
    try {
      const existing = await stat(this.destination).catch(ifMissing(undefined));
      if (existing && !existing.isDirectory()) {
        throw new PitrError('INPUT_INVALID', `${this.destination} exists but is not a directory.`, [
          'Name a directory (or a path that does not exist yet) to restore into.',
        ]);
      }
      if (!existing) {
        // Parents get the usual mode so the server account can reach the destination; the
        // destination itself may become a data directory, which PostgreSQL wants private.
        await mkdir(dirname(this.destination), { recursive: true });
        await mkdir(this.destination, { mode: 0o700 });
        if (this.owner) await lchown(this.destination, this.owner.uid, this.owner.gid);
      }
    } catch (error) {
      if (error instanceof PitrError) throw error;
      throw this.destinationFailed(this.destination, error);
    }
  }

  async extractEntry(header: EntryHeader, body: EntryBody): Promise<void> {
    this.current = header.name;
    const type = header.type === 'contiguous-file' ? 'file' : header.type;
    if (type !== 'file') body.resume();

    const parts = this.checkedPath(header.name);
    const path = join(this.destination, ...parts);
    try {
      if (type === 'file') await this.writeFile(header, parts, path, body);
      else if (type === 'directory') await this.makeDirectory(header, parts, path);
      else if (type === 'symlink') await this.makeSymlink(header, parts, path);
      else if (type === 'link') await this.makeHardLink(header, parts, path);
      else throw this.unsupportedType(header);
    } catch (error) {
      if (error instanceof PitrError || !isDestinationError(error)) throw error;
      throw this.destinationFailed(path, error);
    }

    this.entries += 1;
    this.current = undefined;
  }

  /**
   * Applies directory modes and times last: children would change the times, and a
   * read-only directory mode would stop its children being written. Deepest first (archives
   * list parents before children), so no parent's mode can lock out a child still to do.
   */
  async finishDirectories(): Promise<void> {
    for (const directory of [...this.deferred].reverse()) {
      try {
        await applyDirectoryAttributes(directory);
      } catch (error) {
        throw this.destinationFailed(directory.path, error);
      }
    }
  }

  private async writeFile(
    header: EntryHeader,
    parts: string[],
    path: string,
    body: EntryBody,
  ): Promise<void> {
    this.refuseSparse(header);
    await this.ensureDirectories(parts.slice(0, -1));

    // 'wx' (O_EXCL) never opens an existing path, and so never follows a symlink there.
    const handle = await open(path, 'wx', 0o600).catch((error) => {
      throw this.existsOr(error, header.name, path);
    });
    try {
      // The mode given to open() passed through the umask; the header's mode must hold exactly.
      await handle.chmod(permissionBits(header.mode, 0o644));
      if (this.owner) await handle.chown(this.owner.uid, this.owner.gid);
      // The archive may fail while the file is being opened: tar-stream then destroys the body
      // before anything reads it, and Node's pipeline, which cannot see that a streamx stream
      // has closed already, would wait for it forever. The pipeline reports the real cause.
      if (body.destroyed) throw new Error(`the archive failed before "${header.name}" was read`);
    } catch (error) {
      await handle.close();
      throw error;
    }
    // The write stream closes the handle when it finishes or fails.
    await pipeline(body, handle.createWriteStream({ highWaterMark: IO_CHUNK }));
    if (header.mtime) await utimes(path, header.mtime, header.mtime);
    this.bytes += header.size ?? 0;
  }

  private async makeDirectory(header: EntryHeader, parts: string[], path: string): Promise<void> {
    // The destination itself ("./" in GNU tars): its mode is the caller's to set.
    if (parts.length === 0) return;

    await this.ensureDirectories(parts);
    this.deferred.push({ path, mode: permissionBits(header.mode, 0o755), mtime: header.mtime });
  }

  private async makeSymlink(header: EntryHeader, parts: string[], path: string): Promise<void> {
    const target = this.checkedSymlinkTarget(header, parts);
    await this.ensureDirectories(parts.slice(0, -1));

    await symlink(target, path).catch((error) => {
      throw this.existsOr(error, header.name, path);
    });
    if (this.owner) await lchown(path, this.owner.uid, this.owner.gid);
    if (header.mtime) await lutimes(path, header.mtime, header.mtime);
  }

  private async makeHardLink(header: EntryHeader, parts: string[], path: string): Promise<void> {
    const targetParts = this.checkedHardLinkTarget(header);
    const targetPath = join(this.destination, ...targetParts);

    // The target's directories were checked for symlinks when an earlier entry made it; a
    // target outside them was not extracted at all.
    const extracted = this.directories.has(targetParts.slice(0, -1).join('/'));
    const target = extracted ? await lstat(targetPath).catch(ifMissing(undefined)) : undefined;
    if (!target) {
      throw new PitrError(
        'BACKUP_DAMAGED',
        `${this.archivePath} is damaged: the hard link "${header.name}" points to ` +
          `"${header.linkname}", which no earlier entry created ` +
          `(after ${entriesText(this.entries)}).`,
        this.damagedHints(),
      );
    }
    // link() does not follow a symlink: linking one would re-anchor its relative target in
    // another directory, where it could point outside the destination.
    if (!target.isFile()) {
      throw this.unsafe(header.name, `is a hard link to "${header.linkname}", which is not a file`);
    }

    await this.ensureDirectories(parts.slice(0, -1));
    // A hard link shares its target's inode, so mode, owner and times are already set.
    await link(targetPath, path).catch((error) => {
      throw this.existsOr(error, header.name, path);
    });
  }

  /**
   * Makes each directory of a relative path that does not exist yet (mode 0700, like
   * PostgreSQL's own), and refuses to go through any component that is a symlink.
   */
  private async ensureDirectories(parts: string[]): Promise<void> {
    for (let depth = 1; depth <= parts.length; depth++) {
      const relative = parts.slice(0, depth).join('/');
      if (this.directories.has(relative)) continue;

      const path = join(this.destination, relative);
      try {
        await mkdir(path, { mode: 0o700 });
        if (this.owner) await lchown(path, this.owner.uid, this.owner.gid);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const existing = await lstat(path);
        if (existing.isSymbolicLink()) {
          throw this.unsafe(
            this.current ?? relative,
            `would be written through the symlink ${path}`,
          );
        }
        if (!existing.isDirectory()) {
          throw this.unsafe(
            this.current ?? relative,
            `needs ${path} to be a directory, but it is a file`,
          );
        }
      }
      this.directories.add(relative);
    }
  }

  /** The entry's path as components below the destination; refuses any way out of it. */
  private checkedPath(name: string): string[] {
    if (name.startsWith('/')) throw this.unsafe(name, 'has an absolute path');
    const parts = name.split('/').filter((part) => part !== '' && part !== '.');
    if (parts.includes('..')) throw this.unsafe(name, 'has a ".." component in its path');
    return parts;
  }

  /**
   * The symlink's target, when it resolves inside the destination. Targets are checked as
   * written, without following links, so after the leading ".." steps a target may only go
   * down: "a/b/../.." would step up out of whatever "a/b" is, and "a/b" may itself be a
   * link (this is how a chain of links each pointing "inside" can still escape).
   */
  private checkedSymlinkTarget(header: EntryHeader, parts: string[]): string {
    const target = header.linkname ?? '';
    if (target === '') throw this.emptyLinkTarget(header);
    if (target.startsWith('/')) {
      throw this.unsafe(header.name, `is a symlink to the absolute path ${target}`, [
        'A data directory archived with tar keeps the absolute links of pg_wal and of ' +
          'tablespaces; take the backup with pg_basebackup -Ft instead, which writes them as ' +
          'pg_wal.tar and <oid>.tar.',
      ]);
    }

    let depth = parts.length - 1;
    let descended = false;
    for (const step of target.split('/')) {
      if (step === '' || step === '.') continue;
      if (step !== '..') {
        descended = true;
      } else if (descended) {
        throw this.unsafe(
          header.name,
          `is a symlink to "${target}", which climbs back out with ".."`,
        );
      } else if (--depth < 0) {
        throw this.unsafe(header.name, `is a symlink to "${target}", outside the destination`);
      }
    }
    return target;
  }

  /** The hard link's target as components; tar names it from the archive root, like entries. */
  private checkedHardLinkTarget(header: EntryHeader): string[] {
    const target = header.linkname ?? '';
    if (target === '') throw this.emptyLinkTarget(header);
    if (target.startsWith('/')) {
      throw this.unsafe(header.name, `is a hard link to the absolute path ${target}`);
    }
    const parts = target.split('/').filter((part) => part !== '' && part !== '.');
    if (parts.includes('..')) {
      throw this.unsafe(header.name, `is a hard link to "${target}", outside the destination`);
    }
    if (parts.length === 0) throw this.unsafe(header.name, 'is a hard link to the destination');
    return parts;
  }

  // GNU tar's sparse files (--sparse with the posix format) arrive as ordinary files whose
  // body is a map of holes followed by the data; written as they are, they would be corrupt.
  private refuseSparse(header: EntryHeader): void {
    const pax = (header as { pax?: Record<string, string> }).pax ?? {};
    if (Object.keys(pax).some((key) => key.startsWith('GNU.sparse.'))) {
      throw new PitrError(
        'INPUT_INVALID',
        `"${header.name}" in ${this.archivePath} is stored as a GNU sparse file, which pitr ` +
          'cannot extract.',
        ['Make the archive again without tar --sparse (-S), or with pg_basebackup -Ft.'],
      );
    }
  }

  private unsupportedType(header: EntryHeader): PitrError {
    const type = header.type ?? 'unknown';
    if (type === 'character-device' || type === 'block-device' || type === 'fifo') {
      return this.unsafe(header.name, `is a ${type}, which no data directory contains`);
    }
    return new PitrError(
      'INPUT_INVALID',
      `"${header.name}" in ${this.archivePath} has an entry type (${type}) pitr cannot ` +
        'extract: GNU sparse files, volume labels and multi-volume parts are not supported.',
      [
        `List the archive with \`tar tvf ${this.archivePath}\`, then make it again with plain ` +
          'tar or pg_basebackup -Ft.',
      ],
    );
  }

  private unsafe(name: string, what: string, extraHints: string[] = []): PitrError {
    return new PitrError(
      'BACKUP_UNSAFE_ENTRY',
      `Refusing the entry "${name}" in ${this.archivePath}: it ${what}.`,
      [
        ...extraHints,
        'pg_basebackup never writes such an entry: the archive may have been made by another ' +
          'tool, or altered after the backup.',
        `Inspect it with \`tar tvf ${this.archivePath}\` before trusting it; nothing of this ` +
          'entry was written.',
      ],
    );
  }

  private emptyLinkTarget(header: EntryHeader): PitrError {
    return new PitrError(
      'BACKUP_DAMAGED',
      `${this.archivePath} is damaged: the link "${header.name}" has no target ` +
        `(after ${entriesText(this.entries)}).`,
      this.damagedHints(),
    );
  }

  /** An EEXIST from creating path becomes a refusal; other errors pass through. */
  private existsOr(error: NodeJS.ErrnoException, name: string, path: string): unknown {
    if (error.code !== 'EEXIST') return error;
    return new PitrError(
      'BACKUP_UNSAFE_ENTRY',
      `Refusing the entry "${name}" in ${this.archivePath}: ${path} already exists, and pitr ` +
        'never replaces anything while extracting.',
      [
        'Extract into an empty directory.',
        'If it was empty, the archive names this path twice, which pg_basebackup never does: ' +
          `inspect it with \`tar tvf ${this.archivePath}\`.`,
      ],
    );
  }

  /**
   * The error to report for a failed pipeline: ours as they are; the rest come from reading,
   * decompressing or parsing the archive (zlib, tar-stream), so they are damage.
   */
  explainFailure(error: unknown): PitrError {
    if (error instanceof PitrError) return error;
    const code = (error as NodeJS.ErrnoException).code;
    const what = error instanceof Error ? error.message : String(error);
    return this.damaged(code && !what.includes(code) ? `${what} (${code})` : what);
  }

  damaged(what: string): PitrError {
    const where = this.current === undefined ? '' : `, in entry "${this.current}"`;
    return new PitrError(
      'BACKUP_DAMAGED',
      `${this.archivePath} is damaged: ${what}; extraction stopped after ` +
        `${entriesText(this.entries)}${where}.`,
      this.damagedHints(),
    );
  }

  private damagedHints(): string[] {
    const check =
      this.compression === 'none'
        ? testCommand(this.archivePath, 'none')
        : `${testCommand(this.archivePath, this.compression)} && tar tf ${this.archivePath} > /dev/null`;
    return [
      'Copy the backup again from where it was taken; an interrupted transfer leaves a file like this.',
      `Check the copy with \`${check}\` before restoring it.`,
    ];
  }

  private destinationFailed(path: string, error: unknown): PitrError {
    const what = error instanceof Error ? error.message : String(error);
    const entry = this.current === undefined ? '' : ` "${this.current}"`;
    return new PitrError(
      'WORKSPACE_WRITE_FAILED',
      `Writing${entry} from ${this.archivePath} to ${path} failed: ${what}; extraction ` +
        `stopped after ${entriesText(this.entries)} and ${this.bytes} bytes.`,
      [
        `Check that ${this.destination} has room for the whole backup (df -h) and that pitr ` +
          'may write there.',
      ],
      { cause: error },
    );
  }
}

/**
 * Watches the decompressed bytes on their way to the tar parser. tar-stream accepts an
 * archive that stops cleanly between two entries, which is how a plain .tar cut short at a
 * block boundary looks; every tar writer ends with two zero blocks, so their absence gives
 * the truncation away. A truncation right after an entry whose own data ends in 1 KiB of
 * zeros (a preallocated WAL segment) still passes: the watch cannot tell those apart.
 */
class TrailerWatch extends Transform {
  bytes = 0;
  private tail: Buffer = Buffer.alloc(0);

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.tail =
      chunk.length >= TRAILER_SIZE
        ? chunk.subarray(chunk.length - TRAILER_SIZE)
        : Buffer.concat([this.tail, chunk]).subarray(-TRAILER_SIZE);
    done(null, chunk);
  }

  sawEndOfArchive(): boolean {
    return (
      this.bytes % 512 === 0 && this.tail.length === TRAILER_SIZE && this.tail.every((b) => b === 0)
    );
  }
}

const TRAILER_SIZE = 1024;

function entriesText(count: number): string {
  return count === 1 ? '1 entry' : `${count} entries`;
}

/** A catch handler for fs calls that turns "no such file" into fallback. */
function ifMissing<T>(fallback: T): (error: NodeJS.ErrnoException) => T {
  return (error) => {
    if (error.code === 'ENOENT') return fallback;
    throw error;
  };
}

/** Permission bits only: setuid, setgid and sticky bits from an archive are never kept. */
function permissionBits(mode: number | undefined, fallback: number): number {
  return (mode ?? fallback) & 0o777;
}

async function applyDirectoryAttributes({ path, mode, mtime }: DeferredDirectory): Promise<void> {
  // The path was a real directory when made and entries never replace anything, so chmod
  // and utimes (which follow links) act on that directory.
  const handle = await open(path, 'r');
  try {
    await handle.chmod(mode);
    if (mtime) await handle.utimes(mtime, mtime);
  } finally {
    await handle.close();
  }
}

/**
 * True for an error from the file system under the destination. Those errors carry the
 * system call that failed; the only call made on the archive side is read(), and errors of
 * zlib and tar-stream carry none, so they count as damage to the archive.
 */
function isDestinationError(error: unknown): boolean {
  const syscall = (error as NodeJS.ErrnoException | undefined)?.syscall;
  return typeof syscall === 'string' && syscall !== 'read';
}

function archiveUnreadable(path: string, error: unknown): PitrError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') {
    return new PitrError('BACKUP_NOT_FOUND', `The backup archive ${path} does not exist.`, [
      'Check the path (it is relative to the working directory) and that the backup was ' +
        'downloaded or copied before pitr ran.',
    ]);
  }
  const what = error instanceof Error ? error.message : String(error);
  return new PitrError('INPUT_INVALID', `The backup archive ${path} cannot be read: ${what}.`, [
    'Name a tar file (base.tar, base.tar.gz, pg_wal.tar) that pitr may read.',
  ]);
}
