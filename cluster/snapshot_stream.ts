/**
 * Streaming a state-machine snapshot from a leader to a follower that is
 * behind the leader's compacted log (or new).
 *
 * The core names a snapshot with a `snap` message; the driver does not send
 * it. Instead the leader's {@linkcode SnapshotSender} makes an offer of its
 * state as applied now (index A >= the core's snapshot index, as etcd does):
 * the snapshot's name (A, term of A, membership at A) and the
 * {@linkcode SnapshotManifest} (ship rows, image sizes, settings). The
 * follower's {@linkcode SnapshotReceiver} stages the offer and PULLS what it
 * lacks, piece by piece: a range of a ship's events, or one image chunk at an
 * offset. Every chunk carries its SHA-256 and is staged, in order, before
 * the next pull, so:
 *
 * - pacing: at most {@linkcode SNAPSHOT_PULLS_IN_FLIGHT} chunks (of events at
 *   most {@linkcode SNAPSHOT_CHUNK_BYTES} each) in flight per follower, so the
 *   sender reads the next range while the receiver stages this one;
 *   heartbeats and votes go between chunks;
 * - resumable: a crash of either side loses at most the chunks in flight
 *   (and, on the receiver, the last chunks staged, which are not fsynced
 *   one by one: the install is); a new offer
 *   (a restarted or new leader, a later index) keeps what is staged for every
 *   ship that is still the same ship (same `addedIndex`), because committed
 *   events and image chunks never change;
 * - incremental: what the follower already holds of a ship is not fetched.
 *
 * When nothing is missing the receiver hands the core the `snap` message
 * naming the offer; the core installs it, and the store writes the snapshot
 * name, empties the log and moves the staged state into the applied tables
 * in ONE transaction (cluster/storage/snapshot_stage.ts): a crash leaves the
 * node either before or after the install, never in between.
 *
 * Any member serves a pull statelessly from its applied tables, checking
 * that the ship is still the one offered (`addedIndex`); a piece it cannot
 * serve is answered `gone`, and the receiver waits for a new offer.
 *
 * ```
 * snapOffer  index:u64 term:u64 conf manifest:bytes        (header term: the leader's)
 * snapPull   index:u64 piece                              (header term: the offer's)
 * snapChunk  index:u64 piece gone:u8 sha256:32 data:bytes  (header term: the offer's)
 * piece := kind:u8 ship:16 addedIndex:u64 (from:u64 to:u64 | epoch:u64 offset:u64)
 * events data := n:u32 (eve:u64 mug:u32 entryIndex:u64 entryTerm:u64 job:bytes)*n
 * ```
 * @module
 */

import type { ConfState, Message, SnapshotMessage, SnapshotMeta } from "../core/mod.ts";
import { ByteReader, ByteWriter, sameBytes, WireError } from "./codec.ts";
import { sha256 } from "./images.ts";
import type { LogSink } from "./log_event.ts";
import type { StoredEvent } from "./ships.ts";
import {
  decodeManifest,
  encodeManifest,
  type ManifestShip,
  type SnapshotManifest,
} from "./snapshot_manifest.ts";
import type { SnapshotPiece, SnapshotStage } from "./storage/snapshot_stage.ts";

/** Largest payload of one chunk of events (the default of the hosts' `chunkBytes`). */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;

/** Pulls a receiver keeps in flight (ranges of events; image chunks go one at a time). */
export const SNAPSHOT_PULLS_IN_FLIGHT = 2;

/** Ticks a receiver waits for a chunk before asking again. */
export const SNAPSHOT_PULL_RETRY_TICKS = 5;

/**
 * A piece as sent: the ship's identity travels with it, and events are asked
 * for as a range `from..to` (the answer may stop short, at the byte cap).
 */
export type WirePiece =
  & (
    | { readonly kind: "events"; readonly ship: bigint; readonly from: number; readonly to: number }
    | Extract<SnapshotPiece, { kind: "image" }>
  )
  & { readonly addedIndex: number };

interface StreamHeader {
  readonly groupId: number;
  readonly from: number;
  readonly to: number;
  readonly term: number;
}

/** Leader -> follower: a snapshot of the leader's applied state is available. */
export interface SnapOfferMessage extends StreamHeader {
  /** Discriminant. */
  readonly type: "snapOffer";
  /** Its name: (index, term, membership). */
  readonly snapshot: SnapshotMeta;
  /** The encoded {@linkcode SnapshotManifest}. */
  readonly manifest: Uint8Array;
}

/** Follower -> leader: send this piece of offer `index`. */
export interface SnapPullMessage extends StreamHeader {
  /** Discriminant. */
  readonly type: "snapPull";
  /** Index of the offer. */
  readonly index: number;
  /** What is wanted. */
  readonly piece: WirePiece;
}

/** Leader -> follower: one piece, or `gone` when it cannot be served. */
export interface SnapChunkMessage extends StreamHeader {
  /** Discriminant. */
  readonly type: "snapChunk";
  /** Index of the offer. */
  readonly index: number;
  /** The piece answered. */
  readonly piece: WirePiece;
  /** The ship changed or the data is not here: wait for a new offer. */
  readonly gone: boolean;
  /** SHA-256 of `data`. */
  readonly sha256: Uint8Array;
  /** Encoded events, or image bytes. */
  readonly data: Uint8Array;
}

/** The messages of snapshot streaming. */
export type SnapshotStreamMessage = SnapOfferMessage | SnapPullMessage | SnapChunkMessage;

/** Everything one node sends another: Raft's messages and snapshot streaming. */
export type PeerMessage = Message | SnapshotStreamMessage;

/** True for the messages of snapshot streaming. */
export function isStreamMessage(m: PeerMessage): m is SnapshotStreamMessage {
  return m.type === "snapOffer" || m.type === "snapPull" || m.type === "snapChunk";
}

// ------------------------------------------------------------ payloads

/** Bytes of an encoded event besides its job: eve, mug, entry index and term, job length. */
const EVENT_FIXED_BYTES = 8 + 4 + 8 + 8 + 4;

/** Encodes events for a chunk. */
export function encodeEvents(events: readonly StoredEvent[]): Uint8Array {
  const size = 4 + events.reduce((n, e) => n + EVENT_FIXED_BYTES + e.job.length, 0);
  const w = new ByteWriter(size).u32(events.length);
  for (const e of events) w.u64(e.eve).u32(e.mug).u64(e.entryIndex).u64(e.entryTerm).bytes(e.job);
  return w.finish();
}

/** Decodes a chunk's events; throws {@linkcode WireError}. */
export function decodeEvents(data: Uint8Array): StoredEvent[] {
  const r = new ByteReader(data);
  const n = r.u32("event count");
  if (n * EVENT_FIXED_BYTES > r.remaining) {
    throw new WireError(`The event count ${n} is impossible for this chunk`);
  }
  const out: StoredEvent[] = [];
  for (let i = 0; i < n; i++) {
    const eve = r.u64("eve");
    const mug = r.u32("mug");
    const entryIndex = r.u64("entry index");
    const entryTerm = r.u64("entry term");
    out.push({ eve, mug, entryIndex, entryTerm, job: r.bytes("job") });
  }
  r.end("snapshot events");
  return out;
}

// ------------------------------------------------------------ sender

/** What a sender needs from its node. */
export interface SnapshotSenderHost {
  /** This node's id and group. */
  readonly id: number;
  readonly groupId: number;
  /** Current term, and whether this node leads in it. */
  term(): number;
  isLeader(): boolean;
  /** Index applied here now; term and membership at an index (>= the log's snapshot). */
  appliedIndex(): number;
  termAt(index: number): number | undefined;
  confAt(index: number): ConfState;
  /** True while the core streams a snapshot to `to` (its progress is in state `snapshot`). */
  sendingSnapshotTo(to: number): boolean;
  /** The applied state's storage. */
  readonly stage: SnapshotStage;
  /** Cap on the job bytes of one chunk of events. */
  readonly chunkBytes: number;
  /** Events `from..to` of a ship (fewer when they pass `bytesMax`; at least one if held). */
  readEvents(ship: bigint, from: number, to: number, bytesMax: number): StoredEvent[];
  readImageChunk(ship: bigint, epoch: number, offset: number): Uint8Array | undefined;
  shipAddedIndex(ship: bigint): number | undefined;
  /** Sends a message (best effort). */
  send(m: SnapshotStreamMessage): void;
}

interface Session {
  readonly term: number;
  readonly offer: SnapOfferMessage;
}

/** The leader's side: offers, and the answers to pulls (which any node can give). */
export class SnapshotSender {
  readonly #host: SnapshotSenderHost;
  readonly #sessions = new Map<number, Session>();

  /** Creates a sender. */
  constructor(host: SnapshotSenderHost) {
    this.#host = host;
  }

  /**
   * The core asks to send its snapshot `m` to `m.to`: offers the applied
   * state instead (the same offer again while one is open in this term).
   */
  offer(m: SnapshotMessage): void {
    const h = this.#host;
    const open = this.#sessions.get(m.to);
    // An offer below the core's snapshot would leave the follower short of the log again.
    if (
      open !== undefined && open.term === h.term() && open.offer.snapshot.index >= m.snapshot.index
    ) {
      h.send(open.offer);
      return;
    }
    const index = h.appliedIndex();
    const term = h.termAt(index);
    if (term === undefined || index < m.snapshot.index) {
      throw new RangeError(
        `snapshot offer: applied index ${index} (term ${term}) is below the core's snapshot ${m.snapshot.index}`,
      );
    }
    const offer: SnapOfferMessage = {
      type: "snapOffer",
      groupId: h.groupId,
      from: h.id,
      to: m.to,
      term: h.term(),
      snapshot: { index, term, conf: h.confAt(index) },
      manifest: encodeManifest(h.stage.manifestOfState()),
    };
    this.#sessions.set(m.to, { term: h.term(), offer });
    h.send(offer);
  }

  /** Answers a pull from the applied tables. */
  pull(m: SnapPullMessage): void {
    const h = this.#host;
    const p = m.piece;
    let data: Uint8Array | undefined;
    if (h.shipAddedIndex(p.ship) === p.addedIndex) {
      if (p.kind === "events") {
        const events = p.to < p.from ? [] : h.readEvents(p.ship, p.from, p.to, h.chunkBytes);
        if (events.length > 0 && events[0].eve === p.from) data = encodeEvents(events);
      } else {
        data = h.readImageChunk(p.ship, p.epoch, p.offset);
      }
    }
    const payload = data ?? new Uint8Array(0);
    h.send({
      type: "snapChunk",
      groupId: h.groupId,
      from: h.id,
      to: m.from,
      term: m.term,
      index: m.index,
      piece: p,
      gone: data === undefined,
      sha256: sha256(payload),
      data: payload,
    });
  }

  /** Lowest index offered to a follower still receiving: compaction keeps the log from there. */
  floor(): number | undefined {
    let low: number | undefined;
    for (const s of this.#sessions.values()) {
      if (low === undefined || s.offer.snapshot.index < low) low = s.offer.snapshot.index;
    }
    return low;
  }

  /** Forgets offers to followers no longer receiving one (or all, when not leading). */
  prune(): void {
    const h = this.#host;
    for (const [to, s] of this.#sessions) {
      if (!h.isLeader() || s.term !== h.term() || !h.sendingSnapshotTo(to)) {
        this.#sessions.delete(to);
      }
    }
  }
}

// ------------------------------------------------------------ receiver

/** What a receiver needs from its node. */
export interface SnapshotReceiverHost {
  /** This node's id and group. */
  readonly id: number;
  readonly groupId: number;
  /** Current term and applied index. */
  term(): number;
  appliedIndex(): number;
  /** Where offers are staged. */
  readonly stage: SnapshotStage;
  /** The job bytes a range of events asks for (as the senders' cap). */
  readonly chunkBytes: number;
  /** Sends a message (best effort). */
  send(m: SnapshotStreamMessage): void;
  /**
   * Hands the core a `snap` message: for a whole staged offer (the core
   * installs it), or for an offer this node already covers (the core answers
   * with its commit index, so the leader learns where it is).
   */
  deliver(m: SnapshotMessage): void;
  /** Progress lines. */
  log: LogSink;
}

interface Receiving {
  readonly leader: number;
  readonly term: number;
  readonly snapshot: SnapshotMeta;
  readonly manifest: SnapshotManifest;
  /** Pulls in flight, in the order they are staged; answers to others are dropped. */
  pending: WirePiece[];
  waited: number;
  bytes: number;
}

/** The follower's side: stages an offer and pulls what it lacks. */
export class SnapshotReceiver {
  readonly #host: SnapshotReceiverHost;
  #current: Receiving | undefined;
  /** Something may be staged that no install will use: drop it when applied passes it. */
  #maybeStale: boolean;

  /** Creates a receiver; a staged offer from before a restart is kept until a new offer. */
  constructor(host: SnapshotReceiverHost) {
    this.#host = host;
    this.#maybeStale = host.stage.staged() !== undefined;
  }

  /** True while an offer is being fetched. */
  get receiving(): boolean {
    return this.#current !== undefined;
  }

  /** A leader offers a snapshot. */
  offer(m: SnapOfferMessage): void {
    const h = this.#host;
    if (m.term < h.term()) return;
    if (m.snapshot.index <= h.appliedIndex()) {
      h.deliver(snapMessage(h, m.from, m.term, m.snapshot));
      return;
    }
    const cur = this.#current;
    if (
      cur !== undefined && cur.term === m.term && cur.leader === m.from &&
      cur.snapshot.index === m.snapshot.index
    ) {
      if (cur.pending.length === 0) this.#next(cur);
      return;
    }
    const manifest = decodeManifest(m.manifest);
    const staged = h.stage.staged();
    if (staged?.snapshot.index !== m.snapshot.index || staged.snapshot.term !== m.snapshot.term) {
      h.stage.stage({ snapshot: m.snapshot, manifest });
    }
    this.#maybeStale = true;
    const r: Receiving = {
      leader: m.from,
      term: m.term,
      snapshot: m.snapshot,
      manifest,
      pending: [],
      waited: 0,
      bytes: 0,
    };
    this.#current = r;
    h.log(
      `receiving a snapshot at index ${m.snapshot.index} from node ${m.from}: ${manifest.ships.length} ships, ${
        manifest.ships.reduce((n, s) => n + s.lastEve, 0)
      } events`,
      { event: "snapshot_receiving", index: m.snapshot.index, leader: m.from },
    );
    this.#next(r);
  }

  /** A chunk arrives. */
  chunk(m: SnapChunkMessage): void {
    const r = this.#current;
    const p = r?.pending[0];
    if (r === undefined || p === undefined || m.index !== r.snapshot.index || m.term !== r.term) {
      return;
    }
    if (!samePiece(p, m.piece)) return;
    r.pending.shift();
    r.waited = 0;
    if (m.gone) {
      this.#host.log(
        `snapshot at index ${r.snapshot.index}: node ${m.from} no longer has ${
          describe(p)
        }; waiting for a new offer`,
      );
      this.#current = undefined;
      return;
    }
    if (!sameBytes(sha256(m.data), m.sha256)) {
      this.#again(r); // corrupted in transit: ask again
      return;
    }
    const stage = this.#host.stage;
    const ship = r.manifest.ships.find((s) => s.ship === p.ship)!;
    if (p.kind === "events") {
      let events: StoredEvent[];
      try {
        events = decodeEvents(m.data).filter((e) => e.eve <= ship.lastEve);
      } catch {
        this.#again(r); // malformed: ask again
        return;
      }
      if (events.length === 0 || events.some((e, i) => e.eve !== p.from + i)) {
        this.#again(r); // not the events asked for: ask again
        return;
      }
      stage.stageEvents(p.ship, events);
      // Stopped short (at the byte cap): the ranges in flight no longer join what is staged.
      if (events[events.length - 1].eve < p.to) r.pending = [];
    } else {
      const image = ship.images.find((i) => i.epoch === p.epoch);
      if (image !== undefined && p.offset + m.data.length <= image.size && m.data.length > 0) {
        stage.stageImageChunk(p.ship, p.epoch, p.offset, m.data);
      }
    }
    r.bytes += m.data.length;
    this.#next(r);
  }

  /** One tick: asks again for a chunk that did not come; drops stale staging. */
  tick(): void {
    const r = this.#current;
    if (r !== undefined && r.pending.length > 0 && ++r.waited >= SNAPSHOT_PULL_RETRY_TICKS) {
      r.waited = 0;
      for (const p of r.pending) this.#pull(r, p);
    }
    if (r === undefined && this.#maybeStale) {
      const staged = this.#host.stage.staged();
      if (staged === undefined) this.#maybeStale = false;
      else if (this.#host.appliedIndex() >= staged.snapshot.index) {
        this.#host.stage.clear();
        this.#maybeStale = false;
      }
    }
  }

  /** Drops the pulls in flight and asks again from what is staged. */
  #again(r: Receiving): void {
    r.pending = [];
    this.#next(r);
  }

  /** Keeps the window of pulls full; delivers the snapshot once nothing is missing. */
  #next(r: Receiving): void {
    if (r.pending.length === 0) {
      const piece = this.#host.stage.need();
      if (piece === undefined) {
        this.#whole(r);
        return;
      }
      const ship = r.manifest.ships.find((s) => s.ship === piece.ship)!;
      this.#pull(
        r,
        piece.kind === "events"
          ? { ...piece, to: this.#rangeEnd(ship, piece.from), addedIndex: ship.addedIndex }
          : { ...piece, addedIndex: ship.addedIndex },
      );
    }
    // Ranges of the same ship's events follow each other without a look at the stage.
    while (r.pending.length < SNAPSHOT_PULLS_IN_FLIGHT) {
      const last = r.pending[r.pending.length - 1];
      if (last.kind !== "events") break;
      const ship = r.manifest.ships.find((s) => s.ship === last.ship)!;
      if (last.to >= ship.lastEve) break;
      this.#pull(r, { ...last, from: last.to + 1, to: this.#rangeEnd(ship, last.to + 1) });
    }
  }

  /**
   * The end of the range of events to ask for from `from`: what the chunk
   * holds at the ship's average event size (the answer stops short at the
   * cap only where events are larger), at most the ship's last event.
   */
  #rangeEnd(ship: ManifestShip, from: number): number {
    const held = Math.max(1, ship.lastEve - ship.firstEve + 1);
    const average = EVENT_FIXED_BYTES + ship.bytes / held;
    const count = Math.max(1, Math.floor(this.#host.chunkBytes / average));
    return Math.min(ship.lastEve, from + count - 1);
  }

  #whole(r: Receiving): void {
    this.#current = undefined;
    const h = this.#host;
    h.log(
      `snapshot at index ${r.snapshot.index} is whole (${
        (r.bytes / 1e6).toFixed(1)
      } MB fetched); installing`,
      { event: "snapshot_whole", index: r.snapshot.index, bytes: r.bytes },
    );
    h.deliver(snapMessage(h, r.leader, r.term, r.snapshot));
  }

  /** Sends a pull; a piece not yet in flight joins the window. */
  #pull(r: Receiving, piece: WirePiece): void {
    if (!r.pending.some((p) => samePiece(p, piece))) r.pending.push(piece);
    const h = this.#host;
    h.send({
      type: "snapPull",
      groupId: h.groupId,
      from: h.id,
      to: r.leader,
      term: r.term,
      index: r.snapshot.index,
      piece,
    });
  }
}

function snapMessage(
  h: SnapshotReceiverHost,
  leader: number,
  term: number,
  snapshot: SnapshotMeta,
): SnapshotMessage {
  return { type: "snap", groupId: h.groupId, from: leader, to: h.id, term, snapshot };
}

function samePiece(a: WirePiece, b: WirePiece): boolean {
  if (a.kind !== b.kind || a.ship !== b.ship || a.addedIndex !== b.addedIndex) return false;
  if (a.kind === "events") return b.kind === "events" && a.from === b.from && a.to === b.to;
  return b.kind === "image" && a.epoch === b.epoch && a.offset === b.offset;
}

function describe(p: WirePiece): string {
  return p.kind === "events"
    ? `ship ${p.ship}'s events from ${p.from}`
    : `ship ${p.ship}'s image ${p.epoch} at offset ${p.offset}`;
}
