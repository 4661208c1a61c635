/**
 * The real Urbit runtime around the cluster (issue P12, items 1 and 2):
 * piers booted and grown by the real vere 3.0 (epochs 1) and 1.16 (log 1)
 * are imported onto a real 3-node cluster, exported in their own layout, and
 * the same real vere restarts on the export and goes live at the same event
 * as on the original pier; `log show` decodes their real events. Where a
 * binary, its Debian libraries or brass.pill are absent, the tests are
 * registered as ignored with the reason.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { readEvents } from "../../vere/pier.ts";
import { detectLayout } from "../../vere/pier_layout.ts";
import { lmdbToolsMissing } from "../fixtures.ts";
import { bootedPier, copyPier, grownPier, startToLive, vereMissing } from "../real_vere.ts";
import { clusterTest, NodeProcess, type TestCluster } from "./harness.ts";

const MISSING_30 = lmdbToolsMissing() ?? vereMissing("3.0");
const MISSING_116 = lmdbToolsMissing() ?? vereMissing("1.16");
/** Events the test makes the ship compute (behn %wakes through conn.sock). */
const WAKES = 40;

async function seguro(c: TestCluster, args: string[]): Promise<NodeProcess> {
  const p = new NodeProcess([...args, "--cluster", c.anyAddress()], { SEGURO_TOKEN: c.token });
  await p.exited;
  return p;
}

async function ok(p: NodeProcess): Promise<string> {
  const text = p.lines.join("\n");
  assert.equal((await p.exited).code, 0, text);
  return text;
}

// Booting compiles the kernel (~150 s): done once per machine, before any cluster starts,
// so that it does not count against a cluster test's hang guard.
Deno.test({
  name: `the real vere 3.0 and 1.16 boot a fake ~zod from brass.pill (cached per machine)${
    MISSING_30 ?? MISSING_116 ? ` (ignored: ${MISSING_30 ?? MISSING_116})` : ""
  }`,
  ignore: MISSING_30 !== undefined || MISSING_116 !== undefined,
  async fn() {
    const [p30, p116] = await Promise.all([bootedPier("3.0"), bootedPier("1.16")]);
    assert.equal(detectLayout(p30), "epochs1");
    assert.equal(detectLayout(p116), "log1");
  },
});

clusterTest(
  "real vere 3.0: a grown pier imports, exports as epochs 1, and vere restarts on it at the same event",
  3,
  async (c) => {
    const pier = join(c.root, "zod");
    // The ship computes events: its first start rolls epoch 0i25 (with a snapshot), then wakes.
    await grownPier(pier, WAKES);
    const events = [...readEvents(pier)];
    const last = events.at(-1)!.eve;
    assert.ok(last >= 25 + WAKES, `the ship computed its wakes (last event ${last})`);

    const imported = await ok(await seguro(c, ["ship", "import", "~zod", pier]));
    assert.match(imported, /~zod's pier is epochs1 \(vere 3\.x\)/);
    assert.match(imported, new RegExp(`Imported ${last} events of ~zod`));
    assert.match(imported, /image of epoch 25: .* stored and checked/);

    const out = join(c.root, "zod-export");
    const exported = await ok(await seguro(c, ["ship", "export", "~zod", out]));
    assert.match(exported, /as epochs1 \(vere 3\.x; epochs 0i0, 0i25; snapshot after event 25\)/);
    assert.equal(detectLayout(out), "epochs1");
    assert.deepEqual([...readEvents(out)], events, "the same events, byte for byte");

    // The same vere on the original and on the export: both replay and go live at one event.
    const original = await startToLive("3.0", pier);
    const restarted = await startToLive("3.0", out);
    assert.match(restarted.output, new RegExp(`play: events 26-${last}`));
    assert.equal(restarted.live, original.live, restarted.output.slice(-2000));

    // `log tail` and `log show` decode the real events the ship computed: the wakes among them.
    const tail = await ok(await seguro(c, ["log", "tail", "~zod", "-n", String(last), "--json"]));
    const rows = JSON.parse(tail) as { eve: number; wire: string | null; card: string | null }[];
    const wakes = rows.filter((r) => r.card === "wake");
    assert.ok(wakes.length >= WAKES, `${wakes.length} %wake events in ${tail.slice(0, 2000)}`);
    const shown = await ok(await seguro(c, ["log", "show", "~zod", String(wakes.at(-1)!.eve)]));
    assert.match(shown, /kind +ovum/);
    assert.match(shown, /card +%wake/);
    assert.match(shown, new RegExp(`wire +${wakes.at(-1)!.wire}`));

    // Exported as vere 4.x's layout, no snapshot of it is held: refused only when chopped;
    // here vere 3.0 itself must refuse the format-2 pier, naming it.
    const as2 = join(c.root, "zod-epochs2");
    const forced = await ok(
      await seguro(c, ["ship", "export", "~zod", as2, "--format", "epochs2"]),
    );
    assert.match(forced, /as epochs2 .*no snapshot: vere replays from the first event/);
    await assert.rejects(startToLive("3.0", as2), /unknown epoch version: '2', expected '1'/);
  },
  { ignore: MISSING_30 },
);

clusterTest(
  "real vere 1.16: a log-1 pier imports with its snapshot, exports as log 1, and vere restarts on it",
  3,
  async (c) => {
    const pier = join(c.root, "zod");
    await copyPier(await bootedPier("1.16"), pier);
    const events = [...readEvents(pier)];
    const last = events.at(-1)!.eve;

    const imported = await ok(await seguro(c, ["ship", "import", "~zod", pier]));
    assert.match(imported, /~zod's pier is log1 \(vere 1\.x \(before 3\.0\)\)/);
    assert.match(imported, new RegExp(`image of epoch ${last}: .* stored and checked`));

    const out = join(c.root, "zod-export");
    const exported = await ok(await seguro(c, ["ship", "export", "~zod", out]));
    assert.match(exported, new RegExp(`as log1 .*one log; snapshot after event ${last}\\)`));
    assert.equal(detectLayout(out), "log1");
    assert.deepEqual([...readEvents(out)], events, "the same events, byte for byte");

    const original = await startToLive("1.16", pier);
    const restarted = await startToLive("1.16", out);
    assert.equal(restarted.live, original.live, restarted.output.slice(-2000));

    // A log-1 ship keeps one log from event 1: chop is refused, naming the way out.
    const chop = await seguro(c, ["ship", "chop", "~zod", "--yes"]);
    assert.equal((await chop.exited).code, 1);
    assert.match(chop.lines.join("\n"), /log-1 pier: vere before 3\.0 keeps one log/);
  },
  { ignore: MISSING_116 },
);
