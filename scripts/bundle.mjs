// Builds the three bundles in dist/: the action (dist/index.js), the CLI
// (dist/cli/index.js) and the restore_command helper (dist/wal-fetch/index.js), which is
// bundled apart so that the server can start it once per segment at little cost.
import { execFileSync } from 'node:child_process';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';

const builds = [
  ['src/main.ts', 'dist'],
  ['src/cli.ts', 'dist/cli'],
  ['src/wal-fetch.ts', 'dist/wal-fetch'],
];
rmSync('dist', { recursive: true, force: true });
for (const [entry, out] of builds) {
  execFileSync('npx', ['ncc', 'build', entry, '-o', out, '--target', 'es2022', '-q'], {
    stdio: 'inherit',
  });
}
// ncc emits ES modules; Node must be told so by the nearest package.json.
writeFileSync('dist/package.json', '{\n  "type": "module"\n}\n');
chmodSync('dist/cli/index.js', 0o755);
