// SQL check files (verify-sql): every statement in them is a check that passes when it returns
// exactly one row whose first value is true. Files are split into statements the way psql splits
// a script, so that a file which runs under `psql -f` runs here the same way, and each check
// keeps the file and line it came from for annotations.
//
// What psql does that this does not: backslash commands (\set, \c ...) and :variables are not
// interpreted, and strings are read with standard_conforming_strings on (the default since 9.1),
// so a backslash ends nothing inside '...' and only E'...' strings take backslash escapes.

import { promises as fs, type Dirent } from 'node:fs';
import * as path from 'node:path';
import type pg from 'pg';
import { PitrError } from './errors.js';
import { log } from './log.js';

export interface SqlCheck {
  /** The file as given: relative to the workspace when it lies inside it, else absolute. */
  file: string;
  absolutePath: string;
  /** 1-based line of the statement's first token. */
  line: number;
  /** 1-based line of its terminating semicolon, or of its last token when it has none. */
  endLine: number;
  /** From a `-- check: <name>` line above the statement, else the statement's first line. */
  name: string;
  /** The statement without leading comments and without its semicolon. */
  sql: string;
  database: string;
}

export interface SqlCheckResult extends SqlCheck {
  passed: boolean;
  /** Why it failed: what the statement returned, or the error it raised. */
  detail?: string;
  durationMs: number;
  /** The first rows the statement returned, each value as the server's text (null for NULL). */
  returned?: (string | null)[][];
}

export interface SplitStatement {
  sql: string;
  line: number;
  endLine: number;
  /** The name from a `-- check: <name>` comment line above the statement. */
  nameComment?: string;
}

// ---- splitting ------------------------------------------------------------------------------

interface ScannedStatement {
  /** Index of the first token. */
  start: number;
  /** Index just past the last token (comments and the semicolon excluded). */
  end: number;
  /** Index of the terminating semicolon; undefined for a statement that runs to the end. */
  terminator?: number;
  /** Index where the text between the previous statement and this one begins. */
  gapStart: number;
}

interface LineComment {
  /** The comment without its leading dashes. */
  body: string;
  index: number;
  /** Nothing but whitespace before it on its line. */
  ownLine: boolean;
}

interface ScannedText {
  statements: ScannedStatement[];
  /** The `--` comments that lie between statements, not inside one. */
  comments: LineComment[];
}

// The character classes of PostgreSQL's lexer (scan.l): identifiers and dollar-quote tags allow
// any byte from 0x80 up, which in a JavaScript string is any character from U+0080 up.
const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT_CONT = /[A-Za-z_0-9$\u0080-\uffff]*/y;
const DOLLAR_DELIMITER = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z_0-9\u0080-\uffff]*)?\$/y;
const PARAMETER = /\$[0-9]+/y;
const NUMBER = /(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/y;

function isSpace(ch: string): boolean {
  return ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || ch === '\f';
}

function stickyMatch(pattern: RegExp, text: string, index: number): string | undefined {
  pattern.lastIndex = index;
  return pattern.exec(text)?.[0];
}

/** Index just past a '...' literal whose body starts at `index`; '' is a quote in it. */
function skipQuoted(text: string, index: number, backslashEscapes: boolean): number {
  let i = index;
  while (i < text.length) {
    const ch = text[i];
    if (backslashEscapes && ch === '\\') {
      i += 2;
    } else if (ch === "'") {
      if (text[i + 1] !== "'") return i + 1;
      i += 2;
    } else {
      i++;
    }
  }
  return text.length;
}

/** Index just past a "..." identifier whose body starts at `index`; "" is a quote in it. */
function skipDelimited(text: string, index: number): number {
  let i = index;
  while (i < text.length) {
    if (text[i] === '"') {
      if (text[i + 1] !== '"') return i + 1;
      i += 2;
    } else {
      i++;
    }
  }
  return text.length;
}

/** Index just past a block comment starting at `index`; block comments nest in PostgreSQL. */
function skipBlockComment(text: string, index: number): number {
  let depth = 0;
  let i = index;
  while (i < text.length) {
    if (text.startsWith('/*', i)) {
      depth++;
      i += 2;
    } else if (text.startsWith('*/', i)) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else {
      i++;
    }
  }
  return text.length;
}

/** Index of the end of the line holding `index`; the lexer takes \r as a newline too. */
function lineEnd(text: string, index: number): number {
  let i = index;
  while (i < text.length && text[i] !== '\n' && text[i] !== '\r') i++;
  return i;
}

function startsOwnLine(text: string, index: number): boolean {
  for (let i = index - 1; i >= 0; i--) {
    const ch = text[i];
    if (ch === '\n' || ch === '\r') return true;
    if (ch !== ' ' && ch !== '\t' && ch !== '\f') return false;
  }
  return true;
}

/**
 * The end of the token at `index` (not whitespace, not a comment), and the word when the token
 * is an unquoted identifier or keyword.
 */
function readToken(text: string, index: number): { end: number; word?: string } {
  const ch = text[index];
  const next = text[index + 1];
  const afterNext = text[index + 2];

  if (ch === "'") return { end: skipQuoted(text, index + 1, false) };
  if (ch === '"') return { end: skipDelimited(text, index + 1) };
  // E'...', B'...', X'...', N'...', U&'...' and U&"...": the prefix letter is read with the
  // quote only at the start of a token, which is the only place this is called.
  if (next === "'") {
    if (ch === 'e' || ch === 'E') return { end: skipQuoted(text, index + 2, true) };
    if ('bBxXnN'.includes(ch)) return { end: skipQuoted(text, index + 2, false) };
  }
  if ((ch === 'u' || ch === 'U') && next === '&') {
    if (afterNext === "'") return { end: skipQuoted(text, index + 3, false) };
    if (afterNext === '"') return { end: skipDelimited(text, index + 3) };
  }

  if (ch === '$') {
    const delimiter = stickyMatch(DOLLAR_DELIMITER, text, index);
    if (delimiter) {
      // The body ends at the first occurrence of the same delimiter; nothing inside is special.
      const close = text.indexOf(delimiter, index + delimiter.length);
      return { end: close === -1 ? text.length : close + delimiter.length };
    }
    const parameter = stickyMatch(PARAMETER, text, index);
    return { end: index + (parameter?.length ?? 1) };
  }

  if (IDENT_START.test(ch)) {
    const word = ch + (stickyMatch(IDENT_CONT, text, index + 1) ?? '');
    return { end: index + word.length, word };
  }

  const number = stickyMatch(NUMBER, text, index);
  if (number) return { end: index + number.length };

  return { end: index + 1 };
}

/**
 * psql's guess at whether a semicolon is inside the body of CREATE FUNCTION/PROCEDURE ...
 * BEGIN ATOMIC ... END (PostgreSQL 14+): it remembers whether the statement begins with
 * CREATE [OR REPLACE] FUNCTION|PROCEDURE and, if so, counts BEGIN/CASE against END outside
 * parentheses. The same heuristic here splits such files where psql does.
 */
class AtomicBodyTracker {
  private leading: string[] = [];
  private identifierCount = 0;
  depth = 0;

  word(word: string, parenDepth: number): void {
    if (this.identifierCount === 0) this.leading = [];
    const lower = word.toLowerCase();
    if (['create', 'function', 'procedure', 'or', 'replace'].includes(lower)) {
      if (this.identifierCount < 4) this.leading[this.identifierCount] = lower[0];
    }
    this.identifierCount++;

    const [first, second, third, fourth] = this.leading;
    const routine =
      first === 'c' &&
      (second === 'f' ||
        second === 'p' ||
        (second === 'o' && third === 'r' && (fourth === 'f' || fourth === 'p')));
    if (!routine || parenDepth !== 0) return;
    if (lower === 'begin') this.depth++;
    else if (lower === 'case' && this.depth >= 1) this.depth++;
    else if (lower === 'end' && this.depth > 0) this.depth--;
  }

  statementEnded(): void {
    this.identifierCount = 0;
  }
}

/**
 * Splits SQL text into statements at the semicolons psql would send a statement at: outside
 * quotes, comments, parentheses and BEGIN ATOMIC bodies.
 */
function scanSql(text: string): ScannedText {
  const statements: ScannedStatement[] = [];
  const comments: LineComment[] = [];
  const atomic = new AtomicBodyTracker();
  let parenDepth = 0;
  let start = -1;
  let end = -1;
  let gapStart = 0;

  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (isSpace(ch)) {
      i++;
      continue;
    }
    if (text.startsWith('--', i)) {
      const stop = lineEnd(text, i);
      if (start === -1) {
        comments.push({ body: text.slice(i + 2, stop), index: i, ownLine: startsOwnLine(text, i) });
      }
      i = stop;
      continue;
    }
    if (text.startsWith('/*', i)) {
      i = skipBlockComment(text, i);
      continue;
    }

    if (ch === ';' && parenDepth === 0 && atomic.depth === 0) {
      if (start !== -1) statements.push({ start, end, terminator: i, gapStart });
      atomic.statementEnded();
      start = -1;
      i++;
      gapStart = i;
      continue;
    }

    const token = readToken(text, i);
    if (ch === '(') parenDepth++;
    if (ch === ')' && parenDepth > 0) parenDepth--;
    if (token.word) atomic.word(token.word, parenDepth);
    if (start === -1) start = i;
    end = token.end;
    i = token.end;
  }
  // Like psql -f, the last statement is sent at the end of the file even without a semicolon.
  if (start !== -1) statements.push({ start, end, gapStart });
  return { statements, comments };
}

/** Maps string indexes to 1-based line numbers; \n, \r\n and a lone \r each end a line. */
function lineLocator(text: string): (index: number) => number {
  const starts = [0];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\n' || (text[i] === '\r' && text[i + 1] !== '\n')) starts.push(i + 1);
  }
  return (index) => {
    let low = 0;
    let high = starts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (starts[middle] <= index) low = middle;
      else high = middle - 1;
    }
    return low + 1;
  };
}

const CHECK_COMMENT = /^\s*check\s*:\s*(.*?)\s*$/i;
const DATABASE_COMMENT = /^\s*database\s*:\s*(.*?)\s*$/i;

function nameFromComments(
  comments: LineComment[],
  statement: ScannedStatement,
): string | undefined {
  let name: string | undefined;
  for (const comment of comments) {
    if (comment.index < statement.gapStart || comment.index > statement.start) continue;
    const match = comment.ownLine ? CHECK_COMMENT.exec(comment.body) : null;
    if (match && match[1] !== '') name = match[1];
  }
  return name;
}

function withoutByteOrderMark(text: string): string {
  // Editors on Windows may save one; PostgreSQL would read it as part of the first word.
  return text.startsWith('\ufeff') ? ` ${text.slice(1)}` : text;
}

export function splitSql(text: string): SplitStatement[] {
  const source = withoutByteOrderMark(text);
  const { statements, comments } = scanSql(source);
  const lineOf = lineLocator(source);
  return statements.map((statement) => {
    const split: SplitStatement = {
      sql: source.slice(statement.start, statement.end),
      line: lineOf(statement.start),
      endLine: lineOf(statement.terminator ?? statement.end - 1),
    };
    const nameComment = nameFromComments(comments, statement);
    if (nameComment !== undefined) split.nameComment = nameComment;
    return split;
  });
}

// ---- check files ----------------------------------------------------------------------------

const NAME_LENGTH = 80;

function nameFromFirstLine(sql: string): string {
  const firstLine = sql.split(/\r\n|\r|\n/)[0].trimEnd();
  return firstLine.length > NAME_LENGTH ? `${firstLine.slice(0, NAME_LENGTH - 1)}…` : firstLine;
}

/** A database name as written after `-- database:`, with "double quotes" allowed. */
function unquoteDatabase(value: string): string {
  const quoted = /^"((?:[^"]|"")*)"$/.exec(value);
  return quoted ? quoted[1].replaceAll('""', '"') : value;
}

/** The `-- database:` header of a file, checked to come before the first statement. */
function databaseOf(
  text: string,
  scanned: ScannedText,
  file: string,
  defaultDatabase: string,
): string {
  const lineOf = lineLocator(text);
  const firstStatement = scanned.statements[0]?.start ?? text.length;
  const headers = scanned.comments
    .map((comment) => ({ comment, match: DATABASE_COMMENT.exec(comment.body) }))
    .filter((entry) => entry.match !== null);

  const late = headers.find((entry) => entry.comment.index > firstStatement);
  if (late) {
    throw new PitrError(
      'INPUT_INVALID',
      `verify-sql: ${file} line ${lineOf(late.comment.index)} has a "-- database:" comment after the first statement (line ${lineOf(firstStatement)}); it names the database for the whole file, so it must come before any statement.`,
      [
        'Move the "-- database:" line to the top of the file.',
        'To check another database too, put those checks in a file of their own with its own "-- database:" line.',
      ],
    );
  }
  if (headers.length > 1) {
    throw new PitrError(
      'INPUT_INVALID',
      `verify-sql: ${file} has ${headers.length} "-- database:" lines (lines ${headers.map((h) => lineOf(h.comment.index)).join(', ')}); a file's checks run in one database.`,
      ['Keep one "-- database:" line, and put checks for another database in a file of their own.'],
    );
  }
  if (headers.length === 0) return defaultDatabase;

  const [{ comment, match }] = headers;
  const database = unquoteDatabase(match![1]);
  if (database === '') {
    throw new PitrError(
      'INPUT_INVALID',
      `verify-sql: ${file} line ${lineOf(comment.index)} has a "-- database:" comment without a database name.`,
      ['Write the name after the colon, e.g. "-- database: app", or remove the line.'],
    );
  }
  return database;
}

/** The checks in one file; throws INPUT_INVALID when its `-- database:` header is misplaced. */
export function parseCheckFile(
  text: string,
  file: string,
  absolutePath: string,
  defaultDatabase: string,
): SqlCheck[] {
  const source = withoutByteOrderMark(text);
  const database = databaseOf(source, scanSql(source), file, defaultDatabase);
  return splitSql(source).map((statement) => ({
    file,
    absolutePath,
    line: statement.line,
    endLine: statement.endLine,
    name: statement.nameComment ?? nameFromFirstLine(statement.sql),
    sql: statement.sql,
    database,
  }));
}

// ---- finding the files ----------------------------------------------------------------------

const GLOB_CHARACTERS = /[*?]/;

/** A regular expression for one path segment of a glob: * is any run of characters, ? one. */
function segmentPattern(segment: string): RegExp {
  const source = [...segment]
    .map((ch) => {
      if (ch === '*') return '[^/]*';
      if (ch === '?') return '[^/]';
      return ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    })
    .join('');
  return new RegExp(`^${source}$`);
}

async function entriesOf(dir: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(dir, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw error;
  }
}

/** Whether an entry is a directory, following a symbolic link to see what it points at. */
async function isDirectory(dir: string, entry: Dirent): Promise<boolean> {
  if (entry.isDirectory()) return true;
  if (!entry.isSymbolicLink()) return false;
  return (await fs.stat(path.join(dir, entry.name)).catch(() => undefined))?.isDirectory() ?? false;
}

async function isFile(dir: string, entry: Dirent): Promise<boolean> {
  if (entry.isFile()) return true;
  if (!entry.isSymbolicLink()) return false;
  return (await fs.stat(path.join(dir, entry.name)).catch(() => undefined))?.isFile() ?? false;
}

/**
 * The files under `dir` matching the glob segments. As in shells, * and ** pass over names
 * that begin with a dot unless the segment itself begins with one, and ** does not follow
 * symbolic links to directories, which could loop.
 */
async function matchSegments(dir: string, segments: string[]): Promise<string[]> {
  const [segment, ...rest] = segments;
  const entries = await entriesOf(dir);

  if (segment === '**') {
    const found = await matchSegments(dir, rest);
    for (const entry of entries) {
      if (entry.name.startsWith('.') || !entry.isDirectory()) continue;
      found.push(...(await matchSegments(path.join(dir, entry.name), segments)));
    }
    return found;
  }

  const pattern = segmentPattern(segment);
  const found: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.') && !segment.startsWith('.')) continue;
    if (!pattern.test(entry.name)) continue;
    if (rest.length === 0) {
      if (await isFile(dir, entry)) found.push(path.join(dir, entry.name));
    } else if (await isDirectory(dir, entry)) {
      found.push(...(await matchSegments(path.join(dir, entry.name), rest)));
    }
  }
  return found;
}

/** The absolute paths of the files one pattern names, sorted; [] when it names none. */
async function expandPattern(pattern: string, workspace: string): Promise<string[]> {
  const segments = pattern.split('/');
  const firstGlob = segments.findIndex((segment) => GLOB_CHARACTERS.test(segment));

  if (firstGlob === -1) {
    const absolute = path.resolve(workspace, pattern);
    const stat = await fs.stat(absolute).catch(() => undefined);
    if (stat?.isDirectory()) {
      throw new PitrError(
        'INPUT_INVALID',
        `verify-sql: "${pattern}" is a folder, not a file of SQL checks.`,
        [`To run every file in it, write ${path.posix.join(pattern, '*.sql')}.`],
      );
    }
    return stat?.isFile() ? [absolute] : [];
  }

  // The segments before the first glob are a plain path, resolved against the workspace.
  const prefix = segments.slice(0, firstGlob).join('/');
  const base = path.resolve(workspace, prefix || (pattern.startsWith('/') ? '/' : '.'));
  const rest = segments.slice(firstGlob).filter((segment) => segment !== '');
  // A trailing ** means every file below, as it does in .gitignore and most globbers.
  if (rest[rest.length - 1] === '**') rest.push('*');
  const found = await matchSegments(base, rest);
  return [...new Set(found)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** How a file is shown in messages and annotations: relative to the workspace when inside it. */
function displayPath(absolute: string, workspace: string): string {
  const relative = path.relative(workspace, absolute);
  if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) return absolute;
  return relative.split(path.sep).join('/');
}

async function readCheckFile(absolute: string, file: string): Promise<string> {
  try {
    return await fs.readFile(absolute, 'utf8');
  } catch (error) {
    throw new PitrError(
      'INPUT_INVALID',
      `verify-sql: cannot read ${file}: ${(error as Error).message}`,
      ['Check that the file is readable by the account pitr runs as.'],
      { cause: error },
    );
  }
}

/**
 * Reads the check files named by verify-sql: one path or glob (*, ?, **) a line, relative to
 * the workspace. Each pattern's files come in sorted order, patterns in the order given, and a
 * file named twice runs once.
 */
export async function loadCheckFiles(
  patterns: string,
  workspace: string,
  defaultDatabase: string,
): Promise<SqlCheck[]> {
  const files: string[] = [];
  for (const pattern of patterns.split(/\r?\n/).map((line) => line.trim())) {
    if (pattern === '') continue;
    const matched = await expandPattern(pattern, workspace);
    if (matched.length === 0) {
      throw new PitrError(
        'INPUT_INVALID',
        `verify-sql: "${pattern}" matches no file under ${workspace}`,
        [
          'Paths and globs in verify-sql are relative to the workspace; check the spelling and the folder.',
          'When the files come from the repository, make sure the checkout step runs before pitr.',
        ],
      );
    }
    for (const file of matched) if (!files.includes(file)) files.push(file);
  }

  const checks: SqlCheck[] = [];
  for (const absolute of files) {
    const file = displayPath(absolute, workspace);
    const fileChecks = parseCheckFile(
      await readCheckFile(absolute, file),
      file,
      absolute,
      defaultDatabase,
    );
    if (fileChecks.length === 0) {
      // An empty check file passing would prove nothing, which is the opposite of its purpose.
      throw new PitrError('INPUT_INVALID', `verify-sql: ${file} holds no SQL statement.`, [
        'Add the checks to it (each a statement returning one row whose first value is true), or leave it out of verify-sql.',
      ]);
    }
    checks.push(...fileChecks);
  }
  return checks;
}

// ---- running the checks ---------------------------------------------------------------------

const SHOWN_ROWS = 5;
const VALUE_LENGTH = 80;
const DETAIL_LENGTH = 500;
const BOOLEAN_OID = 16;

// Names for the types a check most often returns by mistake, for the "not a boolean" message.
const TYPE_NAMES: Record<number, string> = {
  18: '"char"',
  19: 'name',
  20: 'bigint',
  21: 'smallint',
  23: 'integer',
  25: 'text',
  26: 'oid',
  114: 'json',
  700: 'real',
  701: 'double precision',
  705: 'unknown',
  1042: 'character',
  1043: 'character varying',
  1082: 'date',
  1114: 'timestamp',
  1184: 'timestamp with time zone',
  1700: 'numeric',
  2249: 'record',
  3802: 'jsonb',
};

// Every value is kept as the text the server sent, which is what psql shows: t and f for
// booleans, timestamps in the server's DateStyle, arrays as {1,2}.
const TEXT_AS_SENT = {
  getTypeParser: () => (value: string) => value,
} as unknown as pg.CustomTypesConfig;

function cut(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

/** One value as psql prints it, on one line (↵ marks a newline, as psql's unicode style does). */
function showValue(value: string | null): string {
  if (value === null) return 'NULL';
  return cut(value.replace(/\r\n|\r|\n/g, '↵'), VALUE_LENGTH);
}

function showRows(rows: (string | null)[][]): string {
  const shown = rows.slice(0, SHOWN_ROWS).map((row) => `(${row.map(showValue).join(', ')})`);
  const more = rows.length > SHOWN_ROWS ? `, and ${rows.length - SHOWN_ROWS} more` : '';
  return `${shown.join(', ')}${more}`;
}

function countRows(count: number): string {
  return count === 1 ? '1 row' : `${count} rows`;
}

/** Why a result is not one row whose first value is true, or undefined when it is. */
function judgeResult(result: pg.QueryArrayResult<(string | null)[]>): string | undefined {
  const expected = 'expected one row whose first value is true';
  const { rows, fields } = result;

  if (fields.length === 0 && result.command !== 'SELECT') {
    return `${expected}, but the statement is a ${result.command || 'utility'} command, which returns no rows`;
  }
  if (rows.length === 0) return `${expected}, got no rows`;
  if (fields.length === 0) return `${expected}, got ${countRows(rows.length)} without columns`;
  if (rows.length === 1 && fields[0].dataTypeID === BOOLEAN_OID && rows[0][0] === 't') {
    return undefined;
  }
  if (rows.length === 1 && fields[0].dataTypeID !== BOOLEAN_OID) {
    const type = TYPE_NAMES[fields[0].dataTypeID] ?? `type OID ${fields[0].dataTypeID}`;
    return cut(
      `${expected}, got 1 row whose first column is of type ${type}, not boolean: ${showRows(rows)}`,
      DETAIL_LENGTH,
    );
  }
  return cut(`${expected}, got ${countRows(rows.length)}: ${showRows(rows)}`, DETAIL_LENGTH);
}

/** An error as the server reported it, with its SQLSTATE and the file line it points at. */
function describeQueryError(error: unknown, check: SqlCheck): string {
  const { message, code, position } = error as Error & { code?: string; position?: string };
  const where: string[] = [];
  if (code) where.push(`SQLSTATE ${code}`);
  if (position && Number(position) > 0) {
    // The position counts characters from 1 within the statement sent.
    const before = check.sql.slice(0, Number(position) - 1);
    where.push(`line ${check.line + (before.match(/\r\n|\r|\n/g)?.length ?? 0)}`);
  }
  const suffix = where.length > 0 ? ` (${where.join(', ')})` : '';
  return cut(`error: ${message}${suffix}`, DETAIL_LENGTH);
}

interface Session {
  client?: pg.Client;
  /** Why the connection could not be made; every check for the database fails with it. */
  failure?: string;
  broken: boolean;
}

/**
 * Runs every check, in order, each statement on its own (an implicit transaction of its own),
 * over one connection per database. A failing check never stops the others.
 */
export async function runSqlChecks(
  checks: SqlCheck[],
  connect: (database: string) => Promise<pg.Client>,
): Promise<SqlCheckResult[]> {
  const sessions = new Map<string, Session>();

  const sessionFor = async (database: string): Promise<Session> => {
    const known = sessions.get(database);
    // A connection the server closed (a check that ended its own backend) is made again.
    if (known && !known.broken) return known;
    const session: Session = { broken: false };
    sessions.set(database, session);
    try {
      const client = await connect(database);
      // Without a listener, an error on an idle connection would end the whole process.
      client.on('error', () => {
        session.broken = true;
      });
      client.on('end', () => {
        session.broken = true;
      });
      session.client = client;
    } catch (error) {
      session.failure = `could not connect to database "${database}": ${(error as Error).message}`;
    }
    return session;
  };

  const results: SqlCheckResult[] = [];
  try {
    for (const check of checks) {
      const result = await runOne(check, await sessionFor(check.database));
      log.debug(
        `${check.file}:${check.line} ${check.name}: ${result.passed ? 'passed' : `failed, ${result.detail}`} (${result.durationMs} ms)`,
      );
      results.push(result);
    }
  } finally {
    for (const session of sessions.values()) {
      await session.client?.end().catch(() => undefined);
    }
  }
  return results;
}

async function runOne(check: SqlCheck, session: Session): Promise<SqlCheckResult> {
  const client = session.client;
  if (!client) return { ...check, passed: false, detail: session.failure, durationMs: 0 };

  const started = Date.now();
  const sent = await client
    .query<(string | null)[]>({ text: check.sql, rowMode: 'array', types: TEXT_AS_SENT })
    .then(
      (value) => ({ value, error: undefined }),
      (error: unknown) => ({ value: undefined, error }),
    );
  const durationMs = Date.now() - started;

  const result: SqlCheckResult = { ...check, passed: false, durationMs };
  if (sent.value) {
    // Several results come back only if the server saw several statements in the text, which
    // the splitter should have prevented; the last is judged, as psql -c shows the last.
    const all = sent.value as unknown as
      pg.QueryArrayResult<(string | null)[]> | pg.QueryArrayResult<(string | null)[]>[];
    const last = Array.isArray(all) ? all[all.length - 1] : all;
    const failure = judgeResult(last);
    result.passed = failure === undefined;
    if (failure !== undefined) result.detail = failure;
    if (last.fields.length > 0) result.returned = last.rows.slice(0, SHOWN_ROWS);
  } else {
    result.detail = describeQueryError(sent.error, check);
    // An ERROR ends only the statement. Anything else (FATAL, as when a check ends its own
    // backend, or a lost socket) ends the session; the 'error' event that says so comes later,
    // so the session is given up here and the next check for the database connects again.
    if ((sent.error as { severity?: string }).severity !== 'ERROR') {
      session.broken = true;
      await client.end().catch(() => undefined);
    }
  }

  // A check file may hold BEGIN; a transaction left open (or aborted by an error) would carry
  // into the next checks, so it is rolled back to give each check a fresh start.
  if (!session.broken && client.getTransactionStatus() !== 'I') {
    await client.query('ROLLBACK').catch(() => undefined);
  }
  return result;
}
