// Clusters whose superuser is not called postgres: initdb -U, and the official Docker image's
// POSTGRES_USER, name the bootstrap superuser after the application, and no postgres role
// exists at all. pitr finds the name in the backup's pg_authid and connects as it. 11 keeps a
// row's OID in its header and 12 on in a column, so both layouts are covered.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { takeLowLevelBackup } from './support/history.js';
import { binDir, removeTree, startCluster, type Cluster } from './support/postgres.js';
import { restoredRowCount, runCli } from './support/pitr.js';
import { superuserCandidates } from '../src/superuser.js';

const execFileAsync = promisify(execFile);
const majors = process.env.PITR_TEST_MAJORS
  ? process.env.PITR_TEST_MAJORS.split(',')
      .map(Number)
      .filter((m) => [11, 17].includes(m))
  : [11, 17];

for (const major of majors) {
  describe(`PostgreSQL ${major} without a postgres role`, () => {
    let cluster: Cluster;
    let backupDir: string;

    before(async () => {
      cluster = await startCluster(major, { superuser: 'app owner' });
      await cluster.query('CREATE TABLE orders (id int)');
      backupDir = path.join(cluster.rootDir, 'backup');
      await takeLowLevelBackup(cluster, backupDir);
      await cluster.query('INSERT INTO orders SELECT generate_series(1, 50)');
      await cluster.waitArchived(await cluster.switchWal());
      await cluster.stop();
    });
    after(async () => {
      if (cluster) await removeTree(cluster.rootDir);
    });

    it('reads a renamed superuser from pg_authid, also after VACUUM FULL moved its file', async () => {
      const other = await startCluster(major);
      try {
        await other.query('CREATE ROLE dba_two SUPERUSER LOGIN');
        const client = new pg.Client({
          host: other.socketDir,
          port: other.port,
          user: 'dba_two',
          database: 'postgres',
        });
        await client.connect();
        try {
          await client.query('ALTER ROLE postgres RENAME TO dba_one');
          await client.query('VACUUM FULL pg_authid');
          await client.query('CHECKPOINT');
        } finally {
          await client.end();
        }
        const candidates = await superuserCandidates(other.dataDir, major);
        assert.equal(candidates[0], 'dba_one', candidates.join(', '));
        assert.ok(!candidates.includes('dba_two'), 'only the bootstrap superuser, oid 10');
      } finally {
        await other.stop();
        await removeTree(other.rootDir);
      }
    });

    const restoreInto = (target: string, args: string[]) =>
      runCli([
        '--base-backup',
        backupDir,
        '--wal-archive',
        cluster.archiveDir,
        '--postgres-bin',
        binDir(major),
        '--data-directory',
        target,
        ...args,
      ]);

    it('runs every check as the bootstrap superuser found in the backup', async () => {
      const target = path.join(cluster.rootDir, 'restored');
      const run = await restoreInto(target, [
        '--verify-query',
        "SELECT current_user = 'app owner'",
        '--verify-query',
        'SELECT count(*) = 50 FROM orders',
      ]);
      assert.equal(run.status, 0, run.stderr);
      assert.equal(run.outputs['checks-failed'], '0');
      // The recovery point, both queries, amcheck and the full read of postgres and template1.
      assert.equal(run.outputs['checks-passed'], '7');
      assert.equal(await restoredRowCount(major, target, 'orders', 'app owner'), 50);
    });

    it('hands later steps a connection as that role with keep-running', async () => {
      const target = path.join(cluster.rootDir, 'kept');
      const run = await restoreInto(target, [
        '--check-indexes',
        'false',
        '--check-read-all',
        'false',
        '--keep-running',
        'true',
      ]);
      assert.equal(run.status, 0, run.stderr);
      const report = JSON.parse(run.stdout).report as {
        connection: { uri: string; host: string; port: number; user: string; stop: string };
      };
      assert.equal(report.connection.user, 'app owner');
      assert.match(report.connection.uri, /^postgresql:\/\/app%20owner@\/postgres\?host=/);
      try {
        const client = new pg.Client({ connectionString: report.connection.uri });
        await client.connect();
        const { rows } = await client.query('SELECT current_user AS me');
        await client.end();
        assert.equal(rows[0].me, 'app owner');
      } finally {
        await execFileAsync('/bin/sh', ['-c', report.connection.stop]);
      }
    });
  });
}
