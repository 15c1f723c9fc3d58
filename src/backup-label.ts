// backup_label is written by pg_basebackup and by the low-level backup API. It says where
// replay must start (the checkpoint's redo point) and on which timeline, which is what the
// archive checks need before the server ever starts.

import { PitrError } from './errors.js';
import { isLsn, parseLsn } from './wal-names.js';

export interface BackupLabel {
  startLsn: bigint;
  startSegment: string;
  checkpointLsn: bigint;
  startTimeline: number;
  startTime?: string;
  label?: string;
  backupFrom?: string;
  /** Set for PostgreSQL 17 incremental backups, which need pg_combinebackup first. */
  incrementalFromLsn?: string;
  incrementalFromTimeline?: string;
}

export function parseBackupLabel(text: string, path: string): BackupLabel {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }

  const damaged = (what: string) =>
    new PitrError('BACKUP_DAMAGED', `${path} ${what}.`, [
      'The backup_label file must be exactly as pg_basebackup or pg_backup_stop() wrote it; copy it again from the backup.',
    ]);

  const start = /^([0-9A-F]+\/[0-9A-F]+) \(file ([0-9A-F]{24})\)$/i.exec(
    fields.get('START WAL LOCATION') ?? '',
  );
  if (!start) throw damaged('has no readable "START WAL LOCATION: X/X (file ...)" line');
  const checkpoint = fields.get('CHECKPOINT LOCATION') ?? '';
  if (!isLsn(checkpoint)) throw damaged('has no readable "CHECKPOINT LOCATION" line');

  // START TIMELINE appears from 11 on; in 10 the timeline is the start segment's first part.
  const timelineField = fields.get('START TIMELINE');
  const startTimeline = timelineField ? Number(timelineField) : parseInt(start[2].slice(0, 8), 16);

  return {
    startLsn: parseLsn(start[1]),
    startSegment: start[2].toUpperCase(),
    checkpointLsn: parseLsn(checkpoint),
    startTimeline,
    startTime: fields.get('START TIME'),
    label: fields.get('LABEL'),
    backupFrom: fields.get('BACKUP FROM'),
    incrementalFromLsn: fields.get('INCREMENTAL FROM LSN'),
    incrementalFromTimeline: fields.get('INCREMENTAL FROM TLI'),
  };
}
