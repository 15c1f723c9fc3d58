// Rebuilds example/: a small real PostgreSQL 16 cluster's base backup (base.tar.gz) and its
// gzip'd WAL archive, with a story: orders are taken, a restore point is made, then a bad
// cleanup deletes most of them. Restoring to the restore point brings the orders back.
// Run with: node --import tsx scripts/make-example.ts (as root or as a user that can run
// the server programs in node_modules/pg16).

import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { makeTarBackup, takeLowLevelBackup } from '../test/support/history.js';
import { removeTree, startCluster } from '../test/support/postgres.js';

const execFileAsync = promisify(execFile);
const MAJOR = 16;

const cluster = await startCluster(MAJOR);
try {
  await cluster.query(
    'CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric, placed_at timestamptz DEFAULT now())',
  );
  await cluster.query(
    "INSERT INTO orders SELECT g, 'customer ' || (g % 17), g * 1.5 FROM generate_series(1, 100) g",
  );
  const backupDir = path.join(cluster.rootDir, 'backup');
  await takeLowLevelBackup(cluster, backupDir);
  await cluster.query(
    "INSERT INTO orders SELECT g, 'customer ' || (g % 17), g * 1.5 FROM generate_series(101, 300) g",
  );
  await cluster.query("SELECT pg_create_restore_point('before-cleanup')");
  await cluster.query('DELETE FROM orders WHERE id > 10');
  await cluster.waitArchived(await cluster.switchWal());
  await cluster.stop();

  await fs.rm('example', { recursive: true, force: true });
  await fs.mkdir('example/archive', { recursive: true });
  await makeTarBackup(backupDir, 'example/backup', { gzip: true });
  for (const name of await fs.readdir(cluster.archiveDir)) {
    const target = path.join('example/archive', name);
    await fs.copyFile(path.join(cluster.archiveDir, name), target);
    await execFileAsync('gzip', ['-9', target]);
  }
  for (const dir of ['example/backup', 'example/archive']) {
    for (const name of await fs.readdir(dir)) await fs.chmod(path.join(dir, name), 0o644);
  }
  console.log(`example/ rebuilt from PostgreSQL ${cluster.version}`);
} finally {
  await cluster.stop();
  await removeTree(cluster.rootDir);
}
