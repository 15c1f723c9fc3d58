// The first page of each archived segment, checked before replay: a segment from another
// cluster or another major, cut short, damaged or stored under the wrong name is named with
// what was expected and what was found, instead of the server quietly ending recovery there.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { readControlFile } from '../src/pg-control.js';
import {
  checkSegmentHeader,
  checkSegments,
  problemToError,
  type SegmentCheckExpectation,
  type SegmentProblem,
} from '../src/wal-headers.js';
import { parseSegmentFileName, segmentFileName } from '../src/wal-names.js';
import { buildHistory, type History } from './support/history.js';
import { makeTempRoot, removeTree, startCluster } from './support/postgres.js';

const MB = 1024 * 1024;
const majors = process.env.PITR_TEST_MAJORS
  ? process.env.PITR_TEST_MAJORS.split(',')
      .map(Number)
      .filter((m) => [10, 15, 18].includes(m))
  : [10, 15, 18];

/** A segment archived by a second, unrelated cluster of the same major, and its identifier. */
async function segmentOfAnotherCluster(major: number) {
  const cluster = await startCluster(major);
  try {
    const segment = await cluster.switchWal();
    await cluster.waitArchived(segment);
    const bytes = await fs.readFile(path.join(cluster.archiveDir, segment));
    const { systemIdentifier } = await readControlFile(cluster.dataDir);
    return { bytes, systemIdentifier };
  } finally {
    await cluster.stop();
    await removeTree(cluster.rootDir);
  }
}

function renamedSegment(
  segment: string,
  segmentSize: number,
  change: { tli?: number; by?: bigint },
) {
  const parsed = parseSegmentFileName(segment, segmentSize)!;
  return segmentFileName(
    change.tli ?? parsed.timeline,
    parsed.segno + (change.by ?? 0n),
    segmentSize,
  );
}

for (const major of majors) {
  describe(`PostgreSQL ${major}: first page headers of archived segments`, () => {
    let history: History;
    let foreign: { bytes: Buffer; systemIdentifier: bigint };
    let exp: SegmentCheckExpectation;
    let segments: string[];
    let good: Buffer;
    let work: string;

    before(async () => {
      [history, foreign] = await Promise.all([buildHistory(major), segmentOfAnotherCluster(major)]);
      const control = await readControlFile(history.backupDir);
      exp = {
        major,
        systemIdentifier: control.systemIdentifier,
        segmentSize: control.walSegmentSize,
      };
      segments = (await fs.readdir(history.archiveDir))
        .filter((n) => /^[0-9A-F]{24}$/.test(n))
        .sort();
      good = await fs.readFile(path.join(history.archiveDir, segments[0]));
      work = path.join(history.rootDir, 'header-checks');
      await fs.mkdir(work);
    });
    after(async () => {
      if (history) await removeTree(history.rootDir);
    });

    /** Writes bytes as the archived file for `segment`, gzip'd when asked; returns its path. */
    async function place(segment: string, bytes: Buffer, gzip = false): Promise<string> {
      const file = path.join(work, `${segment}${gzip ? '.gz' : ''}`);
      await fs.writeFile(file, gzip ? gzipSync(bytes) : bytes);
      return file;
    }

    /** A copy of the first real segment with its header changed. */
    function patched(change: (copy: Buffer) => void): Buffer {
      const copy = Buffer.from(good);
      change(copy);
      return copy;
    }

    async function check(file: string, segment: string, expectation = exp) {
      return checkSegmentHeader(file, segment, expectation);
    }

    it("passes every segment the server archived, plain and gzip'd", async () => {
      assert.equal(exp.segmentSize, major === 10 ? 16 * MB : MB);
      assert.ok(segments.length >= 3, `only ${segments.length} segments archived`);
      const files = segments.map((segment) => ({
        file: path.join(history.archiveDir, segment),
        segment,
      }));
      assert.deepEqual(await checkSegments(files, exp), []);
      assert.equal(await check(await place(segments[0], good, true), segments[0]), undefined);
    });

    it('reports a copy cut to half its size as truncated, naming both sizes', async () => {
      const half = exp.segmentSize / 2;
      const file = await place(segments[0], good.subarray(0, half));
      const problem = await check(file, segments[0]);
      assert.equal(problem?.kind, 'truncated');
      assert.match(problem.expected, new RegExp(`^${exp.segmentSize} bytes`));
      assert.match(problem.found, new RegExp(`^${half} bytes`));
      assert.equal(problem.file, file);
      assert.equal(problem.segment, segments[0]);
    });

    it('reports zeroed magic bytes as damage, showing the magic found', async () => {
      const bytes = patched((copy) => copy.writeUInt16LE(0, 0));
      const problem = await check(await place(segments[0], bytes), segments[0]);
      assert.equal(problem?.kind, 'magic');
      assert.match(problem.expected, new RegExp(`^magic 0x[0-9A-F]{4} \\(PostgreSQL ${major}\\)$`));
      assert.match(problem.found, /^magic 0x0000 /);
      assert.equal(problemToError([problem]).code, 'WAL_DAMAGED');
    });

    it('reports a first page without the long header flag', async () => {
      const bytes = patched((copy) => copy.writeUInt16LE(copy.readUInt16LE(2) & ~0x0002, 2));
      const problem = await check(await place(segments[0], bytes), segments[0]);
      assert.equal(problem?.kind, 'magic');
      assert.match(problem.found, /no long header/);
    });

    it('names both system identifiers when a segment comes from another cluster', async () => {
      const segment = segments[1];
      const file = await place(segment, foreign.bytes);
      const problem = await check(file, segment);
      assert.equal(problem?.kind, 'foreign');
      assert.match(problem.expected, new RegExp(`system identifier ${exp.systemIdentifier}\\b`));
      assert.match(problem.found, new RegExp(`system identifier ${foreign.systemIdentifier}\\b`));

      const error = problemToError([problem]);
      assert.equal(error.code, 'WAL_FOREIGN_CLUSTER');
      assert.ok(error.message.includes(file), error.message);
      assert.ok(error.message.includes(String(exp.systemIdentifier)), error.message);
      assert.ok(error.message.includes(String(foreign.systemIdentifier)), error.message);
      assert.match(error.hints.join('\n'), /archive_command/);
    });

    it('reports a segment stored under another segment number, naming the one it holds', async () => {
      const wrongName = renamedSegment(segments[0], exp.segmentSize, { by: 3n });
      const problem = await check(await place(wrongName, good), wrongName);
      assert.equal(problem?.kind, 'pageaddr');
      assert.match(problem.expected, new RegExp(`where segment ${wrongName} begins`));
      assert.match(problem.found, new RegExp(`where segment ${segments[0]} begins`));
    });

    it('recognises a segment of another major by its magic, naming that major', async () => {
      const other = major === 18 ? 17 : major + 1;
      const file = path.join(history.archiveDir, segments[0]);
      const problem = await check(file, segments[0], { ...exp, major: other });
      assert.equal(problem?.kind, 'magic');
      assert.match(problem.expected, new RegExp(`\\(PostgreSQL ${other}\\)`));
      assert.match(problem.found, new RegExp(`\\(PostgreSQL ${major}\\)`));

      const error = problemToError([problem]);
      assert.equal(error.code, 'WAL_FOREIGN_CLUSTER');
      assert.match(error.message, new RegExp(`written by PostgreSQL ${major}`));
    });

    it('reports a header written with another segment size', async () => {
      const bytes = patched((copy) => copy.writeUInt32LE(exp.segmentSize * 2, 32));
      const problem = await check(await place(segments[0], bytes), segments[0]);
      assert.equal(problem?.kind, 'segment-size');
      assert.match(problem.found, new RegExp(`segment size ${exp.segmentSize * 2} bytes`));
    });

    it("accepts an older timeline on the first page, as a new timeline's first segment has, but not a later one", async () => {
      // The first segment of timeline 2 begins as a copy of timeline 1's: its page says 1.
      const onTimeline2 = renamedSegment(segments[0], exp.segmentSize, { tli: 2 });
      assert.equal(await check(await place(onTimeline2, good), onTimeline2), undefined);

      const later = patched((copy) => copy.writeUInt32LE(2, 4));
      const problem = await check(await place(segments[0], later), segments[0]);
      assert.equal(problem?.kind, 'timeline');
      assert.match(problem.expected, /^timeline 1 or lower/);
      assert.equal(problem.found, 'timeline 2');
    });

    it('finds the same problems in .gz copies', async () => {
      const zeroed = patched((copy) => copy.writeUInt16LE(0, 0));
      const damaged = await check(await place(segments[0], zeroed, true), segments[0]);
      assert.equal(damaged?.kind, 'magic');
      assert.match(damaged.found, /^magic 0x0000 /);

      const file = await place(segments[1], foreign.bytes, true);
      const fromElsewhere = await check(file, segments[1]);
      assert.equal(fromElsewhere?.kind, 'foreign');
      assert.equal(fromElsewhere.file, file);
    });
  });
}

describe('first page header checks without a server', () => {
  const exp: SegmentCheckExpectation = {
    major: 16,
    systemIdentifier: 7300000000000000001n,
    segmentSize: MB,
  };
  let work: string;

  before(async () => {
    work = await makeTempRoot();
  });
  after(async () => {
    if (work) await removeTree(work);
  });

  /** A segment with a well-formed first page header and random bytes after it. */
  function fakeSegment(segment: string): Buffer {
    const { timeline, segno } = parseSegmentFileName(segment, exp.segmentSize)!;
    const bytes = randomBytes(exp.segmentSize);
    bytes.writeUInt16LE(0xd113, 0);
    bytes.writeUInt16LE(0x0002, 2);
    bytes.writeUInt32LE(timeline, 4);
    bytes.writeBigUInt64LE(segno * BigInt(exp.segmentSize), 8);
    bytes.writeUInt32LE(0, 16);
    bytes.writeUInt32LE(0, 20);
    bytes.writeBigUInt64LE(exp.systemIdentifier, 24);
    bytes.writeUInt32LE(exp.segmentSize, 32);
    bytes.writeUInt32LE(8192, 36);
    return bytes;
  }

  async function write(name: string, bytes: Buffer): Promise<string> {
    const file = path.join(work, name);
    await fs.writeFile(file, bytes);
    return file;
  }

  it('reads only the start of a .gz file: a stream cut short after the first page passes', async () => {
    // Decompressing the whole file would hit the cut and fail; the check never gets that far.
    const segment = '000000010000000000000004';
    const whole = gzipSync(fakeSegment(segment));
    const file = await write(`${segment}.gz`, whole.subarray(0, whole.length / 2));
    assert.equal(await checkSegmentHeader(file, segment, exp), undefined);
  });

  it('reports a gzip stream that ends before the first page header as truncated', async () => {
    const segment = '000000010000000000000005';
    const file = await write(`${segment}.gz`, gzipSync(Buffer.alloc(12)));
    const problem = await checkSegmentHeader(file, segment, exp);
    assert.equal(problem?.kind, 'truncated');
    assert.match(problem.found, /^12 bytes/);
  });

  it('reports a gzip stream that breaks off within the first page header as truncated', async () => {
    const segment = '000000010000000000000006';
    const file = await write(`${segment}.gz`, gzipSync(fakeSegment(segment)).subarray(0, 14));
    const problem = await checkSegmentHeader(file, segment, exp);
    assert.equal(problem?.kind, 'truncated');
    assert.match(problem.found, /breaks off/);
  });

  it('reports a .gz file that is not gzip, and a missing file, as unreadable', async () => {
    const segment = '000000010000000000000007';
    const notGzip = await write(`${segment}.gz`, fakeSegment(segment));
    const problem = await checkSegmentHeader(notGzip, segment, exp);
    assert.equal(problem?.kind, 'unreadable');
    assert.match(problem.found, /header/);

    const missing = await checkSegmentHeader(path.join(work, 'nothing-here'), segment, exp);
    assert.equal(missing?.kind, 'unreadable');
    assert.match(missing.found, /ENOENT/);
  });

  it('returns the problems of many segments in the order the files were given', async () => {
    const files: { file: string; segment: string }[] = [];
    const bad = new Set([2, 5, 6, 11]);
    for (let segno = 1n; segno <= 12n; segno++) {
      const segment = segmentFileName(1, segno, exp.segmentSize);
      const bytes = fakeSegment(segment);
      if (bad.has(Number(segno))) bytes.writeUInt16LE(0, 0);
      files.push({ file: await write(segment, bytes), segment });
    }
    const problems = await checkSegments(files, exp, 3);
    assert.deepEqual(
      problems.map((p) => p.segment),
      [...bad].map((segno) => segmentFileName(1, BigInt(segno), exp.segmentSize)),
    );
  });

  it('leads the error with the first problem, its file, expected and found, and lists up to five others', () => {
    const problem = (n: number, kind: SegmentProblem['kind']): SegmentProblem => {
      const segment = segmentFileName(1, BigInt(n), exp.segmentSize);
      return {
        file: `/archive/${segment}.gz`,
        segment,
        kind,
        expected: `expected-${n}`,
        found: `found-${n}`,
      };
    };
    const problems = [
      problem(3, 'truncated'),
      ...[4, 5, 6, 7, 8, 9, 10].map((n) => problem(n, 'magic')),
    ];
    const error = problemToError(problems);
    assert.equal(error.code, 'WAL_DAMAGED');
    assert.match(
      error.message,
      /^The archived WAL segment \/archive\/000000010000000000000003\.gz /,
    );
    assert.match(error.message, /expected expected-3, found found-3\./);
    assert.match(error.message, /7 more segments have problems too: /);
    assert.match(error.message, /000000010000000000000008 \(magic\) and 2 more\./);
    assert.doesNotMatch(error.message, /000000010000000000000009/);
    assert.match(error.hints.join('\n'), /Copy 000000010000000000000003 again/);

    const single = problemToError([problem(3, 'foreign')]);
    assert.equal(single.code, 'WAL_FOREIGN_CLUSTER');
    assert.doesNotMatch(single.message, /more segment/);
  });
});
