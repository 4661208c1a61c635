import assert from "node:assert/strict";
import {
  ApiError,
  decodeEntries,
  encodeEntries,
  encodeEvents,
  encodeImageRequest,
  encodeIndex,
  encodeLogRequest,
  encodeReadRequest,
  Op,
  Status,
} from "./admin_protocol.ts";
import { serveClient } from "./admin_service.ts";
import { ClientError, ClusterClient, withLeader } from "./api.ts";
import { type FrameConn, FrameType } from "./frame.ts";
import { openConn } from "./connect.ts";
import { sha256 } from "./images.ts";
import { encodeCommand } from "./machine.ts";
import { ClusterNode } from "./node.ts";
import { shipKey } from "./ships.ts";
import { Store } from "./store.ts";
import type { ClusterToken } from "./token.ts";
import { nodeSecurity, testToken } from "../tests/security.ts";

const CREDENTIALS: ClusterToken = await testToken("c0ffee00".repeat(4));
/** The identity fake nodes present: node 1's. */
const FAKE_NODE_SECURITY = nodeSecurity(CREDENTIALS, 1);
/** Fast ticks: a cluster elects its leader within 100 to 200 ms. */
const TICK_MS = 10;
/** A job the injected check calls broken (cluster/ knows no nouns). */
const BAD_JOB = new Uint8Array([0xee, 1]);

function job(n: number): Uint8Array {
  return new Uint8Array([n & 0xff, 7, 7]);
}

interface Running {
  nodes: ClusterNode[];
  addresses: string[];
  stop(): Promise<void>;
}

/**
 * Voter 1 and, with `learners`, learner 2 and up, in temporary data dirs on
 * loopback; resolves once node 1 is master.
 */
async function startCluster(learners = 0, logTailEntries?: number): Promise<Running> {
  const root = await Deno.makeTempDir({ prefix: "seguro-api-test-" });
  const ids = Array.from({ length: 1 + learners }, (_, i) => i + 1);
  const listeners = ids.map(() => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const addresses = listeners.map((l) => `127.0.0.1:${l.addr.port}`);
  const securities = await Promise.all(ids.map((id) => nodeSecurity(CREDENTIALS, id)));
  const nodes = ids.map((id, i) =>
    new ClusterNode({
      store: Store.create(`${root}/node${id}`, {
        identity: { clusterId: CREDENTIALS.clusterId, nodeId: id, groupId: 1 },
        secret: CREDENTIALS.secret,
        conf: { voters: [1], learners: ids.slice(1) },
        addresses: new Map(ids.map((id, i) => [id, addresses[i]])),
      }),
      listener: listeners[i],
      security: securities[i],
      advertise: addresses[i],
      log: () => {},
      tickMs: TICK_MS,
      logTailEntries,
      shipName: (ship) => `~ship-${ship}`,
      checkJob: (j) => j[0] === BAD_JOB[0] ? "a broken job" : undefined,
    })
  );
  const master = new Promise<void>((resolve) => {
    const stop = nodes[0].onMasterChange((m) => {
      if (m) resolve(stop());
    });
  });
  for (const node of nodes) node.start();
  await master;
  return {
    nodes,
    addresses,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
      await Deno.remove(root, { recursive: true });
    },
  };
}

async function withClient(
  address: string,
  f: (client: ClusterClient) => Promise<void>,
): Promise<void> {
  const client = await ClusterClient.connect(address, CREDENTIALS);
  try {
    await f(client);
  } finally {
    client.close();
  }
}

Deno.test("typed client: ships, events and images against a running node", async () => {
  const cluster = await startCluster();
  try {
    await withClient(cluster.addresses[0], async (client) => {
      const status = await client.status();
      assert.equal(status.role, "leader");
      assert.equal(status.clusterId, CREDENTIALS.clusterId);

      const added = await client.ships.add(5n, { fake: true, life: 1 });
      assert.deepEqual(added, {
        ship: "5",
        fake: true,
        life: 1,
        firstEve: 1,
        lastEve: 0,
        lastMug: 0,
        bytes: 0,
        optimism: -1,
      });
      await assert.rejects(client.ships.add(5n), /~ship-5 is already on this cluster/);

      const write = (firstEve: number, jobs: Uint8Array[]) =>
        client.ships.write({
          kind: "events",
          ship: 5n,
          firstEve,
          events: jobs.map((j, i) => ({ mug: firstEve + i, job: j })),
        });
      assert.deepEqual(await write(1, [job(1), job(2), job(3)]), { appended: 3, skipped: 0 });
      assert.deepEqual(await write(2, [job(2), job(3), job(4)]), { appended: 1, skipped: 2 });
      await assert.rejects(
        write(9, [job(9)]),
        (e: ApiError) => e.status === Status.error && /event 9 would leave a gap/.test(e.message),
      );
      const events = await client.ships.events(5n, 1, 10);
      assert.deepEqual(events.map((e) => [e.eve, e.mug, [...e.job]]), [
        [1, 1, [...job(1)]],
        [2, 2, [...job(2)]],
        [3, 3, [...job(3)]],
        [4, 4, [...job(4)]],
      ]);
      // A long poll answers as soon as the event it waits for is applied.
      const waiting = client.ships.events(5n, 5, 10, 10_000);
      await write(5, [BAD_JOB]);
      assert.deepEqual((await waiting).map((e) => e.eve), [5]);
      assert.deepEqual(await client.ships.events(5n, 6, 10), []);

      assert.equal((await client.ships.set(5n, 0)).optimism, 0);
      await assert.rejects(client.ships.set(5n, 3), ApiError);
      assert.equal((await client.ships.run(5n, true)).run, true);
      assert.deepEqual(await client.ships.setDefault(-2), { defaultOptimism: -2 });

      const image = new Uint8Array(1000).map((_, i) => i % 251);
      await client.ships.write({
        kind: "imageChunk",
        ship: 5n,
        epoch: 2,
        offset: 0,
        sha256: sha256(image),
        data: image,
      });
      await client.ships.write({
        kind: "imageDone",
        ship: 5n,
        epoch: 2,
        size: image.length,
        sha256: sha256(image),
      });
      assert.deepEqual(await client.ships.imageChunk(5n, 2, 0), image);
      assert.deepEqual(await client.ships.imageChunk(5n, 2, 1000), new Uint8Array(0));

      const [listed] = await client.ships.list();
      assert.equal(listed.ship, "5");
      assert.equal(listed.lastEve, 5);
      assert.equal(listed.optimism, 0);
      assert.equal(listed.defaultOptimism, -2);
      assert.equal(listed.master, 1);
      assert.equal(listed.run, true);
      assert.deepEqual(listed.images, [{
        epoch: 2,
        size: 1000,
        sha256: Array.from(sha256(image), (b) => b.toString(16).padStart(2, "0")).join(""),
      }]);

      // verify runs the check the node was given on every job.
      const verify = await client.ships.verify(5n);
      assert.equal(verify.nodeId, 1);
      assert.equal(verify.lastEve, 5);
      assert.equal(verify.bytes, 4 * 3 + BAD_JOB.length);
      assert.match(verify.digest, /^[0-9a-f]{64}$/);
      assert.deepEqual(verify.problems, [{ eve: 5, problem: "a broken job" }]);
      await assert.rejects(client.ships.verify(6n), /~ship-6 is not on this cluster/);

      // Removing a ship removes its events and images everywhere.
      assert.deepEqual(await client.ships.remove(5n), { removed: "5" });
      assert.deepEqual(await client.ships.list(), []);
      assert.deepEqual(await client.ships.events(5n, 1, 10), []);
      assert.deepEqual(await client.ships.imageChunk(5n, 2, 0), new Uint8Array(0));
    });
  } finally {
    await cluster.stop();
  }
});

Deno.test("a burst of 32 clients from one address all connect: a handshake the node closed to make room is tried again", async () => {
  const cluster = await startCluster();
  try {
    const clients = await Promise.all(
      Array.from({ length: 32 }, () => ClusterClient.connect(cluster.addresses[0], CREDENTIALS)),
    );
    const statuses = await Promise.all(clients.map((c) => c.status()));
    assert.equal(statuses.filter((s) => s.nodeId === 1).length, 32);
    for (const c of clients) c.close();
  } finally {
    await cluster.stop();
  }
});

Deno.test("typed client: propose, read, members and refusals", async () => {
  const cluster = await startCluster();
  try {
    await withClient(cluster.addresses[0], async (client) => {
      const index = await client.propose(new Uint8Array([9, 8, 7]));
      const [entry] = await client.read(index, 1);
      // propose wraps the bytes in a raw command (kind 1); the type is normal (0).
      assert.deepEqual(entry, {
        index,
        term: entry.term,
        type: 0,
        data: new Uint8Array([1, 9, 8, 7]),
      });
      const [first] = await client.read(1, 1);
      assert.equal(first.type, 2, "a new leader's first entry is a noop");
      // A long poll answers once the entry it waits for is committed.
      const waiting = client.read(index + 1, 1, 10_000);
      await client.propose(new Uint8Array([1]));
      assert.equal((await waiting)[0].index, index + 1);

      assert.deepEqual(await client.members.transfer(1), {
        message: "Node 1 is already the leader",
      });
      await assert.rejects(client.members.remove(9), /Node 9 is not a member/);
      const added = await client.members.add("127.0.0.1:9");
      assert.deepEqual(added, { message: "Added node 2 at 127.0.0.1:9 as a learner", nodeId: 2 });
      // Joining from the same address finds the learner already there.
      assert.deepEqual(await client.join("127.0.0.1:9"), {
        nodeId: 2,
        clusterId: CREDENTIALS.clusterId,
        leaderId: 1,
      });
      assert.deepEqual((await client.status()).conf, { voters: [1], learners: [2] });
      assert.deepEqual(await client.members.remove(2), { message: "Removed node 2" });
      assert.deepEqual((await client.status()).conf, { voters: [1], learners: [] });

      await assert.rejects(
        client.call("ship", { action: "sink" } as never),
        /Unknown ship action 'sink'/,
      );
      await assert.rejects(
        client.call("member", { action: "sink" } as never),
        /Unknown member action 'sink'/,
      );
      await assert.rejects(
        client.call("ship", { action: "set", ship: "x", optimism: 0 }),
        /'x' is not a ship number/,
      );
    });
  } finally {
    await cluster.stop();
  }
});

Deno.test("withLeader follows a learner's not-leader answer to the leader", async () => {
  const cluster = await startCluster(1);
  try {
    // The learner knows the leader once it has heard from it: wait for an entry from it.
    await withClient(cluster.addresses[1], async (client) => {
      await client.read(1, 1, 10_000);
      assert.equal((await client.status()).leaderId, 1);
      await assert.rejects(
        client.ships.add(1n),
        (e: ApiError) => e.status === Status.notLeader && e.leaderAddress === cluster.addresses[0],
      );
    });
    const added = await withLeader(
      cluster.addresses[1],
      CREDENTIALS,
      (c) => c.ships.add(1n, { fake: true }),
    );
    assert.equal(added.ship, "1");
    // Reads are answered by any node: the learner applies the ship too.
    const applied = cluster.nodes[0].status().appliedIndex;
    await withClient(cluster.addresses[1], async (client) => {
      assert.equal((await client.read(applied, 1, 10_000)).length, 1);
      assert.equal((await client.ships.list())[0].ship, "1");
    });
  } finally {
    await cluster.stop();
  }
});

Deno.test("typed requests are the bytes older clients sent (mixed versions still talk)", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address = `127.0.0.1:${listener.addr.port}`;
  const seen: { op: number; payload: Uint8Array }[] = [];
  const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const answers: Record<number, Uint8Array> = {
    [Op.propose]: encodeIndex(7),
    [Op.read]: encodeEntries([]),
    [Op.log]: encodeEvents([]),
    [Op.image]: new Uint8Array(0),
    [Op.events]: json({ appended: 0, skipped: 0 }),
  };
  const served = (async () => {
    const { fc } = await openConn(await listener.accept(), "acceptor", {
      kind: "peer",
      clusterId: CREDENTIALS.clusterId,
      nodeId: 1,
      address,
    }, await FAKE_NODE_SECURITY);
    await serveClient(fc, (op, payload) => {
      seen.push({ op, payload });
      return Promise.resolve(answers[op] ?? json({}));
    }, () => {});
  })();
  const events = {
    kind: "events" as const,
    ship: 5n,
    firstEve: 1,
    events: [{ mug: 1, job: job(1) }],
  };
  await withClient(address, async (c) => {
    await c.status();
    await c.ships.list();
    await c.ships.add(5n, { fake: true, life: 2 });
    await c.ships.remove(5n);
    await c.ships.set(5n, 0);
    await c.ships.run(5n, true);
    await c.ships.setDefault(-2);
    await c.ships.verify(5n);
    await c.members.add("h:1");
    await c.members.remove(2, { force: true });
    await c.members.promote(2);
    await c.members.transfer(2);
    await c.join("h:1");
    assert.equal(await c.propose(new Uint8Array([1, 2])), 7);
    await c.read(3, 10);
    await c.ships.write(events);
    await c.ships.events(5n, 1, 10, 30_000);
    await c.ships.imageChunk(5n, 2, 4096);
  });
  await served;
  listener.close();
  const text = (p: Uint8Array) => new TextDecoder().decode(p);
  // What the untyped call sites of earlier versions wrote, byte for byte.
  const expected: [number, Uint8Array][] = [
    [Op.status, json({})],
    [Op.ship, json({ action: "list" })],
    [Op.ship, json({ action: "add", ship: "5", fake: true, life: 2 })],
    [Op.ship, json({ action: "remove", ship: "5" })],
    [Op.ship, json({ action: "set", ship: "5", optimism: 0 })],
    [Op.ship, json({ action: "run", ship: "5", run: true })],
    [Op.ship, json({ action: "default", optimism: -2 })],
    [Op.ship, json({ action: "verify", ship: "5" })],
    [Op.member, json({ action: "add", address: "h:1" })],
    [Op.member, json({ action: "remove", nodeId: 2, force: true })],
    [Op.member, json({ action: "promote", nodeId: 2 })],
    [Op.member, json({ action: "transfer", nodeId: 2 })],
    [Op.join, json({ address: "h:1" })],
    [Op.propose, new Uint8Array([1, 2])],
    [Op.read, encodeReadRequest(3, 10)],
    [Op.events, encodeCommand(events)],
    [Op.log, encodeLogRequest(shipKey(5n), 1, 10, 30_000)],
    [Op.image, encodeImageRequest(shipKey(5n), 2, 4096)],
  ];
  assert.deepEqual(
    seen.map((
      { op, payload },
    ) => [op, op === Op.ship || op === Op.member ? text(payload) : payload]),
    expected.map((
      [op, payload],
    ) => [op, op === Op.ship || op === Op.member ? text(payload) : payload]),
  );
  assert.deepEqual(decodeEntries(encodeEntries([])), []);
});

/**
 * A node stand-in at a loopback port: it handshakes each client, then hands
 * each request to `answer` (which may never answer, or close the connection).
 */
function fakeNode(
  answer: (fc: FrameConn, id: number, op: number) => void,
  clusterId = CREDENTIALS.clusterId,
): { address: string; close: () => void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address = `127.0.0.1:${listener.addr.port}`;
  const conns: FrameConn[] = [];
  (async () => {
    const security = await FAKE_NODE_SECURITY;
    for await (const conn of listener) {
      openConn(conn, "acceptor", { kind: "peer", clusterId, nodeId: 1, address }, security)
        .then(async ({ fc }) => {
          conns.push(fc);
          for (let f = await fc.read(); f !== null; f = await fc.read()) {
            answer(fc, new DataView(f.body.buffer, f.body.byteOffset).getUint32(0), f.body[4]);
          }
        }).catch(() => {});
    }
  })();
  return {
    address,
    close: () => {
      listener.close();
      for (const fc of conns) fc.close();
    },
  };
}

Deno.test("client failures say whether another try may pass: unreachable, lost, timeout, refused", async () => {
  const refused = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const nobody = `127.0.0.1:${refused.addr.port}`;
  refused.close();
  await assert.rejects(
    ClusterClient.connect(nobody, CREDENTIALS),
    (e) => e instanceof ClientError && e.failure === "unreachable",
  );

  // A node that never answers: the request, and every other on the connection, time out.
  const silent = fakeNode(() => {});
  try {
    const client = await ClusterClient.connect(silent.address, CREDENTIALS, {
      answerTimeoutMs: 200,
    });
    const timedOut = (e: unknown) =>
      e instanceof ClientError && e.failure === "timeout" &&
      e.message === `${silent.address} did not answer within 0.2 s`;
    const started = performance.now();
    await Promise.all([
      assert.rejects(client.status(), timedOut),
      assert.rejects(client.ships.list(), timedOut),
    ]);
    assert.ok(performance.now() - started >= 200);
    await assert.rejects(client.status(), timedOut);
    client.close();
  } finally {
    silent.close();
  }

  // A long poll may take its waitMs on top: a `log` request waiting 300 ms is answered at 350.
  const slow = fakeNode((fc, id, op) => {
    assert.equal(op, Op.log);
    setTimeout(() => {
      const events = encodeEvents([]);
      const body = new Uint8Array(5 + events.length);
      new DataView(body.buffer).setUint32(0, id);
      body[4] = Status.ok;
      body.set(events, 5);
      fc.send(FrameType.response, body);
    }, 350);
  });
  try {
    const client = await ClusterClient.connect(slow.address, CREDENTIALS, { answerTimeoutMs: 200 });
    assert.deepEqual(await client.ships.events(5n, 1, 10, 300), []);
    client.close();
  } finally {
    slow.close();
  }

  // A node that drops the connection: lost.
  const dropping = fakeNode((fc) => fc.close());
  try {
    const client = await ClusterClient.connect(dropping.address, CREDENTIALS);
    await assert.rejects(
      client.status(),
      (e) => e instanceof ClientError && e.failure === "lost",
    );
    client.close();
  } finally {
    dropping.close();
  }

  // Another cluster: refused, and no retry will change that.
  const other = fakeNode(() => {}, "0badc0de".repeat(4));
  try {
    await assert.rejects(
      ClusterClient.connect(other.address, CREDENTIALS),
      (e) => e instanceof ClientError && e.failure === "refused",
    );
  } finally {
    other.close();
  }
});

Deno.test("read of an entry compacted away is refused, naming where the log starts", async () => {
  const cluster = await startCluster(0, 2);
  try {
    await withClient(cluster.addresses[0], async (client) => {
      let last = 0;
      for (let i = 0; i < 10; i++) last = await client.propose(new Uint8Array([i + 1]));
      const first = cluster.nodes[0].status().firstIndex;
      assert.ok(first > 1, `compacted: the log starts at ${first}`);
      await assert.rejects(
        client.read(1, 1),
        new RegExp(`^.*Entries before ${first} are compacted on this node .*; read from ${first}$`),
      );
      assert.equal((await client.read(first, 100)).at(-1)?.index, last, "from there it reads");
    });
  } finally {
    await cluster.stop();
  }
});

Deno.test("a long-poll read whose start is compacted while it waits is refused the same way", async () => {
  const cluster = await startCluster(0, 2);
  try {
    await withClient(cluster.addresses[0], async (reader) => {
      await withClient(cluster.addresses[0], async (writer) => {
        const from = cluster.nodes[0].status().appliedIndex + 1;
        // Settled into a value at once: it may be refused before the batch below is in.
        const read = reader.read(from, 1, 10_000).then(
          () => new Error("the read answered, though its start was compacted away"),
          (e: Error) => e,
        );
        // Once the read waits, entries up to and past `from` come in one batch, and the node
        // compacts its log past `from` in the same turn as it applies them.
        await writer.status();
        await Promise.all(
          Array.from({ length: 10 }, (_, i) => writer.propose(new Uint8Array([i + 1]))),
        );
        const first = cluster.nodes[0].status().firstIndex;
        assert.ok(first > from, `compacted past ${from}: the log starts at ${first}`);
        assert.match(
          (await read).message,
          /Entries before \d+ are compacted on this node .*; read from \d+$/,
        );
      });
    });
  } finally {
    await cluster.stop();
  }
});
