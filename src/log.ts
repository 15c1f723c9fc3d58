// The pipeline's log. It knows nothing of GitHub: the CLI writes to stderr (stdout is kept
// for --json), and the action routes the same lines to @actions/core.

export interface Logger {
  info(message: string): void;
  warning(message: string): void;
  debug(message: string): void;
  /** Bulky output (a server log) that a reader opens only when needed. */
  group(title: string, lines: string[]): void;
}

const stderrLogger: Logger = {
  info: (message) => process.stderr.write(`${message}\n`),
  warning: (message) => process.stderr.write(`warning: ${message}\n`),
  debug: (message) => {
    if (process.env.PITR_DEBUG) process.stderr.write(`debug: ${message}\n`);
  },
  // On a terminal the whole server log would bury the steps; PITR_DEBUG shows it.
  group: (title, lines) => {
    if (process.env.PITR_DEBUG) {
      process.stderr.write(`${title}\n${lines.map((l) => `  ${l}\n`).join('')}`);
    }
  },
};

let current: Logger = stderrLogger;

export function setLogger(logger: Logger): void {
  current = logger;
}

export const log: Logger = {
  info: (message) => current.info(message),
  warning: (message) => current.warning(message),
  debug: (message) => current.debug(message),
  group: (title, lines) => current.group(title, lines),
};
