/**
 * The nemesis's runtime client against the specification: its encoder and
 * decoder against every row of the byte table in docs/runtime-protocol.md
 * section 3 (read from the document itself), its framing, and its rules against a
 * scripted node (release only under `%lead`, re-sync after `%nope`, move on
 * `%away`).
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { cell, jam } from "../../vere/noun.ts";
import {
  decodeNodeMessage,
  encodeFrame,
  encodeNodeMessage,
  encodeRuntimeFrame,
  FrameReader,
  type NodeMessage,
  type RuntimeMessage,
  SpecError,
} from "./spec_codec.ts";
import { SpecRuntime } from "./spec_client.ts";
import { FakeNode } from "./fake_node.ts";
import { checkRun } from "./checker.ts";
import { ShipLog } from "./event_columns.ts";

const DOC = fileURLToPath(new URL("../../docs/runtime-protocol.md", import.meta.url));
const JOB = jam(cell(1n, 2n));
const ZOD = 0n;
const MARZOD = 256n;

/** The message each row of the doc's table names. */
const ROWS: Record<
  string,
  { from: "runtime"; msg: RuntimeMessage } | { from: "node"; msg: NodeMessage }
> = {
  "[%hail 1 ~]": { from: "runtime", msg: { tag: "hail", version: 1 } },
  "[%hail 1 2]": { from: "node", msg: { tag: "hail", version: 1, node: 2 } },
  "[%plan ~zod 1 0 job]": {
    from: "runtime",
    msg: { tag: "plan", ship: ZOD, eve: 1, mug: 0, job: JOB },
  },
  "[%read ~zod 1 2]": { from: "runtime", msg: { tag: "read", ship: ZOD, from: 1, count: 2 } },
  "[%head ~zod]": { from: "runtime", msg: { tag: "head", ship: ZOD } },
  "[%head ~marzod]": { from: "runtime", msg: { tag: "head", ship: MARZOD } },
  "[%head ~zod 5 0]": { from: "node", msg: { tag: "head", ship: ZOD, eve: 5, mug: 0 } },
  "[%done ~zod 7]": { from: "node", msg: { tag: "done", ship: ZOD, eve: 7 } },
  "[%nope ~zod 9 'Gap']": { from: "node", msg: { tag: "nope", ship: ZOD, eve: 9, why: "Gap" } },
  "[%away ~zod '']": { from: "node", msg: { tag: "away", ship: ZOD, master: "" } },
  "[%away ~zod '10.0.0.2:7700']": {
    from: "node",
    msg: { tag: "away", ship: ZOD, master: "10.0.0.2:7700" },
  },
  "[%logs ~zod 1 [[1 0 job] ~]]": {
    from: "node",
    msg: { tag: "logs", ship: ZOD, from: 1, events: [{ eve: 1, mug: 0, job: JOB }] },
  },
  "[%logs ~zod 9 ~]": { from: "node", msg: { tag: "logs", ship: ZOD, from: 9, events: [] } },
  "[%lead ~zod]": { from: "node", msg: { tag: "lead", ship: ZOD } },
  "[%fence ~zod]": { from: "node", msg: { tag: "fence", ship: ZOD } },
  "[%oops 'Send %hail first']": { from: "node", msg: { tag: "oops", why: "Send %hail first" } },
};

/** The rows of the table "Every message, as bytes": label, sender, frame bytes. */
function docRows(): { label: string; from: string; bytes: Uint8Array }[] {
  const text = Deno.readTextFileSync(DOC);
  const start = text.indexOf("### Every message, as bytes");
  assert.ok(start >= 0, "the doc has its byte table");
  const block = text.slice(text.indexOf("```text", start) + 7);
  const lines = block.slice(0, block.indexOf("```")).split("\n").slice(1);
  const rows: { label: string; from: string; hex: string }[] = [];
  for (const line of lines) {
    if (line.trim() === "" || line.startsWith("message")) continue;
    const m = /^(\[.*?\])\s+(runtime|node(?: \d+)?)\s+([0-9a-f ]+)$/.exec(line.trimEnd());
    if (m) rows.push({ label: m[1], from: m[2], hex: m[3] });
    else rows[rows.length - 1].hex += " " + line.trim(); // continuation of the last frame
  }
  return rows.map((r) => ({
    label: r.label,
    from: r.from,
    bytes: new Uint8Array(r.hex.trim().split(/\s+/).map((b) => parseInt(b, 16))),
  }));
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

Deno.test("every row of the doc's byte table: encoded exactly, and node frames decode back", () => {
  const rows = docRows();
  assert.deepEqual(rows.map((r) => r.label).sort(), Object.keys(ROWS).sort());
  for (const row of rows) {
    const want = ROWS[row.label];
    assert.equal(row.from.split(" ")[0], want.from, row.label);
    if (want.from === "runtime") {
      assert.equal(hex(encodeRuntimeFrame(want.msg)), hex(row.bytes), row.label);
    } else {
      assert.equal(hex(encodeFrame(encodeNodeMessage(want.msg))), hex(row.bytes), row.label);
      const reader = new FrameReader();
      reader.push(row.bytes);
      assert.deepEqual(decodeNodeMessage(reader.next()!), want.msg, row.label);
      assert.equal(reader.next(), undefined);
    }
  }
});

Deno.test("the section 1 example: the whole %plan frame, 15 bytes", () => {
  const frame = encodeRuntimeFrame({ tag: "plan", ship: 0n, eve: 1, mug: 0, job: JOB });
  assert.equal(hex(frame), "00 0a 00 00 00 01 1f 8e 2d cc 9d 71 82 8d 91");
});

Deno.test("frames cut anywhere come back whole; broken framing throws", () => {
  const frames = docRows().map((r) => r.bytes);
  const stream = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of frames) {
    stream.set(f, at);
    at += f.length;
  }
  const reader = new FrameReader();
  const bodies: Uint8Array[] = [];
  for (const b of stream) {
    reader.push(new Uint8Array([b]));
    for (let body = reader.next(); body !== undefined; body = reader.next()) bodies.push(body);
  }
  assert.deepEqual(bodies.map(hex), frames.map((f) => hex(f.subarray(5))));
  const bad = new FrameReader();
  bad.push(new Uint8Array([1, 1, 0, 0, 0, 0]));
  assert.throws(() => bad.next(), SpecError);
  const empty = new FrameReader();
  empty.push(new Uint8Array([0, 0, 0, 0, 0]));
  assert.throws(() => empty.next(), SpecError);
});

Deno.test("a node frame the spec forbids is refused: wrong arity, mug too large, gaps in %logs", () => {
  const bodies = [
    encodeNodeMessage({ tag: "done", ship: ZOD, eve: 7 }).slice(0, 3), // cut jam
    jam(cell(0x656e6f64n, 0n)), // [%done 0]: too few fields
    jam(cell(0x64616568n, cell(0n, cell(1n, cell(1n << 32n, 0n))))), // [%head ~zod 1 2^32 0]
    encodeNodeMessage({
      tag: "logs",
      ship: ZOD,
      from: 1,
      events: [{ eve: 1, mug: 0, job: JOB }, { eve: 3, mug: 0, job: JOB }],
    }),
    encodeNodeMessage({ tag: "done", ship: ZOD, eve: 0 }),
  ];
  for (const b of bodies) assert.throws(() => decodeNodeMessage(b), SpecError);
});

async function withNodes(
  count: number,
  fn: (nodes: FakeNode[], dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "nemesis-spec-" });
  const nodes: FakeNode[] = [];
  try {
    for (let i = 0; i < count; i++) {
      nodes.push(
        new FakeNode({
          id: i + 1,
          socketPath: join(dir, `n${i + 1}.sock`),
          ship: ZOD,
          leading: i === 0,
        }),
      );
    }
    await fn(nodes, dir);
  } finally {
    for (const n of nodes) n.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function runtimeFor(nodes: FakeNode[], inflight = 32): SpecRuntime {
  return new SpecRuntime({
    ship: ZOD,
    nodes: nodes.map((n) => ({ id: n.id, socketPath: n.socketPath, address: n.address })),
    seed: 7,
    inflight,
  });
}

const testOptions = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "the client plans in order, releases on %done under %lead, its log equals the node's",
  testOptions,
  async () => {
    await withNodes(1, async ([node]) => {
      const rt = runtimeFor([node]);
      rt.start();
      await rt.waitRelease((n) => n.eve >= 500, 10_000, "up to 500");
      await rt.stop();
      const received = node.received.filter((r) => r.msg.tag !== "plan").map((r) => r.msg.tag);
      assert.deepEqual(received.slice(0, 2), ["hail", "head"], "hail first, then head");
      const plans = node.received.flatMap((r) => r.msg.tag === "plan" ? [r.msg.eve] : []);
      assert.deepEqual(plans, plans.map((_, i) => i + 1), "plans in eve order from head + 1");
      assert.ok(rt.released.length >= 500);
      for (let e = 1; e <= rt.local.lastEve; e++) {
        assert.ok(rt.local.holds(node.log[e - 1]), `event ${e} as the node logged it`);
      }
      const report = checkRun({
        released: rt.releasedEvents(),
        connections: rt.connections,
        finals: [{ node: 1, log: ShipLog.of(node.log) }],
      });
      assert.equal(report.violations.length, 0, JSON.stringify(report.violations));
      assert.equal(report.releasedEvents, rt.released.length);
    });
  },
);

Deno.test(
  "after %fence nothing is released, even on %done; on %lead it re-syncs and goes on",
  testOptions,
  async () => {
    await withNodes(1, async ([node]) => {
      const rt = runtimeFor([node]);
      rt.start();
      await rt.waitRelease((n) => n.eve >= 100, 10_000, "up to 100");
      // Planned but unreleased events when the fence comes: what a wrong %done would release.
      node.withholdDone = true;
      const withheldFrom = node.log.length + 1;
      await node.waitReceived(
        (r) => r.msg.tag === "plan" && r.msg.eve >= withheldFrom + 10,
        10_000,
      );
      const hails = node.received.filter((r) => r.msg.tag === "hail").length;
      await node.fence();
      node.withholdDone = false;
      const before = rt.released.length;
      assert.ok(rt.local.lastEve > rt.released.length, "events planned and not released");
      // The fenced runtime looks for a master again: a new connection, fenced from its start.
      await node.waitReceived(
        () => node.received.filter((r) => r.msg.tag === "hail").length > hails,
        10_000,
      );
      const fenced = rt.connections.at(-1)!.conn;
      const eve = node.log.length;
      await node.broadcast({ tag: "done", ship: ZOD, eve });
      // The runtime has taken the %done on its fenced connection: and released nothing.
      await rt.waitNotice(
        (n, h) => h.conn === fenced && n.kind === "done" && n.eve === eve,
        10_000,
        "%done on the fenced connection",
      );
      assert.equal(rt.released.length, before, "nothing released while fenced");
      rt.markRound();
      await node.lead();
      await rt.waitRelease((n) => n.eve > before, 10_000, "after the new %lead");
      await rt.stop();
      const report = checkRun({
        released: rt.releasedEvents(),
        connections: rt.connections,
        finals: [{ node: 1, log: ShipLog.of(node.log) }],
      });
      assert.equal(report.releasedLost, 0);
      assert.ok(
        report.doneAfterFence >= 1,
        "the checker sees the %done the node sent after %fence",
      );
    });
  },
);

Deno.test(
  "after %nope the client stops, re-syncs with %head, and plans from head + 1",
  testOptions,
  async () => {
    await withNodes(1, async ([node]) => {
      const rt = runtimeFor([node]);
      rt.start();
      await rt.waitRelease((n) => n.eve >= 100, 10_000, "up to 100");
      node.refuseNext = true;
      rt.markRound();
      await rt.waitRelease((n) => n.eve >= 300, 10_000, "after the refusal");
      await rt.stop();
      assert.ok(rt.stats.nopes >= 1 && rt.stats.resyncs >= 2, JSON.stringify(rt.stats));
      // After the second %head, the first plan is the node's head + 1.
      const heads = node.received.flatMap((r, k) => r.msg.tag === "head" ? [k] : []);
      const nextPlan = node.received.slice(heads[1]).find((r) => r.msg.tag === "plan");
      const head = node.received.slice(heads[1]).find((r) => r.msg.tag === "head");
      assert.ok(head !== undefined && nextPlan !== undefined && nextPlan.msg.tag === "plan");
      assert.ok(nextPlan.msg.eve <= node.log.length, "a plan after the re-sync was logged");
      for (let e = 1; e <= node.log.length; e++) assert.ok(rt.local.holds(node.log[e - 1]));
      const report = checkRun({
        released: rt.releasedEvents(),
        connections: rt.connections,
        finals: [{ node: 1, log: ShipLog.of(node.log) }],
      });
      assert.equal(report.violations.length, 0, JSON.stringify(report.violations));
    });
  },
);

Deno.test("on %away the client moves to the master it names", testOptions, async () => {
  await withNodes(2, async ([a, b]) => {
    a.awayTo = b.address;
    const rt = runtimeFor([a, b]);
    rt.start();
    await a.waitReceived((r) => r.msg.tag === "plan", 10_000);
    a.leading = false;
    await a.fence();
    await b.lead();
    await rt.waitRelease((n) => n.node === 2 && n.eve >= 50, 10_000, "from node 2");
    await rt.stop();
    assert.ok(rt.stats.aways >= 1);
    assert.equal(a.log.length, 0, "node 1 logged nothing");
  });
});

Deno.test(
  "rule 8: a head counting accepted, unapplied plans is trusted for the client's own plans",
  testOptions,
  async () => {
    await withNodes(1, async ([node]) => {
      const rt = runtimeFor([node]);
      rt.start();
      await rt.waitRelease((n) => n.eve >= 100, 10_000, "up to 100");
      // The node's last 20 events are not readable yet; a refusal makes the client re-sync.
      node.unapplied = 20;
      node.refuseNext = true;
      rt.markRound();
      const target = node.log.length + 50;
      await rt.waitRelease((n) => n.eve >= target, 10_000, "after the re-sync");
      node.unapplied = 0;
      await rt.stop();
      assert.ok(rt.stats.resyncs >= 2);
      for (let e = 1; e <= node.log.length; e++) assert.ok(rt.local.holds(node.log[e - 1]));
      const report = checkRun({
        released: rt.releasedEvents(),
        connections: rt.connections,
        finals: [{ node: 1, log: ShipLog.of(node.log) }],
      });
      assert.equal(report.violations.length, 0, JSON.stringify(report.violations));
    });
  },
);
