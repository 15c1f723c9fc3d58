// The outputs of a restore, by their action output names; the CLI prints the same object
// with --json, so scripts and workflows read the same names.

import type { PitrError } from './errors.js';
import type { RestoreResult } from './restore.js';
import type { CheckReport } from './verification.js';

export type Outputs = Record<string, string>;

/** How many checks passed and failed; skipped checks count as neither. */
function checkCounts(checks: CheckReport[]): Outputs {
  return {
    'checks-passed': String(checks.filter((c) => c.passed).length),
    'checks-failed': String(checks.filter((c) => !c.passed && !c.skipped).length),
  };
}

export function successOutputs(result: RestoreResult): Outputs {
  return {
    'recovered-lsn': result.recoveredLsn,
    'recovered-time': result.recoveredTime,
    timeline: String(result.timeline),
    'postgres-version': result.postgresVersion,
    'postgres-bin': result.postgresBin,
    'data-directory': result.dataDirectory,
    'duration-seconds': String(result.durationSeconds),
    'log-file': result.logFile,
    ...checkCounts(result.checks),
  };
}

export function failureOutputs(error: PitrError): Outputs {
  const outputs: Outputs = { 'error-code': error.code, 'error-message': error.message };
  if (error.logFile) outputs['log-file'] = error.logFile;
  // A failed verification still tells later steps (if: failure()) how many checks held.
  if (error.checks) Object.assign(outputs, checkCounts(error.checks));
  return outputs;
}
