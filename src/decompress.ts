// The decompressed bytes of a backup file. gzip is read with Node's zlib. The others
// (pg_basebackup 15+ writes lz4 and zstd, with --compress; bzip2 and xz come from tar -j and
// -J) are read through the program of the same name, which every distribution packages:
// Node 20 has none of them built in. The program's output streams like a file read, and its
// failure (a damaged frame, a stream cut short) ends that stream with the program's own words.

import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { PitrError } from './errors.js';

export type Compression = 'none' | 'gzip' | 'lz4' | 'zstd' | 'bzip2' | 'xz';

/** Large reads: with the 64 KB default, per-chunk overhead dominates. */
const IO_CHUNK = 1024 * 1024;
/** How much of a program's complaint goes into a message. */
const STDERR_KEPT = 2000;

/** The Debian and Ubuntu package holding each program. */
const PACKAGE: Record<Exclude<Compression, 'none' | 'gzip'>, string> = {
  lz4: 'lz4',
  zstd: 'zstd',
  bzip2: 'bzip2',
  xz: 'xz-utils',
};

/** The command that checks a compressed file on its own, for hints. */
export function testCommand(file: string, compression: Compression): string {
  if (compression === 'none') return `tar tf ${file} > /dev/null`;
  return `${compression} -t ${file}`;
}

/**
 * The decompressed content of `file` as a stream. Errors while reading or decompressing end
 * the stream with an error; a missing program is a PitrError saying what to install.
 */
export function decompressedStream(
  file: string,
  compression: Compression,
  readChunk = IO_CHUNK,
): Readable {
  if (compression !== 'none' && compression !== 'gzip') return throughProgram(file, compression);
  const input = createReadStream(file, { highWaterMark: readChunk });
  if (compression === 'none') return input;
  const gunzip = createGunzip();
  input.on('error', (error) => gunzip.destroy(error));
  return input.pipe(gunzip);
}

function throughProgram(file: string, program: Exclude<Compression, 'none' | 'gzip'>): Readable {
  // -d decompress, -c to stdout, -q no progress; the file is only read.
  const child = spawn(program, ['-d', '-c', '-q', '--', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    if (stderr.length < STDERR_KEPT) stderr += text;
  });
  const exited = new Promise<number | string>((resolve) => {
    child.on('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });

  const output = new ProgramOutput(async () => {
    const status = await exited;
    if (status === 0) return undefined;
    const said = stderr.trim().split('\n').slice(-3).join(' ');
    return new Error(`${program} -d said: ${said || `exit status ${status}`}`);
  });
  child.on('error', (error: NodeJS.ErrnoException) => {
    output.destroy(
      error.code === 'ENOENT'
        ? new PitrError(
            'INPUT_INVALID',
            `${file} is compressed with ${program}, and reading it takes the ${program} program, which is not on PATH.`,
            [
              `Install it (apt-get install ${PACKAGE[program]}), or decompress the files first (${program} -d -k ${file} keeps the original) and give pitr the decompressed ones.`,
            ],
          )
        : error,
    );
  });
  child.stdout.on('error', (error) => output.destroy(error));
  child.stdout.pipe(output);
  // When the reader gives up early (an unsafe entry, a full disk), the program must stop too.
  output.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  return output;
}

/** Passes a program's output on, and at its end fails if the program did. */
class ProgramOutput extends Transform {
  constructor(private readonly outcome: () => Promise<Error | undefined>) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    this.outcome().then((error) => done(error), done);
  }
}

// archive_command compresses WAL, .history and .backup files alike, and names the result by
// the tool's suffix; archives are read by name, since opening every file would cost a read.
const NAME_SUFFIXES: [string, Exclude<Compression, 'none'>][] = [
  ['.gz', 'gzip'],
  ['.zst', 'zstd'],
  ['.lz4', 'lz4'],
  ['.bz2', 'bzip2'],
  ['.xz', 'xz'],
];

/**
 * The suffixes whose files are decompressed by a program of the compression's name, as
 * "suffix:program" words for the restore_command shell front (which reads gzip through Node).
 */
export function programSuffixes(): string[] {
  return NAME_SUFFIXES.filter(([, compression]) => compression !== 'gzip').map(
    ([suffix, program]) => `${suffix.slice(1)}:${program}`,
  );
}

/** An archived file's name without its compression suffix, and the compression it names. */
export function splitCompressedName(name: string): { bare: string; compression: Compression } {
  for (const [suffix, compression] of NAME_SUFFIXES) {
    if (name.endsWith(suffix)) return { bare: name.slice(0, -suffix.length), compression };
  }
  return { bare: name, compression: 'none' };
}

/** The names an archived file may have: as it is, and with each compression suffix. */
export function archivedNames(name: string): string[] {
  return [name, ...NAME_SUFFIXES.map(([suffix]) => `${name}${suffix}`)];
}

/** The decompressed content of an archived file, by the suffix of its name. */
export function archivedFileStream(file: string, readChunk = IO_CHUNK): Readable {
  return decompressedStream(file, splitCompressedName(file).compression, readChunk);
}
