/**
 * The runtime socket: where a runtime (patched vere, the demo, the load tool)
 * plans events and learns when their effects may be released. A Unix socket
 * in the data dir (and, optionally, TCP on loopback), speaking newt frames of
 * runtime-protocol nouns (docs/runtime-protocol.md).
 *
 * The server knows nothing of Raft: `seguro run` hands it a
 * {@linkcode RuntimeBackend} built on the cluster node. The protocol's logic
 * lives in `vere/runtime_hub.ts`; this module adds sockets and framing.
 * @module
 */

import { encodeFrame, joinParts, NewtDecoder, NewtError } from "./newt.ts";
import {
  decodeRuntimeFrame,
  decodeRuntimeFrameSliced,
  encodeRuntimeMessage as encodeMessage,
  type NodeToRuntimeMessage,
  ProtocolError,
  SLICED_FRAME_BYTES_MIN,
} from "./runtime_protocol.ts";
import { type RuntimeBackend, RuntimeHub } from "./runtime_hub.ts";

export type { RuntimeBackend } from "./runtime_hub.ts";

/** Lets timers and I/O run (a macrotask turn), between the slices of a large frame's decode. */
function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Where the server listens. */
export interface RuntimeServerConfig {
  /** Unix socket path. */
  socketPath: string;
  /** Log sink. */
  log: (line: string) => void;
}

/** Bytes queued for a runtime before the connection is considered stuck and closed. */
export const RUNTIME_QUEUE_BYTES_MAX = 256 * 1024 * 1024;

class RuntimeConn {
  readonly conn: Deno.Conn;
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
  #hub: RuntimeHub | undefined;

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
    // Whoever can connect can plan events: only the node's user (and the data dir is 0700).
    Deno.chmodSync(this.#cfg.socketPath, 0o600);
    this.#hub = new RuntimeHub(this.#backend);
    for (const l of this.#listeners) this.#accept(l);
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
    const session = this.#hub!.open((msg) => c.send(msg));
    const decoder = new NewtDecoder();
    const buf = new Uint8Array(256 * 1024);
    try {
      while (!c.closed) {
        const n = await c.conn.read(buf);
        if (n === null) break;
        decoder.push(buf.slice(0, n));
        for (let parts = decoder.nextParts(); parts !== undefined; parts = decoder.nextParts()) {
          let msg;
          try {
            // A large frame is joined and decoded in slices: the node's other work runs
            // between them (a 64 MiB job would otherwise hold it half a second).
            const bytes = parts.reduce((n, p) => n + p.length, 0);
            msg = bytes >= SLICED_FRAME_BYTES_MIN
              ? await decodeRuntimeFrameSliced(parts, yieldToLoop)
              : decodeRuntimeFrame(joinParts(parts), { from: "runtime" });
          } catch (e) {
            if (!(e instanceof ProtocolError)) throw e;
            c.send({ type: "oops", why: e.message });
            continue;
          }
          session.receive(msg);
        }
      }
    } catch (e) {
      const why = e instanceof NewtError ? e.message : `Connection failed: ${(e as Error).message}`;
      this.#cfg.log(`runtime connection closed: ${why}`);
      c.send({ type: "oops", why });
    } finally {
      session.close();
      // Let a final %oops go out before closing.
      await Promise.resolve();
      c.close();
      this.#conns.delete(c);
    }
  }

  /** The protocol state of every connection (undefined before {@linkcode start}). */
  get hub(): RuntimeHub | undefined {
    return this.#hub;
  }

  /** Closes the sockets and every connection. */
  close(): void {
    this.#hub?.close();
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
