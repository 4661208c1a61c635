import assert from "node:assert/strict";
import { applyAll, imageCommands } from "../tests/machine_commands.ts";
import { checkImage, chopTarget, planChop } from "./chop.ts";
import { type ImageInfo, type ImageReader, sha256 } from "./images.ts";
import {
  type ApplyResult,
  type Command,
  decodeCommand,
  encodeCommand,
  Machine,
} from "./machine.ts";
import { Store } from "./store.ts";

const ZOD = 0n;
const name = (s: bigint) => `~ship${s}`;

/** A store of node `nodeId` in a temp dir, removed afterwards. */
async function withStore(
  f: (store: Store) => void | Promise<void>,
  nodeId = 1,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "seguro-chop-" });
  const store = Store.create(dir, {
    identity: { clusterId: "ab".repeat(16), nodeId, groupId: 1 },
    secret: new Uint8Array(32).fill(3),
    conf: { voters: [1], learners: [] },
  });
  try {
    await f(store);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Commands that store the image of `epoch` in chunks of 1,000 bytes; complete unless `partial`. */
function image(epoch: number, partial = false): Uint8Array[] {
  return imageCommands(ZOD, epoch, imageOf(epoch), { chunkBytes: 1000, partial });
}

/** The bytes of the image of `epoch` in these tests. */
function imageOf(epoch: number, size = 3000): Uint8Array {
  return new Uint8Array(size).map((_, i) => (i * 31 + epoch) & 0xff);
}

/** ~zod with events 1..`last` (job of event n: 10 bytes of n), complete images 100 and 200, a partial 300. */
function zodScript(last = 250): Uint8Array[] {
  const events = Array.from({ length: last }, (_, i) => ({
    mug: i + 1,
    job: new Uint8Array(10).fill((i + 1) & 0xff),
  }));
  return [
    encodeCommand({ kind: "shipAdd", ship: ZOD, fake: true, optimism: -1, life: 0 }),
    encodeCommand({ kind: "events", ship: ZOD, firstEve: 1, events }),
    ...image(100),
    ...image(200),
    ...image(230, true),
  ];
}

function chop(firstEve: number, ship = ZOD): Uint8Array {
  return encodeCommand({ kind: "chop", ship, firstEve });
}

function reason(r: ApplyResult): string {
  return r.ok ? "(applied)" : r.reason;
}

Deno.test("chop: the command round-trips; a short or long one is refused", () => {
  const c: Command = { kind: "chop", ship: (1n << 127n) + 9n, firstEve: 4001 };
  const bytes = encodeCommand(c);
  assert.equal(bytes[0], 11, "kind 11");
  assert.equal(bytes.length, 25);
  assert.deepEqual(decodeCommand(bytes), c);
  assert.throws(() => decodeCommand(bytes.subarray(0, 24)));
  assert.throws(() => decodeCommand(Uint8Array.of(...bytes, 0)));
});

Deno.test("chop: applied only after a complete image within the log, and only forward", async () => {
  await withStore((store) => {
    const m = new Machine(store, name);
    const setup = zodScript();
    assert.ok(applyAll(store, m, setup, 1).every((r) => r.ok));
    const refused = applyAll(store, m, [
      chop(101, 5n), // an unknown ship
      chop(1), // the log starts there already
      chop(151), // no image of epoch 150
      chop(231), // epoch 230's image is not complete
      chop(301), // past the last event, and no image either
    ], setup.length + 1);
    assert.deepEqual(refused.map((r) => r.ok), [false, false, false, false, false]);
    assert.match(reason(refused[0]), /~ship5 is not on this cluster/);
    assert.match(reason(refused[1]), /~ship0: its log starts at event 1 already/);
    assert.match(reason(refused[2]), /no complete image of epoch 150/);
    assert.match(reason(refused[3]), /no complete image of epoch 230/);
    assert.match(reason(refused[4]), /its last event is 250/);
    assert.equal(m.ships.get(ZOD)!.firstEve, 1, "nothing changed");
    assert.equal(m.ships.events(ZOD, 1, 1)[0].eve, 1);

    let at = setup.length + refused.length + 1;
    const [first] = applyAll(store, m, [chop(101)], at++);
    assert.equal(reason(first), "(applied)");
    const zod = m.ships.get(ZOD)!;
    assert.deepEqual([zod.firstEve, zod.lastEve], [101, 250]);
    assert.equal(zod.bytes, 150 * 10, "the dropped events' bytes are gone from the count");
    assert.equal(m.ships.event(ZOD, 100), undefined);
    assert.deepEqual(m.ships.events(ZOD, 1, 3).map((e) => e.eve), [101, 102, 103]);
    assert.deepEqual(m.images.list(ZOD).map((i) => i.epoch), [100, 200, 230]);

    const again = applyAll(store, m, [chop(101), chop(51)], at);
    at += 2;
    assert.match(reason(again[0]), /starts at event 101 already; a chop must start it later/);
    assert.match(reason(again[1]), /starts at event 101 already/);

    const [second] = applyAll(store, m, [chop(201)], at++);
    assert.equal(reason(second), "(applied)");
    assert.equal(m.ships.get(ZOD)!.firstEve, 201);
    assert.deepEqual(
      m.images.list(ZOD).map((i) => i.epoch),
      [200, 230],
      "images of epochs before the log's start are dropped with their events",
    );
    assert.deepEqual(m.images.chunk(ZOD, 200, 1000), imageOf(200).subarray(1000, 2000));
    assert.equal(new Machine(store).ships.get(ZOD)!.firstEve, 201, "it survives a reopen");
  });
});

Deno.test("chop: a log may end at its image (no event after it); events then append after it", async () => {
  await withStore((store) => {
    const m = new Machine(store, name);
    const setup = zodScript(200);
    assert.ok(applyAll(store, m, setup, 1).every((r) => r.ok));
    const [r] = applyAll(store, m, [chop(201)], setup.length + 1);
    assert.equal(reason(r), "(applied)");
    assert.deepEqual(m.ships.events(ZOD, 1, 10), []);
    const next = encodeCommand({
      kind: "events",
      ship: ZOD,
      firstEve: 201,
      events: [{ mug: 7, job: Uint8Array.of(7) }],
    });
    assert.equal(reason(applyAll(store, m, [next], setup.length + 2)[0]), "(applied)");
    assert.deepEqual(m.ships.events(ZOD, 1, 10).map((e) => e.eve), [201]);
  });
});

Deno.test("chop: every node that applies the same entries ends in the same state with the same answers", async () => {
  const script = [
    ...zodScript(),
    chop(151),
    chop(101),
    chop(101),
    chop(201),
    chop(231),
    encodeCommand({
      kind: "events",
      ship: ZOD,
      firstEve: 251,
      events: [{ mug: 1, job: Uint8Array.of(1) }],
    }),
  ];
  const runs: unknown[] = [];
  for (const nodeId of [1, 2, 3]) {
    await withStore((store) => {
      const m = new Machine(store, name);
      // Node 2 applies in one batch, the others entry by entry: the batching must not matter.
      const results = nodeId === 2
        ? applyAll(store, m, script, 1)
        : script.flatMap((c, i) => applyAll(store, m, [c], i + 1));
      const zod = m.ships.get(ZOD)!;
      runs.push({
        results: results.map((r) => [r.ok, reason(r)]),
        ship: [zod.firstEve, zod.lastEve, zod.lastMug, zod.bytes],
        events: m.ships.events(ZOD, 1, 1000).map((e) => [e.eve, e.mug, [...e.job]]),
        images: m.images.list(ZOD),
      });
    }, nodeId);
  }
  assert.deepEqual(runs[1], runs[0]);
  assert.deepEqual(runs[2], runs[0]);
});

Deno.test("chop target: the N-th newest epoch of the log; one-line reasons when nothing drops", () => {
  const complete = (epoch: number): ImageInfo => ({ epoch, size: 1, sha256: "ab".repeat(32) });
  const images = [complete(100), complete(200), { epoch: 300, size: 5 }, complete(400)];
  const zod = { ship: ZOD, firstEve: 1, lastEve: 350 };
  assert.deepEqual(chopTarget(zod, images, 1, name), { epoch: 200, keptEpochs: [200] });
  assert.deepEqual(chopTarget(zod, images, 2, name), { epoch: 100, keptEpochs: [100, 200] });
  assert.equal(
    chopTarget(zod, images, 3, name),
    "~ship0's log has 3 epochs (0i0, 0i100, 0i200); keeping 3 drops nothing",
  );
  assert.match(
    chopTarget(zod, [], 1, name) as string,
    /^~ship0 has no complete epoch image on the cluster, so no event can be dropped/,
  );
  assert.match(
    chopTarget(zod, [{ epoch: 100, size: 7 }], 1, name) as string,
    /no complete epoch image/,
    "an incomplete image does not count",
  );
  const chopped = { ship: ZOD, firstEve: 201, lastEve: 350 };
  assert.equal(
    chopTarget(chopped, images, 1, name),
    "~ship0's log starts at event 201, after epoch 200's image, and no newer complete image exists; nothing to drop",
  );
  assert.match(chopTarget(zod, images, 0, name) as string, /--keep-epochs must be a whole number/);
});

Deno.test("chop plan: what drops, from the log's start to the epoch; the leader's image check", async () => {
  await withStore(async (store) => {
    const m = new Machine(store, name);
    const setup = zodScript();
    applyAll(store, m, setup, 1);
    const plan = await planChop(m.ships, m.images, ZOD, 1, name);
    assert.deepEqual(plan, {
      ship: "0",
      fromEve: 1,
      toEve: 200,
      firstEve: 201,
      epoch: 200,
      bytes: 2000,
      imageBytes: 3000,
      lastEve: 250,
      keptEpochs: [200],
      chopped: false,
    });
    assert.equal(
      await planChop(m.ships, m.images, 9n, 1, name),
      "~ship9 is not on this cluster; see 'seguro ship list'",
    );
    assert.equal(await checkImage(m.images, ZOD, 200, name), undefined);
    assert.match(
      (await checkImage(m.images, ZOD, 230, name))!,
      /no complete image of epoch 230 on this node/,
    );
  });

  // A stored chunk that went bad (a disk error) is caught before anything is proposed.
  const good = imageOf(200);
  const bad = good.slice();
  bad[1500] ^= 1;
  const reader: ImageReader = {
    get: (_s, epoch) =>
      epoch === 200 ? { epoch, size: good.length, sha256: hexOf(sha256(good)) } : undefined,
    list: () => [],
    chunk: (_s, _e, offset) =>
      offset < bad.length ? bad.subarray(offset, offset + 1000) : undefined,
  };
  assert.match(
    (await checkImage(reader, ZOD, 200, name))!,
    /^~ship0's image of epoch 200 does not match its SHA-256 on this node .*nothing was dropped/,
  );
  const short: ImageReader = {
    ...reader,
    chunk: (_s, _e, o) => o === 0 ? good.subarray(0, 1000) : undefined,
  };
  assert.match((await checkImage(short, ZOD, 200, name))!, /no chunk at offset 1000 of 3000/);
});

function hexOf(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
