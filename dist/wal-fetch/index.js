import { createRequire as __WEBPACK_EXTERNAL_createRequire } from "module";
/******/ // The require scope
/******/ var __nccwpck_require__ = {};
/******/ 
/************************************************************************/
/******/ /* webpack/runtime/define property getters */
/******/ (() => {
/******/ 	// define getter functions for harmony exports
/******/ 	__nccwpck_require__.d = (exports, definition) => {
/******/ 		for(var key in definition) {
/******/ 			if(__nccwpck_require__.o(definition, key) && !__nccwpck_require__.o(exports, key)) {
/******/ 				Object.defineProperty(exports, key, { enumerable: true, get: definition[key] });
/******/ 			}
/******/ 		}
/******/ 	};
/******/ })();
/******/ 
/******/ /* webpack/runtime/hasOwnProperty shorthand */
/******/ (() => {
/******/ 	__nccwpck_require__.o = (obj, prop) => (Object.prototype.hasOwnProperty.call(obj, prop))
/******/ })();
/******/ 
/************************************************************************/
var __webpack_exports__ = {};

// EXPORTS
__nccwpck_require__.d(__webpack_exports__, {
  hj: () => (/* binding */ EXIT_FAILED),
  ek: () => (/* binding */ EXIT_NOT_FOUND),
  B$: () => (/* binding */ fetchWalFile),
  jI: () => (/* binding */ shellFrontScript)
});

;// CONCATENATED MODULE: external "node:fs"
const external_node_fs_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:fs");
;// CONCATENATED MODULE: external "node:path"
const external_node_path_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:path");
;// CONCATENATED MODULE: external "node:stream/promises"
const promises_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:stream/promises");
;// CONCATENATED MODULE: external "node:zlib"
const external_node_zlib_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:zlib");
;// CONCATENATED MODULE: ./src/wal-fetch.ts
// The restore_command helper: PostgreSQL runs `node wal-fetch.js <archive> %f %p` for each
// file it wants from the archive. The server reads the exit status in a particular way:
// 0 is success, 1 to 125 mean "no such file" and end recovery normally (the server then
// promotes), and a status above 125 makes the startup process fail with FATAL. So a file
// that is truly absent exits 1, and every other problem (unreadable file, broken gzip,
// full disk) exits 200: recovery must stop with an error, never quietly end early.
//
// This file is bundled on its own so that starting it, once per segment, stays cheap.




const EXIT_NOT_FOUND = 1;
const EXIT_FAILED = 200;
/**
 * The shell front of the helper, which the server runs as restore_command. Starting Node.js
 * costs a tenth of a second or more per file, several times what replaying a segment takes,
 * so a plain archived file is copied with cp, and one compressed with zstd, lz4, bzip2 or xz
 * goes through that program; gzip'd files, and anything odd (a folder where a file should
 * be), go to the Node.js helper. The exit statuses are the helper's: 1 only when no file of
 * that name exists, 200 for a copy that fails (the programs' own 1 would read as "absent").
 */
function shellFrontScript(node, helper, quote) {
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
for pair in zst:zstd lz4:lz4 bz2:bzip2 xz:xz; do
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
async function exists(file) {
    try {
        await external_node_fs_namespaceObject.promises.access(file);
        return true;
    }
    catch (error) {
        if (error.code === 'ENOENT')
            return false;
        throw error;
    }
}
/** Copies one archived file to `destination`; returns the exit status for the server. */
async function fetchWalFile(archive, name, destination) {
    // The server only ever asks for plain file names; anything else is not ours to serve.
    if (name.includes('/') || name === '.' || name === '..') {
        process.stderr.write(`pitr wal-fetch: refusing file name "${name}"\n`);
        return EXIT_FAILED;
    }
    if (archive === '')
        return EXIT_NOT_FOUND;
    const plain = external_node_path_namespaceObject.join(archive, name);
    const compressed = `${plain}.gz`;
    let source;
    let gzip;
    try {
        if (await exists(plain)) {
            source = plain;
            gzip = false;
        }
        else if (await exists(compressed)) {
            source = compressed;
            gzip = true;
        }
        else {
            return EXIT_NOT_FOUND;
        }
    }
    catch (error) {
        process.stderr.write(`pitr wal-fetch: cannot look for ${plain}: ${error.message}\n`);
        return EXIT_FAILED;
    }
    try {
        const input = (0,external_node_fs_namespaceObject.createReadStream)(source);
        const output = (0,external_node_fs_namespaceObject.createWriteStream)(destination);
        if (gzip)
            await (0,promises_namespaceObject.pipeline)(input, (0,external_node_zlib_namespaceObject.createGunzip)(), output);
        else
            await (0,promises_namespaceObject.pipeline)(input, output);
        return 0;
    }
    catch (error) {
        await external_node_fs_namespaceObject.promises.rm(destination, { force: true }).catch(() => undefined);
        process.stderr.write(`pitr wal-fetch: could not restore ${source}: ${error.message}\n`);
        return EXIT_FAILED;
    }
}
async function main() {
    const [archive, name, destination] = process.argv.slice(2);
    if (archive === undefined || !name || !destination) {
        process.stderr.write('usage: wal-fetch <archive folder> <file name %f> <destination %p>\n');
        process.exit(EXIT_FAILED);
    }
    process.exit(await fetchWalFile(archive, name, destination));
}
// Run only as the restore_command entry, not when imported by tests.
const invokedDirectly = process.argv[1] && /wal-fetch(\/index)?\.(js|ts|cjs|mjs)$/.test(process.argv[1]);
if (invokedDirectly) {
    main().catch((error) => {
        process.stderr.write(`pitr wal-fetch: ${error.message}\n`);
        process.exit(EXIT_FAILED);
    });
}

var __webpack_exports__EXIT_FAILED = __webpack_exports__.hj;
var __webpack_exports__EXIT_NOT_FOUND = __webpack_exports__.ek;
var __webpack_exports__fetchWalFile = __webpack_exports__.B$;
var __webpack_exports__shellFrontScript = __webpack_exports__.jI;
export { __webpack_exports__EXIT_FAILED as EXIT_FAILED, __webpack_exports__EXIT_NOT_FOUND as EXIT_NOT_FOUND, __webpack_exports__fetchWalFile as fetchWalFile, __webpack_exports__shellFrontScript as shellFrontScript };
