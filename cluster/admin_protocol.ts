/**
 * The admin and client protocol on a node's port, as ONE table of request
 * and response types that both ends use: the client (cluster/api.ts) encodes
 * requests and decodes answers with {@linkcode ADMIN_CODECS}, and the admin
 * service (cluster/admin_service.ts) decodes requests, dispatches them to
 * handlers typed against {@linkcode AdminOps}, {@linkcode ShipActions} and
 * {@linkcode MemberActions}, and encodes the answers with the same codecs.
 *
 * Requests and responses are pipelined over an authenticated connection
 * (kind "client"):
 * ```
 * request  := id:u32 op:u8 payload
 * response := id:u32 status:u8 payload
 * op      1 status   payload: JSON {}           answer: JSON NodeStatus
 *         2 propose  payload: opaque bytes      answer: index:u64 (once committed and applied)
 *         3 join     payload: JSON JoinRequest  answer: JSON JoinAnswer
 *         4 member   payload: JSON MemberRequest  answer: JSON (MemberActions)
 *         6 ship     payload: JSON ShipRequest    answer: JSON (ShipActions)
 *         7 events   payload: an events, imageChunk or imageDone command (cluster/machine.ts)
 *                    answer: JSON WriteResult
 *         8 log      payload: ship:16 from:u64 count:u32 waitMs:u32
 *                    answer: n:u32 (eve:u64 mug:u32 job:bytes)*n  (applied events; waits
 *                    up to waitMs for event `from` to exist, for `log tail -f`)
 *         5 read     payload: from:u64 count:u32 waitMs:u32
 *                    answer: n:u32 (index:u64 term:u64 type:u8 data:bytes)*n
 *                    committed entries from `from` (at most `count`, at most 4 MiB of data);
 *                    when none is committed yet, waits up to waitMs for one (long poll)
 *         9 image    payload: ship:16 epoch:u64 offset:u64
 *                    answer: the image chunk stored at offset (empty: none)
 *        10 cert     payload: JSON {action: "rotate"}  answer: JSON CertRotated (the node asked)
 *                    or JSON {action: "revoke", serial}  answer: JSON {revoked} (leader only)
 * status  0 ok, 1 error (payload: UTF-8 sentence), 2 not leader (payload: JSON {message, leaderAddress})
 * ```
 * Admin payloads are JSON (rare, small); the write and read paths are binary.
 * Ships travel as decimal strings in JSON (a comet does not fit a double).
 * @module
 */

import type { ConfState } from "../core/mod.ts";
import type { Role } from "./certs.ts";
import { ByteReader, ByteWriter } from "./codec.ts";
import type { ImageInfo } from "./images.ts";
import type { ShipLayout } from "./machine.ts";
import { shipKey, shipOfKey } from "./ships.ts";

/** Request kinds on the wire. */
export const Op = {
  status: 1,
  propose: 2,
  join: 3,
  member: 4,
  read: 5,
  ship: 6,
  events: 7,
  log: 8,
  image: 9,
  cert: 10,
} as const;

/** The name of a request kind. */
export type OpName = keyof typeof Op;

/**
 * What a client certificate's role may ask (docs/security.md, "Roles"):
 * `admin` everything; `monitor` only what reads (status, the logs, ship
 * lists and checks); `runtime` and `join` nothing here (a runtime speaks on
 * the node's Unix socket, and joining needs the cluster token).
 */
export const ROLE_MAY: Readonly<
  Record<Role, {
    readonly ops: readonly OpName[];
    readonly ship: readonly string[];
    readonly member: readonly string[];
  }>
> = {
  admin: { ops: Object.keys(Op) as OpName[], ship: ["*"], member: ["*"] },
  monitor: {
    ops: ["status", "read", "log", "image", "ship"],
    ship: ["list", "verify"],
    member: [],
  },
  runtime: { ops: [], ship: [], member: [] },
  join: { ops: [], ship: [], member: [] },
};

/** Why `role` may not ask `op` (with its ship or member `action`), or undefined when it may. */
export function roleRefusal(role: Role, op: OpName, action?: string): string | undefined {
  const may = ROLE_MAY[role];
  const sub = op === "ship" ? may.ship : op === "member" ? may.member : undefined;
  const allowed = may.ops.includes(op) &&
    (sub === undefined || sub.includes("*") || (action !== undefined && sub.includes(action)));
  if (allowed) return undefined;
  const what = action === undefined ? op : `${op} ${action}`;
  return `A ${role} credential may not ask '${what}'; use an admin credential (seguro token new --role admin)`;
}

/** Response kinds. */
export const Status = { ok: 0, error: 1, notLeader: 2 } as const;

/** Requests a connection may have outstanding; more wait on the client side. */
export const REQUESTS_IN_FLIGHT_MAX = 1024;

/** Longest a `read` or `log` request may wait for new entries or events. */
export const READ_WAIT_MS_MAX = 60_000;

/** A request failed on the node; the message is a sentence for the user. */
export class ApiError extends Error {
  /** A {@linkcode Status} value. */
  readonly status: number;
  /** For not-leader: where the leader is, when known. */
  readonly leaderAddress: string | null;
  /** Makes an ApiError. */
  constructor(status: number, message: string, leaderAddress: string | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.leaderAddress = leaderAddress;
  }
}

/** Builds the error a follower answers with for a leader-only request. */
export function notLeader(leaderId: number, leaderAddress: string | undefined): ApiError {
  return new ApiError(
    Status.notLeader,
    leaderId === 0
      ? "There is no leader right now (an election is running); retry in a moment"
      : `Node ${leaderId} is the leader`,
    leaderAddress ?? null,
  );
}

// ------------------------------------------------------------ status

/** One member as `seguro status` shows it. */
export interface MemberStatus {
  /** Node id. */
  id: number;
  /** Address, or null if unknown. */
  address: string | null;
  /** Voter or learner. */
  membership: "voter" | "learner";
  /** Leader's view: highest index durably replicated there (null on followers). */
  match: number | null;
  /** Leader's view: replication state (probe / replicate / snapshot). */
  state: string | null;
  /** Milliseconds since a message from it arrived here (null: never, or self). */
  lastContactMs: number | null;
  /** True while this node's connection to it is up (self: true). */
  connected: boolean;
}

/** A released-but-lost finding as `status` reports it. */
export interface LossJson {
  /** Decimal @p number. */
  ship: string;
  /** First lost event. */
  firstEve: number;
  /** Last lost event. */
  lastEve: number;
  /** The entry index that held them. */
  index: number;
  /** The term they were released in. */
  term: number;
}

/** What one node says about itself and the cluster, for `seguro status`. */
export interface NodeStatus {
  /** Seguro version. */
  version: string;
  /** Cluster id. */
  clusterId: string;
  /** This node's id. */
  nodeId: number;
  /** This node's advertised address. */
  address: string;
  /** leader, follower, learner, candidate, preCandidate, or removed. */
  role: string;
  /** Current term. */
  term: number;
  /** Known leader id, 0 when none. */
  leaderId: number;
  /** The leader's address when known. */
  leaderAddress: string | null;
  /** First log index held (entries before it are compacted into the applied state). */
  firstIndex: number;
  /** Last log index. */
  lastIndex: number;
  /** Commit index. */
  commitIndex: number;
  /** Applied index. */
  appliedIndex: number;
  /** Membership. */
  conf: ConfState;
  /** Every member. */
  members: MemberStatus[];
  /** Milliseconds since this process started the node. */
  uptimeMs: number;
  /** This node's base election timeout (ms): how long a follower waits for its leader. */
  electionTimeoutMs: number;
  /** Runtime side: whether this node releases, releases so far, why releases wait, losses found. */
  release: {
    master: boolean;
    released: number;
    stalled: { need: number; have: number } | null;
    losses: LossJson[];
  };
  /** Store counters: fsyncs, transactions, entries and bytes written. */
  store: { fsyncs: number; transactions: number; entriesWritten: number; bytesWritten: number };
  /** Active alarms of side jobs (a standby pier, the exec supervisor) that failed. */
  alarms: string[];
  /**
   * When this node's TLS certificate and the cluster CA expire (ISO 8601),
   * and the node certificate's serial; null in plaintext (absent from
   * nodes older than TLS).
   */
  certificates?: { node: { serial: string; notAfter: string }; caNotAfter: string } | null;
}

// ------------------------------------------------------------ ships

/** A ship's runtime as the node running it reports it. */
export interface ShipRuntimeJson {
  /** The node reporting. */
  nodeId: number;
  /** fencing (waiting out the old master's lease), running, stopping, exited, no-exec. */
  state: string;
  /** The guard process's pid while running. */
  pid?: number;
  /** Milliseconds since the state began. */
  forMs: number;
  /** Last event the tail saw committed. */
  committedEve: number;
  /** The tail's delay from reading an event to its commit: p99 over recent batches (ms). */
  tailP99Ms?: number;
  /** Why the tail stopped, or why the runtime is not running. */
  alarm?: string;
}

/** A ship as the admin protocol shows it. */
export interface ShipJson {
  /** Decimal @p number. */
  ship: string;
  /** Fake ship. */
  fake: boolean;
  /** Boot formulas at the start of its log. */
  life: number;
  /**
   * The first event the cluster holds: 1, or after a chop the event after
   * its epoch's image (absent from nodes older than chops: 1).
   */
  firstEve?: number;
  /** Last event number. */
  lastEve: number;
  /** Last event's mug. */
  lastMug: number;
  /** Bytes of events stored. */
  bytes: number;
  /** Replicas that must hold an event before release; -1: the cluster default, -2: a quorum. */
  optimism: number;
  /** The layout of the ship's pier, when an import recorded one (docs/pier-formats.md). */
  layout?: ShipLayout;
  /** In `list`: the cluster's default optimism (-2, or -1 when never set: a quorum). */
  defaultOptimism?: number;
  /** In `list`: the node id of the master (the leader), 0 when none. */
  master?: number;
  /** The master runs its `--exec` command for this ship (`seguro ship run`). */
  run?: boolean;
  /** In `list`: this node's runtime for the ship, when it runs it. */
  runtime?: ShipRuntimeJson;
  /** In `list`: the ship's epoch snapshots (complete ones have a sha256). */
  images?: ImageInfo[];
}

/** What `verify` finds on one node. */
export interface ShipVerify {
  /** The node that checked. */
  nodeId: number;
  /** Decimal @p number. */
  ship: string;
  /**
   * First event held (1 until the log is chopped; absent from nodes older
   * than chops): the events checked are firstEve..lastEve.
   */
  firstEve?: number;
  /** Last event number. */
  lastEve: number;
  /** Bytes of jam checked. */
  bytes: number;
  /** SHA-256 (hex) over every event's (eve:u64 mug:u32 job). */
  digest: string;
  /** The first problems found (at most 20). */
  problems: { eve: number; problem: string }[];
}

/**
 * What a `chop` drops and where the log then starts: events `fromEve` to
 * `toEve` go, and the log starts at `firstEve` (= `toEve + 1`), right after
 * the complete image of epoch `epoch` (= `toEve`).
 */
export interface ChopPlan {
  /** Decimal @p number. */
  ship: string;
  /** The first event dropped: the ship's first event now. */
  fromEve: number;
  /** The last event dropped: the epoch's base. */
  toEve: number;
  /** Where the log starts after the chop. */
  firstEve: number;
  /** The epoch whose image the log then starts after (its base, `toEve`). */
  epoch: number;
  /** Bytes of jam dropped. */
  bytes: number;
  /** Bytes of the images of earlier epochs dropped with them. */
  imageBytes: number;
  /** The ship's last event. */
  lastEve: number;
  /** Epochs (complete images) the log keeps: the chop's and the newer ones. */
  keptEpochs: number[];
  /** True once the chop is applied; false when it was only planned (no `confirm`). */
  chopped: boolean;
}

/**
 * Every action of the `ship` op: its request fields (besides `action`) and
 * its answer. Ships are decimal strings of their @p number.
 */
export interface ShipActions {
  /** Every ship, with the master's view of where each runs. */
  list: { request: Record<never, never>; response: ShipJson[] };
  /** Adds a ship with no events (leader only). */
  add: { request: { ship: string; fake?: boolean; life?: number }; response: ShipJson };
  /** Removes a ship and every event of it (leader only). */
  remove: { request: { ship: string }; response: { removed: string } };
  /** Sets a ship's optimism: replicas, -1 (the cluster default) or -2 (a quorum). */
  set: { request: { ship: string; optimism: number }; response: ShipJson };
  /**
   * Records the layout of the ship's pier (leader only); a layout older than
   * the one recorded changes nothing (vere upgrades piers, never downgrades).
   */
  layout: { request: { ship: string; layout: ShipLayout }; response: ShipJson };
  /** Turns the master's `--exec` runtime for the ship on or off (leader only). */
  run: { request: { ship: string; run: boolean }; response: ShipJson & { run: boolean } };
  /** Checks the ship's log on the node asked (any node). */
  verify: { request: { ship: string }; response: ShipVerify };
  /** Sets the cluster's default optimism: replicas or -2 (a quorum) (leader only). */
  default: { request: { optimism: number }; response: { defaultOptimism: number } };
  /**
   * Drops the ship's events before the newest complete epoch image that
   * leaves `keepEpochs` epochs (default 1) (leader only). Without `confirm`
   * it only answers the plan; with it, the leader checks the image's SHA-256
   * over its chunks, then proposes the chop (refused when `firstEve` is given
   * and the plan now starts the log elsewhere).
   */
  chop: {
    request: { ship: string; keepEpochs?: number; confirm?: boolean; firstEve?: number };
    response: ChopPlan;
  };
}

/** An action of the `ship` op. */
export type ShipAction = keyof ShipActions;

/** The request of ship action `A`, as sent. */
export type ShipRequestOf<A extends ShipAction> = { action: A } & ShipActions[A]["request"];

/** A request of the `ship` op (any action). */
export type ShipRequest = { [A in ShipAction]: ShipRequestOf<A> }[ShipAction];

/** The answer to ship action `A`. */
export type ShipResponseOf<A extends ShipAction> = ShipActions[A]["response"];

/** An answer of the `ship` op (any action). */
export type ShipResponse = ShipResponseOf<ShipAction>;

/** What an `events` request did on the leader. */
export interface WriteResult {
  /** Events appended. */
  appended: number;
  /** Events already stored with the same bytes (skipped). */
  skipped: number;
}

// ------------------------------------------------------------ members

/** What a node answers a `join`. */
export interface JoinAnswer {
  /** The id the new node must use. */
  nodeId: number;
  /** The cluster id. */
  clusterId: string;
  /** The leader that added it. */
  leaderId: number;
}

/** A `join` request: the address the new node will listen at. */
export interface JoinRequest {
  /** HOST:PORT. */
  address: string;
}

/** Every action of the `member` op (leader only): request fields and answer. */
export interface MemberActions {
  /** Registers a learner at `address` (or finds the one already there). */
  add: { request: { address: string }; response: { message: string; nodeId: number } };
  /** Removes a member; refused when the rest would lose quorum, unless `force`. */
  remove: { request: { nodeId: number; force?: boolean }; response: { message: string } };
  /** Makes a learner a voter. */
  promote: { request: { nodeId: number }; response: { message: string } };
  /** Hands leadership to another voter. */
  transfer: { request: { nodeId: number }; response: { message: string } };
}

/** An action of the `member` op. */
export type MemberAction = keyof MemberActions;

/** The request of member action `A`, as sent. */
export type MemberRequestOf<A extends MemberAction> = { action: A } & MemberActions[A]["request"];

/** A request of the `member` op (any action). */
export type MemberRequest = { [A in MemberAction]: MemberRequestOf<A> }[MemberAction];

/** The answer to member action `A`. */
export type MemberResponseOf<A extends MemberAction> = MemberActions[A]["response"];

/** An answer of the `member` op (any action). */
export type MemberResponse = MemberResponseOf<MemberAction>;

// ------------------------------------------------------------ log and read

/** One committed entry as `read` returns it. */
export interface LogEntryView {
  /** Log index. */
  index: number;
  /** Term. */
  term: number;
  /** The entry type's code (cluster/entry_type.ts: 0 normal, 1 conf, 2 noop). */
  type: number;
  /** Entry bytes. */
  data: Uint8Array;
}

/** A `read` request. */
export interface ReadRequest {
  /** First index wanted. */
  from: number;
  /** At most this many entries. */
  count: number;
  /** Wait up to this long (ms, at most {@linkcode READ_WAIT_MS_MAX}) for entry `from`. */
  waitMs: number;
}

/** One event as `log` returns it. */
export interface EventView {
  /** Event number. */
  eve: number;
  /** Stored mug. */
  mug: number;
  /** Jam bytes of the job. */
  job: Uint8Array;
}

/** A `log` request. */
export interface LogRequest {
  /** The ship. */
  ship: bigint;
  /** First event wanted. */
  from: number;
  /** At most this many events. */
  count: number;
  /** Wait up to this long (ms, at most {@linkcode READ_WAIT_MS_MAX}) for event `from`. */
  waitMs: number;
}

/** An `image` request: the chunk of a ship's epoch snapshot stored at `offset`. */
export interface ImageRequest {
  /** The ship. */
  ship: bigint;
  /** The epoch. */
  epoch: number;
  /** Byte offset of the chunk. */
  offset: number;
}

// ------------------------------------------------------------ the table

/** Every op: its request and its answer. */
export interface AdminOps {
  /** The node's status. */
  status: { request: Record<never, never>; response: NodeStatus };
  /** Opaque bytes proposed (leader only); answers the committed index once applied. */
  propose: { request: Uint8Array; response: number };
  /** A new node asks to be added as a learner (leader only). */
  join: { request: JoinRequest; response: JoinAnswer };
  /** A membership change (leader only). */
  member: { request: MemberRequest; response: MemberResponse };
  /** Committed entries. */
  read: { request: ReadRequest; response: LogEntryView[] };
  /** A ship operation. */
  ship: { request: ShipRequest; response: ShipResponse };
  /** An encoded events, imageChunk or imageDone command (leader only). */
  events: { request: Uint8Array; response: WriteResult };
  /** A ship's applied events. */
  log: { request: LogRequest; response: EventView[] };
  /** A chunk of a ship's epoch snapshot (empty: none stored there). */
  image: { request: ImageRequest; response: Uint8Array };
  /**
   * `rotate`: replaces the TLS certificate of the node asked (`seguro cert
   * rotate`); `revoke`: every node refuses the certificate with `serial`
   * once the revocation is applied (leader only; `seguro token revoke`).
   */
  cert: { request: CertRequest; response: CertRotated | { revoked: string } };
}

/** A `cert` request. */
export type CertRequest = { action: "rotate" } | { action: "revoke"; serial: string };

/** What `cert rotate` answers: the node's new certificate. */
export interface CertRotated {
  /** The node that rotated. */
  nodeId: number;
  /** The new certificate's serial. */
  serial: string;
  /** When it expires (ISO 8601). */
  notAfter: string;
}

/** The request of op `K`. */
export type RequestOf<K extends OpName> = AdminOps[K]["request"];

/** The answer of op `K`. */
export type ResponseOf<K extends OpName> = AdminOps[K]["response"];

/** How one op's request and answer are written. */
export interface OpCodec<Req, Res> {
  /** Client side: the request payload. */
  encodeRequest(request: Req): Uint8Array;
  /** Service side: the request from its payload; throws WireError or SyntaxError when malformed. */
  decodeRequest(payload: Uint8Array): Req;
  /** Service side: the answer payload. */
  encodeResponse(response: Res): Uint8Array;
  /** Client side: the answer from its payload. */
  decodeResponse(payload: Uint8Array): Res;
}

/** Codecs of every op, by name. */
export type AdminCodecs = { readonly [K in OpName]: OpCodec<RequestOf<K>, ResponseOf<K>> };

function encodeJson(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

function decodeJson<T>(payload: Uint8Array): T {
  return JSON.parse(new TextDecoder().decode(payload)) as T;
}

/** A codec whose request and answer are both JSON. */
function jsonCodec<Req, Res>(): OpCodec<Req, Res> {
  return {
    encodeRequest: encodeJson,
    decodeRequest: (payload) => decodeJson<Req>(payload),
    encodeResponse: encodeJson,
    decodeResponse: (payload) => decodeJson<Res>(payload),
  };
}

function identity(payload: Uint8Array): Uint8Array {
  return payload;
}

/** The one table both ends encode and decode with. */
export const ADMIN_CODECS: AdminCodecs = {
  status: {
    encodeRequest: () => encodeJson({}),
    // The payload carries nothing: older clients send "{}", which is not even parsed.
    decodeRequest: () => ({}),
    encodeResponse: encodeJson,
    decodeResponse: (payload) => decodeJson<NodeStatus>(payload),
  },
  propose: {
    encodeRequest: identity,
    decodeRequest: identity,
    encodeResponse: encodeIndex,
    decodeResponse: decodeIndex,
  },
  join: jsonCodec<JoinRequest, JoinAnswer>(),
  cert: jsonCodec<CertRequest, CertRotated | { revoked: string }>(),
  member: jsonCodec<MemberRequest, MemberResponse>(),
  read: {
    encodeRequest: (r) => encodeReadRequest(r.from, r.count, r.waitMs),
    decodeRequest: decodeReadRequest,
    encodeResponse: encodeEntries,
    decodeResponse: decodeEntries,
  },
  ship: jsonCodec<ShipRequest, ShipResponse>(),
  events: {
    encodeRequest: identity,
    decodeRequest: identity,
    encodeResponse: (r) => encodeJson({ appended: r.appended, skipped: r.skipped }),
    decodeResponse: (payload) => decodeJson<WriteResult>(payload),
  },
  log: {
    encodeRequest: (r) => encodeLogRequest(shipKey(r.ship), r.from, r.count, r.waitMs),
    decodeRequest: (payload) => {
      const { key, from, count, waitMs } = decodeLogRequest(payload);
      return { ship: shipOfKey(key), from, count, waitMs };
    },
    encodeResponse: encodeEvents,
    decodeResponse: decodeEvents,
  },
  image: {
    encodeRequest: (r) => encodeImageRequest(shipKey(r.ship), r.epoch, r.offset),
    decodeRequest: (payload) => {
      const { key, epoch, offset } = decodeImageRequest(payload);
      return { ship: shipOfKey(key), epoch, offset };
    },
    encodeResponse: identity,
    decodeResponse: identity,
  },
};

// ------------------------------------------------------------ binary payloads

/** Decodes a propose answer: the committed index. */
export function decodeIndex(payload: Uint8Array): number {
  return new ByteReader(payload).u64("index");
}

/** Encodes a propose answer. */
export function encodeIndex(index: number): Uint8Array {
  return new ByteWriter(8).u64(index).finish();
}

/** Encodes a `read` request. */
export function encodeReadRequest(from: number, count: number, waitMs = 0): Uint8Array {
  return new ByteWriter(16).u64(from).u32(count).u32(waitMs).finish();
}

/** Decodes a `read` request (a wait above {@linkcode READ_WAIT_MS_MAX} is cut to it). */
export function decodeReadRequest(payload: Uint8Array): ReadRequest {
  const r = new ByteReader(payload);
  const from = r.u64("from");
  const count = r.u32("count");
  const waitMs = Math.min(r.u32("wait"), READ_WAIT_MS_MAX);
  r.end("read request");
  return { from, count, waitMs };
}

/** Encodes a `read` answer. */
export function encodeEntries(entries: readonly LogEntryView[]): Uint8Array {
  const w = new ByteWriter(64 + entries.reduce((n, e) => n + 21 + e.data.length, 0));
  w.u32(entries.length);
  for (const e of entries) w.u64(e.index).u64(e.term).u8(e.type).bytes(e.data);
  return w.finish();
}

/** Decodes a `read` answer. */
export function decodeEntries(payload: Uint8Array): LogEntryView[] {
  const r = new ByteReader(payload);
  const n = r.u32("entry count");
  const out: LogEntryView[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      index: r.u64("index"),
      term: r.u64("term"),
      type: r.u8("type"),
      data: r.bytes("data"),
    });
  }
  return out;
}

/** Encodes a `log` request. */
export function encodeLogRequest(
  shipKeyBytes: Uint8Array,
  from: number,
  count: number,
  waitMs = 0,
): Uint8Array {
  return new ByteWriter(32).raw(shipKeyBytes).u64(from).u32(count).u32(waitMs).finish();
}

/** Decodes a `log` request (a wait above {@linkcode READ_WAIT_MS_MAX} is cut to it). */
export function decodeLogRequest(
  payload: Uint8Array,
): { key: Uint8Array; from: number; count: number; waitMs: number } {
  const r = new ByteReader(payload);
  const key = r.raw(16, "ship");
  const from = r.u64("from");
  const count = r.u32("count");
  const waitMs = Math.min(r.u32("wait"), READ_WAIT_MS_MAX);
  r.end("log request");
  return { key, from, count, waitMs };
}

/** Encodes a `log` answer. */
export function encodeEvents(events: readonly EventView[]): Uint8Array {
  const w = new ByteWriter(64 + events.reduce((n, e) => n + 16 + e.job.length, 0));
  w.u32(events.length);
  for (const e of events) w.u64(e.eve).u32(e.mug).bytes(e.job);
  return w.finish();
}

/** Decodes a `log` answer. */
export function decodeEvents(payload: Uint8Array): EventView[] {
  const r = new ByteReader(payload);
  const n = r.u32("event count");
  const out: EventView[] = [];
  for (let i = 0; i < n; i++) {
    out.push({ eve: r.u64("eve"), mug: r.u32("mug"), job: r.bytes("job") });
  }
  return out;
}

/** Encodes an `image` request: the chunk of a ship's epoch snapshot stored at `offset`. */
export function encodeImageRequest(
  shipKeyBytes: Uint8Array,
  epoch: number,
  offset: number,
): Uint8Array {
  return new ByteWriter(32).raw(shipKeyBytes).u64(epoch).u64(offset).finish();
}

/** Decodes an `image` request. */
export function decodeImageRequest(
  payload: Uint8Array,
): { key: Uint8Array; epoch: number; offset: number } {
  const r = new ByteReader(payload);
  const key = r.raw(16, "ship");
  const epoch = r.u64("epoch");
  const offset = r.u64("offset");
  r.end("image request");
  return { key, epoch, offset };
}
