import assert from "node:assert/strict";
import fc from "fast-check";
import type { Entry } from "../core/mod.ts";
import type { PeerMessage, WirePiece } from "./snapshot_stream.ts";
import { decodeMessage, encodeMessage } from "./wire.ts";
import { WireError } from "./codec.ts";
import { decodeHello, encodeHello } from "./handshake.ts";
import { encodeFrame, FrameConn, FrameType } from "./frame.ts";
import type { ByteStream } from "./byte_stream.ts";

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u64 = fc.oneof(fc.nat(1000), fc.maxSafeNat());
const id = fc.integer({ min: 1, max: 0xffff_ffff });
const bytes = fc.uint8Array({ maxLength: 300 });
const header = fc.record({ groupId: u32, from: id, to: id, term: u64 }).map((h) => ({ ...h }));
const entry: fc.Arbitrary<Entry> = fc.record({
  index: u64,
  term: u64,
  type: fc.constantFrom("normal" as const, "conf" as const, "noop" as const),
  data: bytes,
}).map((e) => ({ ...e })); // fc.record makes null-prototype objects
const ids = fc.uniqueArray(id, { maxLength: 7 });

const ship = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n });
const piece: fc.Arbitrary<WirePiece> = fc.oneof(
  fc.tuple(ship, u64, u64, u64).map(([ship, addedIndex, from, to]) => ({
    kind: "events" as const,
    ship,
    addedIndex,
    from,
    to,
  })),
  fc.tuple(ship, u64, u64, u64).map(([ship, addedIndex, epoch, offset]) => ({
    kind: "image" as const,
    ship,
    addedIndex,
    epoch,
    offset,
  })),
);

const messageArb: fc.Arbitrary<PeerMessage> = fc.oneof(
  fc.tuple(header, u64, u64, ids, ids, bytes).map((
    [h, index, term, voters, learners, manifest],
  ) => ({
    ...h,
    type: "snapOffer" as const,
    snapshot: { index, term, conf: { voters, learners } },
    manifest,
  })),
  fc.tuple(header, u64, piece).map(([h, index, piece]) => ({
    ...h,
    type: "snapPull" as const,
    index,
    piece,
  })),
  fc.tuple(header, u64, piece, fc.boolean(), fc.uint8Array({ minLength: 32, maxLength: 32 }), bytes)
    .map(([h, index, piece, gone, sha256, data]) => ({
      ...h,
      type: "snapChunk" as const,
      index,
      piece,
      gone,
      sha256,
      data,
    })),
  fc.tuple(header, u64, u64, u64, fc.array(entry, { maxLength: 5 })).map((
    [h, index, logTerm, commit, entries],
  ) => ({ ...h, type: "app" as const, index, logTerm, commit, entries })),
  fc.tuple(header, u64, fc.boolean(), u64, u64).map(([h, index, reject, hintIndex, hintTerm]) => ({
    ...h,
    type: "appResp" as const,
    index,
    reject,
    hintIndex,
    hintTerm,
  })),
  fc.tuple(header, fc.constantFrom("vote" as const, "preVote" as const), u64, u64, fc.boolean())
    .map(([h, type, index, logTerm, transfer]) => ({ ...h, type, index, logTerm, transfer })),
  fc.tuple(header, fc.constantFrom("voteResp" as const, "preVoteResp" as const), fc.boolean())
    .map(([h, type, reject]) => ({ ...h, type, reject })),
  fc.tuple(header, u64, u64).map(([h, commit, readSeq]) => ({
    ...h,
    type: "heartbeat" as const,
    commit,
    readSeq,
  })),
  fc.tuple(header, u64).map(([h, readSeq]) => ({ ...h, type: "heartbeatResp" as const, readSeq })),
  fc.tuple(header, u64, u64, ids, ids).map(([h, index, term, voters, learners]) => ({
    ...h,
    type: "snap" as const,
    snapshot: { index, term, conf: { voters, learners } },
  })),
  header.map((h) => ({ ...h, type: "timeoutNow" as const })),
  fc.tuple(header, bytes).map(([h, context]) => ({ ...h, type: "readIndex" as const, context })),
  fc.tuple(header, u64, bytes).map(([h, index, context]) => ({
    ...h,
    type: "readIndexResp" as const,
    index,
    context,
  })),
);

Deno.test("property: every Raft message round-trips through the wire codec", () => {
  fc.assert(
    fc.property(messageArb, (m) => {
      assert.deepEqual(decodeMessage(encodeMessage(m)), m);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("property: decoding random or mutated bytes throws WireError or gives a valid message", () => {
  const mutated = fc.tuple(messageArb, fc.nat(), fc.integer({ min: 1, max: 255 }), fc.nat())
    .map(([m, at, xor, cut]) => {
      const b = encodeMessage(m).slice();
      b[at % b.length] ^= xor;
      return cut % 3 === 0 ? b.subarray(0, cut % b.length) : b;
    });
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), mutated), (b) => {
      try {
        const m = decodeMessage(b);
        assert.deepEqual(decodeMessage(encodeMessage(m)), m);
      } catch (e) {
        assert.ok(e instanceof WireError, String(e));
      }
    }),
    { numRuns: 5000 },
  );
});

Deno.test("a count larger than the frame is refused before anything is allocated", () => {
  const app = encodeMessage({
    groupId: 1,
    from: 1,
    to: 2,
    term: 1,
    type: "app",
    index: 0,
    logTerm: 0,
    commit: 0,
    entries: [],
  }).slice();
  new DataView(app.buffer).setUint32(app.length - 4, 0xffff_fff0);
  assert.throws(() => decodeMessage(app), /entry count 4294967280 is impossible/);
});

Deno.test("hello round-trips and refuses a foreign first frame", () => {
  const hello = {
    version: 1,
    kind: "peer" as const,
    clusterId: "00112233445566778899aabbccddeeff",
    nodeId: 3,
    address: "127.0.0.1:7700",
    nonce: new Uint8Array(32).fill(9),
  };
  assert.deepEqual(decodeHello(encodeHello(hello)), hello);
  assert.throws(() => decodeHello(new TextEncoder().encode("GET / HTTP/1.1\r\n")), /bad magic/);
});

Deno.test("frames sent in one task go out in one write, each with its header", async () => {
  const writes: Uint8Array[] = [];
  const stream: ByteStream = {
    read: () => new Promise(() => {}),
    write: (bytes) => {
      writes.push(bytes.slice());
      return Promise.resolve(bytes.length);
    },
    closeWrite: () => Promise.resolve(),
    close: () => {},
    remote: "test:0",
  };
  const conn = new FrameConn(stream);
  const bodies = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array([9])];
  for (const b of bodies) assert.ok(conn.send(FrameType.raft, b));
  await conn.flush();
  assert.equal(writes.length, 1, "one write per task (one Ready's messages to a peer)");
  assert.deepEqual(
    writes[0],
    new Uint8Array([...bodies.flatMap((b) => [...encodeFrame(FrameType.raft, b)])]),
  );
  assert.equal(conn.queuedBytes, 0);
});
