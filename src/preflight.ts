// Checks made before the server starts, from the files alone: which timeline replay will
// follow and whether the backup lies on it, whether the archive has every segment from the
// backup on, and whether the target lies inside the window the archive can reach. Each of
// these would otherwise surface as a terse FATAL after minutes of replay, or not at all.

import * as path from 'node:path';
import {
  coverage,
  filesOnChain,
  latestTimeline,
  takeInventory,
  timelineChain,
  type ArchiveInventory,
  type Coverage,
  type TimelineSpan,
} from './archive.js';
import { findBackupEnd, type BackupEnd } from './backup-end.js';
import type { BackupLabel } from './backup-label.js';
import { PitrError } from './errors.js';
import { log } from './log.js';
import type { ControlFile } from './pg-control.js';
import { describeTarget, type RestoreRequest } from './request.js';
import { formatLsn, parseLsn, segmentNumberOf, segmentStartLsn } from './wal-names.js';
import { checkSegments, problemToError } from './wal-headers.js';
import { parsePostgresTime } from './times.js';

/** The span of WAL positions (and times, where known) a restore of this backup can reach. */
export interface ReachableWindow {
  /** The end of the backup: the earliest consistent point, when known. */
  from: bigint;
  fromTime?: string;
  /** Where that was read from. */
  fromSource: string;
  /** The end of the last segment before the first gap (or of the last archived one). */
  to: bigint;
}

export interface ArchivePlan {
  inventory: ArchiveInventory;
  chain: TimelineSpan[];
  coverage?: Coverage;
  window?: ReachableWindow;
}

export function describeWindow(window: ReachableWindow): string {
  const from = window.fromTime
    ? `${window.fromTime} (${formatLsn(window.from)})`
    : formatLsn(window.from);
  return `this archive can restore from ${from} to ${formatLsn(window.to - 1n)}`;
}

function chooseTimeline(
  request: RestoreRequest,
  inventory: ArchiveInventory,
  start: number,
): number {
  if (request.targetTimeline === 'latest') return latestTimeline(inventory, start);
  if (request.targetTimeline === 'current') return start;
  const timeline = Number(request.targetTimeline);
  if (timeline !== start && !inventory.histories.has(timeline)) {
    const known = [...inventory.histories.keys()].sort((a, b) => a - b);
    throw new PitrError(
      'TIMELINE_NOT_IN_HISTORY',
      `target-timeline ${timeline} does not exist: the archive has no ${timeline.toString(16).toUpperCase().padStart(8, '0')}.history (history files there: ${known.length ? known.join(', ') : 'none'}; the backup is on timeline ${start}).`,
      [
        "Use target-timeline: latest to follow the newest timeline, or current to stay on the backup's.",
        'A timeline is born when a server is promoted; its .history file must be archived for recovery to follow it.',
      ],
    );
  }
  return timeline;
}

function describeChain(chain: TimelineSpan[]): string {
  return chain
    .map((span) =>
      span.end === undefined
        ? `timeline ${span.timeline} from ${formatLsn(span.begin)} on`
        : `timeline ${span.timeline} until ${formatLsn(span.end)}`,
    )
    .join(', then ');
}

/**
 * The server refuses a backup whose checkpoint lies on a timeline that is not the one the
 * target timeline's history has at that position ("requested timeline N is not a child of
 * this server's history"); say so before it starts, with both histories.
 */
function checkBackupOnChain(label: BackupLabel, chain: TimelineSpan[]): void {
  const at = label.checkpointLsn;
  const span = chain.find((s) => s.begin <= at && (s.end === undefined || at < s.end));
  if (span?.timeline === label.startTimeline) return;
  const target = chain[chain.length - 1].timeline;
  throw new PitrError(
    'TIMELINE_NOT_IN_HISTORY',
    `The backup is on timeline ${label.startTimeline} at ${formatLsn(at)}, but timeline ${target}'s history is: ${describeChain(chain)}. Timeline ${target} branched off before the backup was taken, so replay cannot get there from it.`,
    [
      `Set target-timeline: current (or ${label.startTimeline}) to stay on the backup's timeline.`,
      'A test restore that was promoted and archived into the same folder makes such timelines; keep test restores from archiving (pitr turns archive_mode off).',
      'To reach that timeline, restore a base backup taken on it, or one taken before it branched off.',
    ],
  );
}

function windowOf(
  end: BackupEnd | undefined,
  label: BackupLabel,
  covered: Coverage,
  size: number,
): ReachableWindow {
  const to = covered.firstMissing
    ? segmentStartLsn(covered.firstMissingSegno ?? covered.lastSegno + 1n, size)
    : segmentStartLsn(covered.lastSegno + 1n, size);
  if (end) return { from: end.lsn, fromTime: end.time, fromSource: path.basename(end.source), to };
  return {
    from: label.startLsn,
    fromTime: label.startTime,
    fromSource: 'backup_label (start; end unknown)',
    to,
  };
}

function checkTargetInWindow(
  request: RestoreRequest,
  label: BackupLabel,
  window: ReachableWindow,
): void {
  const target = request.target;
  const reach = describeWindow(window);
  const earliestHint =
    'The earliest point this backup reaches is target: immediate; use an older base backup to go further back.';

  if (target.kind === 'lsn') {
    const lsn = parseLsn(target.value);
    if (lsn < window.from && window.fromSource !== 'backup_label (start; end unknown)') {
      throw new PitrError(
        'TARGET_BEFORE_CONSISTENCY',
        `target-lsn ${target.value} lies before the end of the backup at ${formatLsn(window.from)} (${window.fromSource}): ${reach}.`,
        [earliestHint],
      );
    }
    if (lsn < label.startLsn) {
      throw new PitrError(
        'TARGET_BEFORE_CONSISTENCY',
        `target-lsn ${target.value} lies before the start of the backup at ${formatLsn(label.startLsn)}: ${reach}.`,
        [earliestHint],
      );
    }
    if (lsn >= window.to) {
      throw new PitrError(
        'TARGET_NOT_REACHED',
        `target-lsn ${target.value} lies after the end of the archived WAL: ${reach}.`,
        [
          'Check that the primary archived everything up to the target (pg_switch_wal() forces the current segment out).',
          'If the archive has a gap, the segments after it cannot be replayed: find the missing segment.',
        ],
      );
    }
  }

  if (target.kind === 'time' && label.startTime) {
    const wanted = parsePostgresTime(target.value);
    const started = parsePostgresTime(label.startTime);
    if (!Number.isNaN(wanted) && !Number.isNaN(started) && wanted < started) {
      throw new PitrError(
        'TARGET_BEFORE_CONSISTENCY',
        `target-time ${target.value} is before the backup started (${label.startTime}): ${reach}.`,
        [earliestHint],
      );
    }
  }
}

/**
 * Reads the first page header of every segment replay will need. A segment from another
 * cluster, of another major, cut short or renamed would make the server end recovery
 * there (silently, without a target); the header says so in a few bytes.
 */
async function checkSegmentHeaders(
  request: RestoreRequest,
  inventory: ArchiveInventory,
  chain: TimelineSpan[],
  covered: Coverage,
  control: ControlFile,
  major: number,
  end: BackupEnd | undefined,
): Promise<void> {
  const started = Date.now();
  const files = filesOnChain(inventory, chain, covered.startSegno, covered.lastSegno);
  const problems = await checkSegments(files, {
    major,
    systemIdentifier: control.systemIdentifier,
    segmentSize: control.walSegmentSize,
  });
  log.info(
    `Checked the first page of ${files.length} segment(s) in ${((Date.now() - started) / 1000).toFixed(1)} s: ${problems.length === 0 ? 'all belong to this cluster and are whole' : `${problems.length} problem(s)`}.`,
  );
  if (problems.length === 0) return;

  // A damaged segment the backup itself needs blocks every target; one after the backup's
  // end blocks only targets beyond it, which the server would then fail to reach.
  const endSegno = end ? segmentNumberOf(end.lsn, control.walSegmentSize) : covered.startSegno;
  const first = files.find((f) => f.segment === problems[0].segment);
  const error = problemToError(problems);
  if (request.target.kind === 'latest' || (first && first.segno <= endSegno)) throw error;
  log.warning(
    `${error.message} Recovery to ${describeTarget(request.target)} works only if the target comes before it.`,
  );
}

export async function planArchive(
  request: RestoreRequest,
  dataDirectory: string,
  manifests: string[],
  control: ControlFile,
  major: number,
  label: BackupLabel | undefined,
): Promise<ArchivePlan> {
  const size = control.walSegmentSize;
  const restoredWal = path.join(dataDirectory, 'pg_wal');
  const inventory = await takeInventory(request.walArchive, restoredWal, size);
  const startTimeline = label?.startTimeline ?? control.checkpointTimeline;
  const chain = await timelineChain(inventory, chooseTimeline(request, inventory, startTimeline));
  const count = [...inventory.segments.values()].reduce((sum, set) => sum + set.size, 0);
  const timelines = [...inventory.segments.keys()].sort((a, b) => a - b).join(', ') || 'none';
  log.info(
    `WAL archive: ${count} segments of ${size / 1048576} MB, timelines ${timelines}; replay follows timeline ${chain.map((s) => s.timeline).join(' -> ')}.`,
  );
  if (!label) return { inventory, chain };

  checkBackupOnChain(label, chain);
  const covered = coverage(inventory, chain, label.startLsn);
  if (covered.firstMissing && covered.firstMissingSegno === covered.startSegno) {
    throw new PitrError(
      'WAL_MISSING_FOR_CONSISTENCY',
      `The backup starts in WAL segment ${label.startSegment} (LSN ${formatLsn(label.startLsn)}), and neither the archive nor the backup's pg_wal has it.`,
      [
        'Without the WAL written during the backup the copy is not consistent and cannot be opened at all.',
        'Check that archive_command was working while the backup ran, or take the backup with pg_basebackup -X stream.',
      ],
    );
  }

  const folders = [request.walArchive, restoredWal].filter((f): f is string => Boolean(f));
  const end = await findBackupEnd(label, folders, manifests, size);
  const window = windowOf(end, label, covered, size);
  if (
    covered.firstMissing &&
    end &&
    segmentStartLsn(covered.firstMissingSegno ?? 0n, size) < end.lsn
  ) {
    throw new PitrError(
      'WAL_MISSING_FOR_CONSISTENCY',
      `Segment ${covered.firstMissing} is missing, and the backup runs from ${formatLsn(label.startLsn)} to ${formatLsn(end.lsn)} (${path.basename(end.source)}): without it the copy can never become consistent.`,
      [
        "Every segment written while the backup ran must be in the archive or the backup's pg_wal.",
        "Check archive_command failures on the primary around the backup's time, or take backups with pg_basebackup -X stream.",
      ],
    );
  }
  await checkSegmentHeaders(request, inventory, chain, covered, control, major, end);
  log.info(`Reachable: ${describeWindow(window)}.`);

  if (covered.firstMissing) {
    const message =
      `The archive has a gap: segment ${covered.firstMissing} is missing (${covered.missingCount} segment(s) missing between ` +
      `the backup's start ${label.startSegment} and the last archived segment ${covered.lastSegment}).`;
    if (request.target.kind === 'latest') {
      throw new PitrError('WAL_GAP', `${message} So ${describeWindow(window)}.`, [
        'PostgreSQL would stop replay at the gap and promote without any error, losing everything after it.',
        "Find the segment in the primary's pg_wal or another copy of the archive; check archive_command failures in the primary's log (pg_stat_archiver.failed_count).",
        'To restore only up to the gap, set a target before it.',
      ]);
    }
    log.warning(
      `${message} Recovery to ${describeTarget(request.target)} works only if the target comes before the gap.`,
    );
  }
  checkTargetInWindow(request, label, window);
  return { inventory, chain, coverage: covered, window };
}
