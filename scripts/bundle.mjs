// Builds the bundles in dist/: the action (dist/index.js) and its post step
// (dist/post/index.js), the CLI (dist/cli/index.js) and the restore_command helper (dist/wal-fetch/index.js), which is
// bundled apart so that the server can start it once per segment at little cost.
// The bundles are built beside dist/ and swapped in at the end, so that a restore running
// from dist/ meanwhile never finds it half-written.
import { execFileSync } from 'node:child_process';
import { chmodSync, renameSync, rmSync, writeFileSync } from 'node:fs';

const staging = 'dist.new';
const builds = [
  ['src/main.ts', ''],
  ['src/cli.ts', '/cli'],
  ['src/wal-fetch.ts', '/wal-fetch'],
  ['src/post.ts', '/post'],
];
rmSync(staging, { recursive: true, force: true });
for (const [entry, out] of builds) {
  execFileSync(
    'npx',
    ['ncc', 'build', entry, '-o', `${staging}${out}`, '--target', 'es2022', '-q'],
    {
      stdio: 'inherit',
    },
  );
}
// ncc emits ES modules; Node must be told so by the nearest package.json.
writeFileSync(`${staging}/package.json`, '{\n  "type": "module"\n}\n');
chmodSync(`${staging}/cli/index.js`, 0o755);
rmSync('dist.old', { recursive: true, force: true });
try {
  renameSync('dist', 'dist.old');
} catch {
  // no dist/ yet
}
renameSync(staging, 'dist');
rmSync('dist.old', { recursive: true, force: true });
