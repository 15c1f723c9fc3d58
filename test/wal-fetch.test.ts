import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { quoteShellWord } from '../src/recovery-config.js';
import { shellFrontScript } from '../src/wal-fetch.js';

const execFileAsync = promisify(execFile);
/** Segments compressed by the programs archive_command commonly pipes through. */
const PROGRAMS: [string, string, string][] = [
  ['07', 'zstd', '.zst'],
  ['08', 'lz4', '.lz4'],
  ['09', 'bzip2', '.bz2'],
  ['0A', 'xz', '.xz'],
];
const script = path.resolve('dist/wal-fetch/index.js');

// Each case runs through both fronts: the Node.js helper alone, and the shell script the
// server really runs, which copies plain files itself and hands the rest to the helper.
let front: 'node' | 'shell' = 'node';
let shellScript = '';

async function fetchFile(archive: string, name: string, destination: string) {
  try {
    if (front === 'node')
      await execFileAsync(process.execPath, [script, archive, name, destination]);
    else await execFileAsync('/bin/sh', [shellScript, archive, name, destination]);
    return { status: 0, stderr: '' };
  } catch (error) {
    const failure = error as { code: number; stderr: string };
    return { status: failure.code, stderr: failure.stderr };
  }
}

for (const which of ['node', 'shell'] as const)
  describe(`the restore_command helper (${which === 'node' ? 'bundled dist/wal-fetch' : 'shell front'})`, () => {
    let dir: string;
    let archive: string;
    const segment = randomBytes(64 * 1024);

    before(async () => {
      front = which;
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pitr-fetch-'));
      shellScript = path.join(dir, 'wal-fetch.sh');
      await fs.writeFile(shellScript, shellFrontScript(process.execPath, script, quoteShellWord));
      archive = path.join(dir, 'archive');
      await fs.mkdir(archive);
      await fs.writeFile(path.join(archive, '000000010000000000000003'), segment);
      await fs.writeFile(path.join(archive, '000000010000000000000004.gz'), gzipSync(segment));
      await fs.writeFile(
        path.join(archive, '000000010000000000000005.gz'),
        gzipSync(segment).subarray(0, 40_000),
      );
      // A folder where a file should be: reading it fails with EISDIR, not "not found".
      await fs.mkdir(path.join(archive, '000000010000000000000006'));
      if (which === 'shell') {
        const plain = path.join(dir, 'segment');
        await fs.writeFile(plain, segment);
        for (const [segno, program, suffix] of PROGRAMS) {
          const compressed = execFileSync(program, ['-c', plain]);
          await fs.writeFile(
            path.join(archive, `0000000100000000000000${segno}${suffix}`),
            compressed,
          );
        }
        const zstd = execFileSync('zstd', ['-c', plain]);
        await fs.writeFile(
          path.join(archive, '00000001000000000000000B.zst'),
          zstd.subarray(0, zstd.length / 2),
        );
      }
    });

    after(async () => {
      await fs.rm(dir, { recursive: true, force: true });
    });

    it('copies a plain segment and exits 0', async () => {
      const out = path.join(dir, 'out3');
      assert.equal((await fetchFile(archive, '000000010000000000000003', out)).status, 0);
      assert.deepEqual(await fs.readFile(out), segment);
    });

    it('decompresses a .gz segment', async () => {
      const out = path.join(dir, 'out4');
      assert.equal((await fetchFile(archive, '000000010000000000000004', out)).status, 0);
      assert.deepEqual(await fs.readFile(out), segment);
    });

    if (which === 'shell') {
      for (const [segno, program, suffix] of PROGRAMS) {
        it(`decompresses a ${suffix} segment with ${program}`, async () => {
          const out = path.join(dir, `out${segno}`);
          const result = await fetchFile(archive, `0000000100000000000000${segno}`, out);
          assert.equal(result.status, 0, result.stderr);
          assert.deepEqual(await fs.readFile(out), segment);
        });
      }

      it('exits above 125 for a .zst cut short, not the 1 zstd itself exits with', async () => {
        const out = path.join(dir, 'out0B');
        const result = await fetchFile(archive, '00000001000000000000000B', out);
        assert.ok(result.status > 125, `status ${result.status}`);
        assert.match(result.stderr, /zstd could not decompress .*00000001000000000000000B\.zst/);
        await assert.rejects(fs.access(out));
      });
    }

    it('exits 1 only for a file that is truly absent, so that recovery ends normally', async () => {
      const out = path.join(dir, 'out-missing');
      assert.equal((await fetchFile(archive, '00000002.history', out)).status, 1);
      await assert.rejects(fs.access(out));
    });

    it('exits above 125 for a broken .gz, naming it, and leaves no partial file', async () => {
      const out = path.join(dir, 'out5');
      const result = await fetchFile(archive, '000000010000000000000005', out);
      assert.ok(result.status > 125, `status ${result.status}`);
      assert.match(result.stderr, /000000010000000000000005\.gz/);
      await assert.rejects(fs.access(out));
    });

    it('exits above 125 when the archived file cannot be read', async () => {
      const result = await fetchFile(archive, '000000010000000000000006', path.join(dir, 'out6'));
      assert.ok(result.status > 125, `status ${result.status}`);
      assert.match(result.stderr, /EISDIR/);
    });

    it('refuses a file name with a path in it', async () => {
      const result = await fetchFile(
        archive,
        '../archive/000000010000000000000003',
        path.join(dir, 'x'),
      );
      assert.ok(result.status > 125);
    });

    it('never changes the archive', async () => {
      const compressed = PROGRAMS.map(
        ([segno, , suffix]) => `0000000100000000000000${segno}${suffix}`,
      );
      assert.deepEqual((await fs.readdir(archive)).sort(), [
        '000000010000000000000003',
        '000000010000000000000004.gz',
        '000000010000000000000005.gz',
        '000000010000000000000006',
        ...(which === 'shell' ? [...compressed, '00000001000000000000000B.zst'] : []),
      ]);
    });
  });
