/**
 * `seguro ship export` on a real 3-node cluster: a ship that keeps appending
 * while it is exported (the pier holds exactly events 1..E for the E the
 * export reports, byte for byte), `--eve N`, and failures (bad arguments, a
 * missing ship, Ctrl-C, a node killed mid-export) that leave neither the
 * pier directory nor the temporary one behind.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ClusterClient } from "../../cluster/api.ts";
import type { PlannedEvent } from "../../cluster/machine.ts";
import { readEvents, readPierMeta } from "../../vere/pier.ts";
import { lmdbMissing } from "../fixtures.ts";
import { beltEvents } from "./belt_events.ts";
import { clusterTest, NodeProcess, type TestCluster, type TestMember } from "./harness.ts";

/** Why these tests cannot run here, if they cannot. */
const LMDB = lmdbMissing();

/** Events per `events` request of the preload. */
const PRELOAD_BATCH = 1_000;

/** Events `from`..`to` as the cluster's append takes them (no eve numbers). */
function events(from: number, to: number): PlannedEvent[] {
  return beltEvents(from, to).map(({ mug, job }) => ({ mug, job }));
}

async function append(client: ClusterClient, from: number, to: number): Promise<void> {
  await client.ships.write({ kind: "events", ship: 0n, firstEve: from, events: events(from, to) });
}

/** Adds ~zod (fake) through the leader and appends events 1..`n`; returns the leader's client. */
async function zodWith(c: TestCluster, n: number): Promise<ClusterClient> {
  const client = await ClusterClient.connect(c.leader()!.address, c.credentials);
  await client.ships.add(0n, { fake: true, life: 0 });
  for (let from = 1; from <= n; from += PRELOAD_BATCH) {
    await append(client, from, Math.min(n, from + PRELOAD_BATCH - 1));
  }
  return client;
}

function exportOf(c: TestCluster, address: string, args: string[]): NodeProcess {
  return new NodeProcess(["ship", "export", ...args, "--cluster", address], {
    SEGURO_TOKEN: c.token,
  });
}

/** The names in `dir` an export may have left: its pier and its temporary sibling. */
function leftovers(dir: string, name: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name)
    .filter((n) => n === name || n.startsWith(`.${name}.seguro-export-`));
}

/** ~zod's events 1..`last` as the node at `address` holds them. */
async function clusterEvents(c: TestCluster, address: string, last: number) {
  const client = await ClusterClient.connect(address, c.credentials);
  try {
    const out = [];
    for (let from = 1; from <= last;) {
      const batch = await client.ships.events(0n, from, Math.min(10_000, last - from + 1));
      assert.ok(batch.length > 0, `the node holds event ${from}`);
      out.push(...batch);
      from += batch.length;
    }
    return out;
  } finally {
    client.close();
  }
}

/** Asserts that the pier `dir` holds exactly ~zod's events 1..`last`, byte for byte. */
async function assertPierHolds(c: TestCluster, address: string, dir: string, last: number) {
  assert.equal(readPierMeta(dir).who, 0n);
  const held = [...readEvents(dir)];
  const want = await clusterEvents(c, address, last);
  assert.equal(held.length, last, `the pier holds ${held.length} events, not ${last}`);
  for (let i = 0; i < last; i++) {
    assert.equal(held[i].eve, i + 1);
    assert.equal(held[i].mug, want[i].mug, `mug of event ${i + 1}`);
    assert.deepEqual(held[i].job, want[i].job, `job of event ${i + 1}`);
  }
}

/** The `(events 1-E)` an export printed, as a number. */
function exportedLast(p: NodeProcess): number {
  const m = /Wrote [0-9,]+ events of ~zod \(events 1-([0-9,]+)\)/.exec(p.lines.join("\n"));
  assert.ok(m, p.lines.join("\n"));
  return Number(m[1].replaceAll(",", ""));
}

function follower(c: TestCluster): TestMember {
  const leader = c.leader()!;
  return [...c.members.values()].find((m) => m.id !== leader.id)!;
}

clusterTest(
  "ship export of a running ship: exactly events 1..E for the E it reports; --eve N",
  3,
  async (c) => {
    const preload = 20_000;
    const client = await zodWith(c, preload);
    const source = follower(c).address;
    // A writer that keeps appending to ~zod through the leader, as a running ship does.
    let next = preload + 1;
    let stop = false;
    const writer = (async () => {
      try {
        while (!stop) {
          await append(client, next, next + 9);
          next += 10;
        }
      } finally {
        client.close();
      }
    })();
    const out = join(c.root, "zod-live");
    let duringExport: number;
    let exported: NodeProcess;
    try {
      const before = next - 1;
      exported = exportOf(c, source, ["~zod", out]);
      // Counted from the export's fixed point (its note), or from its end if it has none.
      const note = exported.waitFor(/exporting ~zod from event 1 to/);
      note.catch(() => {}); // an export that ends without the note is judged below
      await Promise.race([note, exported.exited]);
      const atStart = next;
      const status = await exported.exited;
      duringExport = next - atStart;
      assert.equal(status.code, 0, exported.lines.join("\n"));
      assert.ok(exportedLast(exported) >= before, "E is at least what was committed before");
    } finally {
      stop = true;
      await writer;
    }
    // The writer went on while the export read the log: a log that grew past E.
    assert.ok(duringExport > 0, "events were appended while the export ran");
    const last = exportedLast(exported);
    assert.ok(next - 1 > last, `the ship went on past ${last} (to ${next - 1})`);
    await assertPierHolds(c, source, out, last);
    assert.equal(Deno.statSync(out).mode! & 0o777, 0o700);
    assert.deepEqual(leftovers(c.root, "zod-live"), ["zod-live"], "no temporary directory");

    // --eve N: exactly 1..N, into an existing empty directory.
    const upTo = join(c.root, "zod-1000");
    Deno.mkdirSync(upTo);
    const fixed = exportOf(c, source, ["~zod", upTo, "--eve", "1000"]);
    assert.equal((await fixed.exited).code, 0, fixed.lines.join("\n"));
    assert.equal(exportedLast(fixed), 1000);
    assert.match(fixed.lines.join("\n"), /Wrote 1,000 events of ~zod \(events 1-1,000\)/);
    await assertPierHolds(c, source, upTo, 1000);
    assert.deepEqual(leftovers(c.root, "zod-1000"), ["zod-1000"]);
  },
  { ignore: LMDB },
);

clusterTest(
  "ship export that fails (bad --eve, no such ship, Ctrl-C, node killed) leaves nothing",
  3,
  async (c) => {
    (await zodWith(c, 300)).close();
    const address = c.anyAddress();
    const out = join(c.root, "zod-out");
    const refused = async (args: string[], code: number, re: RegExp) => {
      const p = exportOf(c, address, args);
      const status = await p.exited;
      assert.equal(status.code, code, p.lines.join("\n"));
      assert.match(p.lines.join("\n"), re);
      assert.equal(p.lines.filter((l) => l.startsWith("error:")).length, 1, "one line");
      assert.deepEqual(leftovers(c.root, "zod-out"), [], args.join(" "));
    };
    await refused(["~zod", out, "--eve", "301"], 1, /--eve 301 is past ~zod's last event .*300/);
    await refused(["~zod", out, "--eve", "0"], 2, /--eve must be a whole number of at least 1/);
    await refused(["~nec", out], 1, /~nec is not on this cluster/);
    await refused(["~zod", out, "--epoch", "7"], 1, /~zod has no epoch 7/);
    await refused(["~zod", join(c.root, "absent", "zod")], 1, /absent does not exist/);
    Deno.mkdirSync(out);
    Deno.writeTextFileSync(join(out, "keep"), "mine");
    const full = exportOf(c, address, ["~zod", out]);
    assert.equal((await full.exited).code, 1);
    assert.match(full.lines.join("\n"), /zod-out exists and is not an empty directory/);
    assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name), ["keep"], "left untouched");
    Deno.removeSync(out, { recursive: true });

    // A node that does not answer: the export waits on it with its temporary directory
    // made; Ctrl-C then, or the node's death, must remove it.
    const frozen = follower(c);
    frozen.proc!.child.kill("SIGSTOP");
    const interrupted = await startAndWaitForTemp(c, frozen.address, out);
    await interrupted.kill("SIGINT");
    assert.equal((await interrupted.exited).code, 130, interrupted.lines.join("\n"));
    assert.match(
      interrupted.lines.join("\n"),
      /interrupted \(SIGINT\) and nothing was written to .*zod-out; run it again/,
    );
    assert.deepEqual(leftovers(c.root, "zod-out"), []);

    const orphaned = await startAndWaitForTemp(c, frozen.address, out);
    await frozen.proc!.kill("SIGKILL");
    const status = await orphaned.exited;
    assert.equal(status.code, 1, orphaned.lines.join("\n"));
    assert.deepEqual(leftovers(c.root, "zod-out"), []);
  },
  { ignore: LMDB },
);

/**
 * Starts an export of ~zod into `out` from `address` and resolves once its
 * temporary directory exists (watched, not polled), bounded by a timeout.
 */
async function startAndWaitForTemp(
  c: TestCluster,
  address: string,
  out: string,
): Promise<NodeProcess> {
  const watcher = Deno.watchFs(c.root, { recursive: false });
  const timer = setTimeout(() => watcher.close(), 30_000);
  try {
    const p = exportOf(c, address, ["~zod", out]);
    for await (const event of watcher) {
      if (event.kind !== "create") continue;
      if (event.paths.some((path) => path.includes("/.zod-out.seguro-export-"))) return p;
    }
    throw new Error(`no temporary directory within 30 s; export log:\n${p.lines.join("\n")}`);
  } finally {
    clearTimeout(timer);
    try {
      watcher.close();
    } catch { /* closed by the timer */ }
  }
}
