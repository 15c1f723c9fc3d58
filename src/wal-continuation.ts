// Whether WAL goes on after the place replay ended, inside the segment where it ended. The
// server ends replay at the first record it cannot use and, with no target, promotes without
// an error; PostgreSQL 10 does not even log why. When that happens inside the archive's last
// segment, no missing file gives it away. The segment's pages do: WAL pages are written in
// order and each starts with a header naming its own WAL position, while after the last
// record of a partial segment (a file copied from pg_wal) come zeros or, in a recycled file,
// headers of an older position. A page further on whose header is right means there was WAL
// beyond the end replay found: the record in between is damaged.
//
// A segment switch is the one normal end with pages behind it (10 writes them with headers,
// later majors as zeros): after a switch record nothing is judged. Damage in the last page
// that holds WAL leaves no page behind it and is not found here.

import { archivedFileStream } from './decompress.js';

/** sizeof XLogPageHeaderData padded to 8 bytes: where a record's bytes go on in a page. */
const SHORT_HEADER_SIZE = 24;
/** sizeof XLogRecord: xl_tot_len u32, xl_xid u32, xl_prev u64, xl_info u8, xl_rmid u8, ... */
const RECORD_HEADER_SIZE = 24;
/** XLOG_BLCKSZ of every build pitr can install. */
const PAGE_SIZE = 8192;
/** RM_XLOG_ID and XLOG_SWITCH (the high four bits of xl_info; the low four are flags). */
const RM_XLOG_ID = 0;
const XLOG_SWITCH = 0x40;

export interface SegmentPages {
  /** The bytes from the requested record on, enough for its header across a page break. */
  recordBytes: Buffer;
  recordOffset: number;
  /** xlp_magic and xlp_pageaddr of each page, by page number. */
  pages: { magic: number; pageaddr: bigint }[];
}

/**
 * Reads a segment (plain or compressed) once, keeping only each page's header and the first bytes of
 * the record at `recordOffset`; memory stays small whatever the segment size.
 */
export async function readSegmentPages(file: string, recordOffset: number): Promise<SegmentPages> {
  const stream = archivedFileStream(file);

  // A record header split by a page break has the next page's header in the middle.
  const wanted = RECORD_HEADER_SIZE + SHORT_HEADER_SIZE;
  const result: SegmentPages = { recordBytes: Buffer.alloc(0), recordOffset, pages: [] };
  const recordParts: Buffer[] = [];
  let position = 0;
  // A page header (16 bytes read) may straddle two chunks: the last 15 bytes of each chunk
  // are looked at again at the front of the next.
  let carry = Buffer.alloc(0);
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const data = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    const base = position - carry.length;
    const end = base + data.length;
    for (let page = Math.ceil(base / PAGE_SIZE) * PAGE_SIZE; page + 16 <= end; page += PAGE_SIZE) {
      const at = page - base;
      result.pages[page / PAGE_SIZE] = {
        magic: data.readUInt16LE(at),
        pageaddr: data.readBigUInt64LE(at + 8),
      };
    }
    // The record's bytes, from the new part of this chunk only.
    const from = Math.max(recordOffset, position);
    const to = Math.min(recordOffset + wanted, end);
    if (from < to) recordParts.push(Buffer.from(data.subarray(from - base, to - base)));
    position = end;
    carry = Buffer.from(data.subarray(Math.max(0, data.length - 15)));
  }
  result.recordBytes = Buffer.concat(recordParts);
  return result;
}

/** The record header at the requested offset, its two halves joined across a page break. */
function recordHeader(segment: SegmentPages): Buffer | undefined {
  const onPage = PAGE_SIZE - (segment.recordOffset % PAGE_SIZE);
  const bytes = segment.recordBytes;
  const header =
    onPage >= RECORD_HEADER_SIZE
      ? bytes.subarray(0, RECORD_HEADER_SIZE)
      : Buffer.concat([
          bytes.subarray(0, onPage),
          bytes.subarray(onPage + SHORT_HEADER_SIZE, SHORT_HEADER_SIZE + RECORD_HEADER_SIZE),
        ]);
  return header.length === RECORD_HEADER_SIZE ? header : undefined;
}

/**
 * The WAL position of the first page after the record at `recordLsn` whose header is that of
 * the page at its place, or undefined when there is none, when the record is a segment switch,
 * or when it runs on into the next segment. `segmentStart` is the position of the segment's
 * first byte.
 */
export function walAfterRecord(
  segment: SegmentPages,
  segmentStart: bigint,
  recordLsn: bigint,
  magic: number,
): bigint | undefined {
  const header = recordHeader(segment);
  if (!header) return undefined;
  if (header[17] === RM_XLOG_ID && (header[16] & 0xf0) === XLOG_SWITCH) return undefined;

  // Where the record ends: its bytes fill each page after that page's header.
  let offset = Number(recordLsn - segmentStart);
  let remaining = header.readUInt32LE(0);
  for (;;) {
    const pageEnd = (Math.floor(offset / PAGE_SIZE) + 1) * PAGE_SIZE;
    const take = Math.min(pageEnd - offset, remaining);
    remaining -= take;
    offset += take;
    if (remaining === 0) break;
    // Only a segment's first page has the long header, and a record never continues there
    // from this segment's pages: it goes on into the next segment, with nothing here to judge.
    offset = pageEnd + SHORT_HEADER_SIZE;
    if (Math.floor(offset / PAGE_SIZE) >= segment.pages.length) return undefined;
  }

  const lastPage = Math.floor((offset - 1) / PAGE_SIZE);
  for (let page = lastPage + 1; page < segment.pages.length; page++) {
    const found = segment.pages[page];
    const lsn = segmentStart + BigInt(page * PAGE_SIZE);
    if (found && found.magic === magic && found.pageaddr === lsn) return lsn;
  }
  return undefined;
}
