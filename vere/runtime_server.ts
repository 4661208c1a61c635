/**
 * The runtime socket: where a runtime (patched vere, the demo, the load tool)
 * plans events and learns when their effects may be released. A Unix socket
 * in the data dir (and, optionally, TCP on loopback), speaking newt frames of
 * runtime-protocol nouns (docs/runtime-protocol.md).
 *
 * The server knows nothing of Raft: `seguro run` hands it a
 * {@linkcode RuntimeBackend} built on the cluster node.
 * @module
 */

import { encodeFrame, NewtDecoder, NewtError } from "./newt.ts";
import {
  decodeRuntimeFrame,
  encodeRuntimeMessage as encodeMessage,
  type LogEntry,
  type NodeToRuntimeMessage,
  ProtocolError,
  RUNTIME_PROTOCOL_VERSION,
} from "./runtime_protocol.ts";

/** What the server needs from the node. */
export interface RuntimeBackend {
  /** This node's id (sent in `%hail`). */
  nodeId: number;
  /** True while this node is master (may release). */
  isMaster(): boolean;
  /** The master's runtime address, or '' when unknown. */
  masterAddress(): string;
  /** Every ship on the cluster. */
  ships(): bigint[];
  /** Plans one event; the answer comes later through the listener. */
  plan(p: { ship: bigint; eve: number; mug: number; job: Uint8Array }): void;
  /** Last event and mug of a ship, or undefined when the ship is unknown. */
  head(ship: bigint): { eve: number; mug: number } | undefined;
  /** Up to `count` events from `from`. */
  read(ship: bigint, from: number, count: number): LogEntry[];
  /** Listens to releases, refusals and role changes; returns the unsubscribe. */
  subscribe(listener: {
    release(r: { ship: bigint; eve: number }): void;
    refuse(ship: bigint, eve: number, why: string): void;
    role(master: boolean): void;
  }): () => void;
}

/** Where the server listens. */
export interface RuntimeServerConfig {
  /** Unix socket path. */
  socketPath: string;
  /** Optional loopback TCP listener too. */
  tcp?: { hostname: string; port: number };
  /** Log sink. */
  log: (line: string) => void;
}

/** Bytes queued for a runtime before the connection is considered stuck and closed. */
export const RUNTIME_QUEUE_BYTES_MAX = 256 * 1024 * 1024;

class RuntimeConn {
  readonly conn: Deno.Conn;
  readonly interest = new Set<bigint>();
  #queue: Uint8Array[] = [];
  #queued = 0;
  #writing = false;
  closed = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  send(msg: NodeToRuntimeMessage): void {
    if (this.closed) return;
    const bytes = encodeFrame(encodeMessage(msg));
    if (this.#queued + bytes.length > RUNTIME_QUEUE_BYTES_MAX) {
      this.close();
      return;
    }
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    if (!this.#writing) this.#drain();
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.closed) {
        const parts = this.#queue.splice(0, this.#queue.length);
        const size = parts.reduce((n, p) => n + p.length, 0);
        const chunk = parts.length === 1 ? parts[0] : concat(parts, size);
        let written = 0;
        while (written < chunk.length) written += await this.conn.write(chunk.subarray(written));
        this.#queued -= size;
      }
    } catch {
      this.close();
    } finally {
      this.#writing = false;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The runtime socket server of one node. */
export class RuntimeServer {
  readonly #backend: RuntimeBackend;
  readonly #cfg: RuntimeServerConfig;
  readonly #listeners: Deno.Listener[] = [];
  readonly #conns = new Set<RuntimeConn>();
  #unsubscribe: (() => void) | undefined;

  /** Makes a server; {@linkcode start} opens the sockets. */
  constructor(backend: RuntimeBackend, config: RuntimeServerConfig) {
    this.#backend = backend;
    this.#cfg = config;
  }

  /** Opens the Unix socket (replacing a stale one) and the optional TCP port. */
  start(): void {
    try {
      Deno.removeSync(this.#cfg.socketPath);
    } catch {
      // no stale socket
    }
    this.#listeners.push(Deno.listen({ transport: "unix", path: this.#cfg.socketPath }));
    if (this.#cfg.tcp) this.#listeners.push(Deno.listen(this.#cfg.tcp));
    this.#unsubscribe = this.#backend.subscribe({
      release: ({ ship, eve }) => this.#toInterested(ship, { type: "done", ship, eve }),
      refuse: (ship, eve, why) => this.#toInterested(ship, { type: "nope", ship, eve, why }),
      role: (master) => {
        for (const c of this.#conns) {
          for (const ship of c.interest) c.send({ type: master ? "lead" : "fence", ship });
        }
      },
    });
    for (const l of this.#listeners) this.#accept(l);
  }

  #toInterested(ship: bigint, msg: NodeToRuntimeMessage): void {
    for (const c of this.#conns) if (c.interest.has(ship)) c.send(msg);
  }

  async #accept(listener: Deno.Listener): Promise<void> {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return; // closed
      }
      this.#serve(new RuntimeConn(conn));
    }
  }

  async #serve(c: RuntimeConn): Promise<void> {
    this.#conns.add(c);
    const decoder = new NewtDecoder();
    const buf = new Uint8Array(256 * 1024);
    let hailed = false;
    try {
      while (!c.closed) {
        const n = await c.conn.read(buf);
        if (n === null) break;
        decoder.push(buf.slice(0, n));
        for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) {
          let msg;
          try {
            msg = decodeRuntimeFrame(frame, { from: "runtime" });
          } catch (e) {
            if (!(e instanceof ProtocolError)) throw e;
            c.send({ type: "oops", why: e.message });
            continue;
          }
          if (msg.type === "hail") {
            hailed = true;
            c.send({ type: "hail", version: RUNTIME_PROTOCOL_VERSION, node: this.#backend.nodeId });
            const master = this.#backend.isMaster();
            for (const ship of this.#backend.ships()) {
              c.interest.add(ship);
              c.send({ type: master ? "lead" : "fence", ship });
            }
            continue;
          }
          if (!hailed) {
            c.send({ type: "oops", why: "Send %hail first" });
            continue;
          }
          this.#handle(c, msg);
        }
      }
    } catch (e) {
      const why = e instanceof NewtError ? e.message : `Connection failed: ${(e as Error).message}`;
      this.#cfg.log(`runtime connection closed: ${why}`);
      c.send({ type: "oops", why });
    } finally {
      // Let a final %oops go out before closing.
      await Promise.resolve();
      c.close();
      this.#conns.delete(c);
    }
  }

  #handle(c: RuntimeConn, msg: ReturnType<typeof decodeRuntimeFrame>): void {
    const b = this.#backend;
    switch (msg.type) {
      case "plan":
        c.interest.add(msg.ship);
        if (!b.isMaster()) {
          c.send({ type: "away", ship: msg.ship, master: b.masterAddress() });
          return;
        }
        b.plan(msg);
        return;
      case "read":
        c.interest.add(msg.ship);
        c.send({
          type: "logs",
          ship: msg.ship,
          from: msg.from,
          events: b.read(msg.ship, msg.from, msg.count),
        });
        return;
      case "head": {
        c.interest.add(msg.ship);
        const h = b.head(msg.ship);
        if (h === undefined) {
          c.send({
            type: "oops",
            why: "The ship is not on this cluster; add it with 'seguro ship add'",
          });
        } else {
          c.send({ type: "head", ship: msg.ship, eve: h.eve, mug: h.mug });
        }
        return;
      }
      default:
        c.send({ type: "oops", why: `A runtime does not send %${msg.type}` });
    }
  }

  /** Closes the sockets and every connection. */
  close(): void {
    this.#unsubscribe?.();
    for (const l of this.#listeners) {
      try {
        l.close();
      } catch {
        // closed
      }
    }
    for (const c of this.#conns) c.close();
    try {
      Deno.removeSync(this.#cfg.socketPath);
    } catch {
      // gone
    }
  }
}
