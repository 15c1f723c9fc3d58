import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';

const doc = readFileSync('docs/errors.md', 'utf8');

/** The text of each "## CODE" section of docs/errors.md, by code. */
function sections(): Map<string, string> {
  const found = new Map<string, string>();
  const parts = doc.split(/^## /m).slice(1);
  for (const part of parts) {
    const newline = part.indexOf('\n');
    found.set(part.slice(0, newline).trim(), part.slice(newline + 1));
  }
  return found;
}

it('docs/errors.md describes exactly the error codes the code can produce', () => {
  const source = readFileSync('src/errors.ts', 'utf8');
  const union = /export type ErrorCode =([^;]+);/.exec(source)?.[1] ?? '';
  const codes = [...union.matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]).sort();
  assert.ok(codes.length > 10);
  assert.deepEqual([...sections().keys()].sort(), codes);
});

it('docs/errors.md gives every code a meaning, an example, likely causes and what to do', () => {
  for (const [code, text] of sections()) {
    const meaning = text.trim().split('\n\n')[0];
    assert.ok(meaning.length > 40 && !meaning.startsWith('Example'), `${code}: no meaning first`);
    assert.match(text, /^Example[^:\n]*: `[^`]{20,}`/m, `${code}: no example message`);
    assert.match(text, /^Likely causes: \S/m, `${code}: no likely causes`);
    assert.match(text, /^What to do: \S/m, `${code}: nothing to do`);
  }
});

it('reports anything unexpected as INTERNAL, keeping its message', async () => {
  const { asPitrError } = await import('../src/errors.js');
  const error = asPitrError(new TypeError('cannot read properties of undefined'));
  assert.equal(error.code, 'INTERNAL');
  assert.equal(error.message, 'cannot read properties of undefined');
  assert.match(error.hints[0], /pitr bug/);
});
