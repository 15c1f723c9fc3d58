import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';

it('docs/errors.md describes exactly the error codes the code can produce', () => {
  const source = readFileSync('src/errors.ts', 'utf8');
  const union = /export type ErrorCode =([^;]+);/.exec(source)?.[1] ?? '';
  const codes = [...union.matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]).sort();
  const documented = [...readFileSync('docs/errors.md', 'utf8').matchAll(/^## ([A-Z_]+)$/gm)]
    .map((m) => m[1])
    .sort();
  assert.ok(codes.length > 10);
  assert.deepEqual(documented, codes);
});

it('reports anything unexpected as INTERNAL, keeping its message', async () => {
  const { asPitrError } = await import('../src/errors.js');
  const error = asPitrError(new TypeError('cannot read properties of undefined'));
  assert.equal(error.code, 'INTERNAL');
  assert.equal(error.message, 'cannot read properties of undefined');
  assert.match(error.hints[0], /pitr bug/);
});
