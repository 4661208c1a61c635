import assert from "node:assert/strict";
import { cell, jam, tuple } from "../../vere/noun.ts";

/** Bytes from a string of bits, least significant first ("0 1 1" = 0b110). */
function bits(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, "");
  const out = new Uint8Array((digits.length + 7) >>> 3);
  for (let i = 0; i < digits.length; i++) if (digits[i] === "1") out[i >>> 3] |= 1 << (i & 7);
  return out;
}

const big = jam((1n << 4000n) - 1n);

/** Each case: the bytes and a pattern the NounError message must match. */
const CORPUS: [string, Uint8Array, RegExp][] = [
  ["empty input", new Uint8Array(0), /empty/],
  ["all zero bytes", new Uint8Array(16), /empty/],
  ["a cell with no head", bits("1 0"), /truncated/],
  ["[1 2 3] minus its last byte", jam(tuple(1n, 2n, 3n)).slice(0, -1), /truncated/],
  ["a 4000-bit atom cut in half", big.slice(0, big.length >> 1), /declares 4000 bits/],
  // tag 0, then mat length prefix: 5 zeros, 1, low 4 bits of b=20 (0100), then 3 bits of value.
  [
    "an atom longer than the input",
    bits("0 00000 1 0010 101"),
    /declares 20 bits but only 5 remain/,
  ],
  ["a length prefix of 40 zero bits", bits("0 " + "0".repeat(40) + " 1 1"), /more than 2\^31 bits/],
  // cell [atom-0 backref(1)]: bit 1 is a cell's second tag bit, where no noun starts.
  [
    "a back-reference to bit 1",
    bits("1 0  0 1  1 1 01 1 1"),
    /points to bit 1, where no earlier noun starts/,
  ],
  // cell whose head is a back-reference to bit 0: the cell itself.
  ["a back-reference to its own cell", bits("1 0  1 1 1"), /a cell that contains it/],
  // cell [atom-0 backref(7)]: 7 is after the reference's own position 4.
  ["a forward back-reference", bits("1 0  0 1  1 1 001 11 111"), /points forward/],
  ["trailing garbage after 1", Uint8Array.from([...jam(1n), 0xff]), /trailing garbage/],
  [
    "a noun followed by another",
    Uint8Array.from([...jam(cell(1n, 2n)), ...jam(3n)]),
    /trailing garbage/,
  ],
];

/** Generous: a hang guard, not a speed claim (cue of these inputs takes microseconds). */
const HANG_GUARD_MS = 10_000;

Deno.test("cue of malformed input throws a NounError with a clear message, never hangs", async () => {
  const worker = new Worker(new URL("./cue_worker.ts", import.meta.url), { type: "module" });
  try {
    for (const [name, bytes, pattern] of CORPUS) {
      const answer = await new Promise<{ name: string; message: string }>((resolve) => {
        const guard = setTimeout(
          () => resolve({ name: "hang", message: `no answer in ${HANG_GUARD_MS} ms` }),
          HANG_GUARD_MS,
        );
        worker.onmessage = (e) => {
          clearTimeout(guard);
          resolve(e.data);
        };
        worker.postMessage(bytes);
      });
      assert.deepEqual(answer.name, "NounError", `${name}: ${answer.message}`);
      assert.match(answer.message, pattern, name);
    }
  } finally {
    worker.terminate();
  }
});
