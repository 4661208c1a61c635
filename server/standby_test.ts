import assert from "node:assert/strict";
import { imageCommands } from "../tests/machine_commands.ts";
import { runtimeWrites } from "../tests/pier/runtime_writes.ts";

import { dirname, join } from "node:path";

import { encodeCommand, Machine } from "../cluster/machine.ts";

import { Store } from "../cluster/store.ts";

import { listEpochs, LOG_VERSION, readEvents, writeEpoch } from "../vere/pier.ts";

import { IMAGE_CHUNK_BYTES } from "../cluster/images.ts";

import { haveLiblmdb } from "../tests/pier/oracle.ts";

import { SLICE_BYTES_MAX, SLICE_EVENTS_MAX, StandbyPiers } from "./standby.ts";

import { Alarms } from "./alarms.ts";

const ZOD = 0n;

/** A store with ~zod added, a machine over it, standby piers in a temp dir. */
function setup(dir: string, standbyDir = join(dir, "standby"), now?: () => number) {
  const store = Store.create(join(dir, "node"), {
    identity: { clusterId: "cd".repeat(16), nodeId: 1, groupId: 1 },
    secret: new Uint8Array(32).fill(4),
    conf: { voters: [1], learners: [] },
  });
  const machine = new Machine(store);
  let index = 0;
  const apply = (data: Uint8Array) => {
    index++;
    store.persist({
      entries: [{ index, term: 1, type: "normal", data }],
      hardState: { term: 1, vote: 1, commit: index },
    });
    let ok = false;
    store.applyTransaction(index, () => ok = machine.apply(data, index, 1).ok);
    assert.ok(ok, `entry ${index} applied`);
  };
  apply(encodeCommand({ kind: "shipAdd", ship: ZOD, fake: true, optimism: -1, life: 0 }));
  const log: string[] = [];
  const alarms = new Alarms((l) => log.push(l));
  const standby = new StandbyPiers(standbyDir, machine, (l) => log.push(l), alarms, { now });
  const append = (first: number, tags: number[]) =>
    apply(encodeCommand({
      kind: "events",
      ship: ZOD,
      firstEve: first,
      events: tags.map((t) => ({ mug: t, job: Uint8Array.of(t, t, t) })),
    }));
  return { store, machine, standby, log, append, apply, alarms };
}

Deno.test({
  name:
    "standby piers: follow the applied log, hold for a runtime, discard what the cluster never committed",
  ignore: !haveLiblmdb(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "seguro-standby-" });
    const { store, standby, log, append, alarms } = setup(dir);
    try {
      append(1, [1, 2, 3]);
      standby.sync();
      const pier = standby.pierOf(ZOD);
      assert.deepEqual([...readEvents(pier)].map((e) => e.mug), [1, 2, 3]);
      for (const path of [dirname(pier), pier, join(pier, ".urb", "log", "0i0")]) {
        assert.equal(
          Deno.statSync(path).mode! & 0o777,
          0o700,
          `${path}: the ship's keys are in it`,
        );
      }
      assert.equal(
        Deno.statSync(join(pier, ".urb", "log", "0i0", "data.mdb")).mode! & 0o777,
        0o600,
      );
      const progress = () => log.filter((l) => / at event \d+$/.test(l));
      assert.deepEqual(progress(), ["standby pier of ~zod at event 3"], "logged once written");

      // Held: sync leaves it alone; the runtime's events are read back in order.
      assert.deepEqual(standby.hold(ZOD), {
        pier,
        last: 3,
        dataFile: join(pier, ".urb", "log", "0i0", "data.mdb"),
      });
      runtimeWrites(pier, 4, [40, 50, 60]);
      append(4, [40]);
      standby.sync();
      const read = standby.readHeld(ZOD, 3, 1 << 20);
      assert.deepEqual(read.map((e) => [e.eve, e.mug]), [[4, 40], [5, 50], [6, 60]]);
      assert.deepEqual(standby.readHeld(ZOD, 3, 1).length, 1, "at least one event, then the limit");

      // Released after only event 4 committed; the cluster then commits other events 5 and 6.
      standby.release(ZOD, 4);
      assert.match(log.join("\n"), /discarded events 5-6, which the cluster never committed/);
      append(5, [7, 8]);
      standby.sync();
      assert.deepEqual([...readEvents(pier)].map((e) => e.mug), [1, 2, 3, 40, 7, 8]);
      assert.equal(progress().length, 1, "not a line per batch");

      // A pier event that differs from the cluster's is replaced when sync reaches it.
      standby.close();
      runtimeWrites(pier, 7, [99]); // written while closed: beyond the cluster's log
      append(7, [9]);
      const reopened = new StandbyPiers(
        join(dir, "standby"),
        new Machine(store),
        (l) => log.push(l),
        alarms,
      );
      reopened.sync();
      assert.deepEqual([...readEvents(pier)].map((e) => e.mug), [1, 2, 3, 40, 7, 8, 9]);
      assert.match(log.join("\n"), /discarded events 7-7, which differ from the cluster's/);
      assert.equal(progress().at(-1), "standby pier of ~zod at event 7", "again once reopened");

      // A gap in a held pier stops the tail with an error naming it.
      reopened.hold(ZOD);
      runtimeWrites(pier, 9, [11]);
      assert.throws(() => reopened.readHeld(ZOD, 7, 1 << 20), /skips from event 7 to 9/);
      reopened.close();
      assert.deepEqual(alarms.list(), [], "no pier failed");
    } finally {
      store.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "standby piers: a pier that cannot be written raises an alarm, never throws, and clears",
  ignore: !haveLiblmdb(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "seguro-standby-" });
    // The standby dir lies under a regular file: every write fails (even as root).
    const blocker = join(dir, "blocker");
    Deno.writeTextFileSync(blocker, "");
    let clock = 0;
    const { store, standby, log, append, alarms } = setup(
      dir,
      join(blocker, "standby"),
      () => clock,
    );
    try {
      append(1, [1, 2]);
      standby.sync(); // must not throw
      assert.equal(alarms.list().length, 1);
      assert.match(alarms.list()[0], /^standby ~zod: cannot write its standby pier in .*blocker/);
      append(3, [3]);
      standby.sync(); // within the retry delay: not tried again, not logged again
      assert.equal(log.filter((l) => l.startsWith("ALARM")).length, 1);

      // The cause goes away; after the retry delay the pier catches up and the alarm clears.
      Deno.removeSync(blocker);
      Deno.mkdirSync(blocker);
      clock += 5_000;
      standby.sync();
      assert.deepEqual(alarms.list(), []);
      assert.match(log.join("\n"), /alarm cleared: standby ~zod/);
      assert.deepEqual([...readEvents(standby.pierOf(ZOD))].map((e) => e.mug), [1, 2, 3]);
      standby.close();
    } finally {
      store.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "standby piers: schedule() writes later, in bounded slices; hold() sees the applied state at once",
  ignore: !haveLiblmdb(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "seguro-standby-" });
    const { store, standby, log, append } = setup(dir);
    const total = 2 * SLICE_EVENTS_MAX + 500;
    const tags = (n: number, base: number) => Array.from({ length: n }, (_, i) => (base + i) % 251);
    const mugs = () => [...readEvents(standby.pierOf(ZOD))].map((e) => e.mug);
    try {
      append(1, tags(total, 0));
      standby.schedule();
      standby.schedule(); // coalesced with the first
      assert.equal(
        log.filter((l) => l.includes("created")).length,
        0,
        "nothing on the caller's stack",
      );
      await standby.idle();
      assert.deepEqual(mugs(), tags(total, 0), "the slices caught up");
      assert.deepEqual(await standby.idle(), undefined, "idle at once when nothing is pending");

      // One slice writes at most SLICE_EVENTS_MAX events, and says whether it is done.
      append(total + 1, tags(SLICE_EVENTS_MAX + 1, total));
      assert.equal(standby.sync(), false, "a slice stops at its bound");
      assert.equal(mugs().length, total + SLICE_EVENTS_MAX);
      assert.equal(standby.sync(), true, "the next slice finishes");
      assert.equal(mugs().length, total + SLICE_EVENTS_MAX + 1);

      // A scheduled slice pending: hold() brings the pier to the applied state itself,
      // and the slice then leaves the held pier alone.
      append(total + SLICE_EVENTS_MAX + 2, tags(SLICE_EVENTS_MAX + 10, 7));
      standby.schedule();
      const held = standby.hold(ZOD);
      assert.equal(held.last, total + 2 * SLICE_EVENTS_MAX + 11);
      assert.equal(mugs().length, held.last);
      await standby.idle();
      assert.equal(mugs().length, held.last);

      // Applied while held (no schedule called): release itself schedules the catch-up.
      append(held.last + 1, [5]);
      standby.release(ZOD, held.last);
      await standby.idle();
      assert.equal(mugs().length, held.last + 1);
      standby.close();
    } finally {
      store.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The epochs of a pier's log, by name. */
function epochNames(pier: string): string[] {
  return listEpochs(pier).map((e) => `0i${e.base}`);
}

Deno.test({
  name:
    "standby piers: move to the newest complete image (image.bin, the events after it), and after a chop",
  ignore: !haveLiblmdb(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "seguro-standby-" });
    const { store, machine, standby, log, append, apply, alarms } = setup(dir);
    const pier = standby.pierOf(ZOD);
    const tags = (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, i) => (from + i) % 251);
    const image4 = new Uint8Array(3000).map((_, i) => (i * 13) & 0xff);
    const image8 = new Uint8Array(5000).map((_, i) => (i * 7 + 1) & 0xff);
    try {
      // A pier written before any image: every event in 0i0.
      append(1, tags(1, 6));
      standby.sync();
      assert.deepEqual(epochNames(pier), ["0i0"]);

      // An image completes at epoch 4: the pier moves there and keeps only the events after it.
      for (const c of imageCommands(ZOD, 4, image4, { chunkBytes: IMAGE_CHUNK_BYTES })) apply(c);
      append(7, tags(7, 9));
      while (!standby.sync());
      assert.deepEqual(epochNames(pier), ["0i4"]);
      assert.deepEqual(Deno.readFileSync(join(pier, ".urb", "log", "0i4", "image.bin")), image4);
      assert.deepEqual([...readEvents(pier)].map((e) => [e.eve, e.mug]), [
        [5, 5],
        [6, 6],
        [7, 7],
        [8, 8],
        [9, 9],
      ]);
      assert.match(log.join("\n"), /standby pier of ~zod moved to epoch 4: .*replays from event 5/);

      // A runtime ran on it (its .urb/chk) and it is held and released at epoch 4.
      const held = standby.hold(ZOD);
      assert.deepEqual(held, {
        pier,
        last: 9,
        dataFile: join(pier, ".urb", "log", "0i4", "data.mdb"),
      });
      runtimeWrites(pier, 10, [10]);
      Deno.writeTextFileSync(join(pier, ".urb", "chk", "snapshot"), "vere's");
      assert.deepEqual(standby.readHeld(ZOD, 9, 1 << 20).map((e) => e.eve), [10]);
      append(10, [10]);
      standby.release(ZOD, 10);

      // Epoch 8's image and a chop there: the pier moves on; the old snapshot goes.
      append(11, tags(11, 12));
      for (const c of imageCommands(ZOD, 8, image8, { chunkBytes: IMAGE_CHUNK_BYTES })) apply(c);
      apply(encodeCommand({ kind: "chop", ship: ZOD, firstEve: 9 }));
      while (!standby.sync());
      assert.deepEqual(epochNames(pier), ["0i8"]);
      assert.deepEqual([...readEvents(pier)].map((e) => e.eve), [9, 10, 11, 12]);
      assert.deepEqual([...Deno.readDirSync(join(pier, ".urb", "chk"))], [], "no stale snapshot");
      assert.deepEqual(
        [...Deno.readDirSync(join(pier, ".urb"))].map((e) => e.name).sort(),
        ["chk", "log"],
        "no scratch file left",
      );
      standby.close();

      // A standby dir created after the chop: the pier starts at the image, never at event 1.
      const fresh = new StandbyPiers(join(dir, "fresh"), machine, (l) => log.push(l), alarms);
      const other = fresh.pierOf(ZOD);
      assert.equal(fresh.hold(ZOD).last, 12, "hold() makes the whole move itself");
      assert.deepEqual(epochNames(other), ["0i8"]);
      assert.deepEqual(Deno.readFileSync(join(other, ".urb", "log", "0i8", "image.bin")), image8);
      assert.deepEqual([...readEvents(other)].map((e) => e.eve), [9, 10, 11, 12]);
      fresh.close();
    } finally {
      store.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "standby piers: an image is copied in slices; a pier whose epoch the cluster lacks gets a new log",
  ignore: !haveLiblmdb(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "seguro-standby-" });
    const { store, standby, log, append, apply, alarms } = setup(dir);
    const pier = standby.pierOf(ZOD);
    // Bigger than one slice's bytes: the copy takes several slices.
    const big = new Uint8Array(SLICE_BYTES_MAX + 2 * IMAGE_CHUNK_BYTES).map((_, i) => i & 0xff);
    try {
      append(1, [1, 2, 3]);
      for (const c of imageCommands(ZOD, 2, big, { chunkBytes: IMAGE_CHUNK_BYTES })) apply(c);
      assert.equal(standby.sync(), false, "the first slice stops within its bytes");
      assert.deepEqual(epochNames(pier), ["0i0"], "still the old epoch meanwhile");
      while (!standby.sync());
      assert.deepEqual(epochNames(pier), ["0i2"]);
      assert.deepEqual(Deno.readFileSync(join(pier, ".urb", "log", "0i2", "image.bin")), big);
      assert.deepEqual([...readEvents(pier)].map((e) => e.eve), [3]);
      standby.close();

      // An epoch the cluster has no image for (as vere's own rollover makes): a new log.
      writeEpoch(pier, {
        meta: { version: LOG_VERSION, who: ZOD, fake: true, life: 0 },
        events: [],
        base: 3,
        vereVersion: "4.0",
        image: Uint8Array.of(1, 2, 3),
      });
      const reopened = new StandbyPiers(join(dir, "standby"), new Machine(store), (l) => {
        log.push(l);
      }, alarms);
      while (!reopened.sync());
      assert.match(log.join("\n"), /wrote a new log \(its epoch 3 has no complete image/);
      assert.deepEqual(epochNames(pier), ["0i2"]);
      assert.deepEqual([...readEvents(pier)].map((e) => e.eve), [3]);
      reopened.close();
      assert.deepEqual(alarms.list(), []);
    } finally {
      store.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a discarded .urb/chk snapshot is set aside, and only the newest one is kept",
  ignore: !haveLiblmdb(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "seguro-standby-" });
    const { store, standby, append } = setup(dir);
    try {
      append(1, [1, 2]);
      standby.sync();
      const pier = standby.pierOf(ZOD);
      const urb = join(pier, ".urb");
      const asides = () =>
        [...Deno.readDirSync(urb)].map((e) => e.name).filter((n) => n.startsWith("chk.discarded-"));
      let eve = 2;
      for (let round = 1; round <= 3; round++) {
        // A runtime ran (its snapshot in .urb/chk), wrote an event the cluster never committed.
        standby.hold(ZOD);
        Deno.mkdirSync(join(urb, "chk"), { recursive: true });
        Deno.writeTextFileSync(join(urb, "chk", "north.bin"), `round ${round}`);
        runtimeWrites(pier, eve + 1, [90 + round]);
        standby.release(ZOD, eve);
        assert.equal(asides().length, 1, `round ${round}: one snapshot set aside, not ${asides()}`);
        const kept = Deno.readTextFileSync(join(urb, asides()[0], "north.bin"));
        assert.equal(kept, `round ${round}`, "the newest is the one kept");
        append(eve + 1, [eve + 1]);
        eve++;
        while (!standby.sync());
      }
    } finally {
      standby.close();
      store.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
