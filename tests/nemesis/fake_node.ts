/**
 * A scripted node for the runtime client's unit tests: serves the runtime
 * protocol on a Unix socket from an in-memory log, with knobs to lead or
 * fence, refuse a plan, answer plans with `%away`, or send raw frames.
 * It is deliberately simple: one ship, `%done` after every batch of plans.
 * @module
 */

import { type LoggedEvent, sameEvent } from "./event_columns.ts";
import {
  encodeFrame,
  encodeNodeMessage,
  FrameReader,
  type NodeMessage,
  PROTOCOL_VERSION,
  type RuntimeMessage,
} from "./spec_codec.ts";
import { cue, isCell, type Noun } from "../../vere/noun.ts";
import { bytesOfAtom, cordOf } from "./spec_codec.ts";

const TAGS = new Map(
  (["hail", "plan", "read", "head"] as const).map((t) => [cordOf(t), t]),
);

/** Decodes a runtime's frame (no field checks: the fake trusts the client under test). */
export function decodeRuntimeMessage(body: Uint8Array): RuntimeMessage {
  const items: Noun[] = [];
  let rest: Noun = cue(body);
  while (isCell(rest)) {
    items.push(rest.head);
    rest = rest.tail;
  }
  items.push(rest);
  const tag = TAGS.get(items[0] as bigint);
  const n = (i: number) => Number(items[i] as bigint);
  switch (tag) {
    case "hail":
      return { tag, version: n(1) };
    case "plan":
      return {
        tag,
        ship: items[1] as bigint,
        eve: n(2),
        mug: n(3),
        job: bytesOfAtom(items[4] as bigint),
      };
    case "read":
      return { tag, ship: items[1] as bigint, from: n(2), count: n(3) };
    case "head":
      return { tag, ship: items[1] as bigint };
  }
  throw new Error("The fake node got a frame it does not know");
}

/** A fake node serving one ship. */
export class FakeNode {
  /** Node id. */
  readonly id: number;
  /** Socket path. */
  readonly socketPath: string;
  /** Cluster address (for `%away`). */
  readonly address: string;
  /** The ship. */
  readonly ship: bigint;
  /** Its log. */
  readonly log: LoggedEvent[] = [];
  /** Every message received, in order, with the connection number. */
  readonly received: { conn: number; msg: RuntimeMessage }[] = [];
  /** Master now. */
  leading: boolean;
  /** When set, plans are answered with `%away` naming this address. */
  awayTo: string | undefined;
  /** The last this-many logged events are accepted plans not applied yet: `%head` counts them, `%read` does not return them. */
  unapplied = 0;
  /** Refuse the next plan with `%nope` (and drop the rest of its batch). */
  refuseNext = false;
  /** Log plans but send no `%done` for them (events stay planned, unreleased). */
  withholdDone = false;
  readonly #listener: Deno.Listener;
  readonly #conns = new Map<number, Deno.Conn>();
  #nextConn = 1;

  /** Listens on `socketPath`. */
  constructor(o: { id: number; socketPath: string; ship: bigint; leading: boolean }) {
    this.id = o.id;
    this.socketPath = o.socketPath;
    this.address = `10.0.0.${o.id}:7700`;
    this.ship = o.ship;
    this.leading = o.leading;
    this.#listener = Deno.listen({ transport: "unix", path: o.socketPath });
    this.#accept();
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) {
      const id = this.#nextConn++;
      this.#conns.set(id, conn);
      this.#serve(id, conn).finally(() => this.#conns.delete(id));
    }
  }

  async #serve(id: number, conn: Deno.Conn): Promise<void> {
    const reader = new FrameReader();
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) return;
        reader.push(buf.subarray(0, n));
        let planned = false;
        const out: NodeMessage[] = [];
        for (let body = reader.next(); body !== undefined; body = reader.next()) {
          const msg = decodeRuntimeMessage(body);
          this.received.push({ conn: id, msg });
          this.#wakeReceived();
          planned = this.#handle(msg, out, planned);
        }
        if (planned && this.leading && !this.withholdDone && this.log.length > 0) {
          out.push({ tag: "done", ship: this.ship, eve: this.log.length });
        }
        await this.#write(conn, out);
      }
    } catch (e) {
      console.error("FAKE", e);
    } finally {
      try {
        conn.close();
      } catch {
        // closed
      }
    }
  }

  #handle(msg: RuntimeMessage, out: NodeMessage[], planned: boolean): boolean {
    switch (msg.tag) {
      case "hail":
        out.push({ tag: "hail", version: PROTOCOL_VERSION, node: this.id });
        out.push({ tag: this.leading ? "lead" : "fence", ship: this.ship });
        return planned;
      case "head": {
        const last = this.log.at(-1);
        out.push({ tag: "head", ship: this.ship, eve: last?.eve ?? 0, mug: last?.mug ?? 0 });
        return planned;
      }
      case "read":
        out.push({
          tag: "logs",
          ship: this.ship,
          from: msg.from,
          events: this.log.slice(
            msg.from - 1,
            Math.min(msg.from - 1 + msg.count, this.log.length - this.unapplied),
          ),
        });
        return planned;
      case "plan": {
        if (this.awayTo !== undefined) {
          out.push({ tag: "away", ship: this.ship, master: this.awayTo });
          return planned;
        }
        if (!this.leading) {
          out.push({ tag: "nope", ship: this.ship, eve: msg.eve, why: "Not the master" });
          return planned;
        }
        const e = { eve: msg.eve, mug: msg.mug, job: msg.job };
        if (this.refuseNext) {
          this.refuseNext = false;
          out.push({ tag: "nope", ship: this.ship, eve: msg.eve, why: "Refused by the test" });
          this.#refusedFrom = msg.eve;
          return planned;
        }
        if (this.#refusedFrom !== undefined && msg.eve >= this.#refusedFrom) {
          // The rest of a refused batch is not logged (rule 6); a re-synced runtime restarts lower.
          if (msg.eve !== this.log.length + 1) return planned;
          this.#refusedFrom = undefined;
        }
        if (msg.eve === this.log.length + 1) {
          this.log.push(e);
          return true;
        }
        if (msg.eve <= this.log.length && sameEvent(this.log[msg.eve - 1], e)) return true;
        out.push({ tag: "nope", ship: this.ship, eve: msg.eve, why: "Gap or different event" });
        return planned;
      }
    }
  }

  #refusedFrom: number | undefined;
  #receivedWaiters: (() => void)[] = [];

  #wakeReceived(): void {
    const waiters = this.#receivedWaiters;
    this.#receivedWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once a received message matches `pred`. */
  async waitReceived(
    pred: (r: { conn: number; msg: RuntimeMessage }) => boolean,
    timeoutMs: number,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.received.some(pred)) {
      if (Date.now() >= deadline) throw new Error(`no matching message within ${timeoutMs} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#receivedWaiters.push(resolve);
        timer = setTimeout(resolve, deadline - Date.now());
      });
      clearTimeout(timer);
    }
  }

  async #write(conn: Deno.Conn, msgs: NodeMessage[]): Promise<void> {
    for (const m of msgs) await this.sendRaw(conn, m);
  }

  /** Writes one message to one connection. */
  async sendRaw(conn: Deno.Conn, msg: NodeMessage): Promise<void> {
    const frame = encodeFrame(encodeNodeMessage(msg));
    let written = 0;
    while (written < frame.length) written += await conn.write(frame.subarray(written));
  }

  /** Sends `msg` on every open connection. */
  async broadcast(msg: NodeMessage): Promise<void> {
    for (const conn of this.#conns.values()) await this.sendRaw(conn, msg).catch(() => {});
  }

  /** Stops leading and tells every connection. */
  async fence(): Promise<void> {
    this.leading = false;
    await this.broadcast({ tag: "fence", ship: this.ship });
  }

  /** Starts leading and tells every connection. */
  async lead(): Promise<void> {
    this.leading = true;
    await this.broadcast({ tag: "lead", ship: this.ship });
  }

  /** Closes the socket and every connection. */
  close(): void {
    try {
      this.#listener.close();
    } catch {
      // closed
    }
    for (const c of this.#conns.values()) {
      try {
        c.close();
      } catch {
        // closed
      }
    }
  }
}
