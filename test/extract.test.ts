import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import {
  chmod,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  truncate,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, describe, test } from 'node:test';
import * as tar from 'tar-stream';
import { PitrError } from '../src/errors.js';
import { detectCompression, extractTar, type Compression } from '../src/extract.js';

const scratch: string[] = [];
after(async () => {
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

async function scratchDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pitr-extract-'));
  scratch.push(dir);
  return dir;
}

const isRoot = process.getuid?.() === 0;
const OLD_TIME = new Date('2021-06-01T12:00:00Z');
const LONG_DIR = `base/16384/${'a'.repeat(60)}/${'b'.repeat(60)}`;

/** A small data-directory-like tree with everything a tar of one can hold. */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, 'base/1'), { recursive: true, mode: 0o700 });
  await mkdir(join(root, 'global'), { mode: 0o700 });
  await mkdir(join(root, 'pg_notify'), { mode: 0o750 });
  await mkdir(join(root, LONG_DIR), { recursive: true });
  await writeFile(join(root, 'PG_VERSION'), '17\n', { mode: 0o600 });
  await writeFile(join(root, 'global/pg_control'), randomBytes(8192), { mode: 0o600 });
  await writeFile(join(root, 'base/1/big'), randomBytes(5 * 1024 * 1024), { mode: 0o640 });
  await writeFile(join(root, `${LONG_DIR}/${'c'.repeat(40)}`), 'long path\n');
  await writeFile(join(root, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
  await link(join(root, 'base/1/big'), join(root, 'base/1/big.again'));
  await symlink('base/1', join(root, 'current'));
  await symlink('../../PG_VERSION', join(root, 'base/1/version'));
  for (const path of ['PG_VERSION', 'base/1/big', 'global', 'pg_notify']) {
    await utimes(join(root, path), OLD_TIME, OLD_TIME);
  }
  // chmod after mkdir, so the umask does not decide what the archive holds.
  await chmod(join(root, 'pg_notify'), 0o750);
  await chmod(join(root, 'base/1/big'), 0o640);
}

interface TreeEntry {
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  mtime: number;
  content?: string;
  target?: string;
}

/** Everything below root except root itself, keyed by relative path. */
async function readTree(root: string): Promise<Map<string, TreeEntry>> {
  const tree = new Map<string, TreeEntry>();
  async function walk(dir: string): Promise<void> {
    for (const name of await readdir(dir)) {
      const path = join(dir, name);
      const info = await lstat(path);
      const entry: TreeEntry = {
        type: info.isDirectory() ? 'directory' : info.isSymbolicLink() ? 'symlink' : 'file',
        mode: info.mode & 0o7777,
        mtime: Math.floor(info.mtimeMs / 1000),
      };
      if (entry.type === 'file') entry.content = await sha256(path);
      if (entry.type === 'symlink') entry.target = await readlink(path);
      tree.set(relative(root, path), entry);
      if (entry.type === 'directory') await walk(path);
    }
  }
  await walk(root);
  return tree;
}

function assertSameTree(actual: Map<string, TreeEntry>, expected: Map<string, TreeEntry>): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
  for (const [path, want] of expected) {
    const got = actual.get(path)!;
    assert.equal(got.type, want.type, path);
    assert.equal(got.content, want.content, `content of ${path}`);
    assert.equal(got.target, want.target, `target of ${path}`);
    if (want.type !== 'symlink') assert.equal(got.mode.toString(8), want.mode.toString(8), path);
    assert.equal(got.mtime, want.mtime, `mtime of ${path}`);
  }
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

async function fingerprint(path: string): Promise<string> {
  const info = await stat(path);
  return `${await sha256(path)} ${info.size} ${info.mtimeMs} ${info.mode}`;
}

interface CraftedEntry {
  name: string;
  type?: tar.Header['type'];
  linkname?: string;
  mode?: number;
  content?: string;
  devmajor?: number;
  devminor?: number;
}

/** Writes a tar entry by entry with tar-stream's packer: archives no real tree would give. */
async function craftTar(path: string, entries: CraftedEntry[]): Promise<void> {
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(path));
  for (const { content, ...header } of entries) {
    const type = header.type ?? 'file';
    const mode = header.mode ?? (type === 'directory' ? 0o755 : 0o644);
    pack.entry({ ...header, type, mode, mtime: OLD_TIME }, content ?? '');
  }
  pack.finalize();
  await written;
}

/** Resolves with what the promise rejected with, failing when it fulfils. */
async function rejection(promise: Promise<unknown>): Promise<PitrError> {
  const error = await promise.then(
    () => assert.fail('expected the extraction to fail'),
    (failure: unknown) => failure,
  );
  assert.ok(error instanceof PitrError, `expected a PitrError, got ${String(error)}`);
  return error;
}

/** Open file descriptors of this process under dir: streams left behind would show here. */
async function openFilesUnder(dir: string): Promise<string[]> {
  const open: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(dir)) open.push(target);
  }
  return open;
}

function gnuTar(args: string[]): void {
  execFileSync('tar', args, { stdio: 'pipe' });
}

describe('extractTar with archives GNU tar made', () => {
  for (const format of ['gnu', 'posix']) {
    test(`restores a ${format}-format tar of a data directory exactly: contents, modes, mtimes, symlinks, hard links, long paths, empty directories`, async () => {
      const dir = await scratchDir();
      await makeTree(join(dir, 'source'));
      const archive = join(dir, 'base.tar');
      gnuTar([`--format=${format}`, '-C', join(dir, 'source'), '-cf', archive, '.']);

      const result = await extractTar(archive, join(dir, 'restored'));

      assertSameTree(await readTree(join(dir, 'restored')), await readTree(join(dir, 'source')));
      assert.ok(LONG_DIR.length + 41 > 100, 'the long path must not fit a plain tar header');
      const big = await stat(join(dir, 'restored/base/1/big'));
      const again = await stat(join(dir, 'restored/base/1/big.again'));
      assert.equal(again.ino, big.ino, 'the hard link shares the inode of its target');
      assert.equal(result.bytes, 3 + 8192 + 5 * 1024 * 1024 + 10 + 10);
      assert.equal(result.entries, (await readTree(join(dir, 'source'))).size + 1);
    });
  }

  test('reads a gzipped archive by its content, whatever its name says', async () => {
    const dir = await scratchDir();
    await makeTree(join(dir, 'source'));
    const archive = join(dir, 'base.tar');
    gnuTar(['-C', join(dir, 'source'), '-czf', archive, '.']);

    assert.equal(await detectCompression(archive), 'gzip');
    await extractTar(archive, join(dir, 'restored'));

    assertSameTree(await readTree(join(dir, 'restored')), await readTree(join(dir, 'source')));
  });

  test('leaves the archive byte for byte as it was, also when extraction fails', async () => {
    const dir = await scratchDir();
    await makeTree(join(dir, 'source'));
    const archive = join(dir, 'base.tar.gz');
    gnuTar(['-C', join(dir, 'source'), '-czf', archive, '.']);
    const unsafe = join(dir, 'unsafe.tar');
    await craftTar(unsafe, [{ name: 'ok' }, { name: '../evil' }]);
    const before = [await fingerprint(archive), await fingerprint(unsafe)];

    await extractTar(archive, join(dir, 'restored'));
    await rejection(extractTar(archive, join(dir, 'restored')));
    await rejection(extractTar(unsafe, join(dir, 'other')));

    assert.deepEqual([await fingerprint(archive), await fingerprint(unsafe)], before);
  });
});

describe('extractTar with archives it must write carefully', () => {
  test('creates the directories of an entry the archive does not list, private to the owner', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'pg_wal.tar');
    await craftTar(archive, [{ name: 'archive_status/sub/000000010000000000000001.done' }]);

    await extractTar(archive, join(dir, 'wal'));

    for (const path of ['wal', 'wal/archive_status', 'wal/archive_status/sub']) {
      const info = await lstat(join(dir, path));
      assert.ok(info.isDirectory(), path);
      assert.equal((info.mode & 0o777).toString(8), '700', path);
    }
  });

  test('drops setuid, setgid and sticky bits from the modes in the archive', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar');
    await craftTar(archive, [
      { name: 'shared', type: 'directory', mode: 0o1777 },
      { name: 'shared/tool', mode: 0o4755 },
      { name: 'grouped', mode: 0o2640 },
    ]);

    await extractTar(archive, join(dir, 'out'));

    const mode = async (path: string) =>
      ((await lstat(join(dir, 'out', path))).mode & 0o7777).toString(8);
    assert.equal(await mode('shared'), '777');
    assert.equal(await mode('shared/tool'), '755');
    assert.equal(await mode('grouped'), '640');
  });

  test(
    'gives every file, directory and symlink it creates to the owner it is asked for',
    { skip: !isRoot && 'chown needs root' },
    async () => {
      const dir = await scratchDir();
      await makeTree(join(dir, 'source'));
      const archive = join(dir, 'base.tar');
      gnuTar(['-C', join(dir, 'source'), '-cf', archive, '.']);
      const owner = { uid: 4321, gid: 4322 };

      await extractTar(archive, join(dir, 'restored'), { owner });

      const paths = [...(await readTree(join(dir, 'restored'))).keys(), ''];
      for (const path of paths) {
        const info = await lstat(join(dir, 'restored', path));
        assert.deepEqual({ uid: info.uid, gid: info.gid }, owner, path || 'the destination');
      }
    },
  );

  for (const format of ['gnu', 'posix']) {
    test(`refuses a GNU sparse file in a ${format}-format tar rather than writing it corrupted`, async () => {
      const dir = await scratchDir();
      await mkdir(join(dir, 'source'));
      execFileSync('truncate', ['-s', '4M', join(dir, 'source/16385')]);
      await writeFile(join(dir, 'source/16385'), 'data', { flag: 'r+' });
      const archive = join(dir, 'base.tar');
      gnuTar(['--sparse', `--format=${format}`, '-C', join(dir, 'source'), '-cf', archive, '.']);

      const error = await rejection(extractTar(archive, join(dir, 'out')));

      assert.equal(error.code, 'INPUT_INVALID');
      assert.match(error.message, /sparse/);
      assert.ok(error.message.includes(archive));
    });
  }

  test('reports a hard link to a file the archive never held as damaged', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar');
    await craftTar(archive, [{ name: 'base/1/big.again', type: 'link', linkname: 'base/1/big' }]);

    const error = await rejection(extractTar(archive, join(dir, 'out')));

    assert.equal(error.code, 'BACKUP_DAMAGED');
    assert.match(error.message, /hard link "base\/1\/big.again" points to "base\/1\/big"/);
    assert.deepEqual(await readdir(join(dir, 'out')), []);
  });

  test('refuses to replace a path that already exists in the destination', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar');
    await craftTar(archive, [{ name: 'PG_VERSION', content: '17\n' }]);
    await mkdir(join(dir, 'out'));
    await writeFile(join(dir, 'out/PG_VERSION'), 'mine\n');

    const error = await rejection(extractTar(archive, join(dir, 'out')));

    assert.equal(error.code, 'BACKUP_UNSAFE_ENTRY');
    assert.match(error.message, /"PG_VERSION"/);
    assert.equal(await readFile(join(dir, 'out/PG_VERSION'), 'utf8'), 'mine\n');
  });

  test(
    'reports a full disk as a failure to write, naming the entry, not as a damaged backup',
    { skip: !isRoot && 'mounting a small tmpfs needs root' },
    async (t) => {
      const dir = await scratchDir();
      const archive = join(dir, 'base.tar');
      await craftTar(archive, [{ name: 'base/1/1259', content: 'x'.repeat(256 * 1024) }]);
      const small = join(dir, 'small');
      await mkdir(small);
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', small], { stdio: 'pipe' });
      } catch {
        t.skip('mounting a tmpfs is not permitted here');
        return;
      }
      try {
        const error = await rejection(extractTar(archive, join(small, 'data')));

        assert.equal(error.code, 'WORKSPACE_WRITE_FAILED');
        assert.match(error.message, /Writing "base\/1\/1259"/);
        assert.match(error.message, /ENOSPC/);
        assert.deepEqual(await openFilesUnder(small), []);
      } finally {
        execFileSync('umount', [small]);
      }
    },
  );
});

describe('extractTar with archives that try to escape the destination', () => {
  const cases: { behaviour: string; entries: CraftedEntry[]; refused: string }[] = [
    {
      behaviour: 'a path climbing out with ..',
      entries: [{ name: '../evil' }],
      refused: '../evil',
    },
    {
      behaviour: 'an absolute path',
      entries: [{ name: '/etc/pitr-evil' }],
      refused: '/etc/pitr-evil',
    },
    {
      behaviour: 'a path that climbs out after going down',
      entries: [{ name: 'a/', type: 'directory' }, { name: 'a/../../x' }],
      refused: 'a/../../x',
    },
    {
      behaviour: 'a symlink to an absolute path',
      entries: [{ name: 'link', type: 'symlink', linkname: '/etc' }, { name: 'link/pitr-evil' }],
      refused: 'link',
    },
    {
      behaviour: 'a symlink pointing above the destination',
      entries: [{ name: 'link', type: 'symlink', linkname: '../..' }, { name: 'link/evil' }],
      refused: 'link',
    },
    {
      behaviour: 'a symlink that climbs out through another symlink',
      entries: [
        { name: 'd1/d2/up', type: 'symlink', linkname: '../..' },
        { name: 'escape', type: 'symlink', linkname: 'd1/d2/up/..' },
      ],
      refused: 'escape',
    },
    {
      behaviour: 'an entry written through a symlink, even one pointing inside',
      entries: [
        { name: 'real', type: 'directory' },
        { name: 'link', type: 'symlink', linkname: 'real' },
        { name: 'link/file', content: 'through the link\n' },
      ],
      refused: 'link/file',
    },
    {
      behaviour: 'a hard link to a path outside',
      entries: [{ name: 'h', type: 'link', linkname: '../outside' }],
      refused: 'h',
    },
    {
      behaviour: 'a hard link to a symlink, which would re-anchor its target',
      entries: [
        { name: 'deep/a/up', type: 'symlink', linkname: '../..' },
        { name: 'h', type: 'link', linkname: 'deep/a/up' },
      ],
      refused: 'h',
    },
    { behaviour: 'a fifo', entries: [{ name: 'pipe', type: 'fifo' }], refused: 'pipe' },
    {
      behaviour: 'a character device',
      entries: [{ name: 'null', type: 'character-device', devmajor: 1, devminor: 3 }],
      refused: 'null',
    },
    {
      behaviour: 'a block device',
      entries: [{ name: 'disk', type: 'block-device', devmajor: 8, devminor: 0 }],
      refused: 'disk',
    },
  ];

  for (const { behaviour, entries, refused } of cases) {
    test(`refuses ${behaviour}, naming the entry and the archive, and writes nothing outside`, async () => {
      const dir = await scratchDir();
      const sandbox = join(dir, 'sandbox');
      const destination = join(sandbox, 'data');
      await mkdir(sandbox);
      const archive = join(dir, 'base.tar');
      await craftTar(archive, entries);

      const error = await rejection(extractTar(archive, destination));

      assert.equal(error.code, 'BACKUP_UNSAFE_ENTRY');
      assert.ok(error.message.includes(`"${refused}"`), error.message);
      assert.ok(error.message.includes(archive), error.message);
      assert.ok(error.hints.some((hint) => hint.includes('pg_basebackup')));
      assert.deepEqual(await readdir(sandbox), ['data']);
      assert.deepEqual((await readdir(dir)).sort(), ['base.tar', 'sandbox']);
      assert.equal(existsSync('/etc/pitr-evil'), false);
      const refusedPath = join(destination, refused);
      if (refusedPath.startsWith(destination + '/')) {
        await assert.rejects(
          lstat(refusedPath),
          { code: 'ENOENT' },
          'the refused entry was written',
        );
      }
      assert.deepEqual(await openFilesUnder(dir), []);
    });
  }

  test('does not write through a symlink into the directory it points to', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar');
    await craftTar(archive, [
      { name: 'real', type: 'directory' },
      { name: 'link', type: 'symlink', linkname: 'real' },
      { name: 'link/file', content: 'through the link\n' },
    ]);

    await rejection(extractTar(archive, join(dir, 'out')));

    assert.deepEqual(await readdir(join(dir, 'out/real')), []);
  });
});

describe('extractTar with damaged or unreadable archives', () => {
  test(
    'reports a truncated .tar.gz as damaged, naming the entry it stopped in, without hanging',
    { timeout: 30_000 },
    async () => {
      const dir = await scratchDir();
      await makeTree(join(dir, 'source'));
      const archive = join(dir, 'base.tar.gz');
      gnuTar(['-C', join(dir, 'source'), '-czf', archive, '.']);
      await truncate(archive, Math.floor((await stat(archive)).size / 2));

      const error = await rejection(extractTar(archive, join(dir, 'restored')));

      assert.equal(error.code, 'BACKUP_DAMAGED');
      assert.ok(
        error.message.startsWith(`${archive} is damaged: unexpected end of file`),
        error.message,
      );
      // GNU tar stores the data under whichever of the two hard-linked names it met first.
      assert.match(
        error.message,
        /stopped after \d+ entries, in entry "\.\/base\/1\/big(\.again)?"/,
      );
      assert.ok(error.hints.some((hint) => hint.includes(`gzip -t ${archive}`)));
      assert.deepEqual(await openFilesUnder(dir), []);
    },
  );

  test('reports a tar whose header checksum is wrong as damaged, after the entries before it', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar');
    await craftTar(archive, [{ name: 'PG_VERSION', content: '17\n' }, { name: 'postgresql.conf' }]);
    const bytes = await readFile(archive);
    bytes[1024] ^= 0xff; // the first byte of the second header's name
    await writeFile(archive, bytes);

    const error = await rejection(extractTar(archive, join(dir, 'out')));

    assert.equal(error.code, 'BACKUP_DAMAGED');
    assert.match(
      error.message,
      /is damaged: Invalid tar header.*; extraction stopped after 1 entry\.$/,
    );
  });

  test('reports a plain tar cut short between two entries as damaged', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar');
    await craftTar(archive, [{ name: 'PG_VERSION', content: '17\n' }, { name: 'postgresql.conf' }]);
    await truncate(archive, 1024); // the first entry's header and block, nothing after

    const error = await rejection(extractTar(archive, join(dir, 'out')));

    assert.equal(error.code, 'BACKUP_DAMAGED');
    assert.match(error.message, /cut short; extraction stopped after 1 entry\.$/);
  });

  test('reports a plain tar cut inside an entry as damaged, naming that entry', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar');
    await craftTar(archive, [{ name: 'base/1/1259', content: 'x'.repeat(8192) }]);
    await truncate(archive, 4096);

    const error = await rejection(extractTar(archive, join(dir, 'out')));

    assert.equal(error.code, 'BACKUP_DAMAGED');
    assert.match(
      error.message,
      /Unexpected end of data; extraction stopped after 0 entries, in entry "base\/1\/1259"\.$/,
    );
  });

  test('reports an empty file as a damaged archive', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar');
    await writeFile(archive, '');

    const error = await rejection(extractTar(archive, join(dir, 'out')));

    assert.equal(error.code, 'BACKUP_DAMAGED');
    assert.match(error.message, /is damaged: it is empty/);
  });

  test('reports a missing archive as not found, naming its path', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'nowhere/base.tar');

    const error = await rejection(extractTar(archive, join(dir, 'out')));

    assert.equal(error.code, 'BACKUP_NOT_FOUND');
    assert.ok(error.message.includes(archive));
    assert.equal(existsSync(join(dir, 'out')), false, 'nothing is created for a missing archive');
  });

  const compressors: { compression: Compression; suffix: string }[] = [
    { compression: 'zstd', suffix: '.zst' },
    { compression: 'lz4', suffix: '.lz4' },
    { compression: 'bzip2', suffix: '.bz2' },
    { compression: 'xz', suffix: '.xz' },
  ];
  for (const { compression, suffix } of compressors) {
    test(`extracts a ${compression}-compressed archive through the ${compression} program`, async () => {
      const dir = await scratchDir();
      const archive = join(dir, 'base.tar');
      await craftTar(archive, [
        { name: 'PG_VERSION', content: '17\n' },
        { name: 'global/pg_control', content: 'x'.repeat(8192) },
      ]);
      const compressed = archive + suffix;
      await writeFile(compressed, execFileSync(compression, ['-c', archive]));

      assert.equal(await detectCompression(compressed), compression);
      assert.deepEqual(await extractTar(compressed, join(dir, 'out')), {
        entries: 2,
        bytes: 8195,
      });
      assert.equal(await readFile(join(dir, 'out', 'PG_VERSION'), 'utf8'), '17\n');
    });
  }

  test("names a zstd stream cut short with zstd's own words", async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar');
    await craftTar(archive, [{ name: 'big', content: randomBytes(300_000).toString('hex') }]);
    const whole = execFileSync('zstd', ['-c', archive]);
    const cut = join(dir, 'base.tar.zst');
    await writeFile(cut, whole.subarray(0, Math.floor(whole.length / 2)));

    const error = await rejection(extractTar(cut, join(dir, 'out')));

    assert.equal(error.code, 'BACKUP_DAMAGED');
    assert.match(error.message, new RegExp(`${cut} is damaged: zstd -d said: .+`));
    assert.ok(
      error.hints.some((text) => text.includes(`zstd -t ${cut}`)),
      error.hints.join('\n'),
    );
  });

  test('says which program to install when the one a compression needs is missing', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar');
    await craftTar(archive, [{ name: 'PG_VERSION', content: '17\n' }]);
    const compressed = `${archive}.lz4`;
    await writeFile(compressed, execFileSync('lz4', ['-c', archive]));
    const path = process.env.PATH;
    process.env.PATH = join(dir, 'no-programs-here');
    try {
      const error = await rejection(extractTar(compressed, join(dir, 'out')));
      assert.equal(error.code, 'INPUT_INVALID');
      assert.match(
        error.message,
        /compressed with lz4, and reading it takes the lz4 program, which is not on PATH/,
      );
      assert.match(error.hints[0], /apt-get install lz4/);
    } finally {
      process.env.PATH = path;
    }
  });

  test('treats a file with zstd magic bytes as zstd, whatever its name', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar');
    await writeFile(archive, Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]));

    const error = await rejection(extractTar(archive, join(dir, 'out')));

    assert.equal(error.code, 'BACKUP_DAMAGED');
    assert.match(error.message, /is damaged: zstd -d said/);
  });

  test('treats an uncompressed tar named .gz as uncompressed', async () => {
    const dir = await scratchDir();
    const archive = join(dir, 'base.tar.gz');
    await craftTar(archive, [{ name: 'PG_VERSION', content: '17\n' }]);

    assert.equal(await detectCompression(archive), 'none');
    assert.deepEqual(await extractTar(archive, join(dir, 'out')), { entries: 1, bytes: 3 });
  });
});

test('extracts a 200 MB archive with memory that stays flat', { timeout: 300_000 }, async (t) => {
  const dir = await scratchDir();
  const source = join(dir, 'source');
  await mkdir(source);
  // One 200 MB entry: an extractor that held a whole entry in memory would need all of it.
  execFileSync('dd', ['if=/dev/urandom', `of=${join(source, '16385')}`, 'bs=1M', 'count=200'], {
    stdio: 'pipe',
  });
  const archive = join(dir, 'base.tar');
  gnuTar(['-C', source, '-cf', archive, '.']);
  await rm(source, { recursive: true });

  try {
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    let result;
    try {
      result = await extractTar(archive, join(dir, 'restored'));
    } finally {
      clearInterval(sampler);
    }

    assert.equal(result.bytes, 200 * 1024 * 1024);
    const growth = (peak - baseline) / (1024 * 1024);
    t.diagnostic(`RSS grew by ${growth.toFixed(1)} MB`);
    assert.ok(growth < 100, `RSS grew by ${growth.toFixed(0)} MB while extracting 200 MB`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
