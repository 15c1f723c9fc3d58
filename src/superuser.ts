// The name of the cluster's bootstrap superuser, read from its files. pitr connects to the
// restored cluster as a superuser, and the one role every cluster has is the one initdb made
// (object id 10). It is called postgres only by custom: initdb -U, and images such as the
// official Docker one (POSTGRES_USER), give it the application's name. No query can ask for
// the name before a connection, so it is read from pg_authid's heap file directly.
//
// What is read is a guess to try, never trusted on its own: the server's answer to a
// connection decides. A name may be stale (a role renamed since the last checkpoint) or a dead
// row version may be found next to the live one; every candidate is offered in turn.

import { promises as fs } from 'node:fs';
import * as path from 'node:path';

/** pg_authid's object id; also its file number until a VACUUM FULL moves it. */
const PG_AUTHID = 1260;
const BOOTSTRAP_SUPERUSER_ID = 10;
/** pg_filenode.map: int32 magic, int32 count, then (oid, file number) pairs. */
const RELMAP_MAGIC = 0x592717;
const NAME_LENGTH = 64;
const PAGE_HEADER_SIZE = 24;
const LP_NORMAL = 1;
/** t_infomask bits: the row has an OID in its header (before 12); its xmax is not in use. */
const HEAP_HASOID_OLD = 0x0008;
const HEAP_XMAX_INVALID = 0x0800;

/** The file number of pg_authid in global/, from the shared relation map. */
async function authidFileNumber(dataDirectory: string): Promise<number> {
  const map = await fs.readFile(path.join(dataDirectory, 'global', 'pg_filenode.map'));
  if (map.length < 8 || map.readInt32LE(0) !== RELMAP_MAGIC) return PG_AUTHID;
  const count = map.readInt32LE(4);
  for (let i = 0; i < count && 16 + i * 8 <= map.length; i++) {
    if (map.readUInt32LE(8 + i * 8) === PG_AUTHID) return map.readUInt32LE(12 + i * 8);
  }
  return PG_AUTHID;
}

interface AuthidRow {
  name: string;
  /**
   * True when a transaction updated or deleted the row: most likely an older version of it.
   * Whether that transaction committed is in pg_xact, not here, so this only orders guesses.
   */
  replaced: boolean;
}

/** Rows of pg_authid whose object id is 10, from one heap page. */
function bootstrapRowsOfPage(page: Buffer, major: number): AuthidRow[] {
  const rows: AuthidRow[] = [];
  const lower = page.readUInt16LE(12);
  for (let pointer = PAGE_HEADER_SIZE; pointer + 4 <= lower; pointer += 4) {
    const item = page.readUInt32LE(pointer);
    const offset = item & 0x7fff;
    const flags = (item >>> 15) & 0x3;
    const length = item >>> 17;
    if (flags !== LP_NORMAL || offset + length > page.length || length < 24) continue;

    const tuple = page.subarray(offset, offset + length);
    const infomask = tuple.readUInt16LE(20);
    const dataStart = tuple[22];
    let oid: number;
    let nameStart: number;
    if (major >= 12) {
      // From 12 on, oid is an ordinary first column and rolname follows it.
      if (dataStart + 4 + NAME_LENGTH > tuple.length) continue;
      oid = tuple.readUInt32LE(dataStart);
      nameStart = dataStart + 4;
    } else {
      // Before 12, the row's OID sits in the last four bytes of its header.
      if (!(infomask & HEAP_HASOID_OLD) || dataStart + NAME_LENGTH > tuple.length) continue;
      oid = tuple.readUInt32LE(dataStart - 4);
      nameStart = dataStart;
    }
    if (oid !== BOOTSTRAP_SUPERUSER_ID) continue;

    const raw = tuple.subarray(nameStart, nameStart + NAME_LENGTH);
    const end = raw.indexOf(0);
    const name = raw.subarray(0, end === -1 ? NAME_LENGTH : end).toString('utf8');
    const xmax = tuple.readUInt32LE(4);
    const replaced = xmax !== 0 && !(infomask & HEAP_XMAX_INVALID);
    if (name) rows.push({ name, replaced });
  }
  return rows;
}

/**
 * Names to connect as, best first: the bootstrap superuser's name as pg_authid holds it (row
 * versions no one replaced before the others), then "postgres". Never throws: an unreadable
 * file leaves "postgres" alone.
 */
export async function superuserCandidates(dataDirectory: string, major: number): Promise<string[]> {
  const found: AuthidRow[] = [];
  try {
    const fileNumber = await authidFileNumber(dataDirectory);
    const heap = await fs.readFile(path.join(dataDirectory, 'global', String(fileNumber)));
    // pd_pagesize_version holds the page size in its high byte, so the block size need not be
    // known; a page never written (all zeros) is passed over at the size of the others.
    let pageSize = 8192;
    for (let at = 0; at + PAGE_HEADER_SIZE <= heap.length; at += pageSize) {
      const stated = heap.readUInt16LE(at + 18) & 0xff00;
      if (stated < 1024) continue;
      pageSize = stated;
      if (at + pageSize > heap.length) break;
      found.push(...bootstrapRowsOfPage(heap.subarray(at, at + pageSize), major));
    }
  } catch {
    // The file could not be read or parsed: the server's answer is the test anyway.
  }
  const ordered = [...found.filter((r) => !r.replaced), ...found.filter((r) => r.replaced)];
  return [...new Set([...ordered.map((r) => r.name), 'postgres'])];
}
