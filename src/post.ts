// The action's post step: stops a server that keep-running left for the job's later steps,
// with a fast shutdown, so that the job ends with a cleanly stopped cluster.

import * as core from '@actions/core';
import { stopKeptServer, type KeptServer } from './server.js';

async function run(): Promise<void> {
  const saved = core.getState('kept-server');
  if (!saved) return;
  const kept = JSON.parse(saved) as KeptServer;
  try {
    await stopKeptServer(kept);
    core.info(`Stopped the restored server in ${kept.dataDirectory}.`);
  } catch (error) {
    // A later step may have stopped it already; that is not a failure of the job.
    core.warning(
      `Could not stop the restored server in ${kept.dataDirectory}: ${(error as Error).message}`,
    );
  }
}

void run();
