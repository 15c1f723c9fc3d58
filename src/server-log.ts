// Reads the restored server's log as it is written. The server tells, line by line, which
// archived files it restored, where recovery stopped and why, and where redo ended; those
// lines are the evidence pitr reports. The wording is that of PostgreSQL 10 to 18 with
// lc_messages=C, which pitr sets.

export interface RecoveryStop {
  /** The log line's text after "LOG:". */
  text: string;
  kind: 'xid' | 'time' | 'name' | 'lsn' | 'immediate';
  xid?: string;
  time?: string;
  name?: string;
  lsn?: string;
}

export class RecoveryLog {
  readonly lines: string[] = [];
  restoredFiles: string[] = [];
  stop?: RecoveryStop;
  redoDoneLsn?: string;
  lastCompletedTime?: string;
  consistentLsn?: string;
  newTimeline?: number;
  archiveRecoveryComplete = false;
  readyForConnections = false;
  targetNotReached = false;
  fatal?: string;
  /** The first complaint about WAL contents: where replay gives up on a damaged segment. */
  walProblem?: string;

  private readonly maxKept: number;

  constructor(maxKept = 2000) {
    this.maxKept = maxKept;
  }

  tail(count = 20): string[] {
    return this.lines.slice(-count);
  }

  lastRestoredSegment(): string | undefined {
    for (let i = this.restoredFiles.length - 1; i >= 0; i--) {
      if (/^[0-9A-F]{24}$/.test(this.restoredFiles[i])) return this.restoredFiles[i];
    }
    return undefined;
  }

  add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.maxKept) this.lines.splice(0, this.lines.length - this.maxKept);

    // A message with a newline in it (a restore point name may hold one) goes on in lines
    // that start with a tab; the whole message is matched again as each part arrives.
    if (line.startsWith('\t') && this.message !== undefined) {
      this.message += `\n${line.slice(1)}`;
    } else {
      this.message = line;
      this.fatalOpen = false;
      this.readEvent(line);
    }
    this.readState(this.message);
  }

  private message?: string;

  /** Lines that record an event once: they never continue over several lines. */
  private readEvent(line: string): void {
    const restored = /restored log file "([^"]+)" from archive/.exec(line);
    if (restored) this.restoredFiles.push(restored[1]);
  }

  /** Lines that set what is known so far; safe to match again as a message grows. */
  private readState(message: string): void {
    let match: RegExpExecArray | null;
    if (
      (match =
        /recovery stopping (?:before|after) (?:commit|abort) of transaction (\d+), time (.+)$/.exec(
          message,
        ))
    ) {
      this.stop = { text: trimPrefix(message), kind: 'xid', xid: match[1], time: match[2].trim() };
    } else if (
      (match = /recovery stopping at restore point "([\s\S]*)", time (.+)$/.exec(message))
    ) {
      this.stop = {
        text: trimPrefix(message),
        kind: 'name',
        name: match[1],
        time: match[2].trim(),
      };
    } else if (
      (match =
        /recovery stopping (?:before|after) WAL location \(LSN\) "([0-9A-F]+\/[0-9A-F]+)"/.exec(
          message,
        ))
    ) {
      this.stop = { text: trimPrefix(message), kind: 'lsn', lsn: match[1] };
    } else if (/recovery stopping after reaching consistency/.test(message)) {
      this.stop = { text: trimPrefix(message), kind: 'immediate' };
    } else if (
      (match = /consistent recovery state reached at ([0-9A-F]+\/[0-9A-F]+)/.exec(message))
    ) {
      this.consistentLsn = match[1];
    } else if ((match = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(message))) {
      this.redoDoneLsn = match[1];
    } else if ((match = /last completed transaction was at log time (.+)$/.exec(message))) {
      this.lastCompletedTime = match[1].trim();
    } else if ((match = /selected new timeline ID: (\d+)/.exec(message))) {
      this.newTimeline = Number(match[1]);
    } else if (/archive recovery complete/.test(message)) {
      this.archiveRecoveryComplete = true;
    } else if (/database system is ready to accept connections/.test(message)) {
      this.readyForConnections = true;
    }
    if (/recovery ended before configured recovery target was reached/.test(message)) {
      this.targetNotReached = true;
    }
    // Replay reads on until a record fails its checks, then treats that as the end of WAL;
    // these LOG lines are the only sign that the end came from damage, not from the archive.
    if (
      !this.walProblem &&
      /invalid (magic number|info bits|record length|resource manager|record offset|contrecord)|unexpected pageaddr|incorrect (resource manager data )?checksum|out-of-sequence timeline|WAL file is from different database system|missing contrecord|record with incorrect prev-link/.test(
        message,
      )
    ) {
      this.walProblem = trimPrefix(message);
    }
    // The first FATAL or PANIC is the cause; later ones are consequences of it.
    if (
      (match = /\b(FATAL|PANIC):\s+([\s\S]*)$/.exec(message)) &&
      (!this.fatal || this.fatalOpen)
    ) {
      this.fatal = match[2].trim();
      this.fatalOpen = true;
    }
  }

  private fatalOpen = false;
}

function trimPrefix(line: string): string {
  const index = line.indexOf('LOG:');
  return index === -1 ? line.trim() : line.slice(index + 4).trim();
}
