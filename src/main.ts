// The GitHub Action: inputs in, one restore, outputs, annotations and a job summary out.

import * as core from '@actions/core';
import * as path from 'node:path';
import { asPitrError, describeError } from './errors.js';
import { setLogger } from './log.js';
import { failureOutputs, successOutputs } from './outputs.js';
import { newReport, recordError, writeReportFile } from './report.js';
import { buildRequest, describeTarget } from './request.js';
import { restore } from './restore.js';
import { writeSummary } from './summary.js';
import type { CheckReport } from './verification.js';

/** Each failed check from a file is annotated on its statement's lines. */
function annotateChecks(checks: CheckReport[]): void {
  const workspace = process.env.GITHUB_WORKSPACE || process.cwd();
  for (const check of checks) {
    if (check.passed || check.skipped) continue;
    const properties: core.AnnotationProperties = { title: `pitr check failed: ${check.name}` };
    if (check.file) {
      properties.file = path.isAbsolute(check.file)
        ? path.relative(workspace, check.file)
        : check.file;
      properties.startLine = check.line;
      properties.endLine = check.endLine;
    }
    core.error(check.detail ?? 'failed', properties);
  }
}

async function run(): Promise<void> {
  setLogger({
    info: (message) => core.info(message),
    warning: (message) => core.warning(message),
    debug: (message) => core.debug(message),
    group: (title, lines) => {
      core.startGroup(title);
      for (const line of lines) core.info(line);
      core.endGroup();
    },
  });

  let report = newReport('');
  try {
    const request = buildRequest((name) => core.getInput(name));
    report = newReport(describeTarget(request.target));
    const result = await restore(request, report);
    for (const [name, value] of Object.entries(successOutputs(result))) core.setOutput(name, value);
    if (result.connection) {
      // The post step stops the kept server at the end of the job.
      core.saveState('kept-server', JSON.stringify(result.connection));
      core.setOutput('connection-uri', result.connection.uri);
      core.setOutput('host', result.connection.host);
      core.setOutput('port', String(result.connection.port));
      core.setOutput('user', result.connection.user);
    }
  } catch (thrown) {
    const error = asPitrError(thrown);
    recordError(report, error);
    for (const [name, value] of Object.entries(failureOutputs(error))) core.setOutput(name, value);
    if (error.checks) annotateChecks(error.checks);
    if (error.logTail?.length) {
      core.startGroup('Server log (last lines)');
      for (const line of error.logTail) core.info(line);
      core.endGroup();
    }
    // core.setFailed is core.error plus exit code 1, but takes no annotation title; the two
    // halves are written out so that the annotation's title names the code.
    core.error(describeError(error, false), { title: `pitr ${error.code}` });
    process.exitCode = core.ExitCode.Failure;
  }
  try {
    core.setOutput('summary-json', await writeReportFile(report));
    await writeSummary(report);
  } catch (error) {
    core.warning(`Could not write the job summary or report: ${(error as Error).message}`);
  }
}

void run();
