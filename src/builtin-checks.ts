// Built-in integrity checks of the restored cluster, for damage that replay cannot see: an
// index that disagrees with its table (amcheck's bt_index_check), heap pages whose tuples are
// inconsistent (amcheck's verify_heapam, 14+), and pages or TOAST values that cannot be read at
// all (a full read of every table). Each runs once per database, and every one runs even after
// another has failed, so that one run shows all the damage.
//
// Which databases: every one that accepts connections. That includes template1 (and any other
// template left open to connections), because every database created later is a copy of it;
// template0 refuses connections by design and is never read.
//
// amcheck needs its extension in each database. Where it is not installed already, it is
// created in a schema of its own inside a transaction that is rolled back after the checks, so
// the restored cluster is left with no trace of it (beyond what any rolled-back transaction
// leaves: a used transaction ID and dead catalog rows). An extension the database already has is
// used where it is (updated within the same rolled-back transaction when it is older than the
// server's), so a database that has its own amcheck keeps it exactly as it was.

import type pg from 'pg';
import { log } from './log.js';

export interface BuiltinCheckOptions {
  /** bt_index_check on every B-tree index, with heapallindexed from 11 on. */
  amcheck: boolean;
  /** verify_heapam on every table, materialized view and TOAST table; 14+ only. */
  heapcheck: boolean;
  /** Reads every row of every table, detoasting every value. */
  readAll: boolean;
}

export interface BuiltinCheckResult {
  /** "amcheck: database app", "verify_heapam: database app", "read all tables: database app". */
  name: string;
  /**
   * False for a skipped check as well, since it proved nothing; callers tell a skipped check
   * from a failed one by `skipped`.
   */
  passed: boolean;
  /** Why it failed: the damaged objects, the first few with the server's messages. */
  detail?: string;
  durationMs: number;
  /** Why the check could not run here, e.g. amcheck is not part of the server build. */
  skipped?: string;
  /** The database checked; absent only when the databases could not be listed. */
  database?: string;
}

type Connect = (database: string) => Promise<pg.Client>;

/** What one check found in one database. */
interface Outcome {
  passed: boolean;
  detail?: string;
  skipped?: string;
  /** One line for the log saying what was checked, with the numbers. */
  summary: string;
}

const SHOWN_PROBLEMS = 5;
const MESSAGE_LENGTH = 300;

function cut(text: string, length: number): string {
  const line = text.replace(/\s*\r?\n\s*/g, ' ');
  return line.length > length ? `${line.slice(0, length - 1)}…` : line;
}

function plural(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}

/** The server's message with its SQLSTATE (XX001 data_corrupted, XX002 index_corrupted...). */
function describeError(error: unknown): string {
  const { message, code } = error as Error & { code?: string };
  return cut(code ? `${message} (SQLSTATE ${code})` : message, MESSAGE_LENGTH);
}

/**
 * An ERROR ends only the statement; anything else (FATAL, PANIC, or a socket the server closed
 * because the backend crashed on damaged data) ends the session.
 */
function endsSession(error: unknown): boolean {
  return (error as { severity?: string }).severity !== 'ERROR';
}

function listProblems(problems: string[]): string {
  const shown = problems.slice(0, SHOWN_PROBLEMS).join('; ');
  const more =
    problems.length > SHOWN_PROBLEMS ? `; and ${problems.length - SHOWN_PROBLEMS} more` : '';
  return `${shown}${more}`;
}

function lostConnection(object: string, remaining: number): string {
  return (
    `the connection was lost while checking ${object}, so ${plural(remaining, 'more object')} ` +
    'went unchecked; the server may have crashed on damaged data, which its log shows'
  );
}

// ---- sessions -------------------------------------------------------------------------------

/**
 * Settings from the restored postgresql.conf that would cut a long check short or refuse its
 * transaction: a production statement_timeout is common, and a check of a large index can
 * take minutes. Only the settings this server has are changed (transaction_timeout is 17+).
 */
async function prepareSession(client: pg.Client): Promise<void> {
  await client.query(
    `SELECT set_config(name, '0', false) FROM pg_settings
      WHERE name IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout',
                     'idle_session_timeout', 'transaction_timeout')`,
  );
  await client.query('SET default_transaction_read_only = off');
}

async function serverVersionNum(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ server_version_num: string }>('SHOW server_version_num');
  return Number(rows[0].server_version_num);
}

/** "10.23" from 100023, "16.4" from 160004. */
function versionText(versionNum: number): string {
  return `${Math.floor(versionNum / 10000)}.${versionNum % 10000}`;
}

// ---- the amcheck extension ------------------------------------------------------------------

interface Amcheck {
  /** The extension's schema, quoted for SQL. */
  schema: string;
  /** The largest number of arguments each of its functions takes, by name. */
  arguments: Map<string, number>;
}

const AMCHECK_SCHEMA = 'pitr_amcheck';

/**
 * Runs `work` with amcheck usable in the client's database, inside a transaction that is rolled
 * back afterwards. Returns a skipped outcome when the extension cannot be had here.
 */
async function withAmcheck(
  client: pg.Client,
  database: string,
  work: (amcheck: Amcheck) => Promise<Outcome>,
): Promise<Outcome> {
  await client.query('BEGIN');
  try {
    const schema = await amcheckSchema(client, database);
    if (typeof schema !== 'string') return schema;
    const functions = await client.query<{ proname: string; nargs: number }>(
      `SELECT p.proname, max(p.pronargs)::int AS nargs
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = $1
        GROUP BY p.proname`,
      [schema],
    );
    const amcheck: Amcheck = {
      schema: client.escapeIdentifier(schema),
      arguments: new Map(functions.rows.map((row) => [row.proname, row.nargs])),
    };
    // Each object is checked in a subtransaction rolled back after it, which releases the locks
    // it took: one transaction holding a lock on every index of a large database would run out
    // of lock table space ("out of shared memory").
    await client.query('SAVEPOINT pitr_check');
    return await work(amcheck);
  } finally {
    if (client.getTransactionStatus() !== 'I')
      await client.query('ROLLBACK').catch(() => undefined);
  }
}

/** The schema amcheck is in, created within the open transaction when needed; or a skip. */
async function amcheckSchema(client: pg.Client, database: string): Promise<string | Outcome> {
  const installed = await client.query<{ nspname: string }>(
    `SELECT n.nspname
       FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
      WHERE e.extname = 'amcheck'`,
  );
  const existing = installed.rows[0];
  if (existing) {
    // A cluster upgraded with pg_upgrade keeps the version it had (1.0 has no heapallindexed,
    // only 1.3 has verify_heapam). The update is rolled back with everything else; one that is
    // not allowed leaves the old version to be used as it is.
    await client.query('SAVEPOINT pitr_update');
    await client
      .query('ALTER EXTENSION amcheck UPDATE')
      .then(() => client.query('RELEASE SAVEPOINT pitr_update'))
      .catch(() => client.query('ROLLBACK TO SAVEPOINT pitr_update'));
    return existing.nspname;
  }

  try {
    // A schema of its own, so that no function of the database can be taken for amcheck's,
    // and so that it works where public has been dropped or locked down.
    await client.query(`CREATE SCHEMA ${client.escapeIdentifier(AMCHECK_SCHEMA)}`);
    await client.query(
      `CREATE EXTENSION amcheck SCHEMA ${client.escapeIdentifier(AMCHECK_SCHEMA)}`,
    );
    return AMCHECK_SCHEMA;
  } catch (error) {
    // When the extension's files are not installed, CREATE EXTENSION raises undefined_file
    // ("could not open extension control file") up to 15, and feature_not_supported ("extension
    // ... is not available") from 16 on. pg_available_extensions would say so more directly,
    // but it reads every control file, and one stray file from another version makes it fail.
    if (endsSession(error)) throw error;
    const { code, message } = error as Error & { code?: string };
    const notInstalled = code === '58P01' || (code === '0A000' && /is not available/.test(message));
    const reason = notInstalled
      ? `amcheck is not part of this PostgreSQL installation (${describeError(error)}); ` +
        'install the contrib package of the same major version (postgresql-contrib, or ' +
        'postgresqlNN-contrib) to have it'
      : `could not create the amcheck extension in database "${database}": ${describeError(error)}`;
    return { passed: false, skipped: reason, summary: `skipped: ${reason}` };
  }
}

interface CheckedObject {
  oid: number;
  /** Schema-qualified, quoted where SQL needs quotes. */
  name: string;
  /** pg_class.relkind: i, r, m or t. */
  kind: string;
}

interface ObjectProblem {
  object: CheckedObject;
  /** What the check reported; several lines for verify_heapam. */
  messages: string[];
}

/**
 * Runs `check` on each object in the savepoint withAmcheck set, rolling back to it after each
 * one. Returns the objects that failed, and a note when the session was lost part way.
 */
async function checkEach(
  client: pg.Client,
  objects: CheckedObject[],
  check: (object: CheckedObject) => Promise<string[]>,
): Promise<{ problems: ObjectProblem[]; lost?: string }> {
  const problems: ObjectProblem[] = [];
  for (const [index, object] of objects.entries()) {
    try {
      const messages = await check(object);
      if (messages.length > 0) problems.push({ object, messages });
    } catch (error) {
      if (endsSession(error)) {
        problems.push({ object, messages: [describeError(error)] });
        return { problems, lost: lostConnection(object.name, objects.length - index - 1) };
      }
      problems.push({ object, messages: [describeError(error)] });
    }
    await client.query('ROLLBACK TO SAVEPOINT pitr_check');
  }
  return { problems };
}

// ---- amcheck: B-tree indexes ----------------------------------------------------------------

/**
 * Every B-tree index that has storage and is fully built: invalid indexes (a failed CREATE
 * INDEX CONCURRENTLY) are not used by queries and amcheck refuses them, and temporary ones
 * belong to sessions that ended with the old server.
 */
const BTREE_INDEXES = `
  SELECT c.oid::int8 AS oid, format('%I.%I', n.nspname, c.relname) AS name, c.relkind AS kind
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_am am ON am.oid = c.relam
   WHERE am.amname = 'btree' AND c.relkind = 'i' AND c.relpersistence <> 't'
     AND i.indisvalid AND i.indisready AND i.indislive
   ORDER BY n.nspname, c.relname`;

async function listObjects(client: pg.Client, sql: string): Promise<CheckedObject[]> {
  const { rows } = await client.query<{ oid: string; name: string; kind: string }>(sql);
  return rows.map((row) => ({ oid: Number(row.oid), name: row.name, kind: row.kind }));
}

/**
 * bt_index_check takes only an AccessShareLock, as a query does. From 11 on it is asked for
 * heapallindexed, which reads the table and proves that each of its rows has its index entry:
 * without it, an index whose table rows changed behind its back looks perfectly sound. From 17
 * on checkunique also proves that a unique index has no duplicate live entries.
 */
async function checkIndexes(client: pg.Client, database: string): Promise<Outcome> {
  return withAmcheck(client, database, async (amcheck) => {
    const nargs = amcheck.arguments.get('bt_index_check') ?? 1;
    const extra = nargs >= 3 ? ', true, true' : nargs === 2 ? ', true' : '';
    const mode =
      nargs >= 3
        ? 'heapallindexed, checkunique'
        : nargs === 2
          ? 'heapallindexed'
          : 'structure only';
    const sql = `SELECT ${amcheck.schema}.bt_index_check($1::oid::regclass${extra})`;

    const indexes = await listObjects(client, BTREE_INDEXES);
    const { problems, lost } = await checkEach(client, indexes, async (index) => {
      await client.query(sql, [index.oid]);
      return [];
    });

    const counted = `${plural(indexes.length, 'B-tree index', 'B-tree indexes')} (${mode})`;
    if (problems.length === 0 && !lost) return { passed: true, summary: `${counted}: no damage` };
    const list = listProblems(problems.map((p) => `${p.object.name}: ${p.messages[0]}`));
    const detail =
      `${problems.length} of ${counted} failed: ${list}${lost ? `; ${lost}` : ''}. ` +
      'A damaged index returns wrong rows (REINDEX rebuilds it), and a table that cannot be ' +
      'read loses them; run the same check on the primary to learn whether the damage is there ' +
      'or only in the backup.';
    return { passed: false, detail, summary: `${problems.length} of ${counted} failed` };
  });
}

// ---- amcheck: verify_heapam -----------------------------------------------------------------

/** Tables, materialized views and TOAST tables of the heap access method, named with owners. */
const HEAP_RELATIONS = `
  SELECT c.oid::int8 AS oid,
         format('%I.%I', n.nspname, c.relname)
           || CASE WHEN owner.oid IS NULL THEN ''
                   ELSE format(' (TOAST of %I.%I)', owner_ns.nspname, owner.relname) END AS name,
         c.relkind AS kind
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_am am ON am.oid = c.relam
    LEFT JOIN pg_class owner ON c.relkind = 't' AND owner.reltoastrelid = c.oid
    LEFT JOIN pg_namespace owner_ns ON owner_ns.oid = owner.relnamespace
   WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence <> 't' AND am.amname = 'heap'
   ORDER BY n.nspname, c.relname`;

/**
 * verify_heapam reports each inconsistent tuple as a row (block, offset, attribute, message)
 * rather than stopping at the first; a page the buffer manager refuses to read raises an error
 * instead. With check_toast, each TOAST pointer is followed into its TOAST table.
 */
async function checkHeap(client: pg.Client, database: string): Promise<Outcome> {
  const versionNum = await serverVersionNum(client);
  if (versionNum < 140000) {
    const reason =
      'verify_heapam is part of amcheck from PostgreSQL 14 on; ' +
      `this server is ${versionText(versionNum)}`;
    return { passed: false, skipped: reason, summary: `skipped: ${reason}` };
  }

  return withAmcheck(client, database, async (amcheck) => {
    if (!amcheck.arguments.has('verify_heapam')) {
      const reason =
        `the amcheck extension in database "${database}" has no verify_heapam, and could not ` +
        'be updated to a version that has it (1.3, PostgreSQL 14)';
      return { passed: false, skipped: reason, summary: `skipped: ${reason}` };
    }
    const sql =
      `SELECT blkno, offnum, attnum, msg FROM ${amcheck.schema}.verify_heapam(` +
      `$1::oid::regclass, on_error_stop => false, check_toast => $2)`;

    const relations = await listObjects(client, HEAP_RELATIONS);
    const { problems, lost } = await checkEach(client, relations, async (relation) => {
      const { rows } = await client.query<{
        blkno: string | null;
        offnum: number | null;
        attnum: number | null;
        msg: string;
      }>(sql, [relation.oid, relation.kind !== 't']);
      return rows.map((row) => {
        const where = [`block ${row.blkno ?? '?'}`];
        if (row.offnum !== null) where.push(`offset ${row.offnum}`);
        if (row.attnum !== null) where.push(`attribute ${row.attnum}`);
        return cut(`${where.join(' ')}: ${row.msg}`, MESSAGE_LENGTH);
      });
    });

    const counted = plural(relations.length, 'table');
    if (problems.length === 0 && !lost) return { passed: true, summary: `${counted}: no damage` };
    const reports = problems.reduce((sum, p) => sum + p.messages.length, 0);
    const list = listProblems(
      problems.map((p) => {
        const more = p.messages.length > 3 ? `, and ${p.messages.length - 3} more` : '';
        return `${p.object.name}: ${p.messages.slice(0, 3).join(', ')}${more}`;
      }),
    );
    const detail =
      `${problems.length} of ${counted} damaged (${plural(reports, 'report')}): ${list}` +
      `${lost ? `; ${lost}` : ''}. Rows on these pages may be lost or wrong; run verify_heapam ` +
      'on the primary to learn whether the damage is there or only in the backup.';
    return { passed: false, detail, summary: `${problems.length} of ${counted} damaged` };
  });
}

// ---- reading every table --------------------------------------------------------------------

/**
 * Tables and populated materialized views of permanent relations. Unlogged tables are left
 * out because a restore always leaves them empty (recovery resets them to their init fork),
 * and TOAST tables are read through the tables that own them, which is how a value is read.
 */
const READABLE_TABLES = `
  SELECT c.oid::int8 AS oid, format('%I.%I', n.nspname, c.relname) AS name, c.relkind AS kind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'm') AND c.relpersistence = 'p' AND c.relispopulated
   ORDER BY n.nspname, c.relname`;

// SQLSTATEs of a value too big to turn into text: program_limit_exceeded, out_of_memory.
const TOO_BIG = new Set(['54000', '53200']);

/**
 * Casting the whole row to text calls every column's output function, which detoasts the
 * value (fetching its chunks from the TOAST table and decompressing them); a count(*) alone
 * would read neither TOAST nor the values. The sum keeps the cast from being optimized away.
 * ONLY, because an inheritance child is read as a table of its own.
 *
 * The cast has a limit: a row whose text form exceeds 1 GB (a single value cannot be larger)
 * raises an out-of-memory error instead of being read, and is reported as such.
 */
async function readAll(client: pg.Client): Promise<Outcome> {
  const tables = await listObjects(client, READABLE_TABLES);
  const problems: string[] = [];
  let rows = 0;
  let bytes = 0;
  let lost: string | undefined;

  for (const [index, table] of tables.entries()) {
    try {
      const result = await client.query<{ rows: string; bytes: string | null }>(
        `SELECT count(*) AS rows, sum(length(CAST(s.* AS text))) AS bytes
           FROM ONLY ${table.name} s`,
      );
      rows += Number(result.rows[0].rows);
      bytes += Number(result.rows[0].bytes ?? 0);
    } catch (error) {
      const code = (error as { code?: string }).code;
      const tooBig =
        code && TOO_BIG.has(code)
          ? ' (a row whose text form is over 1 GB cannot be read this way)'
          : '';
      problems.push(`${table.name}: ${describeError(error)}${tooBig}`);
      if (endsSession(error)) {
        lost = lostConnection(table.name, tables.length - index - 1);
        break;
      }
    }
  }

  const counted = plural(tables.length, 'table');
  const summary = `${counted}, ${plural(rows, 'row')}, ${(bytes / 1048576).toFixed(1)} MB as text`;
  if (problems.length === 0) return { passed: true, summary };
  const detail =
    `${problems.length} of ${counted} could not be read: ${listProblems(problems)}` +
    `${lost ? `; ${lost}` : ''}. Rows on a damaged page or in a damaged TOAST value are lost; ` +
    'read the same tables on the primary to learn whether the damage is there or only in the ' +
    'backup.';
  return { passed: false, detail, summary: `${problems.length} of ${counted} could not be read` };
}

// ---- running them ---------------------------------------------------------------------------

/** Databases that accept connections, template1 included; template0 never does. */
async function listDatabases(connect: Connect): Promise<string[]> {
  let client: pg.Client;
  try {
    client = await connect('postgres');
  } catch (error) {
    // The postgres database is only a convention and may have been dropped.
    client = await connect('template1').catch(() => Promise.reject(error));
  }
  try {
    const { rows } = await client.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname',
    );
    return rows.map((row) => row.datname);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Runs one check on its own connection, so that a backend lost to one spoils no other. */
async function runOne(
  connect: Connect,
  name: string,
  database: string,
  check: (client: pg.Client) => Promise<Outcome>,
): Promise<BuiltinCheckResult> {
  const started = Date.now();
  let outcome: Outcome;
  let client: pg.Client | undefined;
  try {
    client = await connect(database);
    // Without a listener, an error on the connection would end the whole process.
    client.on('error', () => undefined);
    await prepareSession(client);
    outcome = await check(client);
  } catch (error) {
    const what = client
      ? `the check stopped on an error: ${describeError(error)}`
      : `could not connect to database "${database}": ${describeError(error)}`;
    outcome = { passed: false, detail: what, summary: `failed, ${what}` };
  } finally {
    await client?.end().catch(() => undefined);
  }
  const durationMs = Date.now() - started;

  log.info(`${name}: ${outcome.summary} (${(durationMs / 1000).toFixed(1)} s)`);
  const result: BuiltinCheckResult = { name, passed: outcome.passed, durationMs, database };
  if (outcome.detail !== undefined) result.detail = outcome.detail;
  if (outcome.skipped !== undefined) result.skipped = outcome.skipped;
  return result;
}

/**
 * Runs the chosen checks on every database that accepts connections: for each database in
 * name order, amcheck, then verify_heapam, then the full read. One result per check and
 * database; a check that fails or cannot run never stops the others.
 */
export async function runBuiltinChecks(
  connect: Connect,
  options: BuiltinCheckOptions,
): Promise<BuiltinCheckResult[]> {
  if (!options.amcheck && !options.heapcheck && !options.readAll) return [];

  const started = Date.now();
  let databases: string[];
  try {
    databases = await listDatabases(connect);
  } catch (error) {
    return [
      {
        name: 'built-in checks: list the databases',
        passed: false,
        detail:
          'could not connect to database "postgres" (nor template1) to list the databases: ' +
          describeError(error),
        durationMs: Date.now() - started,
      },
    ];
  }

  const results: BuiltinCheckResult[] = [];
  for (const database of databases) {
    if (options.amcheck) {
      results.push(
        await runOne(connect, `amcheck: database ${database}`, database, (client) =>
          checkIndexes(client, database),
        ),
      );
    }
    if (options.heapcheck) {
      results.push(
        await runOne(connect, `verify_heapam: database ${database}`, database, (client) =>
          checkHeap(client, database),
        ),
      );
    }
    if (options.readAll) {
      results.push(
        await runOne(connect, `read all tables: database ${database}`, database, readAll),
      );
    }
  }
  return results;
}
