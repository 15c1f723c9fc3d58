// LSNs and WAL segment file names. An LSN is a 64-bit byte position in the WAL stream,
// written "%X/%X" (high and low 32 bits). A segment file is named by its timeline and its
// segment number split in two, "%08X%08X%08X", where the split depends on the segment size.

export const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;
const SEGMENT_PATTERN = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;

export function isLsn(text: string): boolean {
  return LSN_PATTERN.test(text.trim());
}

export function parseLsn(text: string): bigint {
  const match = LSN_PATTERN.exec(text.trim());
  if (!match) throw new Error(`"${text}" is not an LSN (expected the form 0/16B3748)`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

export function formatLsn(lsn: bigint): string {
  const high = (lsn >> 32n).toString(16).toUpperCase();
  const low = (lsn & 0xffffffffn).toString(16).toUpperCase();
  return `${high}/${low}`;
}

function segmentsPerXLogId(segmentSize: number): bigint {
  return 0x100000000n / BigInt(segmentSize);
}

export function segmentNumberOf(lsn: bigint, segmentSize: number): bigint {
  return lsn / BigInt(segmentSize);
}

export function segmentFileName(timeline: number, segno: bigint, segmentSize: number): string {
  const perId = segmentsPerXLogId(segmentSize);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${hex(timeline)}${hex(segno / perId)}${hex(segno % perId)}`;
}

export interface SegmentName {
  timeline: number;
  segno: bigint;
}

/** Parses a segment file name; returns undefined for anything that is not one. */
export function parseSegmentFileName(name: string, segmentSize: number): SegmentName | undefined {
  const match = SEGMENT_PATTERN.exec(name);
  if (!match) return undefined;
  const perId = segmentsPerXLogId(segmentSize);
  const low = BigInt(`0x${match[3]}`);
  if (low >= perId) return undefined;
  return {
    timeline: parseInt(match[1], 16),
    segno: BigInt(`0x${match[2]}`) * perId + low,
  };
}

/** The LSN at which a segment begins. */
export function segmentStartLsn(segno: bigint, segmentSize: number): bigint {
  return segno * BigInt(segmentSize);
}
