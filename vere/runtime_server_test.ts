/**
 * The runtime socket over a real Unix socket in a temp
 * dir, with a fake backend: the protocol reaches the backend and comes back
 * framed; bad input is answered, never fatal to the server; close() ends
 * every connection and removes the socket file.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { cord } from "./noun.ts";
import { encodeFrame, NewtDecoder } from "./newt.ts";
import { RuntimeClient } from "./runtime_client.ts";
import {
  decodeRuntimeFrame,
  encodeRuntimeMessage,
  type NodeToRuntimeMessage,
  RUNTIME_PROTOCOL_VERSION,
} from "./runtime_protocol.ts";
import { type RuntimeBackend, RuntimeServer } from "./runtime_server.ts";

type Listener = Parameters<RuntimeBackend["subscribe"]>[0];

/** A backend that records plans and lets the test emit releases. */
function fakeBackend() {
  const listeners = new Set<Listener>();
  const plans: { ship: bigint; eve: number; mug: number; job: Uint8Array }[] = [];
  let planned: (() => void) | undefined;
  const backend: RuntimeBackend = {
    nodeId: 3,
    isMaster: () => true,
    masterAddress: () => "",
    ships: () => [0n],
    plan: (p) => {
      plans.push(p);
      planned?.();
    },
    head: (ship) => ship === 0n ? { eve: 41, mug: 0xabc } : undefined,
    read: (_ship, from, count) =>
      Array.from({ length: Math.min(count, 2) }, (_, i) => ({
        eve: from + i,
        mug: from + i,
        job: Uint8Array.of(from + i),
      })),
    subscribe: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
  /** Resolves once the backend got a plan. */
  const nextPlan = () => new Promise<void>((resolve) => planned = resolve);
  const release = (eve: number) => {
    for (const l of listeners) l.release({ ship: 0n, eve });
  };
  return { backend, plans, nextPlan, release, listeners };
}

/** A connection that sends raw bytes and decodes what the node answers. */
class RawRuntime {
  readonly got: NodeToRuntimeMessage[] = [];
  readonly ended: Promise<void>;
  readonly #conn: Deno.Conn;
  #waiting: {
    match: (m: NodeToRuntimeMessage) => boolean;
    resolve: (m: NodeToRuntimeMessage) => void;
  }[] = [];

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.ended = this.#read();
  }

  async #read(): Promise<void> {
    const decoder = new NewtDecoder();
    const buf = new Uint8Array(64 * 1024);
    try {
      for (let n = await this.#conn.read(buf); n !== null; n = await this.#conn.read(buf)) {
        decoder.push(buf.slice(0, n));
        for (let f = decoder.next(); f !== undefined; f = decoder.next()) {
          const m = decodeRuntimeFrame(f, { from: "node" });
          this.got.push(m);
          for (const w of this.#waiting.filter((w) => w.match(m))) {
            this.#waiting.splice(this.#waiting.indexOf(w), 1);
            w.resolve(m);
          }
        }
      }
    } catch { /* reset by the server */ }
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }

  next(match: (m: NodeToRuntimeMessage) => boolean): Promise<NodeToRuntimeMessage> {
    const seen = this.got.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiting.push({ match, resolve }));
  }

  async write(bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.length) written += await this.#conn.write(bytes.subarray(written));
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }
}

async function withServer(
  fn: (s: {
    server: RuntimeServer;
    path: string;
    fake: ReturnType<typeof fakeBackend>;
    lines: string[];
  }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "seguro-runtime-" });
  const path = join(dir, "runtime.sock");
  const fake = fakeBackend();
  const lines: string[] = [];
  const server = new RuntimeServer(fake.backend, {
    socketPath: path,
    log: (l) => lines.push(l),
  });
  try {
    await fn({ server, path, fake, lines });
  } finally {
    server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("runtime server: hail, role notice, plan, release, head and read over the Unix socket", async () => {
  await withServer(async ({ server, path, fake }) => {
    Deno.writeTextFileSync(path, "stale"); // left by a crashed node: replaced
    server.start();
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o600, "only the node's user may connect");
    const client = await RuntimeClient.connect({ path });
    try {
      assert.equal(client.nodeId, 3);
      await client.lead(0n);
      assert.equal(server.hub?.size, 1);
      assert.deepEqual(server.hub?.notices(), new Map([[0n, "lead"]]));

      const planned = fake.nextPlan();
      client.plan(0n, 42, 0x1234, Uint8Array.of(9, 9));
      await planned;
      assert.deepEqual(fake.plans, [{
        type: "plan",
        ship: 0n,
        eve: 42,
        mug: 0x1234,
        job: Uint8Array.of(9, 9),
      }]);

      const done = client.next((m) => m.type === "done");
      fake.release(42);
      assert.deepEqual(await done, { type: "done", ship: 0n, eve: 42 });

      const head = client.next((m) => m.type === "head");
      client.send({ type: "head", ship: 0n });
      assert.deepEqual(await head, { type: "head", ship: 0n, eve: 41, mug: 0xabc });

      const logs = client.next((m) => m.type === "logs");
      client.send({ type: "read", ship: 0n, from: 7, count: 5 });
      const answer = await logs;
      assert.equal(answer.type, "logs");
      if (answer.type === "logs") assert.deepEqual(answer.events.map((e) => e.eve), [7, 8]);
    } finally {
      client.close();
      await client.closed;
    }
  });
});

Deno.test("runtime server: a large job (sliced decode) arrives exact, and a small plan after it keeps its order", async () => {
  await withServer(async ({ server, path, fake }) => {
    server.start();
    const client = await RuntimeClient.connect({ path });
    try {
      await client.lead(0n);
      const job = new Uint8Array(3 * 1024 * 1024 + 5);
      for (let i = 0; i < job.length; i++) job[i] = (i * 131 + 7) & 0xff;
      job[job.length - 1] = 0x80; // a top byte with its high bit: shifts must keep it
      client.plan(0n, 1, 0x1111, job);
      client.plan(0n, 2, 0x2222, Uint8Array.of(5));
      while (fake.plans.length < 2) await fake.nextPlan();
      assert.deepEqual(fake.plans.map((p) => p.eve), [1, 2], "in the order planned");
      assert.equal(fake.plans[0].job.length, job.length);
      assert.ok(fake.plans[0].job.every((b, i) => b === job[i]), "the large job is exact");
    } finally {
      client.close();
      await client.closed;
    }
  });
});

Deno.test("runtime server: a message that is not the protocol gets %oops and the connection goes on", async () => {
  await withServer(async ({ server, path, lines }) => {
    server.start();
    const raw = new RawRuntime(await Deno.connect({ transport: "unix", path }));
    try {
      await raw.write(encodeFrame(cord("junk")));
      const oops = await raw.next((m) => m.type === "oops");
      assert.equal(oops.type, "oops");
      // Still served: a hail is answered on the same connection.
      await raw.write(
        encodeFrame(
          encodeRuntimeMessage({ type: "hail", version: RUNTIME_PROTOCOL_VERSION, node: 0 }),
        ),
      );
      const hail = await raw.next((m) => m.type === "hail");
      assert.deepEqual(hail, { type: "hail", version: RUNTIME_PROTOCOL_VERSION, node: 3 });
      assert.deepEqual(lines, [], "not worth a log line");
    } finally {
      raw.close();
      await raw.ended;
    }
  });
});

Deno.test("runtime server: a broken frame gets %oops, a log line, and the connection is closed", async () => {
  await withServer(async ({ server, path, lines }) => {
    server.start();
    const raw = new RawRuntime(await Deno.connect({ transport: "unix", path }));
    await raw.write(Uint8Array.of(0x07, 1, 0, 0, 0, 0)); // version 7: newt knows only 0
    await raw.ended; // closed by the server
    assert.equal(raw.got.length, 1);
    assert.equal(raw.got[0].type, "oops");
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^runtime connection closed: /);
    // The server goes on: a new connection is served.
    const client = await RuntimeClient.connect({ path });
    assert.equal(client.nodeId, 3);
    client.close();
    await client.closed;
  });
});

Deno.test("runtime server: close() ends every connection and removes the socket", async () => {
  await withServer(async ({ server, path }) => {
    server.start();
    const first = await RuntimeClient.connect({ path });
    const second = await RuntimeClient.connect({ path });
    assert.equal(first.nodeId, 3);
    await first.lead(0n);
    server.close();
    await first.closed;
    await second.closed;
    assert.throws(() => Deno.statSync(path), Deno.errors.NotFound);
  });
});
