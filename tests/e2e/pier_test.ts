/**
 * Moving a stock vere pier onto a real 3-node cluster and back out: import
 * (META checked, resumable), export byte for byte (compared with mdb_dump),
 * the refusals (a locked pier, a pier of another ship, a pier with a gap), and
 * tail mode following a pier while a writer appends.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { LOG_VERSION, readEvents, readPierMeta, writeEpoch, writePier } from "../../vere/pier.ts";
import { Env, eventKey } from "../../vere/lmdb.ts";
import { ClusterClient } from "../../cluster/api.ts";
import type { ShipJson } from "../../cluster/admin_protocol.ts";
import { lmdbToolsMissing } from "../fixtures.ts";
import { beltEvents } from "./belt_events.ts";
import { clusterTest, NodeProcess, type TestCluster } from "./harness.ts";

/** Why these tests cannot run here, if they cannot. */
const LMDB_TOOLS = lmdbToolsMissing();

async function seguro(c: TestCluster, args: string[]): Promise<NodeProcess> {
  const p = new NodeProcess([...args, "--cluster", c.anyAddress()], { SEGURO_TOKEN: c.token });
  await p.exited;
  return p;
}

function dump(env: string): string {
  const out = new Deno.Command("mdb_dump", { args: ["-a", env], stdout: "piped", stderr: "piped" })
    .outputSync();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

clusterTest(
  "pier import and export: META checked, resumable, byte for byte; refusals",
  3,
  async (c) => {
    const meta = { version: LOG_VERSION, who: 0n, fake: true, life: 0 };
    const pier = join(c.root, "zod-pier");
    writePier(pier, { meta, events: beltEvents(1, 300), vereVersion: "4.0" });

    const imported = await seguro(c, ["ship", "import", "~zod", pier]);
    assert.equal((await imported.exited).code, 0, imported.lines.join("\n"));
    assert.match(imported.lines.join("\n"), /Imported 300 events of ~zod/);
    // Resumable: a second import appends nothing.
    const again = await seguro(c, ["ship", "import", "~zod", pier]);
    assert.match(again.lines.join("\n"), /Imported 0 events of ~zod .* it now has 300/);
    const verify = await seguro(c, ["log", "verify", "~zod"]);
    assert.equal((await verify.exited).code, 0, verify.lines.join("\n"));

    const out = join(c.root, "zod-export");
    const exported = await seguro(c, ["ship", "export", "~zod", out]);
    assert.equal((await exported.exited).code, 0, exported.lines.join("\n"));
    assert.equal(dump(join(out, ".urb", "log", "0i0")), dump(join(pier, ".urb", "log", "0i0")));
    assert.equal(dump(join(out, ".urb", "log")), dump(join(pier, ".urb", "log")));

    // A pier of another ship, a locked pier, a pier with a gap.
    const nec = join(c.root, "nec-pier");
    writePier(nec, { meta: { ...meta, who: 1n }, events: beltEvents(1, 3), vereVersion: "4.0" });
    const wrong = await seguro(c, ["ship", "import", "~zod", nec]);
    assert.equal((await wrong.exited).code, 1);
    assert.match(wrong.lines.join("\n"), /belongs to ~nec, not ~zod/);
    await Deno.writeTextFile(join(nec, ".vere.lock"), `${Deno.pid}\n`); // as vere writes it
    const locked = await seguro(c, ["ship", "import", "~nec", nec]);
    assert.match(locked.lines.join("\n"), /in use by a running urbit .* pass --live/);
    await Deno.remove(join(nec, ".vere.lock"));
    const gap = join(c.root, "bud-pier");
    writePier(gap, { meta: { ...meta, who: 2n }, events: beltEvents(1, 5), vereVersion: "4.0" });
    writeEpoch(gap, {
      events: beltEvents(8, 10),
      base: 7,
      vereVersion: "4.0",
      meta: { ...meta, who: 2n },
    });
    const gapped = await seguro(c, ["ship", "import", "~bud", gap]);
    assert.equal((await gapped.exited).code, 1);
    assert.match(gapped.lines.join("\n"), /^error: .*Event 6 is missing.*the log has a gap/m);
  },
  { ignore: LMDB_TOOLS },
);

clusterTest(
  "multi-epoch pier with images: import (resumable), export byte for byte, --epoch, a changed image refused",
  3,
  async (c) => {
    const meta = { version: LOG_VERSION, who: 0n, fake: true, life: 0 };
    const pier = join(c.root, "zod-pier");
    const image = (n: number, seed: number) =>
      new Uint8Array(n).map((_, i) => (i * 131 + seed * 17 + (i >> 9)) & 0xff);
    const image100 = image(2_500_000, 1); // three chunks
    const image200 = image(700_000, 2);
    writePier(pier, { meta, events: beltEvents(1, 100), vereVersion: "4.0" });
    writeEpoch(pier, {
      meta,
      events: beltEvents(101, 200),
      base: 100,
      vereVersion: "4.0",
      image: image100,
    });
    writeEpoch(pier, {
      meta,
      events: beltEvents(201, 250),
      base: 200,
      vereVersion: "4.0",
      image: image200,
    });

    const imported = await seguro(c, ["ship", "import", "~zod", pier]);
    assert.equal((await imported.exited).code, 0, imported.lines.join("\n"));
    assert.match(
      imported.lines.join("\n"),
      /Imported 250 events of ~zod .* Images: 3,200,000 bytes/,
    );
    const again = await seguro(c, ["ship", "import", "~zod", pier]);
    assert.equal((await again.exited).code, 0, again.lines.join("\n"));
    assert.doesNotMatch(again.lines.join("\n"), /Images:/, "complete images are not sent again");
    // Every node holds the images, complete and checksummed.
    for (const m of c.members.values()) {
      const list = new NodeProcess(["ship", "list", "--json", "--cluster", m.address], {
        SEGURO_TOKEN: c.token,
      });
      const ships = await list.json<ShipJson[]>();
      assert.deepEqual(
        ships[0].images!.map((i: { epoch: number; size: number; sha256?: string }) => [
          i.epoch,
          i.size,
          i.sha256?.length,
        ]),
        [[100, 2_500_000, 64], [200, 700_000, 64]],
        `node ${m.id}`,
      );
    }

    const out = join(c.root, "zod-export");
    const exported = await seguro(c, ["ship", "export", "~zod", out]);
    assert.equal((await exported.exited).code, 0, exported.lines.join("\n"));
    assert.match(exported.lines.join("\n"), /epochs 0i0, 0i100, 0i200/);
    for (const epoch of ["0i0", "0i100", "0i200"]) {
      const a = join(out, ".urb", "log", epoch);
      const b = join(pier, ".urb", "log", epoch);
      assert.equal(dump(a), dump(b), epoch);
      for (const f of ["epoc.txt", "vere.txt"]) {
        assert.equal(await Deno.readTextFile(join(a, f)), await Deno.readTextFile(join(b, f)));
      }
    }
    assert.deepEqual(await Deno.readFile(join(out, ".urb/log/0i100/image.bin")), image100);
    assert.deepEqual(await Deno.readFile(join(out, ".urb/log/0i200/image.bin")), image200);
    assert.deepEqual(
      [...readEvents(out)].map((e) => e.eve),
      [...readEvents(pier)].map((e) => e.eve),
    );

    const late = join(c.root, "zod-late");
    const fromEpoch = await seguro(c, ["ship", "export", "~zod", late, "--epoch", "200"]);
    assert.equal((await fromEpoch.exited).code, 0, fromEpoch.lines.join("\n"));
    assert.deepEqual(
      [...Deno.readDirSync(join(late, ".urb", "log"))].map((e) => e.name).filter((n) =>
        n.startsWith("0i")
      ),
      ["0i200"],
    );
    assert.deepEqual([...readEvents(late)].map((e) => e.eve)[0], 201);
    const none = await seguro(c, ["ship", "export", "~zod", join(c.root, "x"), "--epoch", "150"]);
    assert.equal((await none.exited).code, 1);
    assert.match(none.lines.join("\n"), /has no epoch 150; its epochs start at 0, 100, 200/);

    // --eve ends the pier inside an epoch; with --epoch, it may not end before that epoch.
    const epochsOf = (dir: string) =>
      [...Deno.readDirSync(join(dir, ".urb", "log"))].map((e) => e.name)
        .filter((n) => n.startsWith("0i")).sort();
    const mid = join(c.root, "zod-150");
    const upTo = await seguro(c, ["ship", "export", "~zod", mid, "--eve", "150"]);
    assert.equal((await upTo.exited).code, 0, upTo.lines.join("\n"));
    assert.match(
      upTo.lines.join("\n"),
      /Wrote 150 events of ~zod \(events 1-150\) .*epochs 0i0, 0i100;/,
    );
    assert.deepEqual(epochsOf(mid), ["0i0", "0i100"]);
    assert.deepEqual(await Deno.readFile(join(mid, ".urb/log/0i100/image.bin")), image100);
    assert.deepEqual([...readEvents(mid)], [...readEvents(pier)].slice(0, 150));
    const midLate = join(c.root, "zod-100-150");
    const fromTo = await seguro(c, [
      "ship",
      "export",
      "~zod",
      midLate,
      "--epoch",
      "100",
      "--eve",
      "150",
    ]);
    assert.equal((await fromTo.exited).code, 0, fromTo.lines.join("\n"));
    assert.match(fromTo.lines.join("\n"), /Wrote 50 events of ~zod \(events 101-150\)/);
    assert.deepEqual(epochsOf(midLate), ["0i100"]);
    assert.deepEqual([...readEvents(midLate)], [...readEvents(pier)].slice(100, 150));
    const early = join(c.root, "zod-early");
    const below = await seguro(c, [
      "ship",
      "export",
      "~zod",
      early,
      "--epoch",
      "200",
      "--eve",
      "150",
    ]);
    assert.equal((await below.exited).code, 1);
    assert.match(below.lines.join("\n"), /--eve 150 is before epoch 200/);
    assert.deepEqual(
      [...Deno.readDirSync(c.root)].map((e) => e.name).filter((n) => n.includes("zod-early")),
      [],
      "neither the pier nor its temporary directory is left",
    );

    // A pier whose image differs from the one the cluster holds is refused, not merged.
    const changed = join(c.root, "zod-changed");
    writePier(changed, { meta, events: beltEvents(1, 100), vereVersion: "4.0" });
    writeEpoch(changed, {
      meta,
      events: beltEvents(101, 200),
      base: 100,
      vereVersion: "4.0",
      image: image(2_500_000, 9),
    });
    const refused = await seguro(c, ["ship", "import", "~zod", changed]);
    assert.equal((await refused.exited).code, 1);
    assert.match(refused.lines.join("\n"), /holds another image for epoch 100/);
  },
  { ignore: LMDB_TOOLS },
);

clusterTest(
  "ship attach follows a live pier as a writer appends, one event per transaction",
  3,
  async (c) => {
    const meta = { version: LOG_VERSION, who: 0n, fake: true, life: 0 };
    const pier = join(c.root, "live-pier");
    writePier(pier, { meta, events: beltEvents(1, 5), vereVersion: "4.0" });
    const attach = new NodeProcess(
      ["ship", "attach", "~zod", pier, "--cluster", c.anyAddress()],
      {
        SEGURO_TOKEN: c.token,
      },
    );
    try {
      await attach.waitFor(/replicated ~zod up to event 5 /);
      // A stand-in for vere: one write transaction per event, as vere commits them.
      const env = Env.open(join(pier, ".urb", "log", "0i0"));
      try {
        for (const e of beltEvents(6, 60)) {
          const value = new Uint8Array(4 + e.job.length);
          new DataView(value.buffer).setUint32(0, e.mug, true);
          value.set(e.job, 4);
          env.writeTxn((txn) => {
            const db = txn.openDb("EVENTS", { integerKey: true });
            txn.put(db, eventKey(e.eve), value, { noOverwrite: true });
          });
        }
      } finally {
        env.close();
      }
      await attach.waitFor(/replicated ~zod up to event 60 /);
      // Every node holds the pier's events byte for byte.
      const client = await ClusterClient.connect(c.anyAddress(), c.credentials);
      try {
        const got = await client.ships.events(0n, 1, 100);
        assert.deepEqual(got.map((e) => e.eve), Array.from({ length: 60 }, (_, i) => i + 1));
        assert.deepEqual(got[59].job, beltEvents(60, 60)[0].job);
      } finally {
        client.close();
      }
    } finally {
      await attach.kill("SIGTERM");
    }
    assert.match(attach.lines.join("\n"), /stopped at event 60; read-to-commit p50/);
  },
  { ignore: LMDB_TOOLS },
);

clusterTest(
  "seguro run --standby-dir keeps a pier per ship up to the node's applied events",
  3,
  async (c) => {
    const add = await seguro(c, ["ship", "add", "~zod", "--fake"]);
    assert.equal((await add.exited).code, 0, add.lines.join("\n"));
    const leaderId = (await c.status(1)).leaderId;
    const follower = [...c.members.values()].find((m) => m.id !== leaderId)!;
    await follower.proc!.kill("SIGTERM");
    const standby = join(c.root, "standby");
    follower.proc = new NodeProcess([
      "run",
      "--data-dir",
      follower.dir,
      "--standby-dir",
      standby,
    ]);
    await follower.proc.waitForEvent("standby_created", { ship: "~zod" });
    const client = await ClusterClient.connect(c.members.get(leaderId)!.address, c.credentials);
    try {
      const all = beltEvents(1, 120);
      await client.ships.write({
        kind: "events",
        ship: 0n,
        firstEve: 1,
        events: all.map(({ mug, job }) => ({ mug, job })),
      });
    } finally {
      client.close();
    }
    // The standby writer's own word that the pier holds the events: the follower's
    // commit is not (the pier is written after the apply, and a failed write is retried).
    await follower.proc.waitForEvent("standby", { ship: "~zod", eve: 120 });
    const held = [...readEvents(join(standby, "~zod"))];
    assert.deepEqual(held.map((e) => e.eve), Array.from({ length: 120 }, (_, i) => i + 1));
    assert.deepEqual(held[119].job, beltEvents(120, 120)[0].job);
    assert.equal(readPierMeta(join(standby, "~zod")).who, 0n);
  },
  { ignore: LMDB_TOOLS },
);
