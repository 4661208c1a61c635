import assert from "node:assert/strict";
import fc from "fast-check";
import * as nockjs from "@urbit/nockjs";
import {
  atomToBytes,
  bitLength,
  bytesToAtom,
  Cell,
  cell,
  cord,
  cordText,
  cue,
  cueAtomTuple,
  cueAtomTupleSliced,
  isCell,
  jam,
  list,
  listItems,
  mug,
  type Noun,
  nounEqual,
  tuple,
} from "./noun.ts";
import { BRASS_PILL_PATH, havePill, hex, unhex } from "../tests/fixtures.ts";

// Vectors from ../shared/URBIT.md (vere pkg/ur/serial.c, pkg/noun/retrieve.c).
const JAM_VECTORS: [string, Noun, string][] = [
  ["0", 0n, "02"],
  ["1", 1n, "0c"],
  ["2", 2n, "48"],
  ["[0 0]", cell(0n, 0n), "29"],
  ["[1 1]", cell(1n, 1n), "3103"],
  ["[1 2]", cell(1n, 2n), "3112"],
  ["[2 3]", cell(2n, 3n), "21d1"],
  ["[1 2 3]", tuple(1n, 2n, 3n), "714834"],
  ["[[1 2] 3]", cell(cell(1n, 2n), 3n), "c54834"],
];

Deno.test("jam and cue match vere's vectors", () => {
  for (const [name, noun, bytes] of JAM_VECTORS) {
    assert.deepEqual(hex(jam(noun)), bytes, `jam ${name}`);
    assert.ok(nounEqual(cue(unhex(bytes)), noun), `cue ${name}`);
  }
});

Deno.test("mug matches vere's vectors", () => {
  assert.deepEqual(mug(0n), 0x79ff04e8);
  assert.deepEqual(mug(1n), 0x715c2a60);
  assert.deepEqual(mug(cell(0n, 0n)), 0x192f5588);
  assert.deepEqual(mug(cell(1n, 1n)), 0x6b32ec46);
});

Deno.test("a repeated cell becomes a back-reference to its first position", () => {
  // [[1 2] [1 2]]: the second [1 2] is written as `11` + mat(1) (its tag began at bit 2).
  const shared = cell(1n, 2n);
  const bytes = jam(cell(shared, shared));
  const copy = jam(cell(cell(1n, 2n), cell(1n, 2n))); // equal but distinct objects
  assert.deepEqual(hex(bytes), hex(copy));
  const back = cue(bytes);
  assert.ok(isCell(back) && back.head === back.tail, "cue shares the back-referenced cell");
});

Deno.test("atoms round-trip through bytes at every size boundary", () => {
  for (const bits of [0, 1, 7, 8, 31, 32, 33, 52, 53, 54, 63, 64, 65, 255, 256, 1000]) {
    for (const atom of bits === 0 ? [0n] : [1n << BigInt(bits - 1), (1n << BigInt(bits)) - 1n]) {
      assert.deepEqual(bitLength(atom), bits, `bitLength of ${atom}`);
      assert.deepEqual(bytesToAtom(atomToBytes(atom)), atom);
      assert.deepEqual(cue(jam(atom)), atom);
    }
  }
});

Deno.test("cords are little-endian UTF-8", () => {
  assert.deepEqual(cord("fast"), 0x74736166n);
  assert.deepEqual(cordText(0x74736166n), "fast");
  assert.deepEqual(cordText(0xffn), undefined);
  assert.deepEqual(listItems(list([1n, 2n, 3n])), [1n, 2n, 3n]);
});

// ---------------------------------------------------------------- real data

Deno.test({
  name: "brass.pill: jam(cue(pill)) is the file byte for byte, and its mug is 0x31f52f8a",
  ignore: !havePill(),
  fn() {
    const pill = Deno.readFileSync(BRASS_PILL_PATH);
    const noun = cue(pill);
    assert.deepEqual(mug(noun), 0x31f52f8a);
    const again = jam(noun);
    assert.deepEqual(again.length, pill.length);
    assert.ok(again.every((b, i) => b === pill[i]), "jam(cue(pill)) differs from the pill");
  },
});

// ---------------------------------------------------------------- deep nouns

Deno.test("a 1,000,000-item list (1,000,000 levels deep) jams, cues and mugs", () => {
  const items = Array.from({ length: 1_000_000 }, (_, i) => BigInt(i % 1000));
  const deep = list(items);
  const bytes = jam(deep);
  const back = cue(bytes);
  assert.deepEqual(mug(back), mug(deep));
  assert.ok(nounEqual(back, deep));
  assert.deepEqual(listItems(back).length, 1_000_000);
});

Deno.test("a 1,000,000-level left-nested noun round-trips", () => {
  let deep: Noun = 0n;
  for (let i = 0; i < 1_000_000; i++) deep = cell(deep, BigInt(i));
  const back = cue(jam(deep));
  assert.deepEqual(mug(back), mug(deep));
});

// ---------------------------------------------------------------- properties

/**
 * Random nouns with sharing: a pool grows by atoms of many sizes, by cells of
 * two earlier pool members (shared subtrees), and by structural copies of
 * earlier members (equal but distinct objects, which jam must still dedup).
 */
const nounArb = fc
  .array(
    fc.oneof(
      fc.record({ op: fc.constant("atom" as const), value: fc.bigInt(0n, 1000n) }),
      fc.record({ op: fc.constant("atom" as const), value: fc.bigInt(0n, (1n << 300n) - 1n) }),
      fc.record({ op: fc.constant("cell" as const), a: fc.nat(), b: fc.nat() }),
      fc.record({ op: fc.constant("cell" as const), a: fc.nat(), b: fc.nat() }),
      fc.record({ op: fc.constant("copy" as const), a: fc.nat() }),
    ),
    { minLength: 1, maxLength: 60 },
  )
  .map((ops) => {
    const pool: Noun[] = [];
    for (const op of ops) {
      if (op.op === "atom" || pool.length === 0) {
        pool.push(op.op === "atom" ? op.value : 7n);
      } else if (op.op === "cell") {
        pool.push(cell(pool[op.a % pool.length], pool[op.b % pool.length]));
      } else {
        pool.push(copyNoun(pool[op.a % pool.length]));
      }
    }
    return pool[pool.length - 1];
  });

function copyNoun(noun: Noun): Noun {
  return cue(jam(noun)); // cue builds fresh objects
}

function toNockjs(noun: Noun): nockjs.Noun {
  const done = new Map<Cell, nockjs.Noun>();
  const stack: Noun[] = [noun];
  while (stack.length > 0) {
    const n = stack[stack.length - 1];
    if (!isCell(n) || done.has(n)) {
      stack.pop();
      continue;
    }
    const { head, tail } = n;
    if (isCell(head) && !done.has(head)) stack.push(head);
    else if (isCell(tail) && !done.has(tail)) stack.push(tail);
    else {
      const h = isCell(head) ? done.get(head)! : new nockjs.Atom(head);
      const t = isCell(tail) ? done.get(tail)! : new nockjs.Atom(tail);
      done.set(n, new nockjs.Cell(h, t));
      stack.pop();
    }
  }
  return isCell(noun) ? done.get(noun)! : new nockjs.Atom(noun);
}

Deno.test("property: random nouns with shared subtrees round-trip through jam and cue", () => {
  fc.assert(
    fc.property(nounArb, (noun) => {
      const bytes = jam(noun);
      const back = cue(bytes);
      assert.ok(nounEqual(back, noun));
      assert.deepEqual(mug(back), mug(noun));
      assert.deepEqual(hex(jam(back)), hex(bytes));
    }),
    { numRuns: 500 },
  );
});

Deno.test("property: @urbit/nockjs agrees on jam bytes and mug", () => {
  fc.assert(
    fc.property(nounArb, (noun) => {
      const theirs = toNockjs(noun);
      assert.deepEqual(bytesToAtom(jam(noun)), nockjs.jam(theirs).number);
      assert.deepEqual(mug(noun), theirs.mug());
    }),
    { numRuns: 300 },
  );
});

Deno.test("property: cue of arbitrary bytes returns a noun or throws NounError, nothing else", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      try {
        const noun = cue(bytes);
        // Whatever it read, it read consistently.
        assert.ok(nounEqual(cue(jam(noun)), noun));
      } catch (e) {
        assert.deepEqual((e as Error).name, "NounError", String(e));
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("property: cueAtomTuple reads what cue reads for a tuple of atoms, long atoms as their bytes", () => {
  const atom = fc.oneof(
    fc.bigInt({ min: 0n, max: (1n << 70n) - 1n }),
    fc.uint8Array({ minLength: 1, maxLength: 40 }).map(bytesToAtom),
    fc.constantFrom(0n, 1n, 7n),
  );
  fc.assert(
    fc.property(
      fc.array(atom, { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 12 }),
      (atoms, bytesFrom) => {
        const noun = atoms.length === 1 ? atoms[0] : tuple(...atoms);
        const read = cueAtomTuple(jam(noun), 8, bytesFrom);
        assert.deepEqual(
          read.map((a) => a instanceof Uint8Array ? bytesToAtom(a) : a),
          atoms,
          "the same atoms (jam's back-references to repeated atoms followed)",
        );
        read.forEach((a, i) => {
          const long = atomToBytes(atoms[i]).length > bytesFrom;
          assert.equal(
            a instanceof Uint8Array,
            long,
            `atom ${i}: bytes exactly when longer than ${bytesFrom}`,
          );
          if (a instanceof Uint8Array) assert.deepEqual(a, atomToBytes(atoms[i]));
        });
      },
    ),
    { numRuns: 2000 },
  );
});

/** Cuts `bytes` into parts at the given cut points (as a stream delivers them). */
function partsOf(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const c of [...at, bytes.length]) {
    if (c > from) parts.push(bytes.subarray(from, c));
    from = Math.max(from, c);
  }
  return parts;
}

Deno.test("property: cueAtomTupleSliced reads what cueAtomTuple reads, from any parts, in any slices, and pauses between slices", async () => {
  const atom = fc.oneof(
    fc.bigInt({ min: 0n, max: (1n << 70n) - 1n }),
    fc.uint8Array({ minLength: 1, maxLength: 300, size: "max" }).map(bytesToAtom),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.array(atom, { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 12 }),
      fc.array(fc.nat(), { maxLength: 5 }),
      fc.integer({ min: 1, max: 64 }),
      async (atoms, bytesFrom, cuts, sliceBytes) => {
        const noun = atoms.length === 1 ? atoms[0] : tuple(...atoms);
        const bytes = jam(noun);
        let pauses = 0;
        const sliced = await cueAtomTupleSliced(partsOf(bytes, cuts), 8, bytesFrom, {
          sliceBytes,
          pause: () => {
            pauses++;
            return Promise.resolve();
          },
        });
        assert.deepEqual(sliced, cueAtomTuple(bytes, 8, bytesFrom));
        assert.ok(
          pauses >= Math.floor(bytes.length / sliceBytes),
          `${pauses} pauses for ${bytes.length} bytes in slices of ${sliceBytes}`,
        );
      },
    ),
    { numRuns: 500 },
  );
  // Garbage is refused the same way.
  await assert.rejects(
    cueAtomTupleSliced([new Uint8Array([1]), new Uint8Array(0)], 8, 4, {
      sliceBytes: 1,
      pause: () => Promise.resolve(),
    }),
    (e) => (e as Error).name === "NounError",
  );
});

Deno.test("property: cueAtomTuple of arbitrary bytes returns atoms or throws NounError, nothing else", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      try {
        const atoms = cueAtomTuple(bytes, 8, 4);
        const noun = cue(bytes); // a tuple of atoms is a noun cue reads the same
        const flat = atoms.map((a) => a instanceof Uint8Array ? bytesToAtom(a) : a);
        assert.ok(nounEqual(noun, flat.length === 1 ? flat[0] : tuple(...flat)));
      } catch (e) {
        assert.deepEqual((e as Error).name, "NounError", String(e));
      }
    }),
    { numRuns: 5000 },
  );
});
