// Every failure pitr reports is a PitrError: a stable code that scripts can match on, one
// sentence saying what happened with the evidence, and hints saying what to try next.

export type ErrorCode =
  | 'INPUT_INVALID'
  | 'BACKUP_NOT_FOUND'
  | 'BACKUP_DAMAGED'
  | 'BACKUP_UNSAFE_ENTRY'
  | 'BACKUP_INCREMENTAL'
  | 'VERSION_MISMATCH'
  | 'POSTGRES_NOT_FOUND'
  | 'OS_USER_FAILED'
  | 'DATA_DIRECTORY_NOT_EMPTY'
  | 'WAL_GAP'
  | 'WAL_DAMAGED'
  | 'TARGET_NOT_REACHED'
  | 'TARGET_BEFORE_CONSISTENCY'
  | 'TIMELINE_NOT_IN_HISTORY'
  | 'WAL_MISSING_FOR_CONSISTENCY'
  | 'SERVER_FAILED'
  | 'RECOVERY_TIMEOUT'
  | 'VERIFY_FAILED'
  | 'WORKSPACE_WRITE_FAILED'
  | 'INTERNAL'
  | 'POSTGRES_DOWNLOAD_FAILED'
  | 'WAL_FOREIGN_CLUSTER';

export class PitrError extends Error {
  readonly code: ErrorCode;
  readonly hints: string[];
  /** The last lines of the server log, when the server was involved. */
  logTail?: string[];
  /** The whole server log, when the server was started. */
  logFile?: string;
  /** Every check's result, when verification ran (VERIFY_FAILED). */
  checks?: import('./verification.js').CheckReport[];

  constructor(code: ErrorCode, message: string, hints: string[] = [], options?: ErrorOptions) {
    super(message, options);
    this.name = 'PitrError';
    this.code = code;
    this.hints = hints;
  }
}

/** Turns anything thrown into a PitrError, keeping unexpected errors visible as INTERNAL. */
export function asPitrError(error: unknown): PitrError {
  if (error instanceof PitrError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new PitrError('INTERNAL', message, [
    'This is a pitr bug or an unexpected system condition; the message above is all it knows.',
  ]);
}

/** The full text of an error for a log or a CI annotation: message, hints, then the log tail. */
export function describeError(error: PitrError, withLog = true): string {
  const lines = [`${error.code}: ${error.message}`];
  for (const hint of error.hints) lines.push(`HINT: ${hint}`);
  if (withLog && error.logTail && error.logTail.length > 0) {
    lines.push('Last lines of the server log:');
    for (const line of error.logTail) lines.push(`  ${line}`);
  }
  return lines.join('\n');
}
