// The GitHub Action: inputs in, one restore, outputs and a job summary out.

import * as core from '@actions/core';
import { asPitrError, describeError } from './errors.js';
import { setLogger } from './log.js';
import { failureOutputs, successOutputs } from './outputs.js';
import { buildRequest } from './request.js';
import { restore } from './restore.js';
import { writeSummary } from './summary.js';

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

  let request;
  try {
    request = buildRequest((name) => core.getInput(name));
    const result = await restore(request);
    for (const [name, value] of Object.entries(successOutputs(result))) core.setOutput(name, value);
    await writeSummary({ request, result });
  } catch (thrown) {
    const error = asPitrError(thrown);
    for (const [name, value] of Object.entries(failureOutputs(error))) core.setOutput(name, value);
    if (error.logTail?.length) {
      core.startGroup('Server log (last lines)');
      for (const line of error.logTail) core.info(line);
      core.endGroup();
    }
    await writeSummary({ request, error }).catch(() => undefined);
    core.setFailed(describeError(error, false));
  }
}

void run();
