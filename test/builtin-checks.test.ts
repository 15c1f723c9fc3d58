// Built-in integrity checks (amcheck, verify_heapam, reading every table) against real servers:
// healthy clusters on the oldest and newest majors, and a cluster whose files were damaged
// behind the server's back while it was stopped, the way a bad disk or a bad copy damages them.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import {
  runBuiltinChecks,
  type BuiltinCheckOptions,
  type BuiltinCheckResult,
} from '../src/builtin-checks.js';
import { setLogger, type Logger } from '../src/log.js';
import { spawnIdentity, type ServerAccount } from '../src/os-user.js';
import {
  packageRoot,
  removeTree,
  runAsServer,
  serverAccount,
  startCluster,
  type Cluster,
} from './support/postgres.js';

const ALL: BuiltinCheckOptions = { amcheck: true, heapcheck: true, readAll: true };
const BLOCK_SIZE = 8192;

function connectTo(cluster: Cluster, user = 'postgres') {
  return async (database: string): Promise<pg.Client> => {
    const client = new pg.Client({ host: cluster.socketDir, port: cluster.port, user, database });
    await client.connect();
    return client;
  };
}

/** Runs SQL in one database of the cluster over a connection of its own. */
async function sqlIn<T = Record<string, unknown>>(
  cluster: Cluster,
  database: string,
  sql: string,
): Promise<T[]> {
  const client = await connectTo(cluster)(database);
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
}

function byName(results: BuiltinCheckResult[], name: string): BuiltinCheckResult {
  const found = results.find((result) => result.name === name);
  assert.ok(found, `no result named "${name}" in ${results.map((r) => r.name).join(', ')}`);
  return found;
}

/** Log lines of the checks, kept from the test output and for assertions. */
function captureLog(): string[] {
  const lines: string[] = [];
  const logger: Logger = {
    info: (message) => lines.push(message),
    warning: (message) => lines.push(`warning: ${message}`),
    debug: () => undefined,
    group: () => undefined,
  };
  setLogger(logger);
  return lines;
}

// The tables of a small application: TOASTed values, an index of each kind, a partitioned
// table, an inheritance child, a materialized view populated and one not, an unlogged table,
// and a column named like the alias the full read gives its table.
const APP_SCHEMA = `
  CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, note text, tags text[]);
  CREATE INDEX orders_customer ON orders (customer);
  CREATE INDEX orders_tags ON orders USING gin (tags);
  INSERT INTO orders
  SELECT i, 'customer ' || (i % 50),
         CASE WHEN i % 100 = 0
              THEN (SELECT string_agg(md5(i::text || '/' || j), '') FROM generate_series(1, 400) j)
         END,
         ARRAY['tag' || (i % 7)]
    FROM generate_series(1, 2000) i;
  CREATE TABLE events (at date NOT NULL, what text) PARTITION BY RANGE (at);
  CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
  INSERT INTO events VALUES ('2024-03-01', 'opened'), ('2024-04-01', 'closed');
  CREATE TABLE parent (id int);
  CREATE TABLE child (extra text) INHERITS (parent);
  INSERT INTO child VALUES (1, 'in the child');
  CREATE TABLE odd_names ("s" int, "Mixed Case" text);
  INSERT INTO odd_names VALUES (1, 'one');
  CREATE MATERIALIZED VIEW totals AS SELECT customer, count(*) FROM orders GROUP BY customer;
  CREATE MATERIALIZED VIEW later AS SELECT 1 AS one WITH NO DATA;
  CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);
  INSERT INTO scratch VALUES (1);
`;

describe('built-in checks without a server', () => {
  it('runs nothing and connects nowhere when every check is off', async () => {
    const results = await runBuiltinChecks(() => Promise.reject(new Error('should not connect')), {
      amcheck: false,
      heapcheck: false,
      readAll: false,
    });
    assert.deepEqual(results, []);
  });

  it('reports one failure saying why when the databases cannot be listed', async () => {
    const tried: string[] = [];
    const results = await runBuiltinChecks(async (database) => {
      tried.push(database);
      throw new Error(`connect ECONNREFUSED for ${database}`);
    }, ALL);
    assert.deepEqual(tried, ['postgres', 'template1']);
    assert.equal(results.length, 1);
    assert.equal(results[0].name, 'built-in checks: list the databases');
    assert.equal(results[0].passed, false);
    assert.equal(
      results[0].detail,
      'could not connect to database "postgres" (nor template1) to list the databases: connect ECONNREFUSED for postgres',
    );
  });
});

for (const major of [10, 18]) {
  describe(`built-in checks on a healthy PostgreSQL ${major} cluster`, () => {
    let cluster: Cluster;
    const amcheckInstalled = existsSync(
      path.join(packageRoot(major), 'native', 'lib', 'postgresql', 'amcheck.so'),
    );

    before(async () => {
      cluster = await startCluster(major);
      await cluster.query('CREATE DATABASE app');
      await cluster.query('CREATE DATABASE kept');
      await sqlIn(cluster, 'app', APP_SCHEMA);
      // A database with amcheck of its own, at the oldest version, as a cluster upgraded with
      // pg_upgrade from 10 has it.
      await sqlIn(cluster, 'kept', "CREATE EXTENSION amcheck VERSION '1.0'");
      await cluster.query('CREATE ROLE checker LOGIN');
    });
    after(async () => {
      await cluster?.stop();
      if (cluster) await removeTree(cluster.rootDir);
    });

    it('passes every check on every database that accepts connections, template1 included', async () => {
      const lines = captureLog();
      const results = await runBuiltinChecks(connectTo(cluster), ALL);

      const databases = ['app', 'kept', 'postgres', 'template1'];
      assert.deepEqual(
        results.map((result) => result.name),
        databases.flatMap((database) => [
          `amcheck: database ${database}`,
          `verify_heapam: database ${database}`,
          `read all tables: database ${database}`,
        ]),
      );
      for (const result of results) {
        assert.ok(result.durationMs >= 0);
        assert.equal(result.database, result.name.replace(/^.*: database /, ''));
        if (result.name.startsWith('amcheck') && !amcheckInstalled) {
          assert.match(result.skipped ?? '', /amcheck is not part of this PostgreSQL/);
        } else if (result.name.startsWith('verify_heapam') && major < 14) {
          assert.equal(result.passed, false);
          assert.equal(
            result.skipped,
            `verify_heapam is part of amcheck from PostgreSQL 14 on; this server is ${cluster.version}`,
          );
        } else {
          assert.deepEqual(
            { passed: result.passed, detail: result.detail, skipped: result.skipped },
            { passed: true, detail: undefined, skipped: undefined },
            result.name,
          );
        }
      }

      // 10's amcheck checks only the index structure; 11 added heapallindexed, 17 checkunique.
      const mode = major >= 17 ? 'heapallindexed, checkunique' : 'structure only';
      assert.ok(
        lines.some((line) => line.startsWith('amcheck: database app: ') && line.includes(mode)),
        lines.join('\n'),
      );
      // The catalogs are read too: they are tables like any other, and damage there is worse.
      const read = lines.find((line) => line.startsWith('read all tables: database app: '));
      assert.match(read ?? '', /: \d{2} tables, \d+ rows, \d+\.\d MB as text/);
    });

    it('leaves no trace of amcheck where the database did not have it', async () => {
      await runBuiltinChecks(connectTo(cluster), { ...ALL, readAll: false });
      for (const database of ['app', 'postgres', 'template1']) {
        const rows = await sqlIn(
          cluster,
          database,
          `SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'amcheck') AS extensions,
                  (SELECT count(*) FROM pg_namespace WHERE nspname = 'pitr_amcheck') AS schemas`,
        );
        assert.deepEqual(rows, [{ extensions: '0', schemas: '0' }], database);
      }
    });

    it("uses a database's own amcheck, updated only for the checks and left at its version", async () => {
      const lines = captureLog();
      const results = await runBuiltinChecks(connectTo(cluster), { ...ALL, readAll: false });

      assert.equal(byName(results, 'amcheck: database kept').passed, true);
      if (major >= 14) assert.equal(byName(results, 'verify_heapam: database kept').passed, true);
      const mode = major >= 17 ? 'heapallindexed, checkunique' : 'structure only';
      assert.ok(
        lines.some((line) => line.startsWith('amcheck: database kept: ') && line.includes(mode)),
      );
      assert.deepEqual(
        await sqlIn(
          cluster,
          'kept',
          `SELECT extversion, extnamespace::regnamespace::text AS schema
             FROM pg_extension WHERE extname = 'amcheck'`,
        ),
        [{ extversion: '1.0', schema: 'public' }],
      );
    });

    it('skips amcheck, saying why, when the extension cannot be created', async () => {
      captureLog();
      const results = await runBuiltinChecks(connectTo(cluster, 'checker'), {
        amcheck: true,
        heapcheck: false,
        readAll: false,
      });
      const app = byName(results, 'amcheck: database app');
      assert.equal(app.passed, false);
      assert.match(
        app.skipped ?? '',
        /^could not create the amcheck extension in database "app": permission denied/,
      );
    });
  });
}

// ---- damage ---------------------------------------------------------------------------------

/** Clusters restarted here with pg_ctl, which the support's own safety net does not know. */
const restarted = new Map<string, { pgCtl: string; account: ServerAccount }>();
process.once('exit', () => {
  for (const [dataDir, { pgCtl, account }] of restarted) {
    spawnSync(pgCtl, ['stop', '-m', 'immediate', '-D', dataDir], {
      ...spawnIdentity(account),
      cwd: dataDir,
      stdio: 'ignore',
      timeout: 10_000,
    });
  }
});

async function startAgain(cluster: Cluster): Promise<void> {
  const pgCtl = path.join(cluster.binDir, 'pg_ctl');
  await runAsServer(
    pgCtl,
    ['start', '-w', '-t', '60', '-D', cluster.dataDir, '-l', cluster.logFile],
    cluster.dataDir,
  );
  restarted.set(cluster.dataDir, { pgCtl, account: await serverAccount() });
}

async function stopAgain(cluster: Cluster): Promise<void> {
  if (!restarted.has(cluster.dataDir)) return;
  const pgCtl = path.join(cluster.binDir, 'pg_ctl');
  await runAsServer(pgCtl, ['stop', '-w', '-m', 'fast', '-D', cluster.dataDir], cluster.dataDir);
  restarted.delete(cluster.dataDir);
}

/** The data file of a relation, from pg_relation_filepath, relative to the data directory. */
async function relationFile(cluster: Cluster, database: string, relation: string): Promise<string> {
  const [row] = await sqlIn<{ file: string }>(
    cluster,
    database,
    `SELECT pg_relation_filepath('${relation}') AS file`,
  );
  return path.join(cluster.dataDir, row.file);
}

async function writeAt(file: string, position: number, bytes: Buffer): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.write(bytes, 0, bytes.length, position);
  } finally {
    await handle.close();
  }
}

function int32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(value);
  return bytes;
}

describe('built-in checks on a PostgreSQL 16 cluster damaged behind its back', () => {
  // A value that occurs once in the table's file, so that it can be found and changed there.
  const MARKER = 0x7ab1c2d3;
  let cluster: Cluster;
  let results: BuiltinCheckResult[];
  const files: Record<string, string> = {};

  before(async () => {
    // Without data checksums (initdb's default before 18), the server reads a changed page as
    // it is: only the checks can tell.
    cluster = await startCluster(16);
    for (const database of ['flipped', 'torn', 'toasted', 'frozen']) {
      await cluster.query(`CREATE DATABASE ${database}`);
    }
    // autovacuum stays away from the damaged tables, so the server log is about the checks.
    await sqlIn(
      cluster,
      'flipped',
      `CREATE TABLE accounts (id int PRIMARY KEY, owner text) WITH (autovacuum_enabled = off);
       INSERT INTO accounts SELECT i, 'owner ' || i FROM generate_series(1, 1000) i;
       INSERT INTO accounts VALUES (${MARKER}, 'the marked row');`,
    );
    await sqlIn(
      cluster,
      'torn',
      `CREATE TABLE pages (id int, pad text) WITH (autovacuum_enabled = off);
       INSERT INTO pages SELECT i, repeat('x', 200) FROM generate_series(1, 200) i;`,
    );
    await sqlIn(
      cluster,
      'toasted',
      `CREATE TABLE documents (id int, body text) WITH (autovacuum_enabled = off);
       INSERT INTO documents
       SELECT 1, string_agg(md5(j::text), '') FROM generate_series(1, 1000) j;`,
    );
    await sqlIn(
      cluster,
      'frozen',
      `CREATE TABLE ledger (id int) WITH (autovacuum_enabled = off);
       INSERT INTO ledger SELECT generate_series(1, 10);`,
    );
    files.accounts = await relationFile(cluster, 'flipped', 'accounts');
    files.pages = await relationFile(cluster, 'torn', 'pages');
    const [toast] = await sqlIn<{ name: string }>(
      cluster,
      'toasted',
      "SELECT reltoastrelid::regclass::text AS name FROM pg_class WHERE relname = 'documents'",
    );
    files.toast = await relationFile(cluster, 'toasted', toast.name);
    files.ledger = await relationFile(cluster, 'frozen', 'ledger');
    await cluster.query('CHECKPOINT');
    await cluster.stop();

    // The marked row's id becomes another value, in the table only: its index entry still
    // says 0x7AB1C2D3, which is what a lost or misdirected write leaves behind.
    const accounts = await readFile(files.accounts);
    const marker = accounts.indexOf(int32(MARKER));
    assert.ok(marker > 0 && accounts.indexOf(int32(MARKER), marker + 1) === -1);
    await writeAt(files.accounts, marker, int32(MARKER + 1));

    // Block 1's page header overwritten: the server refuses to read the page.
    assert.ok((await readFile(files.pages)).length > 2 * BLOCK_SIZE, 'pages spans 3 blocks');
    await writeAt(files.pages, BLOCK_SIZE, Buffer.alloc(24, 0xff));

    // The TOAST table's first page damaged: the table itself reads, its value does not.
    await writeAt(files.toast, 0, Buffer.alloc(24, 0xff));

    // The first tuple's xmin set to 3, older than the table: a tuple that cannot be.
    const ledger = await readFile(files.ledger);
    const firstTuple = ledger.readUInt32LE(24) & 0x7fff;
    await writeAt(files.ledger, firstTuple, int32(3));

    await startAgain(cluster);
    captureLog();
    results = await runBuiltinChecks(connectTo(cluster), ALL);
  });
  after(async () => {
    if (cluster) await stopAgain(cluster);
    if (cluster) await removeTree(cluster.rootDir);
  });

  it('amcheck names the index that lacks an entry for a table row changed behind its back', () => {
    const result = byName(results, 'amcheck: database flipped');
    assert.equal(result.passed, false);
    assert.match(
      result.detail ?? '',
      /^1 of \d+ B-tree indexes \(heapallindexed\) failed: public\.accounts_pkey: heap tuple \(\d+,\d+\) from table "accounts" lacks matching index tuple within index "accounts_pkey" \(SQLSTATE XX001\)/,
    );
    // Neither reading the table nor verify_heapam can see a changed value.
    assert.equal(byName(results, 'read all tables: database flipped').passed, true);
    assert.equal(byName(results, 'verify_heapam: database flipped').passed, true);
  });

  it('the full read names the table with a page it cannot read', () => {
    const result = byName(results, 'read all tables: database torn');
    assert.equal(result.passed, false);
    assert.match(
      result.detail ?? '',
      /^1 of \d+ tables could not be read: public\.pages: invalid page in block 1 of relation base\/\d+\/\d+ \(SQLSTATE XX001\)/,
    );
    assert.equal(byName(results, 'amcheck: database torn').passed, true);
  });

  it('verify_heapam names the table with a page it cannot read', () => {
    const result = byName(results, 'verify_heapam: database torn');
    assert.equal(result.passed, false);
    assert.match(
      result.detail ?? '',
      /^1 of \d+ tables damaged \(1 report\): public\.pages: invalid page in block 1 of relation base\/\d+\/\d+/,
    );
  });

  it('the full read detoasts every value, so it finds a damaged TOAST page that count(*) misses', async () => {
    const [row] = await sqlIn(cluster, 'toasted', 'SELECT count(*) AS rows FROM documents');
    assert.deepEqual(row, { rows: '1' });

    const result = byName(results, 'read all tables: database toasted');
    assert.equal(result.passed, false);
    assert.match(
      result.detail ?? '',
      /^1 of \d+ tables could not be read: public\.documents: invalid page in block 0 of relation base\/\d+\/\d+/,
    );
    assert.match(
      byName(results, 'verify_heapam: database toasted').detail ?? '',
      /pg_toast\.pg_toast_\d+ \(TOAST of public\.documents\): invalid page in block 0/,
    );
  });

  it('verify_heapam reports a damaged tuple with its block, offset and message', () => {
    const result = byName(results, 'verify_heapam: database frozen');
    assert.equal(result.passed, false);
    assert.match(
      result.detail ?? '',
      /^1 of \d+ tables damaged \(1 report\): public\.ledger: block 0 offset 1: xmin 3 precedes oldest valid transaction ID \d+:\d+/,
    );
    // The tuple still reads: only verify_heapam knows it cannot be right.
    assert.equal(byName(results, 'read all tables: database frozen').passed, true);
  });

  it('still runs every check on the undamaged databases', () => {
    for (const database of ['postgres', 'template1']) {
      for (const check of ['amcheck', 'verify_heapam', 'read all tables']) {
        assert.equal(byName(results, `${check}: database ${database}`).passed, true);
      }
    }
  });
});
