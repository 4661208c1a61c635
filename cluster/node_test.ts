import assert from "node:assert/strict";
import { ClusterNode } from "./node.ts";
import { Store } from "./store.ts";
import { encodeCommand } from "./machine.ts";
import { removalOf } from "./membership.ts";
import { nodeSecurity, testToken } from "../tests/security.ts";

const CLUSTER_ID = "5b1f0a3c".repeat(4);
const TOKEN = await testToken(CLUSTER_ID);
/** Fast ticks: a one-node cluster elects itself within 100 to 200 ms. */
const TICK_MS = 10;

/** A one-node cluster in a temporary data dir, on a loopback port; not started. */
async function oneNode(
  prepare: (store: Store) => void = () => {},
): Promise<{ node: ClusterNode; log: string[]; dir: string; address: string }> {
  const dir = await Deno.makeTempDir({ prefix: "seguro-node-test-" });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address = `127.0.0.1:${listener.addr.port}`;
  const store = Store.create(`${dir}/data`, {
    identity: { clusterId: CLUSTER_ID, nodeId: 1, groupId: 1 },
    secret: TOKEN.secret,
    conf: { voters: [1], learners: [] },
    settings: { listen: address, advertise: address },
  });
  prepare(store);
  const log: string[] = [];
  const node = new ClusterNode({
    store,
    listener,
    security: await nodeSecurity(TOKEN, 1),
    advertise: address,
    log: (line) => log.push(line),
    tickMs: TICK_MS,
    shipName: (ship) => `~ship-${ship}`,
  });
  return { node, log, dir, address };
}

/** Resolves once `node` is master (it announces that through onMasterChange). */
function mastership(node: ClusterNode): Promise<void> {
  return new Promise((resolve) => {
    const stop = node.onMasterChange((master) => {
      if (!master) return;
      stop();
      resolve();
    });
  });
}

Deno.test("the facade: a one-node cluster elects itself, becomes master and applies commands", async () => {
  const { node, dir, address } = await oneNode();
  try {
    assert.equal(node.id, 1);
    assert.equal(node.isLeader, false);
    assert.equal(node.isMaster, false);
    const master = mastership(node);
    node.start();
    await master;
    assert.equal(node.isLeader, true);
    assert.equal(node.isMaster, true);
    assert.ok(node.term >= 1);
    assert.equal(node.runtimeNode().isMaster(), true);

    await node.proposeCommand(
      encodeCommand({ kind: "shipAdd", ship: 7n, fake: true, optimism: -1, life: 2 }),
    );
    assert.deepEqual(node.appliedShips.list().map((s) => [s.ship, s.fake, s.life]), [[
      7n,
      true,
      2,
    ]]);
    assert.equal(node.runs(7n), false);
    await node.proposeCommand(encodeCommand({ kind: "shipRun", ship: 7n, run: true }));
    assert.equal(node.runs(7n), true);
    assert.deepEqual(node.runShips(), [7n]);
    await assert.rejects(
      node.proposeCommand(encodeCommand({ kind: "shipRun", ship: 8n, run: true })),
      /~ship-8 is not on this cluster/,
    );
    const index = await node.propose(new Uint8Array([1, 2, 3]));
    assert.ok(index > 0);

    const status = node.status();
    assert.equal(status.role, "leader");
    assert.equal(status.nodeId, 1);
    assert.equal(status.leaderId, 1);
    assert.equal(status.address, address);
    assert.equal(status.leaderAddress, address, "the leader recorded its own address");
    assert.equal(status.appliedIndex, index);
    assert.deepEqual(status.conf, { voters: [1], learners: [] });
    assert.equal(status.members.length, 1);
    assert.equal(status.members[0].connected, true);
    assert.equal(status.release.master, true);
    assert.deepEqual(status.release.losses, []);
    assert.equal(status.electionTimeoutMs, 10 * TICK_MS);
    assert.deepEqual(node.losses(), []);
  } finally {
    await node.stop();
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal(node.fatal, undefined);
  assert.equal(node.removed, false);
});

Deno.test("the facade: losses recorded by an earlier run are reported", async () => {
  const loss = { ship: 5n, firstEve: 3, lastEve: 4, index: 9, term: 2 };
  const { node, dir } = await oneNode((store) => store.localSettings.recordLoss(loss, 0));
  try {
    assert.deepEqual(node.losses(), [loss]);
    assert.deepEqual(node.status().release.losses, [{ ...loss, ship: "5" }]);
  } finally {
    await node.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the facade: stop resolves stopped, closes the store and is idempotent", async () => {
  const { node, log, dir } = await oneNode();
  const master = mastership(node);
  node.start();
  await master;
  await Promise.all([node.stop(), node.stop()]);
  await node.stopped;
  assert.ok(log.some((l) => /listening at/.test(l)), log.join("\n"));
  // The data dir is free again, and the node was not removed from its cluster.
  const store = Store.open(`${dir}/data`);
  try {
    assert.equal(removalOf(store), undefined);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("removalOf: a node knows it was removed from its own log or from a peer", async () => {
  const dir = await Deno.makeTempDir({ prefix: "seguro-node-test-" });
  try {
    const store = Store.create(`${dir}/data`, {
      identity: { clusterId: CLUSTER_ID, nodeId: 2, groupId: 1 },
      secret: TOKEN.secret,
      conf: { voters: [1, 2], learners: [] },
    });
    try {
      assert.equal(removalOf(store), undefined);
      store.applyTransaction(0, () => store.machineSettings.setRemoved([2]));
      assert.deepEqual(removalOf(store), { by: 0 });
      store.localSettings.setRemovedBy(3);
      assert.deepEqual(removalOf(store), { by: 3 });
    } finally {
      store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
