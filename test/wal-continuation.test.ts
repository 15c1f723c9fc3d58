// Finding WAL after the place replay ended, in a real segment: the bundled example's last
// archived segment (PostgreSQL 16, 1 MB segments), whose last record is a segment switch at
// 0/80D750 followed by zeroed pages, as the server's own "redo done at" line says.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { readSegmentPages, walAfterRecord } from '../src/wal-continuation.js';
import { pageMagic } from '../src/wal-headers.js';

const execFileAsync = promisify(execFile);
const SEGMENT = path.resolve('example/archive/000000010000000000000008.gz');
const START = 0x800000n;
const SWITCH_RECORD = 0x80d750n;
/** A record on page 1 that the server replayed last when page 2 was zeroed. */
const BEFORE_PAGE_2 = 0x803fc0n;

describe('WAL after the last replayed record', () => {
  let dir: string;
  let plain: string;
  let damaged: string;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pitr-test-continuation-'));
    plain = path.join(dir, '000000010000000000000008');
    await execFileAsync('sh', ['-c', `gunzip -c '${SEGMENT}' > '${plain}'`]);
    damaged = path.join(dir, 'damaged');
    const bytes = await fs.readFile(plain);
    bytes.fill(0, 2 * 8192, 2 * 8192 + 16);
    await fs.writeFile(damaged, bytes);
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const magic = pageMagic(16);

  it('judges nothing after a segment switch, plain or gzip', async () => {
    for (const file of [plain, SEGMENT]) {
      const pages = await readSegmentPages(file, Number(SWITCH_RECORD - START));
      assert.equal(pages.pages.length, 128);
      assert.equal(pages.recordBytes.readUInt32LE(0), 24, 'XLOG_SWITCH is a bare 24-byte header');
      assert.equal(walAfterRecord(pages, START, SWITCH_RECORD, magic), undefined);
    }
  });

  it('finds the first whole page after a zeroed one, where the server stopped', async () => {
    const pages = await readSegmentPages(damaged, Number(BEFORE_PAGE_2 - START));
    assert.equal(walAfterRecord(pages, START, BEFORE_PAGE_2, magic), START + 3n * 8192n);
  });

  it('finds the next page when the record ends at the end of its page, and only of its major', async () => {
    // In the undamaged segment the record at 0/803FC0 is 64 bytes long and fills page 1.
    const pages = await readSegmentPages(plain, Number(BEFORE_PAGE_2 - START));
    assert.equal(walAfterRecord(pages, START, BEFORE_PAGE_2, magic), START + 2n * 8192n);
    assert.equal(walAfterRecord(pages, START, BEFORE_PAGE_2, pageMagic(15)), undefined);
  });
});
