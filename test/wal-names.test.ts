import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatLsn,
  parseLsn,
  parseSegmentFileName,
  segmentFileName,
  segmentNumberOf,
} from '../src/wal-names.js';

const MB = 1024 * 1024;

describe('LSNs and segment names', () => {
  it('reads and writes LSNs as the server prints them', () => {
    assert.equal(parseLsn('16/B374D848'), 0x16b374d848n);
    assert.equal(formatLsn(0x16b374d848n), '16/B374D848');
    assert.equal(formatLsn(0n), '0/0');
    assert.throws(() => parseLsn('16B374D848'), /not an LSN/);
  });

  it('names segments for 16 MB and 1 MB segment sizes like the server', () => {
    // 0/3000060 lies in segment 3 with 16 MB segments: 000000010000000000000003.
    assert.equal(
      segmentFileName(1, segmentNumberOf(0x3000060n, 16 * MB), 16 * MB),
      '000000010000000000000003',
    );
    // With 1 MB segments there are 4096 per 4 GB: LSN 1/00300000 is segment 0x1003.
    assert.equal(
      segmentFileName(2, segmentNumberOf(0x100300000n, MB), MB),
      '000000020000000100000003',
    );
  });

  it('parses segment names back, and refuses names that are not segments', () => {
    assert.deepEqual(parseSegmentFileName('000000020000000100000003', MB), {
      timeline: 2,
      segno: 0x1003n,
    });
    assert.equal(parseSegmentFileName('00000002.history', MB), undefined);
    // Segment 0x100 does not exist with 16 MB segments: only 0x00 to 0xFF per 4 GB.
    assert.equal(parseSegmentFileName('000000010000000000000100', 16 * MB), undefined);
  });
});
