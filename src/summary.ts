// The job summary: what was restored, to where, and the proof, readable in the GitHub UI.

import * as core from '@actions/core';
import type { RestoreReport } from './report.js';

/** Table cells are HTML: a query's < or & must show as written. */
function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export async function writeSummary(report: RestoreReport): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return;
  const summary = core.summary.addHeading(
    report.error ? `pitr: restore failed (${report.error.code})` : 'pitr: restore succeeded',
    2,
  );

  const rows: [string, string][] = [];
  const backup = report.backup;
  if (backup) {
    rows.push(['Base backup', `${backup.path} (${backup.format})`]);
    if (backup.major)
      rows.push([
        'Backup',
        `PostgreSQL ${backup.major}, system ${backup.systemIdentifier ?? '?'}, started ${backup.startTime ?? '?'} at ${backup.startLsn ?? '?'} on timeline ${backup.timeline ?? '?'}`,
      ]);
  }
  rows.push(['Target', report.target]);
  if (report.recovery) {
    rows.push([
      'Recovered to',
      report.recovery.stopLine ?? `end of WAL at ${report.recovery.recoveredLsn ?? '?'}`,
    ]);
    rows.push(['Last replayed commit', report.recovery.recoveredTime || '(none replayed)']);
    if (report.recovery.timeline) rows.push(['New timeline', String(report.recovery.timeline)]);
  }
  if (report.window) rows.push(['Reachable window', report.window]);
  if (report.postgres)
    rows.push([
      'PostgreSQL',
      `${report.postgres.version} (${report.postgres.source}: ${report.postgres.bin})`,
    ]);
  if (report.dataDirectory) rows.push(['Data directory', report.dataDirectory]);
  if (report.connection) rows.push(['Running for later steps', report.connection.uri]);
  const steps = Object.entries(report.steps)
    .map(([step, s]) => `${step} ${s} s`)
    .join(', ');
  if (report.durationSeconds !== undefined || steps)
    rows.push(['Duration', `${report.durationSeconds ?? '?'} s (${steps})`]);

  summary.addTable([
    [
      { data: 'Item', header: true },
      { data: 'Value', header: true },
    ],
    ...rows.map(([item, value]) => [item, escapeHtml(value)]),
  ]);

  if (report.checks.length > 0) {
    const passed = report.checks.filter((c) => c.passed).length;
    summary.addHeading(`Checks: ${passed} of ${report.checks.length} passed`, 3);
    summary.addTable([
      [
        { data: 'Check', header: true },
        { data: 'Where', header: true },
        { data: 'Result', header: true },
        { data: 'Time', header: true },
      ],
      ...report.checks.map((c) => [
        escapeHtml(c.name),
        escapeHtml(c.file ? `${c.file}:${c.line}` : c.kind),
        c.skipped
          ? `skipped: ${escapeHtml(c.skipped)}`
          : c.passed
            ? '✅ passed'
            : `❌ ${escapeHtml(c.detail ?? 'failed')}`,
        seconds(c.durationMs),
      ]),
    ]);
  }

  if (report.error) {
    summary.addHeading('Error', 3);
    summary.addRaw(`<p><b>${report.error.code}</b>: ${escapeHtml(report.error.message)}</p>`, true);
    if (report.error.hints.length) summary.addList(report.error.hints.map(escapeHtml));
    if (report.error.logTail?.length) {
      summary.addDetails(
        'Server log (last lines)',
        `<pre>${escapeHtml(report.error.logTail.join('\n'))}</pre>`,
      );
    }
  }
  await summary.write();
}
