// Recovery settings, as each major wants them. 10 and 11 read recovery.conf in the data
// directory; 12 and later take ordinary settings plus a recovery.signal file. On 12+ pitr
// passes every setting on the server's command line, so nothing of pitr's stays in the
// restored cluster's configuration: a plain `pg_ctl start` afterwards sees only the user's.

import type { Target } from './request.js';

export interface RecoverySettings {
  restoreCommand: string;
  target: Target;
  targetInclusive: boolean;
  targetTimeline: string;
}

export interface ServerEnvironment {
  socketDirectory: string;
  port: number;
  hbaFile: string;
}

/**
 * Quotes a value for a PostgreSQL configuration file (recovery.conf, postgresql.conf).
 * Inside single quotes the parser turns '' into ' and undoes backslash escapes, and a raw
 * newline ends the line, so quote, backslash and line breaks are all escaped: no value can
 * close its quotes and start a setting of its own.
 */
export function quoteConfigValue(value: string): string {
  const escaped = value
    .replace(/\\/g, '\\\\')
    .replace(/'/g, "''")
    .replace(/\n/g, '\\n')
    .replace(/\r/g, '\\r');
  return `'${escaped}'`;
}

/** Quotes a word for /bin/sh, which runs restore_command. */
export function quoteShellWord(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** restore_command treats % as the start of %f, %p or %r; a literal one is written %%. */
export function escapePercent(text: string): string {
  return text.replace(/%/g, '%%');
}

function targetSettings(target: Target): [string, string][] {
  switch (target.kind) {
    case 'latest':
      return [];
    case 'immediate':
      return [['recovery_target', 'immediate']];
    case 'time':
      return [['recovery_target_time', target.value]];
    case 'xid':
      return [['recovery_target_xid', target.value]];
    case 'lsn':
      return [['recovery_target_lsn', target.value]];
    case 'name':
      return [['recovery_target_name', target.value]];
  }
}

/** The recovery settings as name/value pairs, for the given major. */
export function recoverySettings(major: number, settings: RecoverySettings): [string, string][] {
  const result: [string, string][] = [['restore_command', settings.restoreCommand]];
  const target = targetSettings(settings.target);
  result.push(...target);
  if (target.length > 0 && settings.target.kind !== 'immediate') {
    result.push(['recovery_target_inclusive', settings.targetInclusive ? 'true' : 'false']);
  }
  // 'current' is the default before 12 and only became a spelled-out value in 12.
  if (!(major < 12 && settings.targetTimeline === 'current')) {
    result.push(['recovery_target_timeline', settings.targetTimeline]);
  }
  // The default action is pause, which leaves a read-only cluster behind; a restore test
  // wants the cluster promoted and usable, as the user's would be on the real day.
  if (target.length > 0) result.push(['recovery_target_action', 'promote']);

  if (major >= 12) {
    // These are ordinary settings from 12 on, so the backup's own postgresql.conf may set
    // them: a primary's archive_cleanup_command would delete from the user's archive, and a
    // delayed standby's recovery_min_apply_delay, which archive recovery honours too, would
    // hold each commit back by hours.
    result.push(
      ['archive_cleanup_command', ''],
      ['recovery_end_command', ''],
      ['primary_conninfo', ''],
      ['recovery_min_apply_delay', '0'],
    );
  }
  return result;
}

export function recoveryConfText(settings: [string, string][]): string {
  const lines = [
    '# Written by pitr for this restore; PostgreSQL renames it recovery.done at the end.',
  ];
  for (const [name, value] of settings) lines.push(`${name} = ${quoteConfigValue(value)}`);
  return lines.join('\n') + '\n';
}

/**
 * Settings that keep a test restore private and harmless, whatever the backup's
 * postgresql.conf says: no network listener, no archiving into anybody's archive, the
 * server's messages in English on stderr where pitr reads them, and pitr's own
 * authentication file so that pitr can connect whatever pg_hba.conf the backup has. A large
 * primary's huge_pages = on would stop the server on a runner with no huge pages reserved;
 * try uses them where they are.
 */
export function serverSettings(env: ServerEnvironment): [string, string][] {
  return [
    ['listen_addresses', ''],
    ['unix_socket_directories', env.socketDirectory],
    ['port', String(env.port)],
    ['archive_mode', 'off'],
    ['hba_file', env.hbaFile],
    ['ssl', 'off'],
    ['logging_collector', 'off'],
    ['log_destination', 'stderr'],
    ['log_line_prefix', '%m [%p] '],
    ['lc_messages', 'C'],
    ['hot_standby', 'on'],
    ['huge_pages', 'try'],
  ];
}

/** Command-line arguments for postgres: -c name=value for each setting. */
export function commandLineSettings(settings: [string, string][]): string[] {
  return settings.flatMap(([name, value]) => ['-c', `${name}=${value}`]);
}
