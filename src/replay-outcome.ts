// What the end of replay means. The server says little when recovery goes wrong: 10 to 12
// promote silently when the target never came, every major promotes silently at damaged WAL
// when no target is set, and a FATAL line is terse. This module turns the server's log, the
// archive plan and the WAL files themselves into the one error that explains the outcome.

import { filesOnChain } from './archive.js';
import { PitrError } from './errors.js';
import { describeWindow, type ArchivePlan } from './preflight.js';
import { describeTarget, type RestoreRequest } from './request.js';
import type { RunningServer } from './server.js';
import { readSegmentPages, walAfterRecord } from './wal-continuation.js';
import { pageMagic } from './wal-headers.js';
import {
  formatLsn,
  parseLsn,
  segmentFileName,
  segmentNumberOf,
  segmentStartLsn,
} from './wal-names.js';

/** Everything known about one replay, for judging how it ended. */
export interface Replay {
  server: RunningServer;
  request: RestoreRequest;
  plan: ArchivePlan;
  logFile: string;
  major: number;
  segmentSize: number;
}

/** The error for a server that exited during recovery, from its FATAL line. */
export async function serverFailure(replay: Replay): Promise<PitrError> {
  const { server, request } = replay;
  const log = server.log;
  const fatal =
    log.fatal ?? `the server exited with ${server.exit?.signal ?? `status ${server.exit?.code}`}`;
  const last = log.lastRestoredSegment();
  let error: PitrError;
  if (log.targetNotReached) {
    error = await targetNotReached(replay);
  } else if (/requested recovery stop point is before consistent recovery point/.test(fatal)) {
    error = new PitrError(
      'TARGET_BEFORE_CONSISTENCY',
      `The target ${describeTarget(request.target)} lies before the end of the backup: the server said "${fatal}".`,
      [
        'A backup can only be restored to points after it finished; the earliest is target: immediate.',
        'Use an older base backup to reach an earlier point.',
      ],
    );
  } else if (/WAL ends before (end of online backup|consistent recovery point)/.test(fatal)) {
    error = new PitrError(
      'WAL_MISSING_FOR_CONSISTENCY',
      `Replay ran out of WAL before the backup became consistent (${fatal}); the last segment restored was ${last ?? 'none'}.`,
      [
        "The segments written while the backup ran must all be in the archive (or the backup's pg_wal).",
      ],
    );
  } else if (
    /is not a child of this server's history|recovery target timeline \d+ does not exist/.test(
      fatal,
    )
  ) {
    error = new PitrError(
      'TIMELINE_NOT_IN_HISTORY',
      `The server refused the target timeline: ${fatal}.`,
      [
        'The backup was taken on a timeline the chosen timeline does not descend from; try target-timeline: current, or check the .history files in the archive.',
      ],
    );
  } else {
    error = new PitrError(
      'SERVER_FAILED',
      `The restored server stopped during recovery: ${fatal}.`,
      [
        `Read the server log (${replay.logFile}) for the cause; the last archived file restored was ${last ?? 'none'}.`,
        "The restored cluster starts with the backup's own postgresql.conf and postgresql.auto.conf: a setting that needs what this runner lacks (shared_preload_libraries naming an extension not installed here, a large shared_buffers) stops it; fix it in a copy of the backup.",
      ],
    );
  }
  error.logTail = log.tail();
  return error;
}

/**
 * Checks, after promotion, that recovery ended where it should have: at the target when one
 * was set (10 to 12 promote silently when it never came; 13+ fail, and both are treated
 * alike), and at the end of the archive for latest.
 */
export async function checkWhereRecoveryEnded(replay: Replay): Promise<void> {
  if (replay.request.target.kind !== 'latest') {
    if (!replay.server.log.stop) throw await targetNotReached(replay);
    return;
  }
  const ended = await replayEndedEarly(replay);
  if (ended) throw damagedWal(replay, ended, '');
}

/** Where replay ended early: the segment to blame, and what was not replayed. */
interface EarlyEnd {
  /** The segment the server complained about, or else the one replay ended in. */
  segment: string;
  /** True when the server's complaint named the segment; else it may be the next one. */
  named: boolean;
  detail: string;
}

/**
 * Where replay ended, when that was short of the WAL the archive holds and no segment is
 * missing: PostgreSQL took a record it could not use for the end of WAL. Two signs, either
 * enough: replay ended before the archive's last segment, or the segment where it ended has
 * WAL pages after its last replayed record (see wal-continuation.ts). The server's own
 * complaint cannot decide it: at the end of a partial segment copied from pg_wal, zeros or a
 * recycled page make it complain just as damage does.
 */
async function replayEndedEarly(replay: Replay): Promise<EarlyEnd | undefined> {
  const { server, plan, segmentSize } = replay;
  const log = server.log;
  const coverage = plan.coverage;
  if (!coverage || coverage.firstMissing || !log.redoDoneLsn) return undefined;
  const timeline = plan.chain[plan.chain.length - 1].timeline;
  const redoDone = parseLsn(log.redoDoneLsn);
  const endSegno = segmentNumberOf(redoDone, segmentSize);
  const stoppedIn = segmentFileName(timeline, endSegno, segmentSize);
  // Page header complaints name their segment ("log segment", from 16 "WAL segment").
  const named = /segment ([0-9A-F]{24})/.exec(log.walProblem ?? '')?.[1];
  const blame = { segment: named ?? stoppedIn, named: named !== undefined };

  if (endSegno < coverage.lastSegno) {
    const next = segmentFileName(timeline, endSegno + 1n, segmentSize);
    return {
      ...blame,
      detail: `in segment ${stoppedIn}, but the archive goes on to ${coverage.lastSegment}: nothing from ${next} on was replayed`,
    };
  }
  const [source] = filesOnChain(plan.inventory, plan.chain, endSegno, endSegno);
  if (!source) return undefined;
  const start = segmentStartLsn(endSegno, segmentSize);
  const pages = await readSegmentPages(source.file, Number(redoDone - start)).catch(
    () => undefined,
  );
  const more = pages && walAfterRecord(pages, start, redoDone, pageMagic(replay.major));
  if (more === undefined) return undefined;
  return {
    segment: source.segment,
    named: true,
    detail: `in segment ${source.segment}, but the same segment holds WAL again from ${formatLsn(more)} on (${source.file}): what lies between was taken for the end of WAL`,
  };
}

/** WAL_DAMAGED: replay ended short of what the archive holds. */
function damagedWal(replay: Replay, ended: EarlyEnd, prefix: string): PitrError {
  const log = replay.server.log;
  const why = log.walProblem ? ` The server said: "${log.walProblem}".` : '';
  const error = new PitrError(
    'WAL_DAMAGED',
    `${prefix}Replay ended at ${log.redoDoneLsn} ${ended.detail}.${why}`,
    [
      `PostgreSQL treats the first WAL record it cannot use as the end of WAL and promotes: ${ended.segment}${ended.named ? '' : ' (or the one after it)'} is damaged, truncated, or from another cluster.`,
      "Replace that segment from another copy of the archive, or compare it with the primary's pg_wal.",
    ],
  );
  error.logTail = log.tail();
  return error;
}

async function targetNotReached(replay: Replay): Promise<PitrError> {
  const { server, plan, request } = replay;
  const log = server.log;
  // A target beyond damaged WAL is never reached either; the damage is what to fix.
  const ended = await replayEndedEarly(replay);
  if (ended) {
    return damagedWal(replay, ended, `Recovery never reached ${describeTarget(request.target)}. `);
  }
  const reached = log.redoDoneLsn ? `replay ended at ${log.redoDoneLsn}` : 'replay ended';
  const lastTime = log.lastCompletedTime
    ? `, last transaction committed at ${log.lastCompletedTime}`
    : '';
  const missing = plan.coverage?.firstMissing;
  const where = missing
    ? `at the gap in the archive: segment ${missing} is missing`
    : `at the end of the archive (last segment ${plan.coverage?.lastSegment ?? log.lastRestoredSegment() ?? 'none'})`;
  const reach = plan.window ? ` In all, ${describeWindow(plan.window)}.` : '';
  const hints = missing
    ? [
        `Find ${missing} in the primary's pg_wal or another copy of the archive; replay cannot pass the gap.`,
        'If the target really lies after the gap, no restore from this archive reaches it.',
      ]
    : [
        'The target is after the last archived WAL: check that the primary archived everything up to it (pg_switch_wal() forces the current segment out).',
        'For a restore point or transaction id, check the name or number: a typo looks exactly like a target that never came.',
      ];
  const error = new PitrError(
    'TARGET_NOT_REACHED',
    `Recovery never reached ${describeTarget(request.target)}: ${reached}${lastTime}, ${where}.${reach}`,
    hints,
  );
  error.logTail = log.tail();
  return error;
}
