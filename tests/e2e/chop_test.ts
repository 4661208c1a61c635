/**
 * `seguro ship chop` on a real 3-node cluster: a ship with two epochs whose
 * images the cluster holds, chopped (asked for --yes first) after the older
 * then the newer image; every node's log then starts after the image and
 * `log verify` agrees; `log tail`/`show` and `ship list` know it; an export
 * starts at the image's epoch (read back with vere/pier.ts); a standby pier
 * made before the chop holds the image and the events after it. The
 * refusals: no complete image, nothing to drop, an unknown ship.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ClusterClient } from "../../cluster/api.ts";
import type { ShipJson, ShipVerify } from "../../cluster/admin_protocol.ts";
import { IMAGE_CHUNK_BYTES, sha256 } from "../../cluster/images.ts";
import { listEpochs, readEvents, readPierMeta } from "../../vere/pier.ts";
import { lmdbMissing } from "../fixtures.ts";
import { beltEvents } from "./belt_events.ts";
import { clusterTest, logEventOf, NodeProcess, type TestCluster } from "./harness.ts";

/** Why these tests cannot run here, if they cannot. */
const LMDB = lmdbMissing();

/** ~zod's log: events 1..250, epochs 0i0, 0i100 and 0i200. */
const LAST = 250;

function imageOf(size: number, seed: number): Uint8Array {
  return new Uint8Array(size).map((_, i) => (i * 131 + seed * 17 + (i >> 9)) & 0xff);
}

/** Stores ~zod's image of `epoch` through the leader, in chunks, and completes it. */
async function storeImage(client: ClusterClient, epoch: number, file: Uint8Array): Promise<void> {
  for (let offset = 0; offset < file.length; offset += IMAGE_CHUNK_BYTES) {
    const data = file.subarray(offset, offset + IMAGE_CHUNK_BYTES);
    await client.ships.write({
      kind: "imageChunk",
      ship: 0n,
      epoch,
      offset,
      sha256: sha256(data),
      data,
    });
  }
  await client.ships.write({
    kind: "imageDone",
    ship: 0n,
    epoch,
    size: file.length,
    sha256: sha256(file),
  });
}

/** Runs `seguro ARGS --cluster ADDRESS` and waits for it. */
async function seguro(c: TestCluster, args: string[], address = c.anyAddress()) {
  const p = new NodeProcess([...args, "--cluster", address], { SEGURO_TOKEN: c.token });
  const status = await p.exited;
  return { code: status.code, out: p.stdoutLines.join("\n"), all: p.lines.join("\n"), p };
}

/** The one `error:` line of a failed command. */
function errorLine(all: string): string {
  const errors = all.split("\n").filter((l) => l.startsWith("error:"));
  assert.equal(errors.length, 1, all);
  return errors[0];
}

clusterTest(
  "ship chop: asks for --yes, drops events before an epoch image on every node; verify, tail, export and a standby pier follow",
  3,
  async (c) => {
    // A follower keeps standby piers from before the ship exists (so from before the chop).
    const leaderId = (await c.status(1)).leaderId;
    const keeper = [...c.members.values()].find((m) => m.id !== leaderId)!;
    await keeper.proc!.kill("SIGTERM");
    const standby = join(c.root, "standby");
    keeper.proc = c.restart(keeper.id, ["--standby-dir", standby]);
    await keeper.proc.waitForEvent("listening");

    const image100 = imageOf(2_500_000, 1); // three chunks
    const image200 = imageOf(700_000, 2);
    const client = await ClusterClient.connect(c.members.get(leaderId)!.address, c.credentials);
    try {
      await client.ships.add(0n, { fake: true, life: 0 });
      await client.ships.add(1n, { fake: true, life: 0 }); // ~nec: events, no image
      const all = beltEvents(1, LAST).map(({ mug, job }) => ({ mug, job }));
      await client.ships.write({ kind: "events", ship: 0n, firstEve: 1, events: all });
      await client.ships.write({ kind: "events", ship: 1n, firstEve: 1, events: all.slice(0, 5) });
      await storeImage(client, 100, image100);
      await storeImage(client, 200, image200);
    } finally {
      client.close();
    }
    await keeper.proc.waitForEvent("standby_epoch", { ship: "~zod", epoch: 200 });

    // Without --yes: the plan, and a one-line refusal; nothing changes.
    const asked = await seguro(c, ["ship", "chop", "~zod", "--keep-epochs", "2"]);
    assert.equal(asked.code, 2, asked.all);
    assert.match(
      asked.out,
      /^Chopping drops events 1-100 of ~zod \([0-9,]+ bytes\); the log will start at event 101 after epoch 100's image\.$/,
    );
    assert.match(errorLine(asked.all), /not chopped: .*gone for good .*pass --yes to chop ~zod/);

    // --keep-epochs 2: the log starts after epoch 100's image.
    const first = await seguro(c, ["ship", "chop", "~zod", "--keep-epochs", "2", "--yes"]);
    assert.equal(first.code, 0, first.all);
    assert.match(
      first.out,
      /^Dropped events 1-100 of ~zod \([0-9,]+ bytes\); the log starts at event 101 after epoch 100's image\.$/,
    );

    // Default (one epoch kept): after epoch 200's image; epoch 100's image goes too.
    const plan = await seguro(c, ["ship", "chop", "~zod"]);
    assert.equal(plan.code, 2, plan.all);
    assert.match(
      plan.out,
      /drops events 101-200 of ~zod \([0-9,]+ bytes\) and the images of older epochs \(2\.5 MB\); the log will start at event 201 after epoch 200's image/,
    );
    const second = await seguro(c, ["ship", "chop", "~zod", "--yes"]);
    assert.equal(second.code, 0, second.all);
    assert.match(second.out, /^Dropped events 101-200 of ~zod .*event 201 after epoch 200's image/);

    // The refusals, each one line: nothing more to drop, no image, no such ship.
    const again = await seguro(c, ["ship", "chop", "~zod", "--yes"]);
    assert.equal(again.code, 1, again.all);
    assert.match(
      errorLine(again.all),
      /~zod's log starts at event 201, after epoch 200's image, and no newer complete image exists; nothing to drop/,
    );
    const noImage = await seguro(c, ["ship", "chop", "~nec", "--yes"]);
    assert.equal(noImage.code, 1, noImage.all);
    assert.match(errorLine(noImage.all), /~nec has no complete epoch image on the cluster/);
    const unknown = await seguro(c, ["ship", "chop", "~bud", "--yes"]);
    assert.equal(unknown.code, 1, unknown.all);
    assert.match(errorLine(unknown.all), /~bud is not on this cluster/);
    const keepAll = await seguro(c, ["ship", "chop", "~zod", "--keep-epochs", "0"]);
    assert.equal(keepAll.code, 2, keepAll.all);
    assert.match(errorLine(keepAll.all), /--keep-epochs must be a whole number of at least 1/);

    // Every node: the log is events 201..250, numbered with no gap, the same everywhere.
    for (const m of c.members.values()) {
      const v = await seguro(c, ["log", "verify", "~zod", "--json"], m.address);
      assert.equal(v.code, 0, v.all);
      const report = JSON.parse(v.out) as { agree: boolean; nodes: ShipVerify[] };
      assert.equal(report.agree, true);
      for (const n of report.nodes) {
        assert.deepEqual([n.firstEve, n.lastEve, n.problems], [201, LAST, []], `node ${n.nodeId}`);
      }
      const list = await seguro(c, ["ship", "list", "--json"], m.address);
      const zod = (JSON.parse(list.out) as ShipJson[]).find((s) => s.ship === "0")!;
      assert.deepEqual([zod.firstEve, zod.lastEve], [201, LAST], `ship list on node ${m.id}`);
      assert.deepEqual(zod.images!.map((i) => i.epoch), [200], `images on node ${m.id}`);
    }
    const verify = await seguro(c, ["log", "verify", "~zod"]);
    assert.match(
      verify.all,
      /~zod: 3 nodes agree on events 201-250 \(the log starts after epoch 200's image\)/,
    );
    const table = await seguro(c, ["ship", "list"]);
    assert.match(table.out, /~zod +201-250 /);

    // tail and show know where the log starts.
    const tail = await seguro(c, ["log", "tail", "~zod", "-n", "100", "--json"]);
    assert.equal(tail.code, 0, tail.all);
    const eves = (JSON.parse(tail.out) as { eve: number }[]).map((e) => e.eve);
    assert.deepEqual([eves[0], eves.at(-1), eves.length], [201, LAST, 50]);
    const gone = await seguro(c, ["log", "show", "~zod", "5"]);
    assert.equal(gone.code, 1);
    assert.match(errorLine(gone.all), /~zod's events before 201 were chopped and are gone/);

    // Export from a follower: the pier starts at epoch 200 with its image.
    const follower = [...c.members.values()].find((m) => m.id !== leaderId)!;
    const out = join(c.root, "zod-export");
    const exported = await seguro(c, ["ship", "export", "~zod", out], follower.address);
    assert.equal(exported.code, 0, exported.all);
    assert.deepEqual(listEpochs(out).map((e) => [e.base, e.hasImage]), [[200, true]]);
    assert.deepEqual(Deno.readFileSync(join(out, ".urb", "log", "0i200", "image.bin")), image200);
    assert.equal(readPierMeta(out).who, 0n);
    const held = [...readEvents(out)];
    const want = beltEvents(201, LAST);
    assert.deepEqual(held.map((e) => e.eve), want.map((e) => e.eve));
    assert.deepEqual(held.map((e) => [e.mug, e.job]), want.map((e) => [e.mug, e.job]));
    const early = await seguro(c, ["ship", "export", "~zod", join(c.root, "x"), "--epoch", "100"]);
    assert.equal(early.code, 1);
    assert.match(
      errorLine(early.all),
      /~zod has no epoch 100; its epochs start at 200 \(its events before 201 were chopped/,
    );

    // The standby pier made before the chop: epoch 200's image and the events after it.
    await standbyHolds(keeper.proc, join(standby, "~zod"), image200);

    // A standby pier made after the chop starts at the image: there is no event 1 to write.
    const late = [...c.members.values()].find((m) => m.id !== leaderId && m.id !== keeper.id)!;
    await late.proc!.kill("SIGTERM");
    const lateDir = join(c.root, "standby-late");
    late.proc = c.restart(late.id, ["--standby-dir", lateDir]);
    await late.proc.waitForEvent("standby_created", { ship: "~zod" });
    await standbyHolds(late.proc, join(lateDir, "~zod"), image200);
  },
  { ignore: LMDB },
);

/**
 * Waits until `proc`'s standby pier `pier` has moved to epoch 200 and
 * written the events after it, then checks it: epoch 200 alone, with its
 * image, and events 201..LAST.
 */
async function standbyHolds(proc: NodeProcess, pier: string, image: Uint8Array): Promise<void> {
  await proc.waitForEvent("standby_epoch", { ship: "~zod", epoch: 200 });
  const moved = proc.lines.findIndex((l) => {
    const e = logEventOf(l);
    return e?.event === "standby_epoch" && e.epoch === 200;
  });
  await proc.waitForEvent("standby", { ship: "~zod", eve: LAST }, moved);
  assert.deepEqual(listEpochs(pier).map((e) => [e.base, e.hasImage]), [[200, true]]);
  assert.deepEqual(Deno.readFileSync(join(pier, ".urb", "log", "0i200", "image.bin")), image);
  const eves = [...readEvents(pier)].map((e) => e.eve);
  assert.deepEqual([eves[0], eves.at(-1), eves.length], [201, LAST, LAST - 200]);
}
