// What the WAL archive holds, and whether it is complete. PostgreSQL ends recovery at the
// first segment it cannot fetch and, when no target was set, promotes without any error:
// a gap in the archive looks exactly like its end. So pitr lists the archive itself and
// works out which segments replay will need, before and after the server runs.

import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { archivedFileStream, splitCompressedName } from './decompress.js';
import { PitrError } from './errors.js';
import { parseLsn, parseSegmentFileName, segmentFileName, segmentNumberOf } from './wal-names.js';

export interface ArchiveInventory {
  /** Segment numbers present for each timeline (archive and the backup's own pg_wal). */
  /** Segment files by timeline and segment number; the archive's copy wins over pg_wal's. */
  segments: Map<number, Map<bigint, string>>;
  /** Timelines that have a history file in the archive or pg_wal, with the file's path. */
  histories: Map<number, string>;
  segmentSize: number;
}

function addSegment(inventory: ArchiveInventory, name: string, file: string): void {
  const parsed = parseSegmentFileName(name, inventory.segmentSize);
  if (!parsed) return;
  let files = inventory.segments.get(parsed.timeline);
  if (!files) inventory.segments.set(parsed.timeline, (files = new Map()));
  // The server asks restore_command (the archive) first and reads pg_wal only after.
  if (!files.has(parsed.segno)) files.set(parsed.segno, file);
}

async function scanFolder(inventory: ArchiveInventory, folder: string): Promise<void> {
  for (const name of await fs.readdir(folder)) {
    const { bare } = splitCompressedName(name);
    const history = /^([0-9A-F]{8})\.history$/.exec(bare);
    if (history) {
      const timeline = parseInt(history[1], 16);
      if (!inventory.histories.has(timeline))
        inventory.histories.set(timeline, path.join(folder, name));
    } else {
      addSegment(inventory, bare, path.join(folder, name));
    }
  }
}

/** Lists the archive and the restored pg_wal; reads names only, never the files. */
export async function takeInventory(
  archive: string | undefined,
  restoredWal: string,
  segmentSize: number,
): Promise<ArchiveInventory> {
  const inventory: ArchiveInventory = { segments: new Map(), histories: new Map(), segmentSize };
  if (archive) {
    const stat = await fs.stat(archive).catch(() => undefined);
    if (!stat?.isDirectory()) {
      throw new PitrError(
        'INPUT_INVALID',
        `Input wal-archive: ${path.resolve(archive)} is not a folder.`,
        ['Set wal-archive to the folder your archive_command copies WAL segments into.'],
      );
    }
    await scanFolder(inventory, archive);
  }
  await scanFolder(inventory, restoredWal);
  return inventory;
}

export interface TimelineSpan {
  timeline: number;
  /** Where this timeline begins (the switch point from its parent); 0 for the first. */
  begin: bigint;
  /** Where the next timeline of the chain branches off; undefined for the target. */
  end?: bigint;
}

/** A small archived file's text, decompressed by its name's suffix; rejects when unreadable. */
export async function readPossiblyCompressed(file: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of archivedFileStream(file)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The timeline chain that recovery to `timeline` follows, oldest first, read from its
 * history file: each line is "parent-timeline<TAB>switch-LSN<TAB>reason".
 */
export async function timelineChain(
  inventory: ArchiveInventory,
  timeline: number,
): Promise<TimelineSpan[]> {
  const file = inventory.histories.get(timeline);
  if (timeline === 1 || !file) return [{ timeline, begin: 0n }];

  const spans: TimelineSpan[] = [];
  let begin = 0n;
  const text = await readPossiblyCompressed(file);
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [parent, switchPoint] = line.split(/\s+/);
    if (!/^\d+$/.test(parent ?? '') || !switchPoint) {
      throw new PitrError(
        'WAL_DAMAGED',
        `${file} has a line that is not "timeline<TAB>LSN": ${line}`,
        [
          "History files are written by the server at promotion; copy it again from the primary's archive.",
        ],
      );
    }
    const end = parseLsn(switchPoint);
    spans.push({ timeline: Number(parent), begin, end });
    begin = end;
  }
  spans.push({ timeline, begin });
  return spans;
}

/**
 * The timeline recovery target 'latest' picks: like the server, probe for history files of
 * the timelines after the start one and take the last of the unbroken run.
 */
export function latestTimeline(inventory: ArchiveInventory, startTimeline: number): number {
  let timeline = startTimeline;
  while (inventory.histories.has(timeline + 1)) timeline += 1;
  return timeline;
}

export interface Coverage {
  startSegno: bigint;
  /** The last segment available on the chain, at or after the start. */
  lastSegno: bigint;
  lastSegment: string;
  /** The first segment between start and last that no timeline of the chain has. */
  firstMissing?: string;
  firstMissingSegno?: bigint;
  /** All missing segments in that range, up to a few, for the message. */
  missingCount: number;
}

function spanOfSegment(spans: TimelineSpan[], segno: bigint, segmentSize: number): TimelineSpan[] {
  // The server reads a segment from the newest timeline of the chain that has begun by it;
  // the segment holding a switch point exists on both timelines.
  return spans
    .filter((span) => segmentNumberOf(span.begin, segmentSize) <= segno)
    .filter((span) => span.end === undefined || segmentNumberOf(span.end, segmentSize) >= segno)
    .reverse();
}

/** Which segments from the backup's start onward the chain has, and the first missing one. */
export function coverage(
  inventory: ArchiveInventory,
  spans: TimelineSpan[],
  startLsn: bigint,
): Coverage {
  const size = inventory.segmentSize;
  const startSegno = segmentNumberOf(startLsn, size);

  const has = (segno: bigint) =>
    spanOfSegment(spans, segno, size).find((span) =>
      inventory.segments.get(span.timeline)?.has(segno),
    );

  let lastSegno = startSegno;
  for (const span of spans) {
    for (const segno of inventory.segments.get(span.timeline)?.keys() ?? []) {
      if (segno > lastSegno && has(segno)) lastSegno = segno;
    }
  }

  let firstMissing: string | undefined;
  let firstMissingSegno: bigint | undefined;
  let missingCount = 0;
  for (let segno = startSegno; segno <= lastSegno; segno++) {
    if (has(segno)) continue;
    missingCount += 1;
    if (!firstMissing) {
      firstMissingSegno = segno;
      const timeline =
        spanOfSegment(spans, segno, size)[0]?.timeline ?? spans[spans.length - 1].timeline;
      firstMissing = segmentFileName(timeline, segno, size);
    }
  }
  const lastTimeline = has(lastSegno)?.timeline ?? spans[0].timeline;
  return {
    startSegno,
    lastSegno,
    lastSegment: segmentFileName(lastTimeline, lastSegno, size),
    firstMissing,
    firstMissingSegno,
    missingCount,
  };
}

/** The file the server would read for each segment from `from` to `to` that exists. */
export function filesOnChain(
  inventory: ArchiveInventory,
  spans: TimelineSpan[],
  from: bigint,
  to: bigint,
): { file: string; segment: string; segno: bigint }[] {
  const size = inventory.segmentSize;
  const files: { file: string; segment: string; segno: bigint }[] = [];
  for (let segno = from; segno <= to; segno++) {
    for (const span of spanOfSegment(spans, segno, size)) {
      const file = inventory.segments.get(span.timeline)?.get(segno);
      if (file) {
        files.push({ file, segment: segmentFileName(span.timeline, segno, size), segno });
        break;
      }
    }
  }
  return files;
}

const HISTORY_LINE = /^\s*(\d+)\s+[0-9A-Fa-f]+\/[0-9A-Fa-f]+/;

/**
 * PostgreSQL writes the reason for a new timeline into its history file as free text, and
 * a restore point name may hold a newline: the server then writes a line it cannot read
 * back, and refuses to start the promoted cluster ("syntax error in history file"). The
 * broken-off text is joined back onto its line. Returns true when the file was changed.
 */
export async function repairHistoryFile(dataDirectory: string, timeline: number): Promise<boolean> {
  const file = path.join(
    dataDirectory,
    'pg_wal',
    `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`,
  );
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return false;
  const lines: string[] = [];
  let changed = false;
  for (const line of text.split('\n')) {
    const stray = line.trim() !== '' && !line.trim().startsWith('#') && !HISTORY_LINE.test(line);
    if (stray && lines.length > 0) {
      lines[lines.length - 1] += ` ${line.trim()}`;
      changed = true;
    } else {
      lines.push(line);
    }
  }
  if (changed) await fs.writeFile(file, lines.join('\n'));
  return changed;
}
