import assert from "node:assert/strict";
import type { Message } from "../core/mod.ts";
import type { PeerMessage } from "./snapshot_stream.ts";
import { Transport } from "./transport.ts";
import { encodeFrame, FrameConn, FrameType } from "./frame.ts";
import { handshake } from "./handshake.ts";
import { HANDSHAKING_PER_ADDRESS_MAX, LOG_LINES_PER_WINDOW } from "./admission.ts";

const CLUSTER = "0123456789abcdef0123456789abcdef";
const SECRET = new Uint8Array(32).fill(1);

/** An async inbox: tests await an item instead of sleeping. */
class Inbox<T> {
  #items: T[] = [];
  #waiters: { match: (t: T) => boolean; resolve: (t: T) => void }[] = [];
  push(t: T): void {
    const i = this.#waiters.findIndex((w) => w.match(t));
    if (i >= 0) this.#waiters.splice(i, 1)[0].resolve(t);
    else this.#items.push(t);
  }
  /** Takes the first item that matches (now or when it arrives); leaves the others. */
  find(match: (t: T) => boolean): Promise<T> {
    const i = this.#items.findIndex(match);
    if (i >= 0) return Promise.resolve(this.#items.splice(i, 1)[0]);
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }
  /** Takes the next item. */
  next(): Promise<T> {
    return this.find(() => true);
  }
  /** Items waiting. */
  get size(): number {
    return this.#items.length;
  }
}

interface TestNode {
  transport: Transport;
  port: number;
  inbox: Inbox<PeerMessage>;
  logs: Inbox<string>;
}

function startNode(
  nodeId: number,
  options: {
    secret?: Uint8Array;
    clusterId?: string;
    port?: number;
    isRemoved?: (id: number) => boolean;
    onRemoved?: (by: number) => void;
  } = {},
): TestNode {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: options.port ?? 0 });
  const port = listener.addr.port;
  const inbox = new Inbox<PeerMessage>();
  const logs = new Inbox<string>();
  const transport = new Transport({
    clusterId: options.clusterId ?? CLUSTER,
    nodeId,
    secret: options.secret ?? SECRET,
    listener,
    advertise: `127.0.0.1:${port}`,
    onRaft: (m) => inbox.push(m),
    onClient: (fc) => fc.close(),
    log: (line) => logs.push(line),
    isRemoved: options.isRemoved,
    onRemoved: options.onRemoved,
  });
  transport.start();
  return { transport, port, inbox, logs };
}

function heartbeat(from: number, to: number, commit: number): Message {
  return { type: "heartbeat", groupId: 1, from, to, term: 1, commit, readSeq: 0 };
}

/** Sends until one arrives: the first sends only start the dial (Raft resends the same way). */
async function deliver(from: TestNode, m: Message, to: TestNode): Promise<PeerMessage> {
  let done = false;
  const got = to.inbox.find((x) => x.type === m.type && x.from === m.from).then((x) => {
    done = true;
    return x;
  });
  while (!done) {
    from.transport.send(m);
    await Promise.race([got, new Promise((r) => setTimeout(r, 20))]);
  }
  return got;
}

Deno.test("two nodes exchange Raft messages over authenticated TCP", async () => {
  const a = startNode(1);
  const b = startNode(2);
  a.transport.setPeers(new Map([[2, `127.0.0.1:${b.port}`]]));
  b.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
  try {
    const m = await deliver(a, heartbeat(1, 2, 7), b);
    assert.deepEqual(m, heartbeat(1, 2, 7));
    const back = await deliver(b, heartbeat(2, 1, 9), a);
    assert.equal(back.type === "heartbeat" && back.commit, 9);
    const view = a.transport.peers();
    assert.equal(view.length, 1);
    assert.equal(view[0].connected, true);
  } finally {
    await a.transport.close();
    await b.transport.close();
  }
});

Deno.test("a peer with the wrong secret or the wrong cluster is refused, with a logged reason", async () => {
  const a = startNode(1);
  const liar = startNode(3, { secret: new Uint8Array(32).fill(2) });
  const stranger = startNode(4, { clusterId: "f".repeat(32) });
  liar.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
  stranger.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
  try {
    // Both dial node 1 as soon as they know its address; node 1 refuses both.
    assert.match(await a.logs.find((l) => l.includes("secret")), /secret does not match/);
    assert.match(await liar.logs.next(), /refused|secret/);
    assert.match(await a.logs.find((l) => l.includes("Wrong cluster")), /belongs to cluster/);
    assert.match(await stranger.logs.next(), /Wrong cluster/);
    assert.equal(a.inbox.size, 0);
  } finally {
    await a.transport.close();
    await liar.transport.close();
    await stranger.transport.close();
  }
});

Deno.test("a removed node is told so when it connects, and when its removal comes later", async () => {
  const removed = new Set<number>([3]);
  const a = startNode(1, { isRemoved: (id) => removed.has(id) });
  const toldThree = new Inbox<number>();
  const toldFour = new Inbox<number>();
  const three = startNode(3, { onRemoved: (by) => toldThree.push(by) });
  const four = startNode(4, { onRemoved: (by) => toldFour.push(by) });
  try {
    // Removed before it connects: told as soon as it connects.
    three.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
    assert.equal(await toldThree.next(), 1);
    assert.match(await a.logs.find((l) => l.includes("node 3")), /removed .* told it so/);
    // Removed while connected (and silent): told when node 1 learns it.
    four.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
    await deliver(four, heartbeat(4, 1, 0), a);
    removed.add(4);
    a.transport.tellRemovedPeers();
    assert.equal(await toldFour.next(), 1);
  } finally {
    await a.transport.close();
    await three.transport.close();
    await four.transport.close();
  }
});

Deno.test("random bytes, an oversized frame and an unauthenticated Raft frame close only their connection", async () => {
  const a = startNode(1);
  const b = startNode(2);
  b.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
  try {
    const attacks: Uint8Array[] = [
      crypto.getRandomValues(new Uint8Array(4096)),
      encodeFrame(FrameType.hello, new Uint8Array(100_000)), // over the pre-auth limit
      encodeFrame(FrameType.raft, new Uint8Array(10)), // Raft before the handshake
      new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for (const bytes of attacks) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: a.port });
      await conn.write(bytes).catch(() => 0);
      // The node closes the connection: reading ends (EOF or reset).
      const buf = new Uint8Array(1024);
      while (await conn.read(buf).catch(() => null) !== null) { /* drain hello/goodbye */ }
      conn.close();
      assert.match(await a.logs.next(), /closed connection from 127\.0\.0\.1/);
    }
    // The node still works.
    const m = await deliver(b, heartbeat(2, 1, 5), a);
    assert.equal(m.from, 2);
  } finally {
    await a.transport.close();
    await b.transport.close();
  }
});

Deno.test("a restarted peer is reconnected with backoff", async () => {
  const a = startNode(1);
  let b = startNode(2);
  const port = b.port;
  a.transport.setPeers(new Map([[2, `127.0.0.1:${port}`]]));
  try {
    await deliver(a, heartbeat(1, 2, 1), b);
    await b.transport.close();
    b = startNode(2, { port });
    const m = await deliver(a, heartbeat(1, 2, 2), b);
    assert.equal(m.type === "heartbeat" && m.commit, 2);
  } finally {
    await a.transport.close();
    await b.transport.close();
  }
});

Deno.test("a connection's send queue is bounded: a peer that does not read cannot grow it", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const silent = await accepted; // never reads
  const fc = new FrameConn(conn, 1024 * 1024);
  try {
    const chunk = new Uint8Array(64 * 1024);
    let refused = 0;
    for (let i = 0; i < 2000; i++) if (!fc.send(FrameType.raft, chunk)) refused++;
    assert.ok(refused > 0, "some sends were refused");
    assert.ok(fc.queuedBytes <= 1024 * 1024, `queued ${fc.queuedBytes} bytes`);
  } finally {
    fc.close();
    silent.close();
    listener.close();
  }
});

Deno.test("a client connection authenticates with the cluster secret like a peer", async () => {
  const clients: string[] = [];
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const transport = new Transport({
    clusterId: CLUSTER,
    nodeId: 1,
    secret: SECRET,
    listener,
    advertise: "x:1",
    onRaft: () => {},
    onClient: (fc, hello) => {
      clients.push(hello.kind);
      fc.close();
    },
    log: () => {},
  });
  transport.start();
  try {
    const fc = new FrameConn(
      await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    );
    const hello = await handshake(
      fc,
      "initiator",
      { kind: "client", clusterId: CLUSTER, nodeId: 0, address: "" },
      SECRET,
    );
    assert.equal(hello.nodeId, 1);
    assert.equal(await fc.read(), null); // onClient closed it
    assert.deepEqual(clients, ["client"]);
  } finally {
    await transport.close();
  }
});

Deno.test("idle strangers cannot hold more than the per-address cap of handshakes: the oldest are closed, a peer still gets through", async () => {
  const a = startNode(1);
  const b = startNode(2);
  b.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
  const idle: Deno.TcpConn[] = [];
  try {
    const buf = new Uint8Array(4096);
    /** Resolves true once the node has closed the connection (after its hello, if it sent one). */
    const closed = async (conn: Deno.TcpConn) => {
      while (await conn.read(buf).catch(() => null) !== null) { /* the node's hello */ }
      return true;
    };
    const extra = 12;
    for (let i = 0; i < HANDSHAKING_PER_ADDRESS_MAX + extra; i++) {
      idle.push(await Deno.connect({ hostname: "127.0.0.1", port: a.port }));
    }
    // The first 12 made room for the last ones: each closed by the node.
    const oldest = idle.slice(0, extra);
    assert.deepEqual(await Promise.all(oldest.map(closed)), oldest.map(() => true));
    const lines: string[] = [];
    for (let i = 0; i < LOG_LINES_PER_WINDOW; i++) lines.push(await a.logs.next());
    for (const line of lines) {
      assert.equal(
        line,
        "closed a connection from 127.0.0.1 still in its handshake, to make room for a new one",
      );
    }
    assert.equal(a.logs.size, 0, "the rest are counted, not logged");
    // With 16 idle connections still open, a peer gets through (an idle one makes room).
    const m = await deliver(b, heartbeat(2, 1, 5), a);
    assert.equal(m.from, 2);
  } finally {
    for (const conn of idle) {
      try {
        conn.close();
      } catch {
        // closed above
      }
    }
    await a.transport.close();
    await b.transport.close();
  }
});
