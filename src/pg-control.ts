// global/pg_control holds the cluster's identity and shape: system identifier, the WAL
// segment size, the checkpoint. Reading it directly works with any server build, since
// many builds ship no pg_controldata. Layouts differ between majors (see the offsets).

import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PitrError } from './errors.js';

export interface ControlFile {
  systemIdentifier: bigint;
  controlVersion: number;
  catalogVersion: number;
  state: number;
  walSegmentSize: number;
  checkpointTimeline: number;
}

interface Layout {
  timeline: number;
  segmentSize: number;
  crc: number;
}

// Offsets on 64-bit builds, from pg_control.h of each major.
function layoutFor(controlVersion: number): Layout | undefined {
  if (controlVersion === 1002) return { timeline: 56, segmentSize: 228, crc: 288 };
  if (controlVersion === 1100) return { timeline: 48, segmentSize: 220, crc: 280 };
  if (controlVersion === 1201 || controlVersion === 1300 || controlVersion === 1700) {
    return { timeline: 48, segmentSize: 228, crc: 288 };
  }
  if (controlVersion === 1800) return { timeline: 48, segmentSize: 228, crc: 292 };
  return undefined;
}

/** The major versions each pg_control_version is written by. */
export function majorsForControlVersion(controlVersion: number): number[] {
  switch (controlVersion) {
    case 1002:
      return [10];
    case 1100:
      return [11];
    case 1201:
      return [12];
    case 1300:
      return [13, 14, 15, 16];
    case 1700:
      return [17];
    case 1800:
      return [18];
    default:
      return [];
  }
}

let crcTable: Uint32Array | undefined;

/** CRC-32C (Castagnoli), as PostgreSQL computes it for pg_control and WAL records. */
export function crc32c(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of data) crc = crcTable[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export async function readControlFile(dataDirectory: string): Promise<ControlFile> {
  const file = path.join(dataDirectory, 'global', 'pg_control');
  const bytes = await fs.readFile(file).catch(() => undefined);
  if (!bytes || bytes.length < 512) {
    throw new PitrError('BACKUP_DAMAGED', `${file} is missing or shorter than 512 bytes.`, [
      'The backup is incomplete: global/pg_control is copied by every backup method; take or copy the backup again.',
    ]);
  }
  const controlVersion = bytes.readUInt32LE(8);
  const layout = layoutFor(controlVersion);
  if (!layout) {
    throw new PitrError(
      'BACKUP_DAMAGED',
      `${file} has pg_control_version ${controlVersion}, which no PostgreSQL 10 to 18 writes.`,
      [
        'The file is damaged, or comes from a version or platform pitr does not support (big-endian, 32-bit).',
      ],
    );
  }
  const stored = bytes.readUInt32LE(layout.crc);
  const computed = crc32c(bytes.subarray(0, layout.crc));
  if (stored !== computed) {
    throw new PitrError(
      'BACKUP_DAMAGED',
      `${file} fails its checksum (stored CRC-32C ${stored.toString(16)}, computed ${computed.toString(16)}): the server would refuse to start.`,
      [
        'Copy the backup again; if the copy is good, the backup itself was damaged when it was written.',
      ],
    );
  }
  return {
    systemIdentifier: bytes.readBigUInt64LE(0),
    controlVersion,
    catalogVersion: bytes.readUInt32LE(12),
    state: bytes.readInt32LE(16),
    walSegmentSize: bytes.readUInt32LE(layout.segmentSize),
    checkpointTimeline: bytes.readUInt32LE(layout.timeline),
  };
}
