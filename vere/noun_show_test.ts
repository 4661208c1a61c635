import assert from "node:assert/strict";
import { cell, cord, list, type Noun, NounError, tuple } from "./noun.ts";
import { nounAt, nounStats, parseAxisPath, renderAtom, renderNoun } from "./noun_show.ts";

Deno.test("nounStats counts distinct cells once and measures depth", () => {
  const shared = cell(1n, 2n);
  assert.deepEqual(nounStats(cell(shared, shared)), {
    cells: 2,
    atoms: 2,
    depth: 2,
    largestAtomBytes: 1,
  });
  assert.deepEqual(nounStats(0x1_0000n), { cells: 0, atoms: 1, depth: 0, largestAtomBytes: 3 });
});

Deno.test("axis paths walk head (2), tail (3) and deeper axes in turn", () => {
  const noun = tuple(10n, 20n, 30n); // [10 [20 30]]
  assert.deepEqual(parseAxisPath("/2/3"), [2n, 3n]);
  assert.equal(nounAt(noun, parseAxisPath("/1")), noun);
  assert.equal(nounAt(noun, parseAxisPath("/2")), 10n);
  assert.equal(nounAt(noun, parseAxisPath("/6")), 20n);
  assert.equal(nounAt(noun, parseAxisPath("/3/3")), 30n);
  assert.throws(() => nounAt(noun, parseAxisPath("/2/2")), /no axis 2 under \/2/);
  assert.throws(() => parseAxisPath("2/3"), NounError);
  assert.throws(() => parseAxisPath("/0"), /Axis 0/);
});

Deno.test("atoms render as %term, 'text', @ud or @ux", () => {
  assert.equal(renderAtom(cord("pill")), "%pill");
  assert.equal(renderAtom(cord("hello world")), "'hello world'");
  assert.equal(renderAtom(cord("a\nb")), "'a\\0ab'");
  assert.equal(renderAtom(1234567n), "1.234.567");
  assert.equal(renderAtom(0xffff_ffff_ffffn), "0xffffffffffff");
  assert.equal(renderAtom(0n), "0");
});

Deno.test("renderNoun prints tuples flat, stops at maxChars, and survives deep nouns", () => {
  assert.equal(renderNoun(tuple(cord("d"), cord("term"), 1n, 0n)).text, "[%d %term 1 ~]");
  assert.equal(renderNoun(cell(cell(1n, 2n), 3n)).text, "[[1 2] 3]");
  let deep: Noun = 0n;
  for (let i = 0; i < 200_000; i++) deep = cell(deep, 1n);
  const shown = renderNoun(deep, 100);
  assert.ok(shown.truncated);
  assert.ok(shown.text.length <= 104);
  const long = renderNoun(list(Array.from({ length: 10_000 }, (_, i) => BigInt(i))), 50);
  assert.ok(long.truncated && long.text.startsWith("[0 1 2 3"));
});
