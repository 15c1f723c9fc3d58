// Finds the PostgreSQL server programs for the backup's major version. A data directory
// can only be opened by the major release that wrote it, so a near miss (16 for a 15
// backup) is an error, not a fallback.

import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { log } from './log.js';
import { PitrError } from './errors.js';

const execFileAsync = promisify(execFile);

export interface PostgresInstall {
  bin: string;
  /** Full release as postgres -V prints it, e.g. "15.18". */
  version: string;
  major: number;
}

/** What was found at one place that was looked at, for the error when nothing fits. */
interface Sighting {
  place: string;
  found: string;
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await fs.access(file, fs.constants.X_OK);
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

/** Runs `postgres -V` and returns the release, e.g. "15.18" (or "10.23"). */
export async function postgresVersion(bin: string): Promise<string> {
  const { stdout } = await execFileAsync(path.join(bin, 'postgres'), ['-V']);
  const match = /\(PostgreSQL\)\s+(\d+(?:\.\d+)*)/.exec(stdout);
  if (!match)
    throw new Error(`unexpected output of ${path.join(bin, 'postgres')} -V: ${stdout.trim()}`);
  return match[1];
}

function majorOf(version: string): number {
  return Number(version.split('.')[0]);
}

async function inspect(
  bin: string,
  sightings: Sighting[],
  place: string,
): Promise<PostgresInstall | undefined> {
  if (!(await isExecutable(path.join(bin, 'postgres')))) {
    sightings.push({ place: `${place} (${bin})`, found: 'no postgres program' });
    return undefined;
  }
  try {
    const version = await postgresVersion(bin);
    sightings.push({ place: `${place} (${bin})`, found: `PostgreSQL ${version}` });
    return { bin, version, major: majorOf(version) };
  } catch (error) {
    sightings.push({
      place: `${place} (${bin})`,
      found: `postgres -V failed: ${(error as Error).message}`,
    });
    return undefined;
  }
}

async function pgConfigBindir(): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync('pg_config', ['--bindir']);
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

async function pathCandidates(): Promise<string[]> {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const found: string[] = [];
  for (const dir of dirs) {
    const file = path.join(dir, 'postgres');
    if (await isExecutable(file)) {
      // Debian puts symbolic links in /usr/local/bin or /usr/bin; the real folder holds pg_ctl too.
      found.push(path.dirname(await fs.realpath(file)));
    }
  }
  return found;
}

/**
 * The server programs for `major`: the explicit folder when given (which must match), else
 * the first match among the usual install layouts, pg_config and PATH.
 */
export async function findPostgres(major: number, explicitBin?: string): Promise<PostgresInstall> {
  const sightings: Sighting[] = [];

  if (explicitBin) {
    const bin = path.resolve(explicitBin);
    const install = await inspect(bin, sightings, 'postgres-bin');
    if (install?.major === major) return install;
    throw new PitrError(
      install ? 'VERSION_MISMATCH' : 'POSTGRES_NOT_FOUND',
      `The backup needs PostgreSQL ${major}, and postgres-bin ${bin} has ${sightings[0].found}.`,
      [
        `Set postgres-bin to the bin folder of a PostgreSQL ${major} installation, or leave it empty to search.`,
      ],
    );
  }

  const layouts: [string, string][] = [
    [`/usr/lib/postgresql/${major}/bin`, 'Debian/Ubuntu layout'],
    [`/usr/pgsql-${major}/bin`, 'RHEL layout'],
  ];
  const configured = await pgConfigBindir();
  if (configured) layouts.push([configured, 'pg_config --bindir']);
  for (const dir of await pathCandidates()) layouts.push([dir, 'PATH']);

  const seen = new Set<string>();
  for (const [bin, place] of layouts) {
    if (seen.has(bin)) continue;
    seen.add(bin);
    if (!(await isExecutable(path.join(bin, 'postgres'))) && place.includes('layout')) {
      sightings.push({ place: `${place} (${bin})`, found: 'nothing' });
      continue;
    }
    const install = await inspect(bin, sightings, place);
    if (install?.major === major) {
      log.info(`Found PostgreSQL ${install.version} in ${bin} (${place}).`);
      return install;
    }
  }

  const report = sightings.map((s) => `${s.place}: ${s.found}`).join('; ');
  throw new PitrError(
    'POSTGRES_NOT_FOUND',
    `The backup needs PostgreSQL ${major}, and no PostgreSQL ${major} server was found. Looked at: ${report}.`,
    [
      `Install PostgreSQL ${major} (e.g. apt-get install postgresql-${major}) or set postgres-bin to its bin folder.`,
    ],
  );
}
