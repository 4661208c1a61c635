/**
 * Making a real ship produce events (for the demo, benchmarks and tests): a
 * client of vere's control plane, `PIER/.urb/conn.sock` (pkg/vere/io/conn.c in vere 3.0). Frames are
 * newt frames of `[request-id tag data]`; `%ovum` injects a raw event
 * `[target wire card]` and is answered `[request-id %news %done]` once the
 * event was computed (or `%drop`/`%bail`).
 *
 * The events injected are behn `%wake`s (`//b/behn [%wake ~]`, what vere's own
 * timer driver plans): every one becomes a logged event, and none changes
 * what the ship does.
 *
 * @module
 */

import { join } from "node:path";
import { encodeFrame, NewtDecoder } from "./newt.ts";
import { cell, cord, cue, isCell, list, type Noun, tuple } from "./noun.ts";

/** A connection to a running ship's `conn.sock`. */
export class VereConn {
  readonly #conn: Deno.UnixConn;
  readonly #decoder = new NewtDecoder();
  readonly #waiting = new Map<bigint, (answer: Noun) => void>();
  #nextId = 1n;
  #reading: Promise<void>;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#reading = this.#read();
  }

  /** Connects to the ship at `pier`, waiting up to `timeoutMs` for its socket to appear. */
  static async open(pier: string, timeoutMs = 30_000): Promise<VereConn> {
    const path = join(pier, ".urb", "conn.sock");
    const deadline = Date.now() + timeoutMs;
    for (let delay = 20;; delay = Math.min(delay * 2, 500)) {
      try {
        return new VereConn(await Deno.connect({ transport: "unix", path }));
      } catch (e) {
        if (Date.now() > deadline) {
          throw new Error(`${path} did not accept a connection within ${timeoutMs} ms: ${e}`);
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        this.#decoder.push(buf.slice(0, n));
        for (let body = this.#decoder.next(); body !== undefined; body = this.#decoder.next()) {
          const noun = cue(body);
          if (!isCell(noun) || isCell(noun.head)) continue;
          this.#waiting.get(noun.head)?.(noun.tail);
          this.#waiting.delete(noun.head);
        }
      }
    } catch {
      // closed under us: the waiting calls fail below
    }
    for (const [, answer] of this.#waiting) answer(cord("lost"));
    this.#waiting.clear();
  }

  /** Sends `[id tag data]` and resolves with the answer's data (after the id). */
  request(tag: string, data: Noun): Promise<Noun> {
    const id = this.#nextId++;
    const answer = new Promise<Noun>((resolve) => this.#waiting.set(id, resolve));
    const frame = encodeFrame(cell(id, cell(cord(tag), data)));
    return this.#conn.write(frame).then(() => answer);
  }

  /**
   * Injects one behn `%wake` and resolves once vere computed it (`%news
   * %done`); any other answer throws.
   */
  async wake(): Promise<void> {
    const answer = await this.request(
      "ovum",
      tuple(cord("b"), list([cord("behn")]), cell(cord("wake"), 0n)),
    );
    const done = isCell(answer) && answer.head === cord("news") && answer.tail === cord("done");
    if (!done) throw new Error(`vere answered a %wake with ${String(answer)}`);
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch {
      // closed already
    }
    await this.#reading;
  }
}
