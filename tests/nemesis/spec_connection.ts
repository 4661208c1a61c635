/**
 * One connection of the nemesis's runtime client to a node's runtime socket
 * (docs/runtime-protocol.md section 1): writes frames in order without waiting,
 * reads and decodes the node's frames into a queue that one consumer takes
 * in order, each stamped with the time it arrived. A frame that breaks the
 * specification ends the connection (section 5: a runtime closes on a frame it
 * cannot understand).
 * @module
 */

import {
  decodeNodeMessage,
  encodeRuntimeFrame,
  FrameReader,
  type NodeMessage,
  type RuntimeMessage,
  SpecError,
} from "./spec_codec.ts";
import { CLIENT_QUEUE_BYTES_MAX } from "./limits.ts";

/** Where a node's runtime socket is, and the cluster address `%away` names it by. */
export interface NodeEndpoint {
  /** Node id (what its `%hail` must say). */
  id: number;
  /** Path of its `runtime.sock`. */
  socketPath: string;
  /** Its cluster address (`host:port`). */
  address: string;
}

/** What the consumer takes: a message, or the end of the stream, with its arrival time. */
export type Arrival =
  | { msg: NodeMessage; atMs: number }
  | { closed: string; atMs: number };

/** A frame the node sent that the specification does not allow (counted as a protocol error). */
export class NodeBrokeSpec extends Error {
  /** Creates the error naming the node and the rule. */
  constructor(message: string) {
    super(message);
    this.name = "NodeBrokeSpec";
  }
}

/** One open connection. */
export class SpecConnection {
  /** Connection number, unique in a run. */
  readonly id: number;
  /** The node. */
  readonly node: NodeEndpoint;
  readonly #conn: Deno.UnixConn;
  readonly #reader = new FrameReader();
  readonly #queue: Arrival[] = [];
  #wake: (() => void) | undefined;
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #writing = false;
  #roomWaiters: (() => void)[] = [];
  #closed: string | undefined;
  /** Set when the node sent a frame the specification forbids. */
  specError: string | undefined;

  private constructor(id: number, node: NodeEndpoint, conn: Deno.UnixConn) {
    this.id = id;
    this.node = node;
    this.#conn = conn;
    this.#read();
  }

  /** Connects (bounded by `timeoutMs`); the caller sends `%hail` first. */
  static async open(id: number, node: NodeEndpoint, timeoutMs: number): Promise<SpecConnection> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const connecting = Deno.connect({ transport: "unix", path: node.socketPath });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`connecting to ${node.socketPath} took over ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      return new SpecConnection(id, node, await Promise.race([connecting, timeout]));
    } catch (e) {
      // A connect that completes after the timeout is closed at once.
      connecting.then((c) => c.close(), () => {});
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** True once closed (by either side). */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Queues one frame for writing; frames go out in the order sent. */
  send(msg: RuntimeMessage): void {
    if (this.#closed !== undefined) return;
    const frame = encodeRuntimeFrame(msg);
    this.#out.push(frame);
    this.#outBytes += frame.length;
    if (!this.#writing) this.#drain();
  }

  /** Resolves when the write queue is below its bound (or the connection is closed). */
  room(): Promise<void> {
    if (this.#outBytes < CLIENT_QUEUE_BYTES_MAX || this.#closed !== undefined) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#out.length > 0 && this.#closed === undefined) {
        const parts = this.#out;
        this.#out = [];
        let size = 0;
        for (const p of parts) size += p.length;
        const chunk = new Uint8Array(size);
        let at = 0;
        for (const p of parts) {
          chunk.set(p, at);
          at += p.length;
        }
        let written = 0;
        while (written < chunk.length) written += await this.#conn.write(chunk.subarray(written));
        this.#outBytes -= size;
        if (this.#outBytes < CLIENT_QUEUE_BYTES_MAX) this.#wakeRoom();
      }
    } catch (e) {
      this.#end(`writing failed: ${(e as Error).message}`);
    } finally {
      this.#writing = false;
    }
  }

  #wakeRoom(): void {
    const waiters = this.#roomWaiters;
    this.#roomWaiters = [];
    for (const w of waiters) w();
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(256 * 1024);
    try {
      while (this.#closed === undefined) {
        const n = await this.#conn.read(buf);
        if (n === null) {
          this.#end("the node closed the connection");
          return;
        }
        this.#reader.push(buf.subarray(0, n));
        for (let body = this.#reader.next(); body !== undefined; body = this.#reader.next()) {
          this.#arrive({ msg: decodeNodeMessage(body), atMs: Date.now() });
        }
      }
    } catch (e) {
      if (e instanceof SpecError) {
        this.specError =
          `node ${this.node.id} sent a frame the specification forbids: ${e.message}`;
        this.#end(this.specError);
      } else {
        this.#end(`reading failed: ${(e as Error).message}`);
      }
    }
  }

  #arrive(a: Arrival): void {
    this.#queue.push(a);
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #end(why: string): void {
    if (this.#closed !== undefined) return;
    this.#closed = why;
    this.#arrive({ closed: why, atMs: Date.now() });
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    this.#wakeRoom();
  }

  /**
   * The next arrival, or undefined when none comes within `timeoutMs` (or
   * {@linkcode interrupt} was called). After the end of the stream, the
   * `closed` arrival is returned once and then again on every call.
   */
  async next(timeoutMs: number): Promise<Arrival | undefined> {
    if (this.#queue.length > 0) return this.#queue.shift();
    if (this.#closed !== undefined) return { closed: this.#closed, atMs: Date.now() };
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
      timer = setTimeout(resolve, Math.max(0, timeoutMs));
    });
    clearTimeout(timer);
    this.#wake = undefined;
    return this.#queue.shift();
  }

  /** Wakes a pending {@linkcode next} with undefined. */
  interrupt(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Closes the connection (the consumer then sees `closed` with `why`). */
  close(why: string): void {
    this.#end(why);
  }
}
