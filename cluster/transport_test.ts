import assert from "node:assert/strict";
import tls from "node:tls";
import { Duplex } from "node:stream";
import type { Message } from "../core/mod.ts";
import type { PeerMessage } from "./snapshot_stream.ts";
import { Transport } from "./transport.ts";
import { encodeFrame, FrameConn, FrameType } from "./frame.ts";
import { tcpStream } from "./byte_stream.ts";
import { openConn, type Security } from "./connect.ts";
import { HANDSHAKING_PER_ADDRESS_MAX, LOG_LINES_PER_WINDOW } from "./admission.ts";
import { clientSecurityOf, nodeSecurity, testToken } from "../tests/security.ts";

const CLUSTER = "0123456789abcdef0123456789abcdef";
const TOKEN = await testToken(CLUSTER);

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

async function startNode(
  nodeId: number,
  options: {
    security?: Security;
    clusterId?: string;
    port?: number;
    isRemoved?: (id: number) => boolean;
    onRemoved?: (by: number) => void;
  } = {},
): Promise<TestNode> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: options.port ?? 0 });
  const port = listener.addr.port;
  const inbox = new Inbox<PeerMessage>();
  const logs = new Inbox<string>();
  const transport = new Transport({
    clusterId: options.clusterId ?? CLUSTER,
    nodeId,
    security: options.security ?? await nodeSecurity(TOKEN, nodeId),
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

Deno.test("two nodes exchange Raft messages over TLS", async () => {
  const a = await startNode(1);
  const b = await startNode(2);
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

Deno.test("a peer of another CA, one with another node's certificate and one of another cluster id are refused, with a logged reason", async () => {
  const a = await startNode(1);
  const foreign = await startNode(3, { security: await nodeSecurity(await testToken(CLUSTER), 3) });
  const impostor = await startNode(5, { security: await nodeSecurity(TOKEN, 6) });
  const stranger = await startNode(4, { clusterId: "f".repeat(32) });
  try {
    // Each dials node 1 as soon as it knows its address; node 1 refuses each.
    foreign.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
    // The dialler checks the node's certificate first, and hangs up: neither learns more.
    assert.match(
      await foreign.logs.next(),
      /peer 1 at .*: TLS: the other side's certificate is not signed by this cluster's CA/,
    );
    assert.match(await a.logs.next(), /closed connection from 127\.0\.0\.1:\d+: /);
    impostor.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
    assert.match(
      await a.logs.find((l) => l.includes("node 5")),
      /A hello as node 5 came with a certificate for node 6/,
    );
    stranger.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
    assert.match(await a.logs.find((l) => l.includes("Wrong cluster")), /belongs to cluster/);
    assert.match(await stranger.logs.next(), /Wrong cluster/);
    assert.equal(a.inbox.size, 0);
  } finally {
    for (const n of [a, foreign, impostor, stranger]) await n.transport.close();
  }
});

Deno.test("plaintext (--insecure-plaintext): a peer with the wrong secret is refused", async () => {
  const plain = await testToken(CLUSTER, { plaintext: true });
  const a = await startNode(1, { security: await nodeSecurity(plain, 1) });
  const b = await startNode(2, { security: await nodeSecurity(plain, 2) });
  const liar = await startNode(3, {
    security: await nodeSecurity(await testToken(CLUSTER, { plaintext: true }), 3),
  });
  try {
    liar.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
    assert.match(await a.logs.find((l) => l.includes("secret")), /secret does not match/);
    b.transport.setPeers(new Map([[1, `127.0.0.1:${a.port}`]]));
    assert.equal((await deliver(b, heartbeat(2, 1, 3), a)).from, 2);
  } finally {
    for (const n of [a, b, liar]) await n.transport.close();
  }
});

Deno.test("a removed node is told so when it connects, and when its removal comes later", async () => {
  const removed = new Set<number>([3]);
  const a = await startNode(1, { isRemoved: (id) => removed.has(id) });
  const toldThree = new Inbox<number>();
  const toldFour = new Inbox<number>();
  const three = await startNode(3, { onRemoved: (by) => toldThree.push(by) });
  const four = await startNode(4, { onRemoved: (by) => toldFour.push(by) });
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
  const a = await startNode(1);
  const b = await startNode(2);
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
  const a = await startNode(1);
  let b = await startNode(2);
  const port = b.port;
  a.transport.setPeers(new Map([[2, `127.0.0.1:${port}`]]));
  try {
    await deliver(a, heartbeat(1, 2, 1), b);
    await b.transport.close();
    b = await startNode(2, { port });
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
  const fc = new FrameConn(tcpStream(conn), 1024 * 1024);
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

Deno.test("a client connects with its credential, and the node sees the credential's role", async () => {
  const clients: string[] = [];
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const transport = new Transport({
    clusterId: CLUSTER,
    nodeId: 1,
    security: await nodeSecurity(TOKEN, 1),
    listener,
    advertise: "x:1",
    onRaft: () => {},
    onClient: (fc, hello) => {
      clients.push(`${hello.kind} ${hello.role}`);
      fc.close();
    },
    log: () => {},
  });
  transport.start();
  try {
    for (const role of ["monitor", "admin"] as const) {
      const { fc, hello } = await openConn(
        await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
        "initiator",
        { kind: "client", clusterId: CLUSTER, nodeId: 0, address: "" },
        await clientSecurityOf(TOKEN, role),
      );
      assert.equal(hello.nodeId, 1);
      assert.equal(await fc.read(), null); // onClient closed it
    }
    assert.deepEqual(clients, ["client monitor", "client admin"]);
  } finally {
    await transport.close();
  }
});

Deno.test("idle strangers cannot hold more than the per-address cap of handshakes: the oldest are closed, a peer still gets through", async () => {
  const a = await startNode(1);
  const b = await startNode(2);
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

/**
 * A TCP proxy on the path to `target`: it forwards both ways and records
 * every byte; `flipAfter` flips one byte of the dialler's stream once that
 * many have passed (an on-path attacker altering a record).
 */
function pathProxy(target: number, options: { flipAfter?: number } = {}) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const recorded: Uint8Array[] = [];
  const conns: Deno.TcpConn[] = [];
  let forwarded = 0;
  let flipped = false;
  const pump = async (from: Deno.TcpConn, to: Deno.TcpConn, dialler: boolean) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        const chunk = buf.slice(0, n);
        recorded.push(chunk.slice());
        if (dialler && options.flipAfter !== undefined && !flipped) {
          const at = options.flipAfter - forwarded;
          if (at >= 0 && at < n) {
            chunk[at] ^= 0x01;
            flipped = true;
          }
        }
        if (dialler) forwarded += n;
        await to.write(chunk);
      }
    } catch {
      // either side closed
    } finally {
      for (const c of [from, to]) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
    }
  };
  const accepting = (async () => {
    for await (const inbound of listener) {
      const outbound = await Deno.connect({ hostname: "127.0.0.1", port: target });
      conns.push(inbound, outbound);
      pump(inbound, outbound, true);
      pump(outbound, inbound, false);
    }
  })();
  return {
    address: `127.0.0.1:${listener.addr.port}`,
    recorded: () => {
      const all = new Uint8Array(recorded.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of recorded) {
        all.set(c, at);
        at += c.length;
      }
      return all;
    },
    flipped: () => flipped,
    close: async () => {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await accepting.catch(() => {});
    },
  };
}

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

function appendWith(from: number, to: number, data: Uint8Array): Message {
  return {
    type: "app",
    groupId: 1,
    from,
    to,
    term: 1,
    index: 0,
    logTerm: 0,
    commit: 0,
    entries: [{ index: 1, term: 1, type: "normal", data }],
  };
}

Deno.test("a recorder on the path between two nodes never sees an entry's bytes", async () => {
  const a = await startNode(1);
  const b = await startNode(2);
  const proxy = pathProxy(a.port);
  b.transport.setPeers(new Map([[1, proxy.address]]));
  try {
    const secret = new TextEncoder().encode("an event a ship's keys are in ".repeat(4));
    const got = await deliver(b, appendWith(2, 1, secret), a);
    assert.ok(got.type === "app" && got.entries[0].data.length === secret.length);
    const seen = proxy.recorded();
    assert.ok(seen.length > secret.length, `the proxy carried ${seen.length} bytes`);
    assert.equal(contains(seen, secret), false, "the entry crossed the path in the clear");
    assert.equal(
      contains(seen, secret.subarray(0, 16)),
      false,
      "a part of it crossed in the clear",
    );
  } finally {
    await proxy.close();
    await a.transport.close();
    await b.transport.close();
  }
});

Deno.test("a byte flipped on the path drops the connection: nothing altered is delivered, and the peers reconnect", async () => {
  const a = await startNode(1);
  const b = await startNode(2);
  // Past the TLS handshake and the hellos (about 2 KiB from the dialler): inside a record of entries.
  const proxy = pathProxy(a.port, { flipAfter: 6000 });
  b.transport.setPeers(new Map([[1, proxy.address]]));
  try {
    const data = new Uint8Array(1000).fill(0x55);
    // Enough entries to pass the flip; each arrives whole or not at all.
    const received: PeerMessage[] = [];
    let sent = 0;
    while (!proxy.flipped() && sent < 100) {
      received.push(await deliver(b, appendWith(2, 1, data), a));
      sent++;
    }
    assert.ok(proxy.flipped(), "the proxy flipped a byte");
    // Node 1's TLS refuses the record and alerts the dialler, which logs why and lets go.
    assert.match(await b.logs.find((l) => l.includes("BadRecordMac")), /^peer 1: .*BadRecordMac/);
    // The link comes back by itself (a redial), and what arrives is intact.
    received.push(await deliver(b, appendWith(2, 1, data), a));
    while (a.inbox.size > 0) received.push(await a.inbox.next());
    for (const m of received) {
      assert.ok(m.type === "app");
      assert.deepEqual(m.entries[0].data, data, "an altered entry was delivered");
    }
  } finally {
    await proxy.close();
    await a.transport.close();
    await b.transport.close();
  }
});

Deno.test("a caller that skips TLS checks and presents another cluster's certificate gets no Seguro byte", async () => {
  const a = await startNode(1);
  try {
    const foreign = await nodeSecurity(await testToken(CLUSTER), 2);
    const me = foreign.kind === "tls" ? foreign.identity() : undefined;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: a.port });
    const sock = tls.connect({
      socket: new Duplex({
        read() {
          const buf = new Uint8Array(65536);
          conn.read(buf).then(
            (n) => this.push(n === null ? null : buf.subarray(0, n)),
            () => this.push(null),
          );
        },
        write(chunk: Uint8Array, _e, done) {
          conn.write(chunk).then(() => done(), done);
        },
      }),
      servername: "seguro",
      key: me!.keyPem,
      cert: me!.certPem,
      rejectUnauthorized: false, // an attacker does not care who the node is
    });
    const received: Uint8Array[] = [];
    sock.on("data", (d: Uint8Array) => received.push(d));
    await new Promise<void>((resolve) => {
      sock.on("close", () => resolve());
      sock.on("end", () => resolve());
      sock.on("error", () => resolve());
      // Its hello, as a peer would send it: the node must not answer.
      sock.on("secureConnect", () => sock.write(encodeFrame(FrameType.hello, new Uint8Array(70))));
    });
    conn.close();
    assert.deepEqual(received, [], "the node sent nothing of its protocol");
    assert.match(
      await a.logs.next(),
      /closed connection from 127\.0\.0\.1:\d+: Refused: the certificate is not signed by this cluster's CA/,
    );
  } finally {
    await a.transport.close();
  }
});
