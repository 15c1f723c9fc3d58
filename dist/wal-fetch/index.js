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
;// CONCATENATED MODULE: external "node:child_process"
const external_node_child_process_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:child_process");
;// CONCATENATED MODULE: external "node:stream"
const external_node_stream_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:stream");
;// CONCATENATED MODULE: ./src/errors.ts
// Every failure pitr reports is a PitrError: a stable code that scripts can match on, one
// sentence saying what happened with the evidence, and hints saying what to try next.
class errors_PitrError extends Error {
    code;
    hints;
    /** The last lines of the server log, when the server was involved. */
    logTail;
    /** The whole server log, when the server was started. */
    logFile;
    /** Every check's result, when verification ran (VERIFY_FAILED). */
    checks;
    constructor(code, message, hints = [], options) {
        super(message, options);
        this.name = 'PitrError';
        this.code = code;
        this.hints = hints;
    }
}
/** Turns anything thrown into a PitrError, keeping unexpected errors visible as INTERNAL. */
function asPitrError(error) {
    if (error instanceof errors_PitrError)
        return error;
    const message = error instanceof Error ? error.message : String(error);
    return new errors_PitrError('INTERNAL', message, [
        'This is a pitr bug or an unexpected system condition; the message above is all it knows.',
    ]);
}
/** The full text of an error for a log or a CI annotation: message, hints, then the log tail. */
function describeError(error, withLog = true) {
    const lines = [`${error.code}: ${error.message}`];
    for (const hint of error.hints)
        lines.push(`HINT: ${hint}`);
    if (withLog && error.logTail && error.logTail.length > 0) {
        lines.push('Last lines of the server log:');
        for (const line of error.logTail)
            lines.push(`  ${line}`);
    }
    return lines.join('\n');
}

;// CONCATENATED MODULE: ./src/decompress.ts
// The decompressed bytes of a backup file. gzip is read with Node's zlib. The others
// (pg_basebackup 15+ writes lz4 and zstd, with --compress; bzip2 and xz come from tar -j and
// -J) are read through the program of the same name, which every distribution packages:
// Node 20 has none of them built in. The program's output streams like a file read, and its
// failure (a damaged frame, a stream cut short) ends that stream with the program's own words.





/** Large reads: with the 64 KB default, per-chunk overhead dominates. */
const IO_CHUNK = (/* unused pure expression or super */ null && (1024 * 1024));
/** How much of a program's complaint goes into a message. */
const STDERR_KEPT = 2000;
/** The Debian and Ubuntu package holding each program. */
const PACKAGE = {
    lz4: 'lz4',
    zstd: 'zstd',
    bzip2: 'bzip2',
    xz: 'xz-utils',
};
/** The command that checks a compressed file on its own, for hints. */
function testCommand(file, compression) {
    if (compression === 'none')
        return `tar tf ${file} > /dev/null`;
    return `${compression} -t ${file}`;
}
/**
 * The decompressed content of `file` as a stream. Errors while reading or decompressing end
 * the stream with an error; a missing program is a PitrError saying what to install.
 */
function decompressedStream(file, compression, readChunk = IO_CHUNK) {
    if (compression !== 'none' && compression !== 'gzip')
        return throughProgram(file, compression);
    const input = createReadStream(file, { highWaterMark: readChunk });
    if (compression === 'none')
        return input;
    const gunzip = createGunzip();
    input.on('error', (error) => gunzip.destroy(error));
    return input.pipe(gunzip);
}
function throughProgram(file, program) {
    // -d decompress, -c to stdout, -q no progress; the file is only read.
    const child = spawn(program, ['-d', '-c', '-q', '--', file], {
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text) => {
        if (stderr.length < STDERR_KEPT)
            stderr += text;
    });
    const exited = new Promise((resolve) => {
        child.on('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    });
    const output = new ProgramOutput(async () => {
        const status = await exited;
        if (status === 0)
            return undefined;
        const said = stderr.trim().split('\n').slice(-3).join(' ');
        return new Error(`${program} -d said: ${said || `exit status ${status}`}`);
    });
    child.on('error', (error) => {
        output.destroy(error.code === 'ENOENT'
            ? new PitrError('INPUT_INVALID', `${file} is compressed with ${program}, and reading it takes the ${program} program, which is not on PATH.`, [
                `Install it (apt-get install ${PACKAGE[program]}), or decompress the files first (${program} -d -k ${file} keeps the original) and give pitr the decompressed ones.`,
            ])
            : error);
    });
    child.stdout.on('error', (error) => output.destroy(error));
    child.stdout.pipe(output);
    // When the reader gives up early (an unsafe entry, a full disk), the program must stop too.
    output.on('close', () => {
        if (child.exitCode === null && child.signalCode === null)
            child.kill();
    });
    return output;
}
/** Passes a program's output on, and at its end fails if the program did. */
class ProgramOutput extends external_node_stream_namespaceObject.Transform {
    outcome;
    constructor(outcome) {
        super();
        this.outcome = outcome;
    }
    _transform(chunk, _encoding, done) {
        done(null, chunk);
    }
    _flush(done) {
        this.outcome().then((error) => done(error), done);
    }
}
// archive_command compresses WAL, .history and .backup files alike, and names the result by
// the tool's suffix; archives are read by name, since opening every file would cost a read.
const NAME_SUFFIXES = [
    ['.gz', 'gzip'],
    ['.zst', 'zstd'],
    ['.lz4', 'lz4'],
    ['.bz2', 'bzip2'],
    ['.xz', 'xz'],
];
/**
 * The suffixes whose files are decompressed by a program of the compression's name, as
 * "suffix:program" words for the restore_command shell front (which reads gzip through Node).
 */
function programSuffixes() {
    return NAME_SUFFIXES.filter(([, compression]) => compression !== 'gzip').map(([suffix, program]) => `${suffix.slice(1)}:${program}`);
}
/** An archived file's name without its compression suffix, and the compression it names. */
function splitCompressedName(name) {
    for (const [suffix, compression] of NAME_SUFFIXES) {
        if (name.endsWith(suffix))
            return { bare: name.slice(0, -suffix.length), compression };
    }
    return { bare: name, compression: 'none' };
}
/** The names an archived file may have: as it is, and with each compression suffix. */
function archivedNames(name) {
    return [name, ...NAME_SUFFIXES.map(([suffix]) => `${name}${suffix}`)];
}
/** The decompressed content of an archived file, by the suffix of its name. */
function archivedFileStream(file, readChunk = IO_CHUNK) {
    return decompressedStream(file, splitCompressedName(file).compression, readChunk);
}

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
