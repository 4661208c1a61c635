import assert from "node:assert/strict";
import fc from "fast-check";
import { encodeFrame } from "./newt.ts";
import { cell, cord, jam, list, tuple } from "./noun.ts";
import { PlanFrameEncoder } from "./plan_frames.ts";
import { encodeRuntimeMessage } from "./runtime_protocol.ts";
import { hex } from "../tests/fixtures.ts";

/** The frame as the protocol defines it: the newt frame of the jam of the message noun. */
function reference(ship: bigint, eve: number, mug: number, job: Uint8Array): Uint8Array {
  return encodeFrame(encodeRuntimeMessage({ type: "plan", ship, eve, mug, job }));
}

/** Jam bytes of about `n` bytes, as the load's jobs are (a tuple ending in a long cord). */
function jobOf(n: number): Uint8Array {
  return jam(tuple(0x1234_5678_9abcn, list([cord("bench")]), cord("load"), cord("x".repeat(n))));
}

Deno.test("a plan frame is the newt frame of the jam of [%plan ship eve mug job], for any fields", () => {
  // Short jobs take the whole jam, longer ones the splice: both, at every bit offset.
  const jobs = fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 40 }),
    fc.uint8Array({ minLength: 17, maxLength: 2000, size: "max" }),
  ).map((b) => {
    b[b.length - 1] ||= 1; // jam bytes never end in zero
    return b;
  });
  const eves = fc.oneof(
    fc.integer({ min: 1, max: 100_000 }),
    fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  );
  fc.assert(
    fc.property(
      fc.bigInt({ min: 0n, max: 2n ** 128n - 1n }),
      eves,
      fc.integer({ min: 0, max: 0xffff_ffff }),
      jobs,
      (ship, eve, mug, job) => {
        const encoder = new PlanFrameEncoder(ship, job);
        assert.equal(hex(encoder.frame(eve, mug)), hex(reference(ship, eve, mug, job)));
        // The load's mug is the eve: jam writes the mug as a back-reference to the eve when shorter.
        const m = eve % 0x1_0000_0000;
        assert.equal(hex(encoder.frame(eve, m)), hex(reference(ship, eve, m, job)));
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("a plan frame is the jam when eve or mug repeat an earlier atom: a back-reference if shorter", () => {
  const tag = 0x6e61_6c70; // %plan
  const long = jobOf(300);
  const ships = fc.oneof(
    fc.integer({ min: 0, max: 200 }).map(BigInt),
    fc.constantFrom(BigInt(tag), 2n ** 40n, 2n ** 52n + 3n, 2n ** 127n),
  );
  fc.assert(
    fc.property(
      ships,
      fc.nat(5),
      fc.nat(5),
      fc.integer({ min: 1, max: 2 ** 40 }),
      (ship, whichEve, whichMug, random) => {
        const shipNumber = ship <= 0xffff_ffffn ? Number(ship) : 7;
        const eve = [Math.max(1, shipNumber), tag, 1, 64, 2 ** 40, random][whichEve];
        const mug = [eve % 0x1_0000_0000, shipNumber, tag, 0, 64, random % 0x1_0000_0000][whichMug];
        const encoder = new PlanFrameEncoder(ship, long);
        assert.equal(
          hex(encoder.frame(eve, mug)),
          hex(reference(ship, eve, mug, long)),
          `ship ${ship} eve ${eve} mug ${mug}`,
        );
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("a plan frame equals the jam when atoms repeat: ship, eve and mug alike, a job equal to one", () => {
  const long = jobOf(1000);
  for (
    const job of [long, jobOf(20), new Uint8Array([5]), new Uint8Array([0x70, 0x6c, 0x61, 0x6e])]
  ) {
    for (const [ship, eve, mug] of [[0n, 1, 0], [5n, 5, 5], [2n ** 40n, 2 ** 40, 7], [1n, 1, 1]]) {
      const encoder = new PlanFrameEncoder(ship as bigint, job);
      assert.equal(
        hex(encoder.frame(eve as number, mug as number)),
        hex(reference(ship as bigint, eve as number, mug as number, job)),
        `ship ${ship} eve ${eve} mug ${mug} job of ${job.length} bytes`,
      );
    }
  }
});

Deno.test("the protocol document's %plan frame comes out byte for byte", () => {
  const job = jam(cell(1n, 2n));
  assert.equal(hex(new PlanFrameEncoder(0n, job).frame(1, 0)), "000a000000011f8e2dcc9d71828d91");
});

Deno.test("a run holds each event's frame back to back, with where each starts", () => {
  const job = jobOf(1000);
  const encoder = new PlanFrameEncoder(0x1_0000n, job);
  // Eves across bit-length steps, so the frames differ in length and bit offset.
  const first = 2 ** 16 - 300;
  const count = 600;
  const run = encoder.frames(first, count, (eve) => eve & 0x7fff_ffff);
  assert.equal(run.first, first);
  assert.equal(run.count, count);
  assert.equal(run.starts[0], 0);
  assert.equal(run.starts[count], run.bytes.length);
  const lengths = new Set<number>();
  for (let i = 0; i < count; i++) {
    const eve = first + i;
    const frame = run.bytes.subarray(run.starts[i], run.starts[i + 1]);
    lengths.add(frame.length);
    assert.equal(hex(frame), hex(reference(0x1_0000n, eve, eve, job)), `eve ${eve}`);
  }
  assert.ok(lengths.size > 1, "the eves should give frames of more than one length");
  assert.throws(() => encoder.frames(1, 0, (e) => e), /positive count/);
});

Deno.test("a run encoded into a used buffer is the same as into a fresh one, short jobs too", () => {
  for (const job of [jobOf(1000), jam(cell(1n, 2n))]) {
    const encoder = new PlanFrameEncoder(5n, job);
    const count = 50;
    const buffer = new Uint8Array(count * encoder.frameBytesMax).fill(0xff);
    for (const first of [2 ** 40, 1, 60]) {
      const reused = encoder.frames(first, count, (eve) => eve % 7, buffer);
      const fresh = encoder.frames(first, count, (eve) => eve % 7);
      assert.equal(reused.bytes.buffer, buffer.buffer);
      assert.equal(
        hex(reused.bytes),
        hex(fresh.bytes),
        `job of ${job.length} bytes, first ${first}`,
      );
      assert.deepEqual([...reused.starts], [...fresh.starts]);
    }
    assert.throws(() => encoder.frames(1, count + 1, (e) => e, buffer), /needs \d+ bytes/);
  }
});

Deno.test("an encoder refuses what the protocol refuses", () => {
  assert.throws(() => new PlanFrameEncoder(-1n, jobOf(100)), /ship/);
  assert.throws(() => new PlanFrameEncoder(0n, new Uint8Array([1, 0])), /zero byte/);
  assert.throws(() => new PlanFrameEncoder(0n, jobOf(100)).frame(0, 0), /eve/);
});
