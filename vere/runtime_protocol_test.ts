import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeRuntimeFrame,
  decodeRuntimeMessage,
  encodeRuntimeMessage,
  isHeadAnswer,
  type LogEntry,
  ProtocolError,
  RUNTIME_PROTOCOL_VERSION,
  type RuntimeMessage,
} from "./runtime_protocol.ts";
import { encodeFrame, NewtDecoder } from "./newt.ts";
import { atomToBytes, bytesToAtom, cell, cord, cue, jam, list, type Noun, tuple } from "./noun.ts";
import { hex } from "../tests/fixtures.ts";

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const SHIP_MAX = (1n << 128n) - 1n;

/** Asserts `fn` throws a ProtocolError whose message matches `pattern` and is one sentence. */
function assertProtocolError(fn: () => unknown, pattern: RegExp = /./): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ProtocolError, `expected a ProtocolError, got ${e}`);
    assert.match(e.message, pattern);
    assertSentence(e.message);
    return true;
  });
}

function assertSentence(message: string): void {
  assert.match(message, /^[A-Z]/, `"${message}" starts with a capital`);
  assert.ok(!message.endsWith("."), `"${message}" has no trailing period`);
}

/** encode -> jam -> newt frame -> decoder -> cue -> decode. */
function viaFrame(msg: RuntimeMessage): RuntimeMessage {
  const decoder = new NewtDecoder();
  decoder.push(encodeFrame(encodeRuntimeMessage(msg)));
  const body = decoder.next();
  assert.ok(body !== undefined);
  assert.equal(decoder.next(), undefined);
  return decodeRuntimeFrame(body);
}

// ---------------------------------------------------------------- arbitraries

/** Small random nouns, built bottom-up from a pool (no recursion). */
const smallNounArb = fc
  .array(
    fc.oneof(
      fc.record({ atom: fc.bigInt(0n, 300n) }),
      fc.record({ atom: fc.bigInt(0n, (1n << 200n) - 1n) }),
      fc.record({ a: fc.nat(), b: fc.nat() }),
      fc.record({ a: fc.nat(), b: fc.nat() }),
    ),
    { minLength: 1, maxLength: 25 },
  )
  .map((ops) => {
    const pool: Noun[] = [];
    for (const op of ops) {
      if ("atom" in op) pool.push(op.atom);
      else if (pool.length === 0) pool.push(0n);
      else pool.push(cell(pool[op.a % pool.length], pool[op.b % pool.length]));
    }
    return pool[pool.length - 1];
  });

const shipArb = fc.oneof(
  fc.constantFrom(0n, 1n, 0xffn, 0x100n, 0xffffn, 0xffff_ffffn, SHIP_MAX),
  fc.bigInt(0n, SHIP_MAX),
);
const eveArb = fc.oneof(fc.constantFrom(1, 2, 0xffff_ffff, MAX_SAFE), fc.integer({ min: 1 }));
const bigEveArb = fc.integer({ min: 1, max: MAX_SAFE });
const mugArb = fc.oneof(fc.constantFrom(0, 1, 0x7fff_ffff, 0xffff_ffff), fc.nat(0xffff_ffff));
const jobArb = smallNounArb.map((n) => jam(n));
/** Text, often non-ASCII; a cord cannot end in U+0000. */
const textArb = fc
  .oneof(
    fc.string({ unit: "grapheme", maxLength: 40 }),
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.constantFrom(
      "",
      "Event 5 is already logged with a different mug",
      "\u00fcn\u00efc\u00f6d\u00e9 \u{1f680} ~zod",
    ),
  )
  .filter((s) => !s.endsWith("\0") && s.isWellFormed());

const entriesArb = (from: number) =>
  fc.array(fc.record({ mug: mugArb, job: jobArb }), { maxLength: 12 }).map((xs) =>
    xs.map((x, i): LogEntry => ({ eve: from + i, mug: x.mug, job: x.job }))
  );

const messageArb: fc.Arbitrary<RuntimeMessage> = fc.oneof(
  fc.record({
    type: fc.constant("hail" as const),
    version: fc.oneof(fc.constant(RUNTIME_PROTOCOL_VERSION), fc.nat()),
    node: fc.nat(),
  }),
  fc.record({
    type: fc.constant("plan" as const),
    ship: shipArb,
    eve: eveArb,
    mug: mugArb,
    job: jobArb,
  }),
  fc.record({
    type: fc.constant("read" as const),
    ship: shipArb,
    from: eveArb,
    count: fc.oneof(fc.nat(), fc.constant(MAX_SAFE)),
  }),
  fc.record({ type: fc.constant("head" as const), ship: shipArb }),
  fc.record({ type: fc.constant("done" as const), ship: shipArb, eve: eveArb }),
  fc.record({ type: fc.constant("nope" as const), ship: shipArb, eve: eveArb, why: textArb }),
  fc.record({ type: fc.constant("away" as const), ship: shipArb, master: textArb }),
  fc.tuple(shipArb, fc.integer({ min: 1, max: MAX_SAFE - 20 })).chain(([ship, from]) =>
    entriesArb(from).map((events) => ({ type: "logs" as const, ship, from, events }))
  ),
  fc.oneof(
    fc.record({
      type: fc.constant("head" as const),
      ship: shipArb,
      eve: bigEveArb,
      mug: mugArb,
    }),
    fc.record({
      type: fc.constant("head" as const),
      ship: shipArb,
      eve: fc.constant(0),
      mug: fc.constant(0),
    }),
  ),
  fc.record({ type: fc.constant("lead" as const), ship: shipArb }),
  fc.record({ type: fc.constant("fence" as const), ship: shipArb }),
  fc.record({ type: fc.constant("oops" as const), why: textArb }),
);

// ---------------------------------------------------------------- round trips

Deno.test("every message round-trips through a noun, jam and a newt frame", () => {
  fc.assert(
    fc.property(messageArb, (generated) => {
      const msg = { ...generated }; // fc.record makes null-prototype objects
      assert.deepEqual(decodeRuntimeMessage(encodeRuntimeMessage(msg)), msg);
      assert.deepEqual(viaFrame(msg), msg);
    }),
    { numRuns: 1000 },
  );
});

Deno.test("messages have the documented noun shapes", () => {
  const job = jam(cell(1n, 2n));
  const cases: [RuntimeMessage, Noun][] = [
    [{ type: "hail", version: 1, node: 0 }, tuple(cord("hail"), 1n, 0n)],
    [{ type: "hail", version: 1, node: 3 }, tuple(cord("hail"), 1n, 3n)],
    [{ type: "plan", ship: 0n, eve: 1, mug: 0, job }, tuple(cord("plan"), 0n, 1n, 0n, 0x1231n)],
    [{ type: "read", ship: 5n, from: 7, count: 9 }, tuple(cord("read"), 5n, 7n, 9n)],
    [{ type: "head", ship: 5n }, tuple(cord("head"), 5n)],
    [{ type: "head", ship: 5n, eve: 2, mug: 3 }, tuple(cord("head"), 5n, 2n, 3n)],
    [{ type: "done", ship: 5n, eve: 2 }, tuple(cord("done"), 5n, 2n)],
    [{ type: "nope", ship: 5n, eve: 2, why: "No" }, tuple(cord("nope"), 5n, 2n, cord("No"))],
    [{ type: "away", ship: 5n, master: "" }, tuple(cord("away"), 5n, 0n)],
    [
      { type: "logs", ship: 5n, from: 4, events: [{ eve: 4, mug: 6, job }] },
      tuple(cord("logs"), 5n, 4n, list([tuple(4n, 6n, 0x1231n)])),
    ],
    [{ type: "logs", ship: 5n, from: 4, events: [] }, tuple(cord("logs"), 5n, 4n, 0n)],
    [{ type: "lead", ship: 5n }, tuple(cord("lead"), 5n)],
    [{ type: "fence", ship: 5n }, tuple(cord("fence"), 5n)],
    [{ type: "oops", why: "Bad" }, tuple(cord("oops"), cord("Bad"))],
  ];
  for (const [msg, noun] of cases) {
    assert.equal(hex(jam(encodeRuntimeMessage(msg))), hex(jam(noun)), msg.type);
    assert.deepEqual(decodeRuntimeMessage(noun), msg);
  }
  assert.equal(cord("plan"), 0x6e616c70n);
});

Deno.test("%plan job bytes come back byte-identical, large ones too", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 2000 }), (raw) => {
      const job = raw.slice();
      if (job[job.length - 1] === 0) job[job.length - 1] = 1;
      const msg = { type: "plan" as const, ship: 1n, eve: 1, mug: 0, job };
      const back = viaFrame(msg);
      assert.ok(back.type === "plan");
      assert.equal(hex(back.job), hex(job));
    }),
  );
  const big = jam(list(Array.from({ length: 50_000 }, (_, i) => BigInt(i * 7919))));
  const back = viaFrame({
    type: "plan",
    ship: SHIP_MAX,
    eve: 9,
    mug: 1,
    job: big,
  });
  assert.ok(back.type === "plan");
  assert.equal(back.job.length, big.length);
  assert.ok(back.job.every((b, i) => b === big[i]));
  assert.equal(hex(jam(cue(back.job))), hex(big));
});

Deno.test("a long %logs list decodes without recursion", () => {
  const from = 1000;
  const job = jam(tuple(1n, 2n, 3n));
  const events = Array.from({ length: 20_000 }, (_, i) => ({ eve: from + i, mug: i, job }));
  const back = viaFrame({ type: "logs", ship: 0n, from, events });
  assert.ok(back.type === "logs");
  assert.equal(back.events.length, events.length);
  assert.equal(back.events[19_999].eve, 20_999);
  assert.equal(hex(back.events[123].job), hex(job));
});

Deno.test("the sender filter accepts each side's messages only", () => {
  const ship = 0n;
  const fromRuntime: RuntimeMessage[] = [
    { type: "hail", version: 1, node: 0 },
    { type: "plan", ship, eve: 1, mug: 0, job: jam(0n) },
    { type: "read", ship, from: 1, count: 10 },
    { type: "head", ship },
  ];
  const fromNode: RuntimeMessage[] = [
    { type: "hail", version: 1, node: 2 },
    { type: "done", ship, eve: 1 },
    { type: "nope", ship, eve: 1, why: "Gap" },
    { type: "away", ship, master: "10.0.0.2:4100" },
    { type: "logs", ship, from: 1, events: [] },
    { type: "head", ship, eve: 0, mug: 0 },
    { type: "lead", ship },
    { type: "fence", ship },
    { type: "oops", why: "Bad" },
  ];
  for (const msg of fromRuntime) {
    const noun = encodeRuntimeMessage(msg);
    assert.deepEqual(decodeRuntimeMessage(noun, { from: "runtime" }), msg);
    assertProtocolError(() => decodeRuntimeMessage(noun, { from: "node" }));
  }
  for (const msg of fromNode) {
    const noun = encodeRuntimeMessage(msg);
    assert.deepEqual(decodeRuntimeMessage(noun, { from: "node" }), msg);
    assertProtocolError(() => decodeRuntimeMessage(noun, { from: "runtime" }));
  }
  const answer = decodeRuntimeMessage(tuple(cord("head"), 1n, 2n, 3n), { from: "node" });
  assert.ok(isHeadAnswer(answer));
  assert.equal(answer.mug, 3);
  assert.ok(!isHeadAnswer(decodeRuntimeMessage(tuple(cord("head"), 1n))));
});

// ---------------------------------------------------------------- malformed

Deno.test("malformed messages throw a ProtocolError that says what is wrong", () => {
  const P = cord("plan");
  const job = 0x1231n;
  const corpus: [string, Noun, RegExp][] = [
    ["an atom", 5n, /is the atom 5, not a tagged cell/],
    ["~", 0n, /not a tagged cell/],
    ["a cell tag", tuple(cell(1n, 2n), 1n), /tag is a cell/],
    ["an unknown tag", tuple(cord("poke"), 1n), /tag %poke is not known/],
    ["a numeric tag", tuple(7n, 1n), /tag 7 is not known/],
    ["a huge tag", tuple(1n << 300n, 1n), /tag a 301-bit atom is not known/],
    ["%plan, 1 field", tuple(P, 0n), /%plan message has 1 field after its tag, but needs 4/],
    ["%plan, 3 fields", tuple(P, 0n, 1n, 0n), /has 3 fields after its tag, but needs 4/],
    ["%plan, 5 fields", tuple(P, 0n, 1n, 0n, job, 9n), /%plan job is a cell/],
    ["%plan, list-terminated", tuple(P, 0n, 1n, 0n, job, 0n), /%plan job is a cell/],
    ["%plan, cell ship", tuple(P, cell(1n, 1n), 1n, 0n, job), /%plan ship is a cell/],
    ["%plan, 129-bit ship", tuple(P, 1n << 128n, 1n, 0n, job), /129 bits long, above the 128/],
    ["%plan, eve 0", tuple(P, 0n, 0n, 0n, job), /%plan eve is 0, below 1/],
    ["%plan, eve 2^53", tuple(P, 0n, 1n << 53n, 0n, job), /%plan eve is .*above 2\^53 - 1/],
    ["%plan, mug 2^32", tuple(P, 0n, 1n, 1n << 32n, job), /%plan mug is .*above 0xffffffff/],
    ["%plan, job 0", tuple(P, 0n, 1n, 0n, 0n), /%plan job is 0, which holds no jam bytes/],
    ["%hail, 1 field", tuple(cord("hail"), 1n), /needs 2/],
    ["%hail, 3 fields", tuple(cord("hail"), 1n, 0n, 0n), /%hail node is a cell/],
    ["%read, 2 fields", tuple(cord("read"), 0n, 1n), /needs 3/],
    ["%read, from 0", tuple(cord("read"), 0n, 0n, 5n), /%read from is 0, below 1/],
    ["%read, huge count", tuple(cord("read"), 0n, 1n, 1n << 64n), /%read count/],
    ["%head, 2 fields", tuple(cord("head"), 0n, 1n), /%head answer message has 2 fields/],
    ["%head, 4 fields", tuple(cord("head"), 0n, 1n, 2n, 3n), /%head mug is a cell/],
    ["%head, eve 0 mug 1", tuple(cord("head"), 0n, 0n, 1n), /eve 0 but mug 1/],
    ["%done, 1 field", tuple(cord("done"), 0n), /needs 2/],
    ["%done, eve 0", tuple(cord("done"), 0n, 0n), /%done eve is 0, below 1/],
    ["%nope, bad UTF-8", tuple(cord("nope"), 0n, 1n, 0xffn), /%nope why is not valid UTF-8/],
    ["%nope, cell why", tuple(cord("nope"), 0n, 1n, cell(1n, 0n)), /%nope why is a cell/],
    ["%away, 3 fields", tuple(cord("away"), 0n, 0n, 0n), /%away master is a cell/],
    ["%away, overlong UTF-8", tuple(cord("away"), 0n, 0x80c0n), /not valid UTF-8/],
    ["%lead, 2 fields", tuple(cord("lead"), 0n, 0n), /%lead ship is a cell/],
    ["%fence, cell", tuple(cord("fence"), cell(0n, 0n)), /%fence ship is a cell/],
    ["%oops, 2 fields", tuple(cord("oops"), 1n, 2n), /%oops why is a cell/],
    ["%logs, 2 fields", tuple(cord("logs"), 0n, 1n), /needs 3/],
    ["%logs, from 0", tuple(cord("logs"), 0n, 0n, 0n), /%logs from is 0/],
    ["%logs, no ~", tuple(cord("logs"), 0n, 1n, 7n), /ends in 7 instead of ~ after 0 events/],
    [
      "%logs, atom entry",
      tuple(cord("logs"), 0n, 1n, list([5n])),
      /%logs event 0 message has 1 field/,
    ],
    [
      "%logs, short entry",
      tuple(cord("logs"), 0n, 1n, list([tuple(1n, 0n)])),
      /%logs event 0 message has 2 fields after its tag, but needs 3/,
    ],
    [
      "%logs, gap",
      tuple(cord("logs"), 0n, 1n, list([tuple(1n, 0n, job), tuple(3n, 0n, job)])),
      /%logs event 1 has eve 3, but events must be consecutive from 1 \(expected 2\)/,
    ],
    [
      "%logs, wrong first eve",
      tuple(cord("logs"), 0n, 5n, list([tuple(1n, 0n, job)])),
      /expected 5/,
    ],
    [
      "%logs, job 0",
      tuple(cord("logs"), 0n, 1n, list([tuple(1n, 0n, 0n)])),
      /%logs event 0 job is 0/,
    ],
    [
      "%logs, 4 fields",
      tuple(cord("logs"), 0n, 1n, 0n, 0n),
      /%logs event 0 message has 1 field/,
    ],
  ];
  for (const [name, noun, pattern] of corpus) {
    assert.throws(() => decodeRuntimeMessage(noun), (e: unknown) => {
      assert.ok(e instanceof ProtocolError, `${name}: expected a ProtocolError, got ${e}`);
      assert.match(e.message, pattern, name);
      assertSentence(e.message);
      return true;
    });
  }
  assertProtocolError(
    () => decodeRuntimeMessage(tuple(cord("hail"), 1n, 4n), { from: "runtime" }),
    /A runtime's %hail must end in ~, not 4/,
  );
  assertProtocolError(
    () => decodeRuntimeMessage(tuple(cord("hail"), 1n, 0n), { from: "node" }),
    /A node's %hail must carry its node id, not ~/,
  );
});

Deno.test("frames that are not jam give a ProtocolError", () => {
  assertProtocolError(
    () => decodeRuntimeFrame(new Uint8Array([0])),
    /^The frame is not a valid jammed noun: /,
  );
  assertProtocolError(() => decodeRuntimeFrame(new Uint8Array([0x31, 0x12, 0xff])), /jammed noun/);
  assertProtocolError(() => decodeRuntimeFrame(jam(7n)), /is the atom 7/);
});

Deno.test("random nouns decode or throw a ProtocolError, never another error", () => {
  const tags = [
    "hail",
    "plan",
    "read",
    "head",
    "done",
    "nope",
    "away",
    "logs",
    "lead",
    "fence",
    "oops",
  ];
  const fieldArb = fc.oneof(
    fc.constantFrom(0n, 1n, 0xffn, 1n << 53n, 1n << 128n, 0xffff_ffffn, 1n << 32n),
    fc.bigInt(0n, (1n << 140n) - 1n),
    smallNounArb,
  );
  const taggedArb = fc
    .tuple(fc.constantFrom(...tags), fc.array(fieldArb, { minLength: 1, maxLength: 6 }))
    .map(([tag, rest]) => tuple(cord(tag), ...rest));
  const logsArb = fc
    .tuple(
      fc.nat(5),
      fc.array(fc.array(fieldArb, { minLength: 1, maxLength: 4 }), { maxLength: 5 }),
    )
    .map(([from, entries]) =>
      tuple(cord("logs"), 0n, BigInt(from), list(entries.map((e) => tuple(...e))))
    );
  const check = (noun: Noun) => {
    for (const from of [undefined, "runtime" as const, "node" as const]) {
      try {
        const msg = decodeRuntimeMessage(noun, { from });
        // Whatever decodes must encode back to the same noun.
        assert.equal(hex(jam(encodeRuntimeMessage(msg))), hex(jam(noun)));
      } catch (e) {
        assert.ok(e instanceof ProtocolError, `expected a ProtocolError, got ${e}`);
        assertSentence(e.message);
      }
    }
  };
  fc.assert(fc.property(fc.oneof(smallNounArb, taggedArb, logsArb), check), { numRuns: 2000 });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      try {
        decodeRuntimeFrame(bytes);
      } catch (e) {
        assert.ok(e instanceof ProtocolError, `expected a ProtocolError, got ${e}`);
        assertSentence(e.message);
      }
    }),
    { numRuns: 1000 },
  );
});

// ---------------------------------------------------------------- encode checks

Deno.test("encoding refuses values the decoder would refuse", () => {
  const job = jam(1n);
  const bad: [string, RuntimeMessage, RegExp][] = [
    ["empty job", { type: "plan", ship: 0n, eve: 1, mug: 0, job: new Uint8Array(0) }, /empty/],
    [
      "job ending in zero",
      { type: "plan", ship: 0n, eve: 1, mug: 0, job: new Uint8Array([0x0c, 0]) },
      /ends in a zero byte/,
    ],
    ["ship 2^128", { type: "plan", ship: 1n << 128n, eve: 1, mug: 0, job }, /ship must be/],
    ["negative ship", { type: "lead", ship: -1n }, /ship must be/],
    ["eve 0", { type: "plan", ship: 0n, eve: 0, mug: 0, job }, /eve must be an integer from 1/],
    ["eve 2^53", { type: "done", ship: 0n, eve: 2 ** 53 }, /2\^53 - 1/],
    ["eve 1.5", { type: "done", ship: 0n, eve: 1.5 }, /%done eve must be/],
    ["mug 2^32", { type: "plan", ship: 0n, eve: 1, mug: 2 ** 32, job }, /0xffffffff/],
    ["negative count", { type: "read", ship: 0n, from: 1, count: -1 }, /%read count/],
    ["why ending in NUL", { type: "oops", why: "Bad\0" }, /NUL character/],
    ["lone surrogate", { type: "away", ship: 0n, master: "\ud800" }, /lone surrogate/],
    ["head eve 0 mug 1", { type: "head", ship: 0n, eve: 0, mug: 1 }, /eve 0 but mug 1/],
    [
      "logs gap",
      { type: "logs", ship: 0n, from: 1, events: [{ eve: 2, mug: 0, job }] },
      /consecutive from 1/,
    ],
  ];
  for (const [name, msg, pattern] of bad) {
    assert.throws(() => encodeRuntimeMessage(msg), (e: unknown) => {
      assert.ok(e instanceof ProtocolError, `${name}: expected a ProtocolError, got ${e}`);
      assert.match(e.message, pattern, name);
      assertSentence(e.message);
      return true;
    });
  }
  // A NUL inside the text is fine: only trailing zero bytes vanish from a cord.
  assert.deepEqual(viaFrame({ type: "oops", why: "a\0b" }), { type: "oops", why: "a\0b" });
  assert.equal(hex(atomToBytes(cord("a\0b"))), "610062");
});

// ---------------------------------------------------------------- the documented bytes

Deno.test("the byte examples of docs/runtime-protocol.md are exact, both ways", () => {
  const job = jam(cell(1n, 2n));
  // [message as the document writes it, its "from" column, the message, the frame]
  const examples: [string, string, RuntimeMessage, string][] = [
    [
      "[%hail 1 ~]",
      "runtime",
      { type: "hail", version: 1, node: 0 },
      "00 07 00 00 00 01 1f 2d 2c 8d 1d 0b",
    ],
    [
      "[%hail 1 2]",
      "node 2",
      { type: "hail", version: 1, node: 2 },
      "00 08 00 00 00 01 1f 2d 2c 8d 1d 23 01",
    ],
    [
      "[%plan ~zod 1 0 job]",
      "runtime",
      { type: "plan", ship: 0n, eve: 1, mug: 0, job },
      "00 0a 00 00 00 01 1f 8e 2d cc 9d 71 82 8d 91",
    ],
    [
      "[%read ~zod 1 2]",
      "runtime",
      { type: "read", ship: 0n, from: 1, count: 2 },
      "00 08 00 00 00 01 5f ae 2c 8c 9c 31 12",
    ],
    ["[%head ~zod]", "runtime", { type: "head", ship: 0n }, "00 06 00 00 00 01 1f ad 2c 8c 2c"],
    [
      "[%head ~marzod]",
      "runtime",
      { type: "head", ship: 256n },
      "00 08 00 00 00 01 1f ad 2c 8c 0c 06 20",
    ],
    [
      "[%head ~zod 5 0]",
      "node",
      { type: "head", ship: 0n, eve: 5, mug: 0 },
      "00 08 00 00 00 01 1f ad 2c 8c 9c e1 0a",
    ],
    [
      "[%done ~zod 7]",
      "node",
      { type: "done", ship: 0n, eve: 7 },
      "00 07 00 00 00 01 9f ec cd ad 9c f8",
    ],
    [
      "[%nope ~zod 9 'Gap']",
      "node",
      { type: "nope", ship: 0n, eve: 9, why: "Gap" },
      "00 0c 00 00 00 01 df ed 0d ae 9c 41 12 78 47 61 70",
    ],
    [
      "[%away ~zod '']",
      "node",
      { type: "away", ship: 0n, master: "" },
      "00 07 00 00 00 01 3f ec 2e 2c 9f 02",
    ],
    [
      "[%away ~zod '10.0.0.2:7700']",
      "node",
      { type: "away", ship: 0n, master: "10.0.0.2:7700" },
      "00 15 00 00 00 01 3f ec 2e 2c 9f 00 cd 18 18 17 18 17 18 17 19 9d 9b 1b 18 18",
    ],
    [
      "[%logs ~zod 1 [[1 0 job] ~]]",
      "node",
      { type: "logs", ship: 0n, from: 1, events: [{ eve: 1, mug: 0, job }] },
      "00 0c 00 00 00 01 9f ed ed 6c 9e 71 71 82 8d 91 02",
    ],
    [
      "[%logs ~zod 9 ~]",
      "node",
      { type: "logs", ship: 0n, from: 9, events: [] },
      "00 08 00 00 00 01 9f ed ed 6c 9e 41 52",
    ],
    ["[%lead ~zod]", "node", { type: "lead", ship: 0n }, "00 06 00 00 00 01 9f ad 2c 8c 2c"],
    ["[%fence ~zod]", "node", { type: "fence", ship: 0n }, "00 07 00 00 00 01 1e b3 32 b7 b1 b2"],
    [
      "[%oops 'Send %hail first']",
      "node",
      { type: "oops", why: "Send %hail first" },
      "00 18 00 00 00 01 ff ed 0d 6e 0e f0 9f 2a 73 23 03 29 41 0b 4b 63 03 31 4b 93 9b a3 03",
    ],
  ];
  // The table in the document, whitespace collapsed (continuation lines join their frame).
  const doc = Deno.readTextFileSync(new URL("../docs/runtime-protocol.md", import.meta.url));
  const table = doc.split("### Every message, as bytes")[1]?.split("```text")[1]?.split("```")[0];
  assert.ok(table !== undefined, "docs/runtime-protocol.md has its byte table");
  const flat = table.replace(/\s+/g, " ");
  for (const [label, from, msg, bytes] of examples) {
    const frame = encodeFrame(encodeRuntimeMessage(msg));
    assert.equal(hex(frame).replace(/(..)(?!$)/g, "$1 "), bytes, label);
    const decoder = new NewtDecoder();
    decoder.push(Uint8Array.from(bytes.split(" "), (b) => parseInt(b, 16)));
    const body = decoder.next();
    assert.ok(body !== undefined, label);
    const sender = from === "runtime" ? "runtime" : "node";
    assert.deepEqual(decodeRuntimeFrame(body, { from: sender }), msg, label);
    assert.ok(
      flat.includes(`${label} ${from} ${bytes}`),
      `the document shows ${label} as ${bytes}`,
    );
  }
});

/** The jam of `[%plan 0 1 0 job]` whose job is a list of `depth` ones, built bit by bit (jam itself would take long). */
function deepPlanFrame(depth: number): Uint8Array {
  const bits: number[] = [];
  const put = (...b: number[]) => bits.push(...b);
  const prefix = jam(tuple(cord("plan"), 0n, 1n, 0n, 7n)); // the same message with job 7
  const prefixBits: number[] = [];
  for (const byte of prefix) for (let i = 0; i < 8; i++) prefixBits.push((byte >> i) & 1);
  // Job 7 is the last atom: tag 0, mat(7) = 00 1 1 111 (c=2 zeros, a one, b-1 low bit of b=3, 3 bits of 7).
  const seven = [0, 0, 0, 1, 1, 1, 1, 1];
  let end = prefixBits.length;
  while (prefixBits[end - 1] === 0) end--;
  const start = end - seven.length;
  assert.deepEqual(prefixBits.slice(start, end), seven, "the prefix ends with the atom 7");
  put(...prefixBits.slice(0, start));
  for (let i = 0; i < depth; i++) put(1, 0, 0, 0, 1, 1); // a cell, then the atom 1
  put(0, 1); // the atom 0 that ends the list
  const out = new Uint8Array(Math.ceil(bits.length / 8));
  bits.forEach((b, i) => out[i >> 3] |= b << (i & 7));
  return out;
}

Deno.test("a %plan whose job is a million-deep list, or a cell, is refused after a few atoms, not decoded", () => {
  const small = deepPlanFrame(3);
  const noun = cue(small);
  assert.deepEqual(
    noun,
    tuple(cord("plan"), 0n, 1n, 0n, list([1n, 1n, 1n])),
    "the builder makes that noun",
  );
  const frame = deepPlanFrame(1_000_000);
  assert.ok(frame.length > 700_000, `${frame.length} bytes`);
  assert.throws(
    () => decodeRuntimeFrame(frame, { from: "runtime" }),
    (e: Error) =>
      e instanceof ProtocolError &&
      e.message ===
        "The frame is not a runtime's message (a tuple of atoms, the %plan job an atom): The tuple has more than 8 atoms",
  );
  // A job that is a cell in head position: refused at that cell.
  const headCell = jam(tuple(cord("plan"), 0n, 1n, 0n, cell(cell(1n, 2n), 3n)));
  assert.throws(
    () => decodeRuntimeFrame(headCell, { from: "runtime" }),
    /: A cell at bit \d+ is where an atom belongs \(field 5\)$/,
  );
  // A node decodes its own messages with cue: there the job is refused once cued.
  assert.throws(() => decodeRuntimeFrame(small, { from: "node" }), /A node does not send %plan/);
});

Deno.test("a %plan job of 16 MiB decodes byte-identical from its frame without a bigint", () => {
  const job = new Uint8Array(16 << 20);
  for (let i = 0; i < job.length; i += 4096) job[i] = (i >>> 12) & 0xff;
  job[job.length - 1] = 0x81;
  const frame = jam(tuple(cord("plan"), 5n, 7n, 0x1234n, bytesToAtom(job)));
  const m = decodeRuntimeFrame(frame, { from: "runtime" });
  assert.equal(m.type, "plan");
  assert.ok(m.type === "plan" && sameBytes(m.job, job), "the job's bytes");
  assert.deepEqual(m.type === "plan" && [m.ship, m.eve, m.mug], [5n, 7, 0x1234]);
  // Only the job may be long: a 65-byte ship is refused before it is made a bigint.
  const longShip = jam(tuple(cord("head"), bytesToAtom(new Uint8Array(65).fill(1))));
  assert.throws(
    () => decodeRuntimeFrame(longShip, { from: "runtime" }),
    /^ProtocolError: Field 2 of the message is 65 bytes; only a %plan job may be longer than 64$/,
  );
});

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
