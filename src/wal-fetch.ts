// The restore_command helper: PostgreSQL runs `node wal-fetch.js <archive> %f %p` for each
// file it wants from the archive. The server reads the exit status in a particular way:
// 0 is success, 1 to 125 mean "no such file" and end recovery normally (the server then
// promotes), and a status above 125 makes the startup process fail with FATAL. So a file
// that is truly absent exits 1, and every other problem (unreadable file, broken gzip,
// full disk) exits 200: recovery must stop with an error, never quietly end early.
//
// This file is bundled on its own so that starting it, once per segment, stays cheap.

import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { programSuffixes } from './decompress.js';

export const EXIT_NOT_FOUND = 1;
export const EXIT_FAILED = 200;

/**
 * The shell front of the helper, which the server runs as restore_command. Starting Node.js
 * costs a tenth of a second or more per file, several times what replaying a segment takes,
 * so a plain archived file is copied with cp, and one compressed with zstd, lz4, bzip2 or xz
 * goes through that program; gzip'd files, and anything odd (a folder where a file should
 * be), go to the Node.js helper. The exit statuses are the helper's: 1 only when no file of
 * that name exists, 200 for a copy that fails (the programs' own 1 would read as "absent").
 */
export function shellFrontScript(
  node: string,
  helper: string,
  quote: (word: string) => string,
): string {
  return `#!/bin/sh
# Written by pitr: restore_command for one restore. Arguments: archive folder, %f, %p.
archive=$1; name=$2; target=$3
case "$name" in
  ''|.|..|*/*) echo "pitr wal-fetch: refusing file name '$name'" >&2; exit ${EXIT_FAILED} ;;
esac
[ -n "$archive" ] || exit ${EXIT_NOT_FOUND}
if [ -f "$archive/$name" ]; then
  cp "$archive/$name" "$target" && exit 0
  rm -f "$target"
  echo "pitr wal-fetch: could not copy $archive/$name" >&2
  exit ${EXIT_FAILED}
fi
if [ -e "$archive/$name" ] || [ -e "$archive/$name.gz" ]; then
  exec ${quote(node)} ${quote(helper)} "$archive" "$name" "$target"
fi
for pair in ${programSuffixes().join(' ')}; do
  file="$archive/$name.\${pair%%:*}"; program=\${pair#*:}
  [ -e "$file" ] || continue
  "$program" -d -c -q -- "$file" > "$target" && exit 0
  rm -f "$target"
  echo "pitr wal-fetch: $program could not decompress $file" >&2
  exit ${EXIT_FAILED}
done
exit ${EXIT_NOT_FOUND}
`;
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** Copies one archived file to `destination`; returns the exit status for the server. */
export async function fetchWalFile(
  archive: string,
  name: string,
  destination: string,
): Promise<number> {
  // The server only ever asks for plain file names; anything else is not ours to serve.
  if (name.includes('/') || name === '.' || name === '..') {
    process.stderr.write(`pitr wal-fetch: refusing file name "${name}"\n`);
    return EXIT_FAILED;
  }
  if (archive === '') return EXIT_NOT_FOUND;

  const plain = path.join(archive, name);
  const compressed = `${plain}.gz`;
  let source: string;
  let gzip: boolean;
  try {
    if (await exists(plain)) {
      source = plain;
      gzip = false;
    } else if (await exists(compressed)) {
      source = compressed;
      gzip = true;
    } else {
      return EXIT_NOT_FOUND;
    }
  } catch (error) {
    process.stderr.write(`pitr wal-fetch: cannot look for ${plain}: ${(error as Error).message}\n`);
    return EXIT_FAILED;
  }

  try {
    const input = createReadStream(source);
    const output = createWriteStream(destination);
    if (gzip) await pipeline(input, createGunzip(), output);
    else await pipeline(input, output);
    return 0;
  } catch (error) {
    await fs.rm(destination, { force: true }).catch(() => undefined);
    process.stderr.write(
      `pitr wal-fetch: could not restore ${source}: ${(error as Error).message}\n`,
    );
    return EXIT_FAILED;
  }
}

async function main(): Promise<void> {
  const [archive, name, destination] = process.argv.slice(2);
  if (archive === undefined || !name || !destination) {
    process.stderr.write('usage: wal-fetch <archive folder> <file name %f> <destination %p>\n');
    process.exit(EXIT_FAILED);
  }
  process.exit(await fetchWalFile(archive, name, destination));
}

// Run only as the restore_command entry, not when imported by tests.
const invokedDirectly =
  process.argv[1] && /wal-fetch(\/index)?\.(js|ts|cjs|mjs)$/.test(process.argv[1]);
if (invokedDirectly) {
  main().catch((error: unknown) => {
    process.stderr.write(`pitr wal-fetch: ${(error as Error).message}\n`);
    process.exit(EXIT_FAILED);
  });
}
