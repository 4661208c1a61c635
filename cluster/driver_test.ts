import assert from "node:assert/strict";
import { NodeDriver } from "./driver.ts";
import { Store } from "./store.ts";
import { encodeRaw } from "./machine.ts";

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
