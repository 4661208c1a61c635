import assert from "node:assert/strict";
import fc from "fast-check";
import {
  encodeFrame,
  encodeFrameBytes,
  NEWT_FRAME_BYTES_MAX_DEFAULT,
  NEWT_HEADER_BYTES,
  NewtDecoder,
  NewtError,
} from "./newt.ts";
import { cell, cord, jam, tuple } from "./noun.ts";
import { hex, unhex } from "../tests/fixtures.ts";

/** Every frame the decoder yields for `chunks`, pushed one by one, draining after each and at the end. */
function drain(decoder: NewtDecoder, chunks: Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (let f = decoder.next(); f !== undefined; f = decoder.next()) out.push(f);
  }
  for (let f = decoder.next(); f !== undefined; f = decoder.next()) out.push(f);
  return out;
}

/**
 * Asserts two lists of byte arrays are equal with a short message: node's
 * diff of large arrays is slow enough to look like a hang.
 */
function assertFrames(actual: (Uint8Array | undefined)[], expected: Uint8Array[]): void {
  assert.equal(actual.length, expected.length, "frame count");
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    assert.ok(a !== undefined, `frame ${i} is missing`);
    assert.equal(a.length, e.length, `frame ${i} length`);
    const at = a.findIndex((byte, k) => byte !== e[k]);
    assert.equal(at, -1, `frame ${i} differs first at byte ${at}`);
  }
}

function bytesOneByOne(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (b) => Uint8Array.of(b));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ------------------------------------------------------------------ layout

Deno.test("a frame is 0x00, the u32 little-endian length, then the jam bytes", () => {
  // jam [1 2] = 31 12 (URBIT.md vectors).
  assert.equal(hex(encodeFrame(cell(1n, 2n))), "00" + "02000000" + "3112");
  assert.equal(hex(encodeFrameBytes(unhex("3112"))), "00020000003112");
});

Deno.test("the %plan example frame is byte-exact, worked out by hand from jam's rules", () => {
  // [%plan 0 1 0 job] with job = jam [1 2] = 0x1231 as an atom. The 80 bits
  // of jam, least significant first: cell 10; %plan = 0 00000 1 1111 + 31
  // bits of 0x6e616c70; cell 10; 0 = 0 1; cell 10; 1 = 0 0 1 1; cell 10;
  // 0 = 0 1; 0x1231 = 0 0000 1 101 + 13 bits. That is 10 bytes.
  const job = jam(cell(1n, 2n));
  const noun = tuple(cord("plan"), 0n, 1n, 0n, 0x1231n);
  assert.equal(hex(job), "3112");
  assert.equal(
    hex(encodeFrame(noun)),
    "00" + "0a000000" + "011f8e2dcc9d71828d91",
  );
});

Deno.test("the length is little-endian for multi-byte lengths", () => {
  const body = new Uint8Array(0x010203).fill(7);
  const frame = encodeFrameBytes(body);
  assert.equal(frame.length, NEWT_HEADER_BYTES + 0x010203);
  assert.equal(hex(frame.subarray(0, NEWT_HEADER_BYTES)), "0003020100");
  const decoder = new NewtDecoder();
  decoder.push(frame);
  assertFrames([decoder.next()], [body]);
});

Deno.test("encodeFrameBytes refuses an empty body", () => {
  assert.throws(() => encodeFrameBytes(new Uint8Array(0)), NewtError);
});

// ------------------------------------------------------------------ decoding

Deno.test("a frame round-trips whole and one byte at a time", () => {
  const frame = encodeFrame(tuple(cord("head"), 0x1234n));
  const body = frame.subarray(NEWT_HEADER_BYTES);
  assertFrames(drain(new NewtDecoder(), [frame]), [body]);
  const decoder = new NewtDecoder();
  assertFrames(drain(decoder, bytesOneByOne(frame)), [body]);
  assert.equal(decoder.bufferedBytes, 0);
  assert.equal(decoder.next(), undefined);
});

Deno.test("a frame inside one chunk comes back without a copy", () => {
  const frame = encodeFrameBytes(unhex("0102030405"));
  const decoder = new NewtDecoder();
  decoder.push(frame);
  const body = decoder.next();
  assert.ok(body !== undefined);
  assert.equal(body.buffer, frame.buffer);
  assert.equal(body.byteOffset, frame.byteOffset + NEWT_HEADER_BYTES);
});

Deno.test("frames split at random chunk boundaries come back exactly", () => {
  const bodyArb = fc.oneof(
    { weight: 8, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 40 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 3000 }) },
  );
  fc.assert(
    fc.property(
      fc.array(bodyArb, { maxLength: 30 }),
      fc.array(fc.nat(), { maxLength: 60 }),
      (bodies, cutSeeds) => {
        const stream = concat(bodies.map((b) => encodeFrameBytes(b)));
        const cuts = [...new Set(cutSeeds.map((c) => c % (stream.length + 1)))].sort((a, b) =>
          a - b
        );
        const chunks: Uint8Array[] = [];
        let at = 0;
        for (const cut of [...cuts, stream.length]) {
          chunks.push(stream.subarray(at, cut)); // empty chunks are allowed too
          at = cut;
        }
        const decoder = new NewtDecoder();
        assertFrames(drain(decoder, chunks), bodies);
        assert.equal(decoder.bufferedBytes, 0);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("frames pushed before any next() come back in order", () => {
  const bodies = [unhex("01"), unhex("0203"), new Uint8Array(500).fill(9)];
  const decoder = new NewtDecoder();
  for (const b of bodies) for (const c of bytesOneByOne(encodeFrameBytes(b))) decoder.push(c);
  assertFrames(drain(decoder, []), bodies);
});

// ------------------------------------------------------------------ malformed

function assertUnusable(decoder: NewtDecoder): void {
  assert.throws(() => decoder.next(), NewtError);
  assert.throws(() => decoder.push(unhex("00")), NewtError);
}

Deno.test("a first byte other than 0x00 is an error at once, and the decoder stays broken", () => {
  const decoder = new NewtDecoder();
  decoder.push(unhex("01"));
  assert.throws(() => decoder.next(), (e: unknown) => {
    assert.ok(e instanceof NewtError);
    assert.match(e.message, /^The frame starts with byte 0x01, not the newt version byte 0x00$/);
    return true;
  });
  assertUnusable(decoder);
});

Deno.test("a bad version byte after a good frame fails after that frame is returned", () => {
  const decoder = new NewtDecoder();
  decoder.push(concat([encodeFrameBytes(unhex("3112")), unhex("ff00000000")]));
  assert.equal(hex(decoder.next()!), "3112");
  assert.throws(() => decoder.next(), NewtError);
  assertUnusable(decoder);
});

Deno.test("a zero length is an error", () => {
  const decoder = new NewtDecoder();
  assert.deepEqual(drain(decoder, bytesOneByOne(unhex("00000000"))), []);
  decoder.push(unhex("00"));
  assert.throws(() => decoder.next(), /^NewtError: The frame announces a body of 0 bytes/);
  assertUnusable(decoder);
});

Deno.test("a length above frameBytesMax is an error before the body arrives", () => {
  const decoder = new NewtDecoder({ frameBytesMax: 10 });
  decoder.push(unhex("000b000000"));
  assert.throws(
    () => decoder.next(),
    /^NewtError: The frame announces a body of 11 bytes, above the limit of 10 bytes$/,
  );
  assertUnusable(decoder);

  const atLimit = new NewtDecoder({ frameBytesMax: 10 });
  atLimit.push(encodeFrameBytes(new Uint8Array(10).fill(1)));
  assert.equal(atLimit.next()?.length, 10);

  const big = new NewtDecoder();
  big.push(unhex("00ffffffff"));
  assert.ok(0xffffffff > NEWT_FRAME_BYTES_MAX_DEFAULT);
  assert.throws(() => big.next(), /4294967295 bytes, above the limit of 67108864 bytes/);
});

Deno.test("a truncated stream yields no frame and reports its buffered bytes", () => {
  const frame = encodeFrameBytes(unhex("0102030405"));
  for (let cut = 0; cut < frame.length; cut++) {
    const decoder = new NewtDecoder();
    decoder.push(frame.subarray(0, cut));
    assert.equal(decoder.next(), undefined);
    assert.equal(decoder.next(), undefined);
    assert.equal(decoder.bufferedBytes, cut);
  }
});

Deno.test("frameBytesMax must be a u32 length", () => {
  assert.throws(() => new NewtDecoder({ frameBytesMax: 0 }), RangeError);
  assert.throws(() => new NewtDecoder({ frameBytesMax: 2 ** 32 }), RangeError);
  assert.throws(() => new NewtDecoder({ frameBytesMax: 1.5 }), RangeError);
});

Deno.test("random bytes give frames or a NewtError, never another error", () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 12 }), { maxLength: 8 }), (chunks) => {
      const decoder = new NewtDecoder({ frameBytesMax: 64 });
      try {
        drain(decoder, chunks);
      } catch (e) {
        assert.ok(e instanceof NewtError, `unexpected ${e}`);
        assert.ok(!e.message.endsWith("."));
      }
    }),
    { numRuns: 500 },
  );
});
