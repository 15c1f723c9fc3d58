// The restore pipeline: backup in, restored and proven cluster out. It knows nothing of
// GitHub: the action and the CLI both build a RestoreRequest and call restore(), then
// report the result (or the PitrError) in their own way.

import { log } from './log.js';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type pg from 'pg';
import { repairHistoryFile } from './archive.js';
import { planArchive, describeWindow, type ArchivePlan } from './preflight.js';
import { parseBackupLabel, type BackupLabel } from './backup-label.js';
import { locateBackup, materializeBackup, readMajorVersion } from './backup.js';
import { PitrError } from './errors.js';
import { resolveServerAccount, type ServerAccount } from './os-user.js';
import { readControlFile } from './pg-control.js';
import { superuserCandidates } from './superuser.js';
import {
  commandLineSettings,
  escapePercent,
  quoteShellWord,
  recoveryConfText,
  recoverySettings,
  serverSettings,
} from './recovery-config.js';
import { describeTarget, type RestoreRequest } from './request.js';
import { RunningServer, startForLaterSteps, type KeptServer } from './server.js';
import { newReport, type RestoreReport } from './report.js';
import { checkWhereRecoveryEnded, serverFailure, type Replay } from './replay-outcome.js';
import { checkControlMatchesVersion, resolvePostgres } from './install.js';
import { verifyRestore, type CheckReport } from './verification.js';
import { checkServerAccountAccess, prepareWorkspace, type Workspace } from './workspace.js';
import { formatLsn, parseSegmentFileName, segmentStartLsn } from './wal-names.js';

export interface RestoreResult {
  recoveredLsn: string;
  recoveredTime: string;
  timeline: number;
  postgresVersion: string;
  postgresBin: string;
  dataDirectory: string;
  logFile: string;
  durationSeconds: number;
  /** The server's own line saying where it stopped, when a target was set. */
  stopLine?: string;
  checks: CheckReport[];
  /** Set with keep-running: how later steps reach the server, and how to stop it. */
  connection?: KeptServer;
}

const SERVER_PORT = 5432;
const PROGRESS_EVERY_MS = 5_000;
/** How much of the server log the action shows in its collapsed group; the file has it all. */
const LOG_LINES_SHOWN = 500;

function secondsSince(start: number): number {
  return Math.round((Date.now() - start) / 100) / 10;
}

async function readLabel(dataDirectory: string): Promise<BackupLabel | undefined> {
  const file = path.join(dataDirectory, 'backup_label');
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  return text === undefined ? undefined : parseBackupLabel(text, file);
}

function restoreCommand(workspace: Workspace, archive: string | undefined): string {
  const words = ['/bin/sh', workspace.walFetchShell, archive ? path.resolve(archive) : ''];
  return `${words.map((w) => escapePercent(quoteShellWord(w))).join(' ')} %f %p`;
}

function startServerArgs(
  major: number,
  request: RestoreRequest,
  workspace: Workspace,
  archive?: string,
) {
  const recovery = recoverySettings(major, {
    restoreCommand: restoreCommand(workspace, archive),
    target: request.target,
    targetInclusive: request.targetInclusive,
    targetTimeline: request.targetTimeline,
  });
  const server = serverSettings({
    socketDirectory: workspace.socketDirectory,
    port: SERVER_PORT,
    hbaFile: workspace.hbaFile,
  });
  return { recovery, server };
}

async function writeRecoveryConfiguration(
  major: number,
  recovery: [string, string][],
  workspace: Workspace,
  account: ServerAccount,
): Promise<string[]> {
  const file = path.join(
    workspace.dataDirectory,
    major >= 12 ? 'recovery.signal' : 'recovery.conf',
  );
  await fs.writeFile(file, major >= 12 ? '' : recoveryConfText(recovery), { mode: 0o600 });
  if (account.switchUser) await fs.chown(file, account.uid, account.gid);
  // From 12 on the settings go on the command line; recovery.signal only switches recovery on.
  return major >= 12 ? commandLineSettings(recovery) : [];
}

/** How far replay got and how fast: for progress lines and the timeout message. */
function replayProgress(
  server: RunningServer,
  segmentSize: number,
  started: number,
  plan: ArchivePlan,
): string {
  const segments = server.log.restoredFiles.filter((name) => /^[0-9A-F]{24}$/.test(name)).length;
  const last = server.log.lastRestoredSegment();
  const seconds = Math.max((Date.now() - started) / 1000, 0.001);
  const megabytes = (segments * segmentSize) / 1048576;
  const rate = megabytes / seconds;
  let text = `${segments} segment(s) restored in ${seconds.toFixed(1)} s (${rate.toFixed(1)} MB/s)`;
  if (last) {
    const parsed = parseSegmentFileName(last, segmentSize);
    if (parsed)
      text += `, replaying ${last} (LSN ${formatLsn(segmentStartLsn(parsed.segno, segmentSize))} on)`;
  }
  const total = plan.coverage
    ? Number(plan.coverage.lastSegno - plan.coverage.startSegno + 1n)
    : undefined;
  if (total && segments > 0 && rate > 0) {
    const left = Math.max(total - segments, 0);
    text += `, ${Math.min(100, Math.round((segments / total) * 100))}% of ${total} archived segment(s), about ${Math.round((left * segmentSize) / 1048576 / rate)} s left`;
  }
  if (server.log.lastCompletedTime)
    text += `, last commit replayed ${server.log.lastCompletedTime}`;
  return text;
}

async function waitForPromotion(replay: Replay): Promise<void> {
  const { server, request, plan, segmentSize } = replay;
  const deadline = Date.now() + request.timeoutSeconds * 1000;
  const started = Date.now();
  let lastReport = Date.now();
  while (!server.log.readyForConnections || !server.log.archiveRecoveryComplete) {
    if (!server.running) throw await serverFailure(replay);
    if (Date.now() > deadline) {
      await server.stop();
      const progress = replayProgress(server, segmentSize, started, plan);
      const error = new PitrError(
        'RECOVERY_TIMEOUT',
        `Recovery did not finish within ${request.timeoutSeconds} s: ${progress}.`,
        [
          'Raise timeout if the archive is large (the rate above tells how long the rest would take).',
          'If no file was restored for a long time, the server log shows what it was waiting on.',
        ],
      );
      error.logTail = server.log.tail();
      throw error;
    }
    if (Date.now() - lastReport > PROGRESS_EVERY_MS) {
      lastReport = Date.now();
      log.info(`Replaying: ${replayProgress(server, segmentSize, started, plan)}.`);
    }
    // Wake at the deadline itself, so that a short timeout is not outlived by a poll.
    const wait = Math.max(1, Math.min(100, deadline - Date.now() + 1));
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/**
 * Reads where replay ended, and switches archiving off in the restored cluster's own
 * configuration: the backup's postgresql.conf still names the production archive, and a
 * restored copy started later by hand would otherwise push its new timeline into it.
 */
async function finishRestoredCluster(
  server: RunningServer,
): Promise<{ lsn: string; time: string }> {
  let client: pg.Client;
  try {
    client = await server.connect();
  } catch (error) {
    throw new PitrError(
      'SERVER_FAILED',
      `Recovery finished, but pitr could not connect to the restored server: ${(error as Error).message}.`,
      [
        'pitr connects over its private socket with trust authentication, as the bootstrap superuser (the role initdb made); if that role was renamed after the backup, the name pitr read from the backup is no longer there.',
        "Start the data directory with pg_ctl and connect as the cluster's superuser to see its roles.",
      ],
    );
  }
  try {
    const { rows } = await client.query<{ lsn: string | null; time: Date | null }>(
      'SELECT pg_last_wal_replay_lsn()::text AS lsn, pg_last_xact_replay_timestamp() AS time',
    );
    await client.query('ALTER SYSTEM SET archive_mode = off');
    return {
      lsn: rows[0].lsn ?? server.log.redoDoneLsn ?? '',
      time: rows[0].time?.toISOString() ?? '',
    };
  } finally {
    await client.end();
  }
}

// pg_control's DBState values for a cluster that was shut down cleanly, as a primary or in
// recovery; any other state means the server was running when its files were copied.
const CLEAN_SHUTDOWN_STATES = new Set([1, 2]);

/**
 * The warning for a backup without backup_label. Replay then starts at pg_control's checkpoint,
 * which is right for a cleanly stopped cluster and for an atomic snapshot of a running one, but
 * a file-by-file copy of a running server restores to silently inconsistent data, and no check
 * of the server can tell.
 */
function withoutLabel(state: number): string {
  if (CLEAN_SHUTDOWN_STATES.has(state)) {
    return 'The backup has no backup_label, and pg_control says the cluster was shut down cleanly: replay starts at the checkpoint in pg_control.';
  }
  return `The backup has no backup_label, yet pg_control says the server was running when it was copied (state ${state}). That is a backup only if the copy was an atomic snapshot of the whole data directory (a file system or volume snapshot); a file-by-file copy of a running server needs the backup API (pg_backup_start or pg_basebackup), or its data may be silently inconsistent.`;
}

/** Folder inputs are checked before any work, so that a typo costs no copy of the backup. */
async function checkInputFolders(request: RestoreRequest): Promise<void> {
  const folders: [string, string | undefined, string][] = [
    ['wal-archive', request.walArchive, 'the folder your archive_command copies WAL segments into'],
    [
      'postgres-bin',
      request.postgresBin,
      'the bin folder of a PostgreSQL installation, or leave it empty',
    ],
  ];
  for (const [input, value, what] of folders) {
    if (!value) continue;
    const stat = await fs.stat(value).catch(() => undefined);
    if (!stat?.isDirectory()) {
      throw new PitrError(
        'INPUT_INVALID',
        `Input ${input}: ${path.resolve(value)} ${stat ? 'is not a folder' : 'does not exist'}.`,
        [`Set ${input} to ${what}; relative paths are taken from the working directory.`],
      );
    }
  }
}

/** Restores the backup to the target and proves it; throws a PitrError on any failure. */
export async function restore(
  request: RestoreRequest,
  report: RestoreReport = newReport(describeTarget(request.target)),
): Promise<RestoreResult> {
  const started = Date.now();
  await checkInputFolders(request);
  const account = await resolveServerAccount(request.osUser);
  const source = await locateBackup(request.baseBackup);
  report.backup = { path: path.resolve(request.baseBackup), format: source.kind };
  const workspace = await prepareWorkspace(request.dataDirectory, account);
  report.dataDirectory = workspace.dataDirectory;
  report.runDirectory = workspace.runDirectory;
  log.info(`Restoring into ${workspace.dataDirectory} (server runs as ${account.name}).`);
  // Before the copy, which may take long: the server account must reach all of it.
  await checkServerAccountAccess(workspace, account, request.walArchive);

  const copyStart = Date.now();
  const copied = await materializeBackup(
    source,
    workspace.dataDirectory,
    workspace.tablespaceRoot,
    account,
  );
  report.steps.copy = secondsSince(copyStart);
  log.info(
    `${source.kind === 'directory' ? 'Copied' : 'Extracted'} the base backup: ${copied.files} files, ${(copied.bytes / 1048576).toFixed(1)} MB in ${secondsSince(copyStart)} s.`,
  );

  const major = await readMajorVersion(workspace.dataDirectory);
  const control = await checkControlMatchesVersion(workspace.dataDirectory, major);
  const label = await readLabel(workspace.dataDirectory);
  Object.assign(report.backup, {
    major,
    systemIdentifier: control.systemIdentifier.toString(),
    startTime: label?.startTime,
    startLsn: label ? formatLsn(label.startLsn) : undefined,
    timeline: label?.startTimeline ?? control.checkpointTimeline,
  });
  if (label?.incrementalFromLsn) {
    throw new PitrError(
      'BACKUP_INCREMENTAL',
      `The backup is incremental (backup_label says INCREMENTAL FROM LSN ${label.incrementalFromLsn}, timeline ${label.incrementalFromTimeline ?? '?'}): it holds only what changed since an earlier backup, and the server cannot start from it alone.`,
      [
        'Combine it with its chain first: pg_combinebackup full incr1 ... -o combined, then restore the combined folder.',
      ],
    );
  }
  if (!label) {
    log.warning(withoutLabel(control.state));
  } else {
    log.info(
      `Backup: PostgreSQL ${major}, started ${label.startTime ?? 'at an unknown time'} at ${formatLsn(label.startLsn)} on timeline ${label.startTimeline}.`,
    );
  }

  const installStart = Date.now();
  const install = await resolvePostgres({
    major,
    versionSpec: request.postgresVersion,
    postgresBin: request.postgresBin,
    allowDownload: request.postgresDownload,
    account,
  });
  report.steps.install = secondsSince(installStart);
  report.postgres = { version: install.version, bin: install.bin, source: install.source };
  log.info(`PostgreSQL ${install.version} ready (${install.source}) in ${report.steps.install} s.`);
  const preflightStart = Date.now();
  const manifests = [
    path.join(workspace.dataDirectory, 'backup_manifest'),
    ...(source.kind === 'tar' ? [path.join(source.directory, 'backup_manifest')] : []),
  ];
  const plan = await planArchive(
    request,
    workspace.dataDirectory,
    manifests,
    control,
    major,
    label,
  );
  report.steps.preflight = secondsSince(preflightStart);
  if (plan.window) report.window = describeWindow(plan.window);

  const { recovery, server: serverConf } = startServerArgs(
    major,
    request,
    workspace,
    request.walArchive,
  );
  const recoveryArgs = await writeRecoveryConfiguration(major, recovery, workspace, account);

  log.info(
    `Starting PostgreSQL ${install.version} to recover to ${describeTarget(request.target)}.`,
  );
  const replayStart = Date.now();
  const server = new RunningServer({
    bin: install.bin,
    dataDirectory: workspace.dataDirectory,
    account,
    args: [...commandLineSettings(serverConf), ...recoveryArgs],
    logFile: workspace.logFile,
    socketDirectory: workspace.socketDirectory,
    port: SERVER_PORT,
    superusers: await superuserCandidates(workspace.dataDirectory, major),
  });

  const replay: Replay = {
    server,
    request,
    plan,
    logFile: workspace.logFile,
    major,
    segmentSize: control.walSegmentSize,
  };
  let keepSocket = false;
  try {
    await waitForPromotion(replay);
    log.info(
      `Recovery finished in ${secondsSince(replayStart)} s: ${server.log.restoredFiles.length} file(s) restored from the archive${server.log.stop ? `; ${server.log.stop.text}` : ''}.`,
    );
    await checkWhereRecoveryEnded(replay);

    report.steps.replay = secondsSince(replayStart);
    log.group(
      `Server log of the recovery (${workspace.logFile})`,
      server.log.tail(LOG_LINES_SHOWN),
    );
    report.logFile = workspace.logFile;
    const position = await finishRestoredCluster(server);
    report.recovery = {
      stopLine: server.log.stop?.text,
      recoveredLsn: position.lsn,
      recoveredTime: position.time,
      timeline: server.log.newTimeline,
      filesRestored: server.log.restoredFiles.length,
      seconds: report.steps.replay,
    };

    const checksStart = Date.now();
    const checks = await verifyRestore(server, request, {
      workspace: process.env.GITHUB_WORKSPACE || process.cwd(),
    });
    report.checks = checks;
    report.steps.checks = secondsSince(checksStart);

    const stopped = await server.stop();
    const after = await readControlFile(workspace.dataDirectory);
    const timeline = server.log.newTimeline ?? after.checkpointTimeline;
    if (await repairHistoryFile(workspace.dataDirectory, timeline)) {
      log.warning(
        `The target's restore point name holds a line break, which PostgreSQL copied into pg_wal/${timeline.toString(16).toUpperCase().padStart(8, '0')}.history where it cannot read it back; pitr joined the line so the cluster starts.`,
      );
    }
    if (!stopped.clean || after.state !== 1) {
      const error = new PitrError(
        'SERVER_FAILED',
        `The restored server did not shut down cleanly (exit ${server.exit?.code ?? server.exit?.signal}, pg_control state ${after.state}).`,
        ['The cluster will need crash recovery when next started; see the server log.'],
      );
      error.logTail = server.log.tail();
      throw error;
    }
    report.recovery.timeline = timeline;

    if (request.keepRunning) {
      report.connection = await startForLaterSteps({
        bin: install.bin,
        dataDirectory: workspace.dataDirectory,
        account,
        settings: serverConf,
        logFile: workspace.logFile,
        socketDirectory: workspace.socketDirectory,
        port: SERVER_PORT,
        user: server.user ?? 'postgres',
      });
      keepSocket = true;
      log.info(`The restored server keeps running for later steps: ${report.connection.uri}`);
    }

    report.durationSeconds = secondsSince(started);
    return {
      recoveredLsn: position.lsn,
      recoveredTime: position.time,
      timeline,
      postgresVersion: install.version,
      postgresBin: install.bin,
      dataDirectory: workspace.dataDirectory,
      logFile: workspace.logFile,
      durationSeconds: report.durationSeconds,
      stopLine: server.log.stop?.text,
      checks,
      connection: report.connection,
    };
  } catch (error) {
    // The server log explains server failures; a failed query or input is its own evidence.
    const serverInvolved = error instanceof PitrError && error.code !== 'VERIFY_FAILED';
    if (serverInvolved && !error.logTail) error.logTail = server.log.tail();
    if (error instanceof PitrError) error.logFile = workspace.logFile;
    throw error;
  } finally {
    if (server.running) await server.stop();
    if (!keepSocket) await fs.rm(workspace.socketDirectory, { recursive: true, force: true });
  }
}
