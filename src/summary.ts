// The job summary: what was restored, to where, and the proof, readable in the GitHub UI.

import * as core from '@actions/core';
import type { PitrError } from './errors.js';
import { describeTarget, type RestoreRequest } from './request.js';
import type { RestoreResult } from './restore.js';

/** Table cells are HTML: a query's < or & must show as written. */
function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

interface SummaryInput {
  request?: RestoreRequest;
  result?: RestoreResult;
  error?: PitrError;
}

export async function writeSummary({ request, result, error }: SummaryInput): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return;
  const summary = core.summary.addHeading(
    error ? 'pitr: restore failed' : 'pitr: restore succeeded',
    2,
  );
  const rows: [string, string][] = [];
  if (request) {
    rows.push(['Base backup', request.baseBackup], ['WAL archive', request.walArchive ?? '(none)']);
    rows.push(['Target', describeTarget(request.target)]);
  }
  if (result) {
    rows.push(
      ['Recovered to', result.stopLine ?? `end of WAL at ${result.recoveredLsn}`],
      ['Recovered LSN', result.recoveredLsn],
      ['Last transaction', result.recoveredTime || '(none replayed)'],
      ['Timeline', String(result.timeline)],
      ['PostgreSQL', `${result.postgresVersion} (${result.postgresBin})`],
      ['Data directory', result.dataDirectory],
      ['Duration', `${result.durationSeconds} s`],
    );
  }
  summary.addTable([
    [
      { data: 'Item', header: true },
      { data: 'Value', header: true },
    ],
    ...rows.map(([item, value]) => [item, escapeHtml(value)]),
  ]);
  if (result && result.checks.length > 0) {
    summary.addHeading('Verification queries', 3);
    summary.addTable([
      [
        { data: 'Query', header: true },
        { data: 'Result', header: true },
        { data: 'ms', header: true },
      ],
      ...result.checks.map((c) => [
        escapeHtml(c.statement),
        c.passed ? 'passed' : escapeHtml(`failed: ${c.detail}`),
        String(c.durationMs),
      ]),
    ]);
  }
  if (error) {
    summary.addRaw(`\n**${error.code}**: ${escapeHtml(error.message)}\n\n`);
    if (error.hints.length) summary.addList(error.hints);
  }
  await summary.write();
}
