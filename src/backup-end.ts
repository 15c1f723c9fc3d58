// Where the backup ends: the earliest point a restore can stop at. backup_label only says
// where the backup started; the end is written in the backup history file the server
// archives at the end of every backup (<segment>.<offset>.backup), and, for pg_basebackup
// from 13 on, in backup_manifest's WAL-Ranges.

import * as path from 'node:path';
import { readPossiblyCompressed } from './archive.js';
import type { BackupLabel } from './backup-label.js';
import { archivedNames } from './decompress.js';
import { isLsn, parseLsn } from './wal-names.js';

export interface BackupEnd {
  lsn: bigint;
  /** STOP TIME from the backup history file, when that is where the end came from. */
  time?: string;
  /** The file the end was read from, for messages. */
  source: string;
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readPossiblyCompressed(file);
  } catch {
    return undefined;
  }
}

/** The backup history file's name: start segment, then the start LSN's offset in it. */
function historyFileName(label: BackupLabel, segmentSize: number): string {
  const offset = Number(label.startLsn % BigInt(segmentSize));
  return `${label.startSegment}.${offset.toString(16).toUpperCase().padStart(8, '0')}.backup`;
}

async function fromHistoryFile(label: BackupLabel, folders: string[], segmentSize: number) {
  const name = historyFileName(label, segmentSize);
  for (const folder of folders) {
    for (const file of archivedNames(name).map((candidate) => path.join(folder, candidate))) {
      const text = await readText(file);
      if (text === undefined) continue;
      const stop = /^STOP WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+)/m.exec(text);
      if (!stop) continue;
      const time = /^STOP TIME: (.+)$/m.exec(text)?.[1]?.trim();
      return { lsn: parseLsn(stop[1]), time, source: file };
    }
  }
  return undefined;
}

async function fromManifest(manifests: string[]): Promise<BackupEnd | undefined> {
  for (const file of manifests) {
    const text = await readText(file);
    if (text === undefined) continue;
    try {
      const manifest = JSON.parse(text) as { 'WAL-Ranges'?: { 'End-LSN'?: string }[] };
      const ranges = manifest['WAL-Ranges'] ?? [];
      const end = ranges[ranges.length - 1]?.['End-LSN'];
      if (end && isLsn(end)) return { lsn: parseLsn(end), source: file };
    } catch {
      // A manifest that does not parse tells nothing about the end; other sources may.
    }
  }
  return undefined;
}

/**
 * The backup's end LSN from the first source that has it, or undefined when none does (a
 * low-level copy whose history file was never archived, say).
 */
export async function findBackupEnd(
  label: BackupLabel,
  walFolders: string[],
  manifests: string[],
  segmentSize: number,
): Promise<BackupEnd | undefined> {
  return (await fromHistoryFile(label, walFolders, segmentSize)) ?? (await fromManifest(manifests));
}
