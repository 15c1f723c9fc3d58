// SQL check files (verify-sql): splitting as psql splits a script, names and lines for the
// annotations, finding the files by glob, and running the checks against a real server.

import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PitrError } from '../src/errors.js';
import {
  loadCheckFiles,
  parseCheckFile,
  runSqlChecks,
  splitSql,
  type SqlCheck,
} from '../src/sql-checks.js';
import { removeTree, startCluster, type Cluster } from './support/postgres.js';

const sqlOf = (text: string): string[] => splitSql(text).map((statement) => statement.sql);

describe('splitting check files into statements', () => {
  it('keeps a dollar-quoted function body with semicolons in one statement', () => {
    const text = [
      'CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$',
      'BEGIN',
      '  RETURN 1; -- a semicolon in the body',
      'END;',
      '$$;',
      'SELECT $body$ ; $$ ; $body$ = $tag_1$;$tag_1$;',
      'SELECT f() = 1',
    ].join('\n');
    assert.deepEqual(sqlOf(text), [
      text.split('\n').slice(0, 5).join('\n').slice(0, -1),
      'SELECT $body$ ; $$ ; $body$ = $tag_1$;$tag_1$',
      'SELECT f() = 1',
    ]);
  });

  it('does not take $1, a$b$ or $1tag$ for dollar quotes', () => {
    // A tag may not start with a digit, and $ inside an identifier belongs to the identifier.
    assert.deepEqual(sqlOf('SELECT a$b$ FROM t; SELECT $1; SELECT 2'), [
      'SELECT a$b$ FROM t',
      'SELECT $1',
      'SELECT 2',
    ]);
  });

  it('skips nested block comments, semicolons and quotes in them included', () => {
    assert.deepEqual(sqlOf("/* outer /* inner; */ still ' comment; */ SELECT 1; SELECT 2;"), [
      'SELECT 1',
      'SELECT 2',
    ]);
  });

  it("reads E'\\'' strings with backslash escapes and '' in standard strings", () => {
    assert.deepEqual(sqlOf("SELECT E'it\\'s; \\\\'; SELECT 'it''s; \\'; SELECT 3"), [
      "SELECT E'it\\'s; \\\\'",
      "SELECT 'it''s; \\'",
      'SELECT 3',
    ]);
  });

  it('does not end a statement at a semicolon in a quoted identifier', () => {
    assert.deepEqual(sqlOf('SELECT 1 AS "a;""b"; SELECT 2'), ['SELECT 1 AS "a;""b"', 'SELECT 2']);
  });

  it('keeps semicolons inside parentheses and BEGIN ATOMIC bodies, as psql does', () => {
    const atomic =
      'CREATE OR REPLACE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END';
    assert.deepEqual(sqlOf(`SELECT (1;2); ${atomic}; SELECT 3`), [
      'SELECT (1;2)',
      atomic,
      'SELECT 3',
    ]);
  });

  it('runs the last statement without a semicolon at the end of the file', () => {
    assert.deepEqual(sqlOf('SELECT 1;\nSELECT 2\n-- trailing comment\n'), ['SELECT 1', 'SELECT 2']);
  });

  it('ignores comments, blank text and empty statements', () => {
    assert.deepEqual(sqlOf('-- nothing\n;;  /* here */ ;\n'), []);
  });

  it('gives the line of the first token and of the semicolon, counting every kind of newline', () => {
    const text = [
      '-- database: app', // 1
      '', // 2
      '-- check: orders are back', // 3
      'SELECT count(*) = 300', // 4
      '  FROM orders', // 5
      ';', // 6
      '/* a block', // 7
      '   comment */ SELECT true;   SELECT', // 8
      "  'two\r\nlines'", // 9, 10 (a string spanning a CRLF)
      '  = $$x$$', // 11
      '-- end', // 12
      '', // 13
    ].join('\n');
    const statements = splitSql(text);
    assert.deepEqual(
      statements.map(({ line, endLine }) => ({ line, endLine })),
      [
        { line: 4, endLine: 6 },
        { line: 8, endLine: 8 },
        { line: 8, endLine: 11 },
      ],
    );
    assert.equal(statements[0].nameComment, 'orders are back');
    assert.equal(statements[1].sql, 'SELECT true');
    assert.equal(statements[2].sql, "SELECT\n  'two\r\nlines'\n  = $$x$$");
  });
});

describe('check files', () => {
  it('names each check by its -- check: comment, else by its first line', () => {
    const text = [
      '-- check: no order is lost',
      'SELECT count(*) = 300 FROM orders;',
      '',
      'SELECT max(placed_at) < now()',
      '  FROM orders;',
      'SELECT 1 = 1; -- check: a comment after a statement names nothing',
      `SELECT '${'x'.repeat(100)}' <> '';`,
    ].join('\n');
    const checks = parseCheckFile(text, 'checks/a.sql', '/w/checks/a.sql', 'postgres');
    assert.deepEqual(
      checks.map((check) => check.name),
      [
        'no order is lost',
        'SELECT max(placed_at) < now()',
        'SELECT 1 = 1',
        `SELECT '${'x'.repeat(71)}…`,
      ],
    );
    assert.deepEqual(checks[0], {
      file: 'checks/a.sql',
      absolutePath: '/w/checks/a.sql',
      line: 2,
      endLine: 2,
      name: 'no order is lost',
      sql: 'SELECT count(*) = 300 FROM orders',
      database: 'postgres',
    });
  });

  it('runs a file in the database named by its -- database: header, else the default', () => {
    const withHeader = parseCheckFile('-- database: app\nSELECT true;', 'a.sql', '/a.sql', 'main');
    const quoted = parseCheckFile('-- database: "My ""DB"""\nSELECT 1', 'b.sql', '/b.sql', 'x');
    const without = parseCheckFile('SELECT true;', 'c.sql', '/c.sql', 'main');
    assert.equal(withHeader[0].database, 'app');
    assert.equal(quoted[0].database, 'My "DB"');
    assert.equal(without[0].database, 'main');
  });

  it('refuses a -- database: comment after the first statement, naming its line', () => {
    assert.throws(
      () => parseCheckFile('SELECT true;\n-- database: app\nSELECT true;', 'a.sql', '/a.sql', 'p'),
      (error: unknown) =>
        error instanceof PitrError &&
        error.code === 'INPUT_INVALID' &&
        /a\.sql line 2 has a "-- database:" comment after the first statement \(line 1\)/.test(
          error.message,
        ),
    );
  });
});

describe('finding check files', () => {
  let workspace: string;
  before(async () => {
    workspace = await fs.mkdtemp(path.join(os.tmpdir(), 'pitr-test-sql-files-'));
    const files: Record<string, string> = {
      'checks/b.sql': 'SELECT true;',
      'checks/a.sql': '-- database: app\nSELECT 1 = 1;\nSELECT 2 = 2;',
      'checks/notes.txt': 'not SQL',
      'checks/deeper/c.sql': 'SELECT 3 = 3',
      'db/migrations/.hidden/d.sql': 'SELECT 4 = 4',
      'empty.sql': '-- only a comment\n',
    };
    for (const [file, text] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(workspace, file)), { recursive: true });
      await fs.writeFile(path.join(workspace, file), text);
    }
  });
  after(async () => {
    await fs.rm(workspace, { recursive: true, force: true });
  });

  it('expands checks/*.sql to the files in that folder, sorted, with their lines', async () => {
    const checks = await loadCheckFiles('checks/*.sql', workspace, 'postgres');
    assert.deepEqual(
      checks.map((check) => [check.file, check.line, check.database]),
      [
        ['checks/a.sql', 2, 'app'],
        ['checks/a.sql', 3, 'app'],
        ['checks/b.sql', 1, 'postgres'],
      ],
    );
    assert.equal(checks[0].absolutePath, path.join(workspace, 'checks/a.sql'));
  });

  it('expands **/*.sql through every folder except hidden ones, and runs each file once', async () => {
    const checks = await loadCheckFiles(
      'checks/b.sql\n  checks/**/*.sql  \n\n',
      workspace,
      'postgres',
    );
    assert.deepEqual(
      [...new Set(checks.map((check) => check.file))],
      ['checks/b.sql', 'checks/a.sql', 'checks/deeper/c.sql'],
    );
  });

  it('refuses a pattern that matches no file, naming the pattern and the workspace', async () => {
    await assert.rejects(
      loadCheckFiles('checks/*.sql\nverify/*.sql', workspace, 'postgres'),
      (error: unknown) =>
        error instanceof PitrError &&
        error.code === 'INPUT_INVALID' &&
        error.message === `verify-sql: "verify/*.sql" matches no file under ${workspace}`,
    );
  });

  it('refuses a file without any statement, since it would prove nothing', async () => {
    await assert.rejects(
      loadCheckFiles('empty.sql', workspace, 'postgres'),
      /verify-sql: empty\.sql holds no SQL statement/,
    );
  });
});

describe('running checks against a server', () => {
  let cluster: Cluster;
  const connect = async (database: string): Promise<pg.Client> => {
    const client = new pg.Client({
      host: cluster.socketDir,
      port: cluster.port,
      user: 'postgres',
      database,
    });
    await client.connect();
    return client;
  };

  before(async () => {
    cluster = await startCluster(16);
    await cluster.query('CREATE DATABASE app');
    const app = await connect('app');
    try {
      await app.query(
        'CREATE TABLE orders (id int PRIMARY KEY, paid boolean); ' +
          'INSERT INTO orders VALUES (1, true), (2, false), (3, NULL)',
      );
    } finally {
      await app.end();
    }
  });
  after(async () => {
    await cluster?.stop();
    if (cluster) await removeTree(cluster.rootDir);
  });

  const checksOf = (file: string, text: string, database = 'postgres'): SqlCheck[] =>
    parseCheckFile(text, file, `/w/${file}`, database);

  it('passes a check returning one true row, and explains every other result', async () => {
    const checks = checksOf(
      'app.sql',
      [
        '-- database: app',
        'SELECT count(*) = 3 FROM orders;',
        'SELECT count(*) = 4 FROM orders;',
        'SELECT paid FROM orders WHERE id = 99;',
        'SELECT paid, id FROM orders ORDER BY id;',
        'SELECT paid FROM orders WHERE id = 3;',
        "SELECT 't'::text;",
        'SELECT 1 / 0 = 1;',
        'SELECT count(*) > 0\n  FROM missing_table;',
        'BEGIN;',
        'SELECT bool_and(paid IS NOT NULL) IS FALSE FROM orders;',
      ].join('\n'),
    );
    const results = await runSqlChecks(checks, connect);

    assert.deepEqual(
      results.map((result) => [result.line, result.passed, result.detail]),
      [
        [2, true, undefined],
        [3, false, 'expected one row whose first value is true, got 1 row: (f)'],
        [4, false, 'expected one row whose first value is true, got no rows'],
        [
          5,
          false,
          'expected one row whose first value is true, got 3 rows: (t, 1), (f, 2), (NULL, 3)',
        ],
        [6, false, 'expected one row whose first value is true, got 1 row: (NULL)'],
        [
          7,
          false,
          'expected one row whose first value is true, got 1 row whose first column is of type text, not boolean: (t)',
        ],
        [8, false, 'error: division by zero (SQLSTATE 22012)'],
        [9, false, 'error: relation "missing_table" does not exist (SQLSTATE 42P01, line 10)'],
        [
          11,
          false,
          'expected one row whose first value is true, but the statement is a BEGIN command, which returns no rows',
        ],
        [12, true, undefined],
      ],
    );
    assert.deepEqual(results[3].returned, [
      ['t', '1'],
      ['f', '2'],
      [null, '3'],
    ]);
    assert.ok(results.every((result) => result.durationMs >= 0 && result.database === 'app'));
  });

  it('runs each file in its own database and keeps going after a failure', async () => {
    const checks = [
      ...checksOf('main.sql', "SELECT current_database() = 'postgres';\nSELECT 1 / 0 = 1;"),
      ...checksOf('app.sql', "-- database: app\nSELECT current_database() = 'app';"),
      ...checksOf('gone.sql', '-- database: gone\nSELECT true;'),
      ...checksOf('last.sql', "SELECT to_regclass('orders') IS NULL"),
    ];
    const results = await runSqlChecks(checks, connect);

    assert.deepEqual(
      results.map((result) => [result.file, result.database, result.passed]),
      [
        ['main.sql', 'postgres', true],
        ['main.sql', 'postgres', false],
        ['app.sql', 'app', true],
        ['gone.sql', 'gone', false],
        ['last.sql', 'postgres', true],
      ],
    );
    assert.match(results[3].detail ?? '', /could not connect to database "gone": .*does not exist/);
  });

  it('connects again for the next check when a check ends its own connection', async () => {
    const results = await runSqlChecks(
      checksOf('kill.sql', 'SELECT pg_terminate_backend(pg_backend_pid());\nSELECT true;'),
      connect,
    );
    assert.deepEqual(
      results.map((result) => result.passed),
      [false, true],
    );
    assert.match(results[0].detail ?? '', /^error: terminating connection/);
  });

  it('cuts long values and long row lists so the detail stays readable', async () => {
    const [result] = await runSqlChecks(
      checksOf('long.sql', "SELECT repeat('x', 200), g FROM generate_series(1, 9) AS g"),
      connect,
    );
    assert.equal(result.passed, false);
    assert.equal(result.returned?.length, 5);
    assert.ok((result.detail ?? '').length <= 500);
    assert.match(result.detail ?? '', /^expected one row whose first value is true, got 9 rows: /);
    assert.match(result.detail ?? '', new RegExp(`\\(${'x'.repeat(79)}…, 1\\)`));
  });
});
