import assert from "node:assert/strict";
import { NodeDriver } from "./driver.ts";
import { Store } from "./store.ts";
import { encodeRaw } from "./machine.ts";
import type { PeerMessage } from "./snapshot_stream.ts";

/** A one-node cluster's driver on an in-memory store, leading. */
function leadingDriver(store: Store, keep: { keepEntries: number; keepBytes: number }): NodeDriver {
  const driver = new NodeDriver({
    store,
    send: () => {},
    log: () => {},
    electionTicks: 3,
    randomInt: () => 0,
    now: () => 0,
    advertise: "n1:1",
    compaction: keep,
  });
  for (let i = 0; i < 20 && driver.raft.role !== "leader"; i++) {
    driver.tick();
    while (driver.handleReady()) { /* drain */ }
  }
  assert.equal(driver.raft.role, "leader");
  return driver;
}

Deno.test("the log stays within twice its tail in bytes, however few entries that is", () => {
  const store = Store.inMemory("driver-test", {
    identity: { clusterId: "cd".repeat(16), nodeId: 1, groupId: 1 },
    secret: new Uint8Array(32).fill(1),
    conf: { voters: [1], learners: [] },
  });
  try {
    // Big entries: the byte bound is reached long before the entry bound.
    const driver = leadingDriver(store, { keepEntries: 10_000, keepBytes: 20_000 });
    let most = 0;
    for (let i = 0; i < 300; i++) {
      driver.raft.propose(encodeRaw(new Uint8Array(2_000).fill(i & 0xff)));
      while (driver.handleReady()) { /* drain */ }
      most = Math.max(most, driver.raft.heldBytes);
    }
    assert.ok(most <= 2 * 20_000 + 2_100, `the log held ${most} bytes`);
    assert.ok(driver.raft.firstIndex > 200, `first index ${driver.raft.firstIndex}`);
    assert.equal(store.firstIndex(), driver.raft.firstIndex, "the store compacted with it");
  } finally {
    store.close();
  }
});

Deno.test("a leader replicates while its write flushes, and commits with it only once flushed", () => {
  const ids = [1, 2, 3];
  const stores = ids.map((id) =>
    Store.inMemory(`driver-test-${id}`, {
      identity: { clusterId: "ab".repeat(16), nodeId: id, groupId: 1 },
      secret: new Uint8Array(32).fill(1),
      conf: { voters: ids, learners: [] },
    }, { manualFlush: true })
  );
  const inbox = new Map<number, PeerMessage[]>(ids.map((id) => [id, []]));
  const drivers = ids.map((id, i) =>
    new NodeDriver({
      store: stores[i],
      send: (m) => inbox.get(m.to)!.push(m),
      log: () => {},
      electionTicks: 3,
      randomInt: () => id - 1, // node 1 times out first
      now: () => 0,
      advertise: `n${id}:1`,
    })
  );
  const [leader, f2] = drivers;
  /** Delivers and handles everything, flushing every disk: a calm cluster. */
  const settle = () => {
    for (let round = 0; round < 50; round++) {
      let moved = false;
      for (const [i, d] of drivers.entries()) {
        for (const m of inbox.get(i + 1)!.splice(0)) d.step(m), moved = true;
        while (d.handleReady()) moved = true;
        if (stores[i].flushPending) stores[i].completeFlushes(), moved = true;
      }
      if (!moved) return;
    }
  };
  try {
    for (let t = 0; t < 20 && leader.raft.role !== "leader"; t++) leader.tick(), settle();
    assert.equal(leader.raft.role, "leader");
    const before = leader.raft.commitIndex;
    leader.raft.propose(encodeRaw(new Uint8Array([7])));
    assert.ok(leader.handleReady());
    const last = leader.raft.lastIndex;
    assert.ok(stores[0].flushPending, "the leader's write is flushing");
    const appends = inbox.get(2)!.filter((m) => m.type === "app");
    assert.ok(appends.length > 0, "the append left before the leader's flush completed");
    // Follower 2 writes, flushes and acknowledges; the leader's own disk has not answered.
    for (const m of inbox.get(2)!.splice(0)) f2.step(m);
    while (f2.handleReady()) { /* drain */ }
    assert.equal(
      inbox.get(1)!.filter((m) => m.type === "appResp").length,
      0,
      "no ack before the flush",
    );
    stores[1].completeFlushes();
    for (const m of inbox.get(1)!.splice(0)) leader.step(m);
    while (leader.handleReady()) { /* drain */ }
    assert.equal(leader.raft.persistedIndex < last, true);
    assert.equal(
      leader.raft.commitIndex,
      before,
      "a quorum by count, but the leader's write is not durable",
    );
    stores[0].completeFlushes();
    while (leader.handleReady()) { /* drain */ }
    assert.equal(leader.raft.commitIndex, last, "committed once the leader's flush completed");
  } finally {
    for (const s of stores) s.close();
  }
});
