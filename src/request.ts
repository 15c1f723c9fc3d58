// One typed request for both front ends. The action and the CLI each turn their inputs
// (INPUT_* variables or --flags, with the same names) into a RestoreRequest here, so that
// validation, defaults and messages are the same whichever way pitr is run.

import { PitrError } from './errors.js';
import { parsePostgresTime } from './times.js';
import { isLsn } from './wal-names.js';

export type Target =
  | { kind: 'latest' }
  | { kind: 'immediate' }
  | { kind: 'time'; value: string }
  | { kind: 'xid'; value: string }
  | { kind: 'lsn'; value: string }
  | { kind: 'name'; value: string };

export interface RestoreRequest {
  baseBackup: string;
  walArchive?: string;
  target: Target;
  targetInclusive: boolean;
  /** 'latest', 'current', or a timeline number. */
  targetTimeline: string;
  /** Where to restore; undefined means a fresh folder under the temp folder. */
  dataDirectory?: string;
  postgresBin?: string;
  /** '' for the newest release of the backup's major, a major ('16') or a release ('16.4'). */
  postgresVersion: string;
  postgresDownload: boolean;
  osUser: string;
  verifyQueries: string[];
  /** verify-sql: newline-separated paths or globs of check files, relative to the workspace. */
  verifySql: string;
  database: string;
  checkRecoveryPoint: boolean;
  checkIndexes: boolean;
  checkHeap: boolean;
  checkReadAll: boolean;
  keepRunning: boolean;
  timeoutSeconds: number;
}

/** The input names, shared by action.yml (foo-bar) and the CLI (--foo-bar). */
export const INPUT_NAMES = [
  'base-backup',
  'wal-archive',
  'target',
  'target-time',
  'target-xid',
  'target-lsn',
  'target-name',
  'target-inclusive',
  'target-timeline',
  'data-directory',
  'postgres-bin',
  'postgres-version',
  'postgres-download',
  'os-user',
  'verify-query',
  'verify-sql',
  'database',
  'check-recovery-point',
  'check-indexes',
  'check-heap',
  'check-read-all',
  'keep-running',
  'timeout',
] as const;

export type InputName = (typeof INPUT_NAMES)[number];

/** Reads one input; returns '' when it was not given. */
export type InputReader = (name: InputName) => string;

function invalid(input: InputName, message: string, hint: string): PitrError {
  return new PitrError('INPUT_INVALID', `Input ${input}: ${message}`, [hint]);
}

function parseBoolean(input: InputName, raw: string, fallback: boolean): boolean {
  const value = raw.trim().toLowerCase();
  if (value === '') return fallback;
  if (['true', 'yes', 'on', '1'].includes(value)) return true;
  if (['false', 'no', 'off', '0'].includes(value)) return false;
  throw invalid(input, `"${raw}" is not true or false.`, `Set ${input} to true or false.`);
}

// A time without a zone would be read in the restored server's TimeZone setting, which is
// whatever the backup's postgresql.conf says: the same input could mean different instants.
const TIME_WITH_ZONE =
  /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?\s*(Z|UTC|GMT|[+-]\d{2}(:?\d{2})?)$/i;

function validateTime(raw: string): string {
  const value = raw.trim();
  if (!TIME_WITH_ZONE.test(value)) {
    throw invalid(
      'target-time',
      `"${raw}" is not a time with a zone.`,
      "Write it as 2026-12-03 18:17:29+00 (or with Z, UTC, or an offset such as +02:00): a time without a zone would be read in the server's own time zone.",
    );
  }
  if (Number.isNaN(parsePostgresTime(value))) {
    throw invalid(
      'target-time',
      `"${raw}" is not a real date and time.`,
      'Check the day, month and hour.',
    );
  }
  const [datePart] = value.split(/[ T]/);
  const [year, month, day] = datePart.split('-').map(Number);
  const date = new Date(Date.UTC(year, month - 1, day));
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) {
    throw invalid(
      'target-time',
      `"${raw}" names a day that does not exist.`,
      'Check the day and month.',
    );
  }
  return value;
}

function validateXid(raw: string): string {
  const value = raw.trim();
  // 13 and later accept a 64-bit xid with epoch ("full transaction id") as well.
  if (!/^\d+$/.test(value) || BigInt(value) < 3n || BigInt(value) > 0xffffffffffffffffn) {
    throw invalid(
      'target-xid',
      `"${raw}" is not a transaction id.`,
      'Give the number returned by txid_current() (or pg_current_xact_id()) in the transaction to stop at.',
    );
  }
  return value;
}

function parseTarget(read: InputReader): Target {
  const given = (['target-time', 'target-xid', 'target-lsn', 'target-name'] as const)
    .map((name) => ({ name, value: read(name) }))
    .filter((entry) => entry.value.trim() !== '');
  const named = read('target').trim().toLowerCase();

  if (given.length > 1) {
    throw new PitrError(
      'INPUT_INVALID',
      `Several recovery targets were given (${given.map((g) => g.name).join(', ')}); recovery can stop at only one.`,
      ['Keep one of them.'],
    );
  }
  if (given.length === 1 && named !== '' && named !== 'latest') {
    throw new PitrError(
      'INPUT_INVALID',
      `target is "${named}" and ${given[0].name} is set too; recovery can stop at only one.`,
      [`Remove target, or remove ${given[0].name}.`],
    );
  }
  if (given.length === 1) {
    const { name, value } = given[0];
    switch (name) {
      case 'target-time':
        return { kind: 'time', value: validateTime(value) };
      case 'target-xid':
        return { kind: 'xid', value: validateXid(value) };
      case 'target-lsn':
        if (!isLsn(value)) {
          throw invalid(
            'target-lsn',
            `"${value}" is not an LSN.`,
            'Write it as two hex numbers, e.g. 0/3000060.',
          );
        }
        return { kind: 'lsn', value: value.trim().toUpperCase() };
      case 'target-name':
        return { kind: 'name', value };
    }
  }
  if (named === '' || named === 'latest') return { kind: 'latest' };
  if (named === 'immediate') return { kind: 'immediate' };
  throw invalid(
    'target',
    `"${named}" is not a target.`,
    'Use latest or immediate, or set one of target-time, target-xid, target-lsn, target-name.',
  );
}

function parseTimeline(raw: string): string {
  const value = raw.trim().toLowerCase();
  if (value === '') return 'latest';
  if (value === 'latest' || value === 'current') return value;
  if (/^\d+$/.test(value) && Number(value) >= 1 && Number(value) <= 0xffffffff) return value;
  throw invalid(
    'target-timeline',
    `"${raw}" is not a timeline.`,
    'Use latest, current, or a timeline number.',
  );
}

function parseTimeout(raw: string): number {
  const value = raw.trim();
  if (value === '') return 3600;
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw invalid(
      'timeout',
      `"${raw}" is not a positive number of seconds.`,
      'Set timeout to e.g. 3600.',
    );
  }
  return seconds;
}

/** Splits verify-query into statements on semicolons and blank-line boundaries outside quotes. */
export function splitStatements(text: string): string[] {
  const statements: string[] = [];
  let current = '';
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quote) {
      current += ch;
      if (text.startsWith(quote, i)) {
        current += quote.slice(1);
        i += quote.length - 1;
        quote = undefined;
      }
      continue;
    }
    const dollar = /^\$[A-Za-z_]*\$/.exec(text.slice(i));
    if (dollar) {
      quote = dollar[0];
      current += quote;
      i += quote.length - 1;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      current += ch;
    } else if (ch === '-' && text[i + 1] === '-') {
      const end = text.indexOf('\n', i);
      i = end === -1 ? text.length : end - 1;
    } else if (ch === ';' || (ch === '\n' && current.trim() !== '' && isStatementEnd(text, i))) {
      if (current.trim() !== '') statements.push(current.trim());
      current = '';
    } else {
      current += ch;
    }
  }
  if (current.trim() !== '') statements.push(current.trim());
  return statements;
}

// verify-query allows one statement per line without semicolons: a newline ends a statement
// when the next non-blank line starts a new SELECT/WITH/VALUES/TABLE statement.
function isStatementEnd(text: string, newlineIndex: number): boolean {
  const rest = text.slice(newlineIndex + 1).trimStart();
  return rest === '' || /^(select|with|values|table)\b/i.test(rest);
}

export function buildRequest(read: InputReader): RestoreRequest {
  const baseBackup = read('base-backup').trim();
  if (baseBackup === '') {
    throw invalid(
      'base-backup',
      'is required.',
      'Set base-backup to the backup directory or base.tar file.',
    );
  }
  const verifyText = read('verify-query');
  return {
    baseBackup,
    walArchive: read('wal-archive').trim() || undefined,
    target: parseTarget(read),
    targetInclusive: parseBoolean('target-inclusive', read('target-inclusive'), true),
    targetTimeline: parseTimeline(read('target-timeline')),
    dataDirectory: read('data-directory').trim() || undefined,
    postgresBin: read('postgres-bin').trim() || undefined,
    postgresVersion: read('postgres-version').trim(),
    postgresDownload: parseBoolean('postgres-download', read('postgres-download'), true),
    osUser: read('os-user').trim() || 'postgres',
    verifyQueries: verifyText.trim() === '' ? [] : splitStatements(verifyText),
    verifySql: read('verify-sql').trim(),
    database: read('database').trim() || 'postgres',
    checkRecoveryPoint: parseBoolean('check-recovery-point', read('check-recovery-point'), true),
    checkIndexes: parseBoolean('check-indexes', read('check-indexes'), true),
    checkHeap: parseBoolean('check-heap', read('check-heap'), false),
    checkReadAll: parseBoolean('check-read-all', read('check-read-all'), true),
    keepRunning: parseBoolean('keep-running', read('keep-running'), false),
    timeoutSeconds: parseTimeout(read('timeout')),
  };
}

/** How a target reads in a log line or summary. */
export function describeTarget(target: Target): string {
  switch (target.kind) {
    case 'latest':
      return 'the end of the archive (latest)';
    case 'immediate':
      return 'the earliest consistent point (immediate)';
    case 'time':
      return `time ${target.value}`;
    case 'xid':
      return `transaction ${target.value}`;
    case 'lsn':
      return `LSN ${target.value}`;
    case 'name':
      return `restore point "${target.value}"`;
  }
}
