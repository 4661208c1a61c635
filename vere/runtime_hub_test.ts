/**
 * The runtime protocol's per-connection rules, enforced by the hub: %done
 * never decreases and never follows %fence; a fenced connection learns the
 * master by %away; a ship named later gets its role notice first.
 */

import assert from "node:assert/strict";
import { ReleaseWhileFencedError, type RuntimeBackend, RuntimeHub } from "./runtime_hub.ts";
import type { NodeToRuntimeMessage } from "./runtime_protocol.ts";

type Listener = Parameters<RuntimeBackend["subscribe"]>[0];

function setup(
  master: { value: boolean; address: string | null },
  read: RuntimeBackend["read"] = () => [],
) {
  let listener: Listener | undefined;
  const plans: number[] = [];
  const backend: RuntimeBackend = {
    nodeId: 2,
    isMaster: () => master.value,
    masterAddress: () => master.address,
    ships: () => [0n],
    plan: (p) => plans.push(p.eve),
    head: () => ({ eve: 5, mug: 0 }),
    read,
    subscribe: (l) => {
      listener = l;
      return () => listener = undefined;
    },
  };
  const hub = new RuntimeHub(backend);
  const got: NodeToRuntimeMessage[] = [];
  const session = hub.open((m) => got.push(m));
  session.receive({ type: "hail", version: 1, node: 0 });
  return { hub, got, session, plans, emit: () => listener! };
}

const tags = (ms: NodeToRuntimeMessage[]) =>
  ms.map((m) =>
    m.type === "done" ? `done ${m.eve}` : m.type === "away" ? `away ${m.master}` : m.type
  );

Deno.test("hub: %done is sent only when it rises, per connection", () => {
  const t = setup({ value: true, address: "" });
  t.emit().release({ ship: 0n, eve: 7 });
  t.emit().release({ ship: 0n, eve: 4 });
  t.emit().release({ ship: 0n, eve: 7 });
  t.emit().release({ ship: 0n, eve: 9 });
  assert.deepEqual(tags(t.got), ["hail", "lead", "done 7", "done 9"]);
});

Deno.test("hub: a release reaching a fenced connection throws instead of leaking", () => {
  const master = { value: true, address: null as string | null };
  const t = setup(master);
  master.value = false;
  t.emit().role(false);
  assert.throws(() => t.emit().release({ ship: 0n, eve: 3 }), ReleaseWhileFencedError);
  assert.deepEqual(tags(t.got), ["hail", "lead", "fence"]);
});

Deno.test("hub: a fenced connection is told where the master is, once per master", () => {
  const master = { value: false, address: "" as string | null };
  const t = setup(master);
  t.emit().leader();
  master.address = "10.0.0.3:7700";
  t.emit().leader();
  t.emit().leader();
  master.address = "10.0.0.1:7700";
  t.emit().leader();
  assert.deepEqual(tags(t.got), ["hail", "fence", "away 10.0.0.3:7700", "away 10.0.0.1:7700"]);
});

Deno.test("hub: a plan to a node becoming master is refused with %nope, to a follower with %away", () => {
  const master = { value: false, address: null as string | null };
  const t = setup(master);
  t.session.receive({ type: "plan", ship: 0n, eve: 6, mug: 0, job: new Uint8Array([1]) });
  master.address = "10.0.0.3:7700";
  t.session.receive({ type: "plan", ship: 0n, eve: 6, mug: 0, job: new Uint8Array([1]) });
  assert.deepEqual(tags(t.got), ["hail", "fence", "nope", "away 10.0.0.3:7700"]);
  assert.deepEqual(t.plans, []);
});

Deno.test("hub: a ship named after %hail gets its role notice first", () => {
  const t = setup({ value: true, address: "" });
  t.session.receive({ type: "head", ship: 256n });
  assert.deepEqual(t.got.slice(2).map((m) => m.type), ["lead", "head"]);
  assert.equal((t.got[2] as { ship: bigint }).ship, 256n);
});

Deno.test("hub: notices per ship say what the connections were last told (metrics)", () => {
  const master = { value: true, address: "" as string | null };
  const t = setup(master);
  const other = t.hub.open(() => {});
  assert.deepEqual(t.hub.notices(), new Map([[0n, "lead"]]), "the unhailed one follows nothing");
  other.receive({ type: "hail", version: 1, node: 0 });
  master.value = false;
  t.emit().role(false);
  assert.deepEqual(t.hub.notices(), new Map([[0n, "fence"]]));
  t.session.close();
  other.close();
  assert.equal(t.hub.size, 0);
  assert.deepEqual(t.hub.notices(), new Map());
});

Deno.test("hub: a %read of events a chop dropped is refused with %oops naming the first event", () => {
  const job = new Uint8Array([1]);
  const t = setup(
    { value: true, address: "" },
    (_ship, from) => from < 4001 ? { firstEve: 4001 } : [{ eve: from, mug: 0, job }],
  );
  t.session.receive({ type: "read", ship: 0n, from: 1, count: 10 });
  t.session.receive({ type: "read", ship: 0n, from: 4001, count: 10 });
  assert.deepEqual(t.got.slice(2), [
    {
      type: "oops",
      why:
        "The events of that ship before 4001 are no longer on the cluster (a chop dropped them); %read from 4001",
    },
    { type: "logs", ship: 0n, from: 4001, events: [{ eve: 4001, mug: 0, job }] },
  ]);
});
