// The test support itself: the package link repair the installer reuses, and the recorded
// history every restore test starts from. Building a history takes a few seconds per major, so
// only the oldest, a middle and the newest major are built here.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { restorePackageSymlinks } from '../src/pg-symlinks.js';
import { isLsn, parseSegmentFileName } from '../src/wal-names.js';
import { buildHistory, makeTarBackup } from './support/history.js';
import { makeTempRoot, removeTree } from './support/postgres.js';

const execFileAsync = promisify(execFile);

describe('restorePackageSymlinks', () => {
  const roots: string[] = [];
  after(async () => {
    for (const root of roots) await removeTree(root);
  });

  async function fakePackage(links: { source: string; target: string }[]): Promise<string> {
    const root = await makeTempRoot();
    roots.push(root);
    await mkdir(path.join(root, 'native', 'lib'), { recursive: true });
    await writeFile(path.join(root, 'native', 'lib', 'libicuuc.so.60.2'), 'library');
    await writeFile(path.join(root, 'native', 'pg-symlinks.json'), JSON.stringify(links));
    return root;
  }

  it('makes relative links once, and a second run changes nothing', async () => {
    const root = await fakePackage([
      { source: 'native/lib/libicuuc.so.60.2', target: 'native/lib/libicuuc.so.60' },
      { source: 'native/lib/libicuuc.so.60.2', target: 'native/libicuuc.so' },
    ]);

    assert.equal(await restorePackageSymlinks(root), 2);
    assert.equal(await restorePackageSymlinks(root), 0);
    assert.equal(await readlink(path.join(root, 'native/lib/libicuuc.so.60')), 'libicuuc.so.60.2');
    assert.equal(await readlink(path.join(root, 'native/libicuuc.so')), 'lib/libicuuc.so.60.2');
    assert.equal(await readFile(path.join(root, 'native/libicuuc.so'), 'utf8'), 'library');
  });

  it('replaces a file or a wrong link standing where a link belongs', async () => {
    const root = await fakePackage([
      { source: 'native/lib/libicuuc.so.60.2', target: 'native/lib/libicuuc.so.60' },
    ]);
    await writeFile(path.join(root, 'native/lib/libicuuc.so.60'), 'stale copy');

    assert.equal(await restorePackageSymlinks(root), 1);
    assert.equal(await readlink(path.join(root, 'native/lib/libicuuc.so.60')), 'libicuuc.so.60.2');
  });

  it('refuses, naming the entry, a link that would leave the package, and makes none', async () => {
    const root = await fakePackage([
      { source: 'native/lib/libicuuc.so.60.2', target: 'native/lib/libicuuc.so.60' },
      { source: 'native/lib/libicuuc.so.60.2', target: '../outside.so' },
    ]);

    await assert.rejects(restorePackageSymlinks(root), /"\.\.\/outside\.so"/);
    assert.equal(existsSync(path.join(root, 'native/lib/libicuuc.so.60')), false);
  });
});

describe('buildHistory', { concurrency: true }, () => {
  for (const major of [10, 15, 18]) {
    it(`records a backup, an archive and every target on PostgreSQL ${major}`, async () => {
      const history = await buildHistory(major);
      try {
        await checkHistory(history);
      } finally {
        await removeTree(history.rootDir);
      }
    });
  }
});

async function checkHistory(history: Awaited<ReturnType<typeof buildHistory>>): Promise<void> {
  const { backupDir, archiveDir, segmentSize, targets, major } = history;
  assert.equal(segmentSize, major === 10 ? 16 * 1024 * 1024 : 1024 * 1024);

  // The backup is a data directory without the running server's files or its WAL.
  const label = await readFile(path.join(backupDir, 'backup_label'), 'utf8');
  const startSegment = /^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$/m.exec(label)?.[1];
  assert.ok(startSegment, `backup_label names no start segment:\n${label}`);
  assert.ok(existsSync(path.join(backupDir, 'PG_VERSION')));
  assert.ok(!existsSync(path.join(backupDir, 'postmaster.pid')));
  assert.deepEqual(await readdir(path.join(backupDir, 'pg_wal')), ['archive_status']);

  // The archive holds the backup's first segment and everything after it.
  const archived = await readdir(archiveDir);
  const segments = archived.filter((name) => parseSegmentFileName(name, segmentSize)).sort();
  assert.ok(segments.includes(startSegment), `${startSegment} is not in ${archived}`);
  assert.ok(archived.some((name) => name.startsWith(startSegment) && name.endsWith('.backup')));
  assert.ok(!archived.some((name) => name.endsWith('.tmp')));

  assert.match(targets.xid, /^\d+$/);
  assert.ok(isLsn(targets.lsn), targets.lsn);
  assert.match(targets.time, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$/);
  assert.equal(targets.name, 'pitr_point');

  if (major === 15) await checkTarBackup(backupDir, history.rootDir);
}

async function checkTarBackup(backupDir: string, rootDir: string): Promise<void> {
  const tarPath = await makeTarBackup(backupDir, path.join(rootDir, 'tar'), { gzip: true });
  const { stdout } = await execFileAsync('tar', ['-tzf', tarPath], { maxBuffer: 1 << 24 });
  const entries = stdout.trim().split('\n');
  assert.ok(entries.includes('backup_label'));
  assert.ok(entries.includes('global/pg_control'));
  assert.ok(!entries.some((entry) => entry.startsWith('./') || entry.startsWith('/')));
}
