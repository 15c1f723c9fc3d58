// Proves the restored database: the recovery point the server reports matches the target,
// the user's checks (verify-query statements and verify-sql files) pass, and the built-in
// integrity checks find no damage. Every check runs even after one fails, so one run shows
// every problem; the failures then become one VERIFY_FAILED.

import { PitrError } from './errors.js';
import { describeTarget, type RestoreRequest, type Target } from './request.js';
import type { RunningServer } from './server.js';
import type { RecoveryLog } from './server-log.js';
import { runBuiltinChecks } from './builtin-checks.js';
import { loadCheckFiles, runSqlChecks, type SqlCheck } from './sql-checks.js';
import { parsePostgresTime } from './times.js';

export interface CheckReport {
  name: string;
  kind: 'recovery-point' | 'builtin' | 'query';
  passed: boolean;
  /** Why it failed: what a query returned or the error it raised. */
  detail?: string;
  /** Set when the check could not run here (an extension missing, say). */
  skipped?: string;
  durationMs: number;
  /** For checks from verify-sql files: where the statement is, relative to the workspace. */
  file?: string;
  line?: number;
  endLine?: number;
  database?: string;
  returned?: (string | null)[][];
}

/**
 * Where recovery stopped, judged against the target asked for. The server's own stop line is
 * the evidence; for a time target the last replayed commit must not be after the target.
 */
export function recoveryPointCheck(
  target: Target,
  inclusive: boolean,
  log: RecoveryLog,
): CheckReport {
  const stop = log.stop;
  const report = (passed: boolean, detail: string): CheckReport => ({
    name: `recovered to ${describeTarget(target)}`,
    kind: 'recovery-point',
    passed,
    detail,
    durationMs: 0,
  });
  switch (target.kind) {
    case 'latest':
      return report(
        true,
        `replayed to the end of the archive; redo done at ${log.redoDoneLsn ?? 'unknown'}`,
      );
    case 'immediate':
      return stop?.kind === 'immediate'
        ? report(true, stop.text)
        : report(
            false,
            `expected the server to stop at consistency, but it said: ${stop?.text ?? 'nothing'}`,
          );
    case 'name':
      return stop?.kind === 'name' && stop.name === target.value
        ? report(true, stop.text)
        : report(
            false,
            `expected a stop at restore point "${target.value}", but the server said: ${stop?.text ?? 'nothing'}`,
          );
    case 'xid':
      return stop?.kind === 'xid' && stop.xid === target.value.replace(/^.*:/, '')
        ? report(true, stop.text)
        : report(
            false,
            `expected a stop at transaction ${target.value}, but the server said: ${stop?.text ?? 'nothing'}`,
          );
    case 'lsn':
      return stop?.kind === 'lsn'
        ? report(true, stop.text)
        : report(
            false,
            `expected a stop at LSN ${target.value}, but the server said: ${stop?.text ?? 'nothing'}`,
          );
    case 'time': {
      const wanted = parsePostgresTime(target.value);
      const last = log.lastCompletedTime ? parsePostgresTime(log.lastCompletedTime) : undefined;
      const tooLate = last !== undefined && (inclusive ? last > wanted : last >= wanted);
      if (!stop || stop.kind !== 'xid' || tooLate) {
        return report(
          false,
          `expected the last replayed commit at or before ${target.value}, but the server said: ${stop?.text ?? 'nothing'} (last completed transaction ${log.lastCompletedTime ?? 'none'})`,
        );
      }
      return report(
        true,
        `${stop.text}; last completed transaction ${log.lastCompletedTime ?? 'none'}`,
      );
    }
  }
}

/** verify-query statements as checks: named by their first line, placed by their position. */
function inlineChecks(statements: string[], database: string): SqlCheck[] {
  return statements.map((sql, index) => ({
    file: 'verify-query',
    absolutePath: '',
    line: index + 1,
    endLine: index + 1,
    name: sql.split('\n')[0].slice(0, 80),
    sql,
    database,
  }));
}

export interface VerificationOptions {
  workspace: string;
}

/** Runs every check; throws VERIFY_FAILED (with the reports attached) when any fails. */
export async function verifyRestore(
  server: RunningServer,
  request: RestoreRequest,
  options: VerificationOptions,
): Promise<CheckReport[]> {
  const reports: CheckReport[] = [];
  if (request.checkRecoveryPoint) {
    reports.push(recoveryPointCheck(request.target, request.targetInclusive, server.log));
  }

  const fileChecks = request.verifySql
    ? await loadCheckFiles(request.verifySql, options.workspace, request.database)
    : [];
  const checks = [...inlineChecks(request.verifyQueries, request.database), ...fileChecks];
  if (checks.length > 0) {
    const results = await runSqlChecks(checks, (database) => server.connect(database));
    for (const result of results) {
      reports.push({
        name: result.name,
        kind: 'query',
        passed: result.passed,
        detail: result.detail,
        durationMs: result.durationMs,
        file: result.file === 'verify-query' ? undefined : result.file,
        line: result.file === 'verify-query' ? undefined : result.line,
        endLine: result.file === 'verify-query' ? undefined : result.endLine,
        database: result.database,
        returned: result.returned,
      });
    }
  }

  if (request.checkIndexes || request.checkHeap || request.checkReadAll) {
    const builtin = await runBuiltinChecks((database) => server.connect(database), {
      amcheck: request.checkIndexes,
      heapcheck: request.checkHeap,
      readAll: request.checkReadAll,
    });
    for (const result of builtin) reports.push({ ...result, kind: 'builtin' });
  }

  const failed = reports.filter((report) => !report.passed && !report.skipped);
  if (failed.length > 0) {
    const list = failed
      .slice(0, 5)
      .map((f) => `${f.file ? `${f.file}:${f.line} ` : ''}"${f.name}": ${f.detail}`)
      .join('; ');
    const more = failed.length > 5 ? `; and ${failed.length - 5} more` : '';
    const error = new PitrError(
      'VERIFY_FAILED',
      `${failed.length} of ${reports.length} checks failed on the restored database: ${list}${more}.`,
      [
        'The restore itself finished; the data as of the target is not what the checks expect.',
        'Check the target (an earlier or later point may be the one meant) and the checks themselves.',
      ],
    );
    error.checks = reports;
    throw error;
  }
  return reports;
}
