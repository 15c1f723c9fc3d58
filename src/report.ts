// Everything a restore found out, filled in by the pipeline as it goes, so that a failure
// at any step still reports what was known by then. The front ends turn it into the job
// summary, the summary-json file and the CLI's stderr summary.

import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { PitrError } from './errors.js';
import type { KeptServer } from './server.js';
import type { CheckReport } from './verification.js';

export interface RestoreReport {
  target: string;
  backup?: {
    path: string;
    format: 'directory' | 'tar';
    major?: number;
    systemIdentifier?: string;
    startTime?: string;
    startLsn?: string;
    timeline?: number;
  };
  postgres?: { version: string; bin: string; source: string };
  /** "this archive can restore from ... to ...", when the archive was read. */
  window?: string;
  recovery?: {
    stopLine?: string;
    recoveredLsn?: string;
    recoveredTime?: string;
    timeline?: number;
    filesRestored?: number;
    seconds?: number;
  };
  checks: CheckReport[];
  /** Seconds per step: copy, install, preflight, replay, checks. */
  steps: Record<string, number>;
  dataDirectory?: string;
  runDirectory?: string;
  logFile?: string;
  connection?: KeptServer;
  durationSeconds?: number;
  error?: { code: string; message: string; hints: string[]; logTail?: string[] };
}

export function newReport(target: string): RestoreReport {
  return { target, checks: [], steps: {} };
}

export function recordError(report: RestoreReport, error: PitrError): void {
  report.error = {
    code: error.code,
    message: error.message,
    hints: error.hints,
    logTail: error.logTail,
  };
  if (error.checks) report.checks = error.checks;
  if (error.logFile) report.logFile = error.logFile;
}

/** Writes the report as JSON beside the server log (or in the temp folder); returns the path. */
export async function writeReportFile(report: RestoreReport): Promise<string> {
  const folder = report.runDirectory ?? (process.env.RUNNER_TEMP || os.tmpdir());
  const file = path.join(
    folder,
    report.runDirectory ? 'report.json' : `pitr-report-${process.pid}.json`,
  );
  await fs.writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}
