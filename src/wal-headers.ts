// The first page of every WAL segment starts with a "long" header that says which cluster wrote
// it (the system identifier), with which segment size, and at which WAL position the segment
// begins. The server checks that header when it opens a segment during replay and, when it does
// not fit, takes the segment for the end of WAL: recovery ends there, without an error when no
// target was set. Reading the first 40 bytes of each archived segment before replay names such a
// file, with what was expected and what was found, while there is still time to fetch a good copy.

import { promises as fs } from 'node:fs';
import { archivedFileStream, splitCompressedName } from './decompress.js';
import { PitrError } from './errors.js';
import { formatLsn, parseSegmentFileName, segmentFileName, segmentStartLsn } from './wal-names.js';

export interface SegmentCheckExpectation {
  /** PostgreSQL major version of the backup, 10 to 18: picks the page magic. */
  major: number;
  /** The cluster's system identifier, from the backup's pg_control. */
  systemIdentifier: bigint;
  /** WAL segment size in bytes, from the backup's pg_control. */
  segmentSize: number;
}

export type SegmentProblemKind =
  'truncated' | 'magic' | 'foreign' | 'pageaddr' | 'segment-size' | 'timeline' | 'unreadable';

export interface SegmentProblem {
  /** Full path of the archived file, possibly with a compression suffix (.gz, .zst, ...). */
  file: string;
  /** The 24-hex segment name the file stands for. */
  segment: string;
  kind: SegmentProblemKind;
  expected: string;
  found: string;
}

type Finding = Pick<SegmentProblem, 'kind' | 'expected' | 'found'>;

// XLOG_PAGE_MAGIC of each major, from src/include/access/xlog_internal.h of its release, and
// checked against the first page of a segment archived by a server of each major.
const PAGE_MAGIC = new Map<number, number>([
  [10, 0xd097],
  [11, 0xd098],
  [12, 0xd101],
  [13, 0xd106],
  [14, 0xd10d],
  [15, 0xd110],
  [16, 0xd113],
  [17, 0xd116],
  [18, 0xd118],
]);

/** XLOG_PAGE_MAGIC of a major, 10 to 18. */
export function pageMagic(major: number): number {
  const magic = PAGE_MAGIC.get(major);
  if (magic === undefined) throw new Error(`No WAL page magic known for PostgreSQL ${major}.`);
  return magic;
}

// XLogLongPageHeaderData (xlog_internal.h), little-endian as on every platform pitr runs on. The
// short header's fields take 20 bytes, and the 8-byte alignment of xlp_pageaddr pads it to 24:
// the long header's own fields follow from there. xlp_rem_len (16) and xlp_xlog_blcksz (36) are
// not checked: the first says nothing about the file's identity, and the block size is not in
// the expectation (every build pitr can install uses 8192).
const LONG_HEADER_SIZE = 40;
const OFFSET = { magic: 0, info: 2, tli: 4, pageaddr: 8, sysid: 24, segSize: 32 } as const;

const XLP_LONG_HEADER = 0x0002;
// Every xlp_info flag a server of 10 to 18 may set (XLP_ALL_FLAGS); the server refuses a page
// with any other bit.
const XLP_ALL_FLAGS = 0x000f;

// Reading more compressed input than this to get 40 bytes out would mean a damaged stream anyway.
const COMPRESSED_READ_CHUNK = 16 * 1024;

const DEFAULT_CONCURRENCY = 8;

/**
 * Checks the first page header of one archived segment (plain or compressed) against the
 * backup's cluster. Returns undefined when it fits, and the first problem found otherwise; a
 * file that cannot be read is itself a problem, and only a missing decompressing program
 * throws (INPUT_INVALID).
 */
export async function checkSegmentHeader(
  file: string,
  segmentName: string,
  exp: SegmentCheckExpectation,
): Promise<SegmentProblem | undefined> {
  const magic = pageMagic(exp.major);
  const name = parseSegmentFileName(segmentName, exp.segmentSize);
  if (!name) {
    throw new Error(`${segmentName} is not a segment name for ${exp.segmentSize}-byte segments.`);
  }

  const head =
    splitCompressedName(file).compression === 'none'
      ? await readPlainHead(file, exp.segmentSize)
      : await readCompressedHead(file);
  const finding = Buffer.isBuffer(head)
    ? checkLongHeader(head, exp, magic, name.timeline, name.segno)
    : head;
  return finding && { file, segment: segmentName, ...finding };
}

/**
 * Checks many segments, a few at a time, and returns their problems in the order the files were
 * given; an empty list means every header fits.
 */
export async function checkSegments(
  files: { file: string; segment: string }[],
  exp: SegmentCheckExpectation,
  concurrency = DEFAULT_CONCURRENCY,
): Promise<SegmentProblem[]> {
  const results: (SegmentProblem | undefined)[] = new Array(files.length);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const index = next++;
      results[index] = await checkSegmentHeader(files[index].file, files[index].segment, exp);
    }
  };
  const workers = Math.max(1, Math.min(concurrency, files.length));
  await Promise.all(Array.from({ length: workers }, worker));
  return results.filter((problem): problem is SegmentProblem => problem !== undefined);
}

// ---- reading the first page ----------------------------------------------------------------

function unreadable(error: unknown, what: string): Finding {
  const detail = error instanceof Error ? error.message : String(error);
  return { kind: 'unreadable', expected: what, found: detail };
}

/**
 * The first 40 bytes of a plain segment. The server itself refuses an archived segment of the
 * wrong size ("archive file has wrong size"), so the size is checked first.
 */
async function readPlainHead(file: string, segmentSize: number): Promise<Buffer | Finding> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(file, 'r');
    const { size } = await handle.stat();
    if (size !== segmentSize) {
      return {
        kind: 'truncated',
        expected: `${describeSize(segmentSize)}, the segment size in pg_control`,
        found: describeSize(size),
      };
    }
    const head = Buffer.alloc(LONG_HEADER_SIZE);
    let filled = 0;
    while (filled < head.length) {
      const { bytesRead } = await handle.read(head, filled, head.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    // Only a file shrinking between the stat and the read gets here.
    if (filled < head.length) {
      return {
        kind: 'truncated',
        expected: `at least ${LONG_HEADER_SIZE} bytes (the first page header)`,
        found: describeSize(filled),
      };
    }
    return head;
  } catch (error) {
    return unreadable(error, 'a readable file');
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/**
 * The first 40 bytes of a compressed segment, decompressing only as far as that and then
 * stopping. Its size is not checked: gzip says how long its content is only in its last four
 * bytes, modulo 4 GB and per member, and the other formats need not say at all, so a segment
 * cut short after its first page passes this check and is left for the fetch to find.
 */
async function readCompressedHead(file: string): Promise<Buffer | Finding> {
  const source = archivedFileStream(file, COMPRESSED_READ_CHUNK);
  const format = splitCompressedName(file).compression;
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of source) {
      chunks.push(chunk as Buffer);
      length += (chunk as Buffer).length;
      if (length >= LONG_HEADER_SIZE) break;
    }
  } catch (error) {
    // zlib reports a stream that breaks off as Z_BUF_ERROR "unexpected end of file".
    if ((error as NodeJS.ErrnoException).code === 'Z_BUF_ERROR') {
      return {
        kind: 'truncated',
        expected: `at least ${LONG_HEADER_SIZE} bytes after gunzip (the first page header)`,
        found: `${describeSize(length)} before the gzip stream breaks off`,
      };
    }
    // A decompressing program that is not installed is no fault of the file: said once, as is.
    if (error instanceof PitrError) throw error;
    return unreadable(error, `a readable ${format} file`);
  } finally {
    source.destroy();
  }

  if (length < LONG_HEADER_SIZE) {
    return {
      kind: 'truncated',
      expected: `at least ${LONG_HEADER_SIZE} bytes after decompressing (the first page header)`,
      found: `${describeSize(length)}, where the ${format} stream ends`,
    };
  }
  return Buffer.concat(chunks).subarray(0, LONG_HEADER_SIZE);
}

// ---- checking it ---------------------------------------------------------------------------

/** The checks XLogReaderValidatePageHeader (xlogreader.c) makes on a segment's first page. */
function checkLongHeader(
  head: Buffer,
  exp: SegmentCheckExpectation,
  magic: number,
  fileTimeline: number,
  segno: bigint,
): Finding | undefined {
  const foundMagic = head.readUInt16LE(OFFSET.magic);
  if (foundMagic !== magic) {
    return { kind: 'magic', expected: describeMagic(magic), found: describeMagic(foundMagic) };
  }

  const info = head.readUInt16LE(OFFSET.info);
  if ((info & ~XLP_ALL_FLAGS) !== 0) {
    return {
      kind: 'magic',
      expected: `xlp_info flags within 0x${hex4(XLP_ALL_FLAGS)}`,
      found: `xlp_info 0x${hex4(info)}`,
    };
  }
  if ((info & XLP_LONG_HEADER) === 0) {
    return {
      kind: 'magic',
      expected: `a long page header (xlp_info flag 0x${hex4(XLP_LONG_HEADER)})`,
      found: `xlp_info 0x${hex4(info)}: the first page has no long header`,
    };
  }

  const sysid = head.readBigUInt64LE(OFFSET.sysid);
  if (sysid !== exp.systemIdentifier) {
    return {
      kind: 'foreign',
      expected: `system identifier ${exp.systemIdentifier} (from the backup's pg_control)`,
      found: `system identifier ${sysid}`,
    };
  }

  const segSize = head.readUInt32LE(OFFSET.segSize);
  if (segSize !== exp.segmentSize) {
    return {
      kind: 'segment-size',
      expected: `segment size ${describeSize(exp.segmentSize)}, as in pg_control`,
      found: `segment size ${describeSize(segSize)}`,
    };
  }

  const tli = head.readUInt32LE(OFFSET.tli);
  const start = segmentStartLsn(segno, exp.segmentSize);
  const pageaddr = head.readBigUInt64LE(OFFSET.pageaddr);
  if (pageaddr !== start) {
    return {
      kind: 'pageaddr',
      expected: describePageAddress(start, fileTimeline, exp.segmentSize),
      found: describePageAddress(pageaddr, tli, exp.segmentSize),
    };
  }

  // xlp_tli is the timeline of the first record on the page. The first segment of a new
  // timeline begins as a copy of its parent's segment up to the switch point, so its first
  // page keeps the parent's, lower, timeline; and the server only refuses a timeline that goes
  // backwards from page to page ("out-of-sequence timeline ID"), which one page cannot show.
  // A timeline above the file name's, though, no server writes: a child timeline's WAL never
  // goes into a file named for its parent.
  if (tli > fileTimeline) {
    return {
      kind: 'timeline',
      expected: `timeline ${fileTimeline} or lower (the timeline in the file name)`,
      found: `timeline ${tli}`,
    };
  }
  return undefined;
}

function hex4(value: number): string {
  return value.toString(16).toUpperCase().padStart(4, '0');
}

function majorOfMagic(magic: number): number | undefined {
  for (const [major, known] of PAGE_MAGIC) if (known === magic) return major;
  return undefined;
}

function describeMagic(magic: number): string {
  const major = majorOfMagic(magic);
  const whose = major === undefined ? 'no PostgreSQL 10 to 18 writes it' : `PostgreSQL ${major}`;
  return `magic 0x${hex4(magic)} (${whose})`;
}

function describeSize(bytes: number): string {
  const mb = bytes / (1024 * 1024);
  return Number.isInteger(mb) && mb > 0 ? `${bytes} bytes (${mb} MB)` : `${bytes} bytes`;
}

function describePageAddress(lsn: bigint, timeline: number, segmentSize: number): string {
  const size = BigInt(segmentSize);
  if (lsn % size !== 0n) return `page address ${formatLsn(lsn)}`;
  const segment = segmentFileName(timeline, lsn / size, segmentSize);
  return `page address ${formatLsn(lsn)} (where segment ${segment} begins)`;
}

// ---- the error -----------------------------------------------------------------------------

const LISTED_OTHERS = 5;

/** The major whose magic a 'magic' problem found, when it is one of 10 to 18. */
function foreignMajorOf(problem: SegmentProblem): number | undefined {
  if (problem.kind !== 'magic') return undefined;
  const match = /^magic 0x([0-9A-F]{4})/.exec(problem.found);
  return match ? majorOfMagic(parseInt(match[1], 16)) : undefined;
}

function whatIsWrong(problem: SegmentProblem, foreignMajor: number | undefined): string {
  switch (problem.kind) {
    case 'truncated':
      return 'has the wrong size';
    case 'magic':
      return foreignMajor === undefined
        ? 'does not start with a valid WAL page header'
        : `was written by PostgreSQL ${foreignMajor}, another major than the backup's`;
    case 'foreign':
      return 'comes from another database cluster';
    case 'pageaddr':
      return 'holds the WAL of another position than its name says';
    case 'segment-size':
      return 'was written with another WAL segment size';
    case 'timeline':
      return 'holds WAL of a later timeline than its name says';
    case 'unreadable':
      return 'cannot be read';
  }
}

/** What the server would do with the segment, where that is certain. */
function consequence(problem: SegmentProblem): string {
  switch (problem.kind) {
    case 'truncated':
      // RestoreArchivedFile (xlogarchive.c) checks the size of every restored segment; a
      // compressed file cut short fails in the fetch instead.
      if (splitCompressedName(problem.file).compression !== 'none') return '';
      return ' The server would stop with "archive file has wrong size" when replay reaches it.';
    case 'unreadable':
      return '';
    default:
      return ' Replay would take it for the end of WAL and end recovery there, without an error when no target is set.';
  }
}

function listOthers(others: SegmentProblem[]): string {
  if (others.length === 0) return '';
  const names = others.slice(0, LISTED_OTHERS).map((p) => `${p.segment} (${p.kind})`);
  const rest = others.length - names.length;
  const list = rest > 0 ? `${names.join(', ')} and ${rest} more` : names.join(', ');
  const count = others.length === 1 ? '1 more segment has' : `${others.length} more segments have`;
  return ` ${count} problems too: ${list}.`;
}

function causeHint(problem: SegmentProblem): string | undefined {
  switch (problem.kind) {
    case 'truncated':
      return "A copy that stopped halfway (full disk, dropped connection) leaves a short file when archive_command writes in place; copy to a temporary name and rename, as PostgreSQL's documentation recommends.";
    case 'pageaddr':
      return 'The file holds the WAL of the segment named under "found": it was renamed or copied under the wrong name.';
    case 'timeline':
      return 'The file was renamed from a later timeline; take the segment from the timeline its name says.';
    case 'unreadable':
      return "Check the file's permissions, and `gzip -t` it when it is compressed.";
    default:
      return undefined;
  }
}

/**
 * One error for the problems found in the archive, led by the first: WAL_FOREIGN_CLUSTER when
 * that segment belongs to another cluster or another major, WAL_DAMAGED otherwise.
 */
export function problemToError(problems: SegmentProblem[]): PitrError {
  const [first, ...others] = problems;
  if (!first) throw new Error('problemToError needs at least one problem.');

  const foreignMajor = foreignMajorOf(first);
  const foreign = first.kind === 'foreign' || foreignMajor !== undefined;
  const message =
    `The archived WAL segment ${first.file} ${whatIsWrong(first, foreignMajor)}: ` +
    `expected ${first.expected}, found ${first.found}.${consequence(first)}${listOthers(others)}`;

  const hints: string[] = [];
  if (foreign) {
    hints.push(
      foreignMajor === undefined
        ? 'The archive mixes the WAL of several clusters: another primary, or a restored test copy still running with archive_mode on, archives into the same folder. Check the archive_command path of every server that writes there, and give each cluster its own folder.'
        : `A PostgreSQL ${foreignMajor} server archives into the same folder (often the old cluster of a pg_upgrade, left running or restored). Check the archive_command path of every server that writes there, and give each cluster its own folder.`,
      `Copy ${first.segment} from the archive or pg_wal of the cluster the backup was taken from; pg_controldata prints a cluster's system identifier as "Database system identifier".`,
    );
  } else {
    const cause = causeHint(first);
    if (cause) hints.push(cause);
    hints.push(
      `Copy ${first.segment} again from the primary's pg_wal, if it is still there, or from another copy of the archive.`,
    );
  }
  hints.push(`To restore up to the WAL before it, set a recovery target before ${first.segment}.`);
  return new PitrError(foreign ? 'WAL_FOREIGN_CLUSTER' : 'WAL_DAMAGED', message, hints);
}
