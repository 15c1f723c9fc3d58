// Verification queries: each statement passes when it returns exactly one row whose first
// value is true. Every statement runs, even after one fails, so that one run shows every
// problem with the restored data.

import { PitrError } from './errors.js';
import type { RunningServer } from './server.js';

export interface CheckResult {
  statement: string;
  passed: boolean;
  /** What the statement returned or the error it raised, when it failed. */
  detail?: string;
  durationMs: number;
}

const SHOWN_ROWS = 5;

function showRows(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return 'no rows';
  const shown = rows.slice(0, SHOWN_ROWS).map((row) => JSON.stringify(Object.values(row)));
  const more = rows.length > SHOWN_ROWS ? ` and ${rows.length - SHOWN_ROWS} more` : '';
  return `${rows.length} row(s): ${shown.join(', ')}${more}`.slice(0, 500);
}

export async function runChecks(
  server: RunningServer,
  statements: string[],
): Promise<CheckResult[]> {
  if (statements.length === 0) return [];
  const client = await server.connect(['postgres']);
  const results: CheckResult[] = [];
  try {
    for (const statement of statements) {
      const started = Date.now();
      try {
        const { rows } = await client.query<Record<string, unknown>>(statement);
        const first = rows.length === 1 ? Object.values(rows[0])[0] : undefined;
        const passed = rows.length === 1 && first === true;
        results.push({
          statement,
          passed,
          detail: passed
            ? undefined
            : `expected one row whose first value is true, got ${showRows(rows)}`,
          durationMs: Date.now() - started,
        });
      } catch (error) {
        results.push({
          statement,
          passed: false,
          detail: `error: ${(error as Error).message}`,
          durationMs: Date.now() - started,
        });
      }
    }
  } finally {
    await client.end();
  }
  return results;
}

/** Runs the checks and throws VERIFY_FAILED naming each failed statement. */
export async function verify(server: RunningServer, statements: string[]): Promise<CheckResult[]> {
  const results = await runChecks(server, statements);
  const failed = results.filter((result) => !result.passed);
  if (failed.length > 0) {
    const list = failed
      .map((f) => `"${f.statement.replace(/\s+/g, ' ').slice(0, 120)}": ${f.detail}`)
      .join('; ');
    const error = new PitrError(
      'VERIFY_FAILED',
      `${failed.length} of ${results.length} verification queries failed on the restored database: ${list}.`,
      [
        'The restore itself finished; the data as of the target is not what the queries expect.',
        'Check the target (an earlier or later point may be the one meant) and the queries themselves.',
      ],
    );
    (error as PitrError & { checks?: CheckResult[] }).checks = results;
    throw error;
  }
  return results;
}
