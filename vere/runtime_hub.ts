/**
 * The node's side of the runtime protocol (docs/runtime-protocol.md) as pure
 * logic over decoded messages: one {@linkcode RuntimeSession} per connection,
 * and the {@linkcode RuntimeHub} that fans the master's releases, refusals
 * and role changes out to them. No sockets: `vere/runtime_server.ts` puts it
 * on Unix and TCP sockets, and the whole-node simulator (tests/sim) drives it
 * directly.
 *
 * Per connection and ship the hub remembers the last role notice sent and the
 * highest `%done`, and enforces two rules of the protocol in code:
 * - a `%done` goes out only while the connection's last notice for the ship
 *   is `%lead` (rule 5; a violation throws: the master released while not
 *   master, a bug that must stop the node rather than leak an effect);
 * - `%done` never goes backwards on a connection (rule 3): one not above the
 *   highest already sent is not sent.
 * @module
 */

import {
  type LogEntry,
  type NodeToRuntimeMessage,
  RUNTIME_PROTOCOL_VERSION,
  type RuntimeToNodeMessage,
} from "./runtime_protocol.ts";

/** What the hub needs from the node. */
export interface RuntimeBackend {
  /** This node's id (sent in `%hail`). */
  nodeId: number;
  /** True while this node is master (may release). */
  isMaster(): boolean;
  /**
   * Where the master is, for `%away`: its cluster address, `''` when unknown,
   * or null when this node is about to be master (it leads, and is catching
   * up its applied state): then plans are refused with `%nope`, and `%lead`
   * follows.
   */
  masterAddress(): string | null;
  /** Every ship on the cluster. */
  ships(): bigint[];
  /** Plans one event; the answer comes later through the listener. */
  plan(p: { ship: bigint; eve: number; mug: number; job: Uint8Array }): void;
  /** Last event and mug of a ship (on the master: counting accepted plans), or undefined when the ship is unknown. */
  head(ship: bigint): { eve: number; mug: number } | undefined;
  /**
   * Up to `count` events from `from`; or, when `from` is before the ship's
   * first event (a chop dropped the earlier ones), that first event.
   */
  read(ship: bigint, from: number, count: number): LogEntry[] | { firstEve: number };
  /** Listens to releases, refusals and role changes; returns the unsubscribe. */
  subscribe(listener: {
    release(r: { ship: bigint; eve: number }): void;
    refuse(ship: bigint, eve: number, why: string): void;
    role(master: boolean): void;
    /** The known master changed: `masterAddress()` may answer differently. */
    leader(): void;
  }): () => void;
}

/** A `%done` about to go out on a fenced connection: the master released while not master. */
export class ReleaseWhileFencedError extends Error {
  /** Names the ship and event. */
  constructor(ship: bigint, eve: number) {
    super(
      `invariant: a release of ship ${ship} up to event ${eve} was about to reach a runtime whose last notice for it is %fence`,
    );
    this.name = "ReleaseWhileFencedError";
  }
}

interface ShipState {
  lead: boolean;
  done: number;
  /** The master address last sent in `%away` ('': none). */
  away: string;
}

/** One runtime connection's protocol state. */
export class RuntimeSession {
  readonly #hub: RuntimeHub;
  readonly #send: (msg: NodeToRuntimeMessage) => void;
  readonly #ships = new Map<bigint, ShipState>();
  #hailed = false;
  #closed = false;

  /** Made by {@linkcode RuntimeHub.open}. */
  constructor(hub: RuntimeHub, send: (msg: NodeToRuntimeMessage) => void) {
    this.#hub = hub;
    this.#send = send;
  }

  /** Handles one message from the runtime. */
  receive(msg: RuntimeToNodeMessage): void {
    if (this.#closed) return;
    const b = this.#hub.backend;
    if (msg.type === "hail") {
      this.#hailed = true;
      this.#send({ type: "hail", version: RUNTIME_PROTOCOL_VERSION, node: b.nodeId });
      for (const ship of b.ships()) this.#follow(ship);
      return;
    }
    if (!this.#hailed) return this.#send({ type: "oops", why: "Send %hail first" });
    this.#follow(msg.ship);
    switch (msg.type) {
      case "plan": {
        if (b.isMaster()) return b.plan(msg);
        const master = b.masterAddress();
        if (master === null) {
          return this.#send({
            type: "nope",
            ship: msg.ship,
            eve: msg.eve,
            why: "This node is becoming master; plan again after [%lead]",
          });
        }
        return this.#send({ type: "away", ship: msg.ship, master });
      }
      case "read": {
        const events = b.read(msg.ship, msg.from, msg.count);
        if (!Array.isArray(events)) {
          // A chop dropped them: a list starting elsewhere would break %logs' numbering.
          return this.#send({
            type: "oops",
            why: `The events of that ship before ${events.firstEve} are no longer on the ` +
              `cluster (a chop dropped them); %read from ${events.firstEve}`,
          });
        }
        return this.#send({ type: "logs", ship: msg.ship, from: msg.from, events });
      }
      case "head": {
        const h = b.head(msg.ship);
        if (h === undefined) {
          return this.#send({
            type: "oops",
            why: "The ship is not on this cluster; add it with 'seguro ship add'",
          });
        }
        return this.#send({ type: "head", ship: msg.ship, eve: h.eve, mug: h.mug });
      }
    }
  }

  /** Sends the first role notice for a ship this connection had not followed yet. */
  #follow(ship: bigint): void {
    if (this.#ships.has(ship)) return;
    const lead = this.#hub.backend.isMaster();
    const s = { lead, done: 0, away: "" };
    this.#ships.set(ship, s);
    this.#send({ type: lead ? "lead" : "fence", ship });
    if (!lead) this.#away(ship, s);
  }

  /** A fenced ship learns where the master is, once per master (rule 5). */
  #away(ship: bigint, s: ShipState): void {
    const master = this.#hub.backend.masterAddress();
    if (s.lead || master === null || master === "" || master === s.away) return;
    s.away = master;
    this.#send({ type: "away", ship, master });
  }

  /** @internal From the hub. */
  leader(): void {
    if (this.#closed) return;
    for (const [ship, s] of this.#ships) this.#away(ship, s);
  }

  /** @internal From the hub. */
  release(ship: bigint, eve: number): void {
    const s = this.#ships.get(ship);
    if (s === undefined || this.#closed) return;
    if (!s.lead) throw new ReleaseWhileFencedError(ship, eve);
    if (eve <= s.done) return;
    s.done = eve;
    this.#send({ type: "done", ship, eve });
  }

  /** @internal From the hub. */
  refuse(ship: bigint, eve: number, why: string): void {
    if (this.#ships.has(ship) && !this.#closed) this.#send({ type: "nope", ship, eve, why });
  }

  /** @internal From the hub. */
  role(master: boolean): void {
    if (this.#closed) return;
    for (const [ship, s] of this.#ships) {
      if (s.lead === master) continue;
      s.lead = master;
      s.away = "";
      this.#send({ type: master ? "lead" : "fence", ship });
      if (!master) this.#away(ship, s);
    }
  }

  /** @internal Per ship this connection follows: whether its last notice was `%lead`. */
  leads(): [bigint, boolean][] {
    return [...this.#ships].map(([ship, s]) => [ship, s.lead]);
  }

  /** The connection ended: nothing more is sent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#hub.forget(this);
  }
}

/** Every runtime connection of one node, fed by the node's ship master. */
export class RuntimeHub {
  /** The node side. */
  readonly backend: RuntimeBackend;
  readonly #sessions = new Set<RuntimeSession>();
  readonly #unsubscribe: () => void;

  /** Subscribes to the backend. */
  constructor(backend: RuntimeBackend) {
    this.backend = backend;
    this.#unsubscribe = backend.subscribe({
      release: ({ ship, eve }) => {
        for (const s of this.#sessions) s.release(ship, eve);
      },
      refuse: (ship, eve, why) => {
        for (const s of this.#sessions) s.refuse(ship, eve, why);
      },
      role: (master) => {
        for (const s of this.#sessions) s.role(master);
      },
      leader: () => {
        for (const s of this.#sessions) s.leader();
      },
    });
  }

  /** A new connection; `send` delivers one message to its runtime, in order. */
  open(send: (msg: NodeToRuntimeMessage) => void): RuntimeSession {
    const s = new RuntimeSession(this, send);
    this.#sessions.add(s);
    return s;
  }

  /** @internal Called by a closing session. */
  forget(s: RuntimeSession): void {
    this.#sessions.delete(s);
  }

  /** Number of open sessions. */
  get size(): number {
    return this.#sessions.size;
  }

  /**
   * What the runtimes here were last told, per ship (for metrics): `lead`
   * when some connection's last notice for it is `%lead`, else `fence`.
   * Ships that no connection follows are absent.
   */
  notices(): Map<bigint, "lead" | "fence"> {
    const out = new Map<bigint, "lead" | "fence">();
    for (const s of this.#sessions) {
      for (const [ship, lead] of s.leads()) {
        if (lead) out.set(ship, "lead");
        else if (!out.has(ship)) out.set(ship, "fence");
      }
    }
    return out;
  }

  /** Stops listening to the backend. */
  close(): void {
    this.#unsubscribe();
    for (const s of [...this.#sessions]) s.close();
  }
}
