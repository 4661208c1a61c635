import assert from "node:assert/strict";
import { join } from "node:path";
import type { PlannedEvent } from "../cluster/machine.ts";
import { LOG_VERSION, type PierEvent, writePier } from "../vere/pier.ts";
import { haveLiblmdb } from "../tests/pier/oracle.ts";
import { PierTail, PierTailError, readLivePier, type TailBatch } from "./pier_tail.ts";

/** Longer than any test: a tail that waits on its timer never wakes by it here. */
const NEVER_MS = 3_600_000;

/** A pier in memory that a test appends to, and a cluster that records proposals. */
function setup() {
  const pier: PierEvent[] = [];
  const append = (n: number) => {
    for (let i = 0; i < n; i++) {
      const eve = pier.length + 1;
      pier.push({ eve, mug: eve * 7, job: Uint8Array.of(eve, eve, eve) });
    }
  };
  const read = (after: number, maxBytes: number) => {
    const out: PierEvent[] = [];
    let bytes = 0;
    for (const e of pier.slice(after)) {
      out.push(e);
      bytes += e.job.length;
      if (bytes >= maxBytes) break;
    }
    return out;
  };
  const proposed: { firstEve: number; events: PlannedEvent[] }[] = [];
  let refusal: string | undefined;
  const propose = (firstEve: number, events: PlannedEvent[]) => {
    if (refusal !== undefined) return Promise.reject(new Error(refusal));
    proposed.push({ firstEve, events });
    return Promise.resolve();
  };
  const refuse = (why: string) => refusal = why;
  // The tail's own word that a batch is committed (its onBatch), awaited by the tests.
  const batches: TailBatch[] = [];
  const waiting: { eve: number; resolve: () => void }[] = [];
  const onBatch = (b: TailBatch) => {
    batches.push(b);
    for (const w of waiting.filter((w) => w.eve <= b.lastEve)) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve();
    }
  };
  /** Resolves once the tail has committed up to `eve`. */
  const committedUpTo = (eve: number) =>
    new Promise<void>((resolve) => {
      if ((batches.at(-1)?.lastEve ?? 0) >= eve) return resolve();
      waiting.push({ eve, resolve });
    });
  return { pier, append, read, proposed, propose, refuse, batches, onBatch, committedUpTo };
}

Deno.test("pier tail: contiguous batches bounded in bytes, woken by poke, stopped after its batch", async () => {
  const t = setup();
  t.append(10); // 3 bytes a job
  const tail = new PierTail({
    after: 0,
    read: t.read,
    propose: t.propose,
    pollMs: NEVER_MS,
    batchBytes: 7,
    onBatch: t.onBatch,
  });
  const running = tail.run();
  await t.committedUpTo(10);
  assert.deepEqual(
    t.proposed.map((p) => [p.firstEve, p.events.length]),
    [[1, 3], [4, 3], [7, 3], [10, 1]],
    "at least 7 bytes, then the batch ends",
  );
  assert.deepEqual(t.proposed[0].events[1], { mug: 14, job: Uint8Array.of(2, 2, 2) });
  assert.deepEqual(t.batches.map((b) => [b.firstEve, b.lastEve]), [[1, 3], [4, 6], [7, 9], [
    10,
    10,
  ]]);
  assert.equal(tail.committed, 10);

  // Waiting on a timer that never fires here: only the poke can wake it.
  t.append(2);
  tail.poke();
  await t.committedUpTo(12);
  assert.equal(tail.committed, 12);
  assert.equal(tail.batches, 5);
  assert.ok(tail.delayQuantile(0.99)! >= tail.delayQuantile(0)!);

  await tail.stop();
  await running;
  t.append(1);
  tail.poke();
  assert.equal(tail.committed, 12, "stopped: nothing more is read");
});

Deno.test("pier tail: a refused batch stops it with the first event; so does a failed read", async () => {
  const t = setup();
  t.append(4);
  t.refuse("Event 1 differs from the cluster's");
  const refused = new PierTail({ after: 0, read: t.read, propose: t.propose, pollMs: NEVER_MS });
  await assert.rejects(refused.run(), (e: unknown) => {
    assert.ok(e instanceof PierTailError);
    assert.equal(e.eve, 1);
    assert.equal(e.reading, false);
    assert.equal(e.message, "Event 1 differs from the cluster's");
    return true;
  });
  assert.equal(refused.committed, 0);

  const broken = new PierTail({
    after: 2,
    read: () => {
      throw new Error("pier of ~zod skips from event 2 to 4");
    },
    propose: t.propose,
    pollMs: NEVER_MS,
  });
  await assert.rejects(broken.run(), (e: unknown) => {
    assert.ok(e instanceof PierTailError);
    assert.deepEqual([e.eve, e.reading, e.message], [
      3,
      true,
      "pier of ~zod skips from event 2 to 4",
    ]);
    return true;
  });

  // A read that breaks its contract (not contiguous) is a read failure, never proposed.
  const skipping = new PierTail({
    after: 0,
    read: () => [{ eve: 2, mug: 0, job: Uint8Array.of(1) }],
    propose: t.propose,
    pollMs: NEVER_MS,
  });
  await assert.rejects(skipping.run(), /returned event 2 where 1 belongs/);
  assert.deepEqual(t.proposed, []);
});

Deno.test("pier tail: a write to the watched file wakes it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "seguro-tail-" });
  const file = join(dir, "data.mdb");
  Deno.writeFileSync(file, new Uint8Array(0));
  const t = setup();
  const lines: string[] = [];
  const tail = new PierTail({
    after: 0,
    read: t.read,
    propose: t.propose,
    pollMs: NEVER_MS,
    watch: { path: file, backstopMs: NEVER_MS },
    onBatch: t.onBatch,
    log: (l) => lines.push(l),
  });
  try {
    const running = tail.run();
    assert.equal(tail.watching, true, lines.join("\n"));
    // Neither timer fires within the test: only the file's change can wake the tail.
    t.append(3);
    Deno.writeFileSync(file, Uint8Array.of(1), { append: true });
    await t.committedUpTo(3);
    t.append(1);
    Deno.writeFileSync(file, Uint8Array.of(2), { append: true });
    await t.committedUpTo(4);
    await tail.stop();
    await running;
    assert.equal(tail.watching, false, "the watch ends with the tail");
  } finally {
    await tail.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pier tail: a file that cannot be watched is polled instead", async () => {
  const t = setup();
  const lines: string[] = [];
  t.append(1);
  const tail = new PierTail({
    after: 0,
    read: t.read,
    propose: t.propose,
    pollMs: 1,
    watch: { path: "/nonexistent/seguro-tail/data.mdb", backstopMs: NEVER_MS },
    onBatch: t.onBatch,
    log: (l) => lines.push(l),
  });
  const running = tail.run();
  assert.equal(tail.watching, false);
  assert.match(lines.join("\n"), /cannot watch \/nonexistent.*; reading it every 1 ms/);
  await t.committedUpTo(1);
  t.append(1); // no poke: the poll finds it
  await t.committedUpTo(2);
  await tail.stop();
  await running;
});

Deno.test("pier tail: drain stops the loop, then replicates everything left, unless told to stop", async () => {
  const t = setup();
  t.append(3);
  const tail = new PierTail({
    after: 0,
    read: t.read,
    propose: t.propose,
    pollMs: NEVER_MS,
    batchBytes: 3,
    onBatch: t.onBatch,
  });
  const running = tail.run();
  await t.committedUpTo(3);
  t.append(4); // not poked: the loop sleeps
  assert.equal(await tail.drain(() => false), 0, "told to stop before the first batch");
  await running;
  assert.equal(await tail.drain(), 4);
  assert.equal(tail.committed, 7);
  assert.equal(await tail.drain(), 0, "nothing left");
});

Deno.test({
  name: "pier tail: readLivePier reads a pier's events after N, at least one, at most the bytes",
  ignore: !haveLiblmdb(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "seguro-tail-" });
    try {
      const pier = join(dir, "zod");
      const events = [1, 2, 3, 4, 5].map((eve) => ({ eve, mug: eve, job: new Uint8Array(10) }));
      writePier(pier, {
        meta: { version: LOG_VERSION, who: 0n, fake: true, life: 0 },
        events,
        vereVersion: "4.0",
      });
      const read = readLivePier(pier);
      assert.deepEqual(read(2, 1 << 20).map((e) => e.eve), [3, 4, 5]);
      assert.deepEqual(read(2, 1).map((e) => e.eve), [3]);
      assert.deepEqual(read(2, 20).map((e) => e.eve), [3, 4]);
      assert.deepEqual(read(5, 1 << 20), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
