/**
 * A runtime's end of the runtime socket, for the demo, the load tool and
 * tests: connect, hail, plan events (pipelined), and hear releases, refusals
 * and role notices as they come.
 * @module
 */

import { encodeFrame, NewtDecoder } from "./newt.ts";
import {
  decodeRuntimeFrame,
  encodeRuntimeMessage,
  type NodeToRuntimeMessage,
  RUNTIME_PROTOCOL_VERSION,
} from "./runtime_protocol.ts";

/** Where a runtime socket is: a node's Unix socket (the protocol is not served over TCP). */
export type RuntimeAddress = { path: string };

/** A connection to a node's runtime socket. */
export class RuntimeClient {
  readonly #conn: Deno.Conn;
  readonly #listeners: ((m: NodeToRuntimeMessage) => void)[] = [];
  #writeChain: Promise<unknown> = Promise.resolve();
  /** The node id from its `%hail`. */
  nodeId = 0;
  /** Resolves when the connection ends. */
  readonly closed: Promise<void>;

  readonly #notices = new Map<bigint, "lead" | "fence">();

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.closed = this.#read();
  }

  /** Connects and exchanges `%hail`; resolves with the client once the node answered. */
  static async connect(address: RuntimeAddress): Promise<RuntimeClient> {
    const conn = await Deno.connect({ transport: "unix", path: address.path });
    const client = new RuntimeClient(conn);
    const hail = client.next((m) => m.type === "hail");
    client.send({ type: "hail", version: RUNTIME_PROTOCOL_VERSION, node: 0 });
    const answer = await hail;
    if (answer.type === "hail") client.nodeId = answer.node;
    return client;
  }

  async #read(): Promise<void> {
    const decoder = new NewtDecoder();
    const buf = new Uint8Array(256 * 1024);
    try {
      while (true) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        decoder.push(buf.slice(0, n));
        for (let f = decoder.next(); f !== undefined; f = decoder.next()) {
          const m = decodeRuntimeFrame(f, { from: "node" }) as NodeToRuntimeMessage;
          if (m.type === "lead" || m.type === "fence") this.#notices.set(m.ship, m.type);
          for (const l of [...this.#listeners]) l(m);
        }
      }
    } catch {
      // connection reset: the node went away
    } finally {
      try {
        this.#conn.close();
      } catch {
        // closed
      }
    }
  }

  /** True while the last role notice for `ship` on this connection is `%lead` (rule 4). */
  isLead(ship: bigint): boolean {
    return this.#notices.get(ship) === "lead";
  }

  /**
   * Resolves once the last notice for `ship` is `%lead` (at once if it is):
   * only then may a runtime plan from the node's head and release (rules 4, 8).
   */
  lead(ship: bigint): Promise<void> {
    if (this.isLead(ship)) return Promise.resolve();
    return this.next((m) => m.type === "lead" && m.ship === ship).then(() => {});
  }

  /** Calls `listener` for every message from the node; returns the unsubscribe. */
  on(listener: (m: NodeToRuntimeMessage) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /** The next message that matches (rejects if the connection ends first). */
  next(match: (m: NodeToRuntimeMessage) => boolean): Promise<NodeToRuntimeMessage> {
    return new Promise((resolve, reject) => {
      const off = this.on((m) => {
        if (match(m)) {
          off();
          resolve(m);
        }
      });
      this.closed.then(() => {
        off();
        reject(new Error("The runtime connection closed"));
      });
    });
  }

  /** Sends one message (runtime -> node), in order. */
  send(m: Parameters<typeof encodeRuntimeMessage>[0]): void {
    this.sendFrames(encodeFrame(encodeRuntimeMessage(m)));
  }

  /**
   * Sends `bytes`, whole newt frames of runtime messages already encoded
   * (e.g. by vere/plan_frames.ts), as one buffer: one write for many frames.
   * In order with {@linkcode send}. The bytes are not copied: leave them
   * unchanged.
   */
  sendFrames(bytes: Uint8Array): void {
    this.#writeChain = this.#writeChain.then(async () => {
      let written = 0;
      while (written < bytes.length) written += await this.#conn.write(bytes.subarray(written));
    }).catch(() => {});
  }

  /** Plans one event. */
  plan(ship: bigint, eve: number, mug: number, job: Uint8Array): void {
    this.send({ type: "plan", ship, eve, mug, job });
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // closed
    }
  }
}
