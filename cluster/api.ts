/**
 * The admin and client protocol on a node's port: pipelined requests and
 * responses over an authenticated connection (kind "client").
 *
 * ```
 * request  := id:u32 op:u8 payload
 * response := id:u32 status:u8 payload
 * op      1 status   payload: none           answer: JSON NodeStatus
 *         2 propose  payload: opaque bytes   answer: index:u64 (once committed and applied)
 *         3 join     payload: JSON {address} answer: JSON JoinAnswer
 *         4 member   payload: JSON MemberRequest  answer: JSON {message}
 *         6 ship     payload: JSON ShipRequest   answer: JSON (see cluster/node.ts)
 *         7 events   payload: an events command (cluster/machine.ts)  answer: JSON ApplyResult
 *         8 log      payload: ship:16 from:u64 count:u32 waitMs:u32
 *                    answer: n:u32 (eve:u64 mug:u32 job:bytes)*n  (applied events; waits
 *                    up to waitMs for event `from` to exist, for `log tail -f`)
 *         5 read     payload: from:u64 count:u32 waitMs:u32
 *                    answer: n:u32 (index:u64 term:u64 type:u8 data:bytes)*n
 *                    committed entries from `from` (at most `count`, at most 4 MiB of data);
 *                    when none is committed yet, waits up to waitMs for one (long poll)
 * status  0 ok, 1 error (payload: UTF-8 sentence), 2 not leader (payload: JSON {leaderId, leaderAddress})
 * ```
 * Admin payloads are JSON (rare, small); the write path (`propose`) is binary.
 * @module
 */

import { ByteReader, ByteWriter, WireError } from "./codec.ts";
import { FrameConn, FrameType } from "./frame.ts";
import { handshake, WrongClusterError } from "./handshake.ts";
import { parseAddress } from "./address.ts";
import type { ClusterCredentials } from "./token.ts";

/** Request kinds. */
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
} as const;
/** Response kinds. */
export const Status = { ok: 0, error: 1, notLeader: 2 } as const;

/** How long a command waits for an election to end before it reports "no leader". */
const ELECTION_WAIT_MS = 5000;

/** Requests a connection may have outstanding; more wait on the client side. */
export const REQUESTS_IN_FLIGHT_MAX = 1024;

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

/** Handles one request; throws ApiError to answer with an error. */
export type RequestHandler = (op: number, payload: Uint8Array) => Promise<Uint8Array>;

/**
 * Serves an authenticated client connection until it closes: requests are
 * handled concurrently and answered as they finish.
 */
export async function serveClient(
  fc: FrameConn,
  handle: RequestHandler,
  log: (line: string) => void,
): Promise<void> {
  let inFlight = 0;
  try {
    while (true) {
      const f = await fc.read();
      if (f === null || f.type === FrameType.goodbye) break;
      if (f.type !== FrameType.request) {
        throw new WireError(`A client sent frame type ${f.type}, which clients do not send`);
      }
      const r = new ByteReader(f.body);
      const id = r.u32("request id");
      const op = r.u8("op");
      const payload = r.raw(r.remaining);
      if (++inFlight > REQUESTS_IN_FLIGHT_MAX) {
        throw new WireError(`More than ${REQUESTS_IN_FLIGHT_MAX} requests in flight`);
      }
      handle(op, payload).then(
        (answer) => respond(fc, id, Status.ok, answer),
        (e) => {
          if (e instanceof ApiError) {
            const body = e.status === Status.notLeader
              ? JSON.stringify({ message: e.message, leaderAddress: e.leaderAddress })
              : e.message;
            respond(fc, id, e.status, new TextEncoder().encode(body));
          } else {
            log(`request ${op} failed: ${(e as Error).stack ?? e}`);
            respond(
              fc,
              id,
              Status.error,
              new TextEncoder().encode(`Internal error: ${(e as Error).message}`),
            );
          }
        },
      ).finally(() => inFlight--);
    }
  } catch (e) {
    if (!fc.closed) {
      log(`closed client connection from ${fc.remote}: ${(e as Error).message}`);
      await fc.goodbye((e as Error).message);
    }
  } finally {
    fc.close();
  }
}

function respond(fc: FrameConn, id: number, status: number, payload: Uint8Array): void {
  const body = new ByteWriter(5 + payload.length).u32(id).u8(status).raw(payload).finish();
  fc.send(FrameType.response, body);
}

/** Why a client could not reach or use a node; the message says what to do. */
export class ClientError extends Error {
  /** Makes a ClientError. */
  constructor(message: string) {
    super(message);
    this.name = "ClientError";
  }
}

/** A connection from the CLI (or a test, or the benchmark) to one node. */
export class ClusterClient {
  readonly address: string;
  readonly #fc: FrameConn;
  readonly #pending = new Map<
    number,
    { resolve: (b: Uint8Array) => void; reject: (e: Error) => void }
  >();
  #nextId = 1;
  #closedError: Error | undefined;

  private constructor(address: string, fc: FrameConn) {
    this.address = address;
    this.#fc = fc;
    this.#readLoop();
  }

  /** Connects to `address` and authenticates with the credentials. */
  static async connect(address: string, credentials: ClusterCredentials): Promise<ClusterClient> {
    const { hostname, port } = parseAddress(address);
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname, port });
    } catch (e) {
      const why = e instanceof Deno.errors.ConnectionRefused
        ? "connection refused"
        : (e as Error).message;
      throw new ClientError(
        `Cannot reach ${address} (${why}); check the address and that 'seguro run' is running there`,
      );
    }
    const fc = new FrameConn(conn);
    try {
      await handshake(fc, "initiator", {
        kind: "client",
        clusterId: credentials.clusterId,
        nodeId: 0,
        address: "",
      }, credentials.secret);
    } catch (e) {
      fc.close();
      if (e instanceof WrongClusterError) {
        throw new ClientError(
          `${address} belongs to cluster ${e.remote.slice(0, 8)}..., not the token's cluster ${
            e.local.slice(0, 8)
          }...; check the address, or use that cluster's token`,
        );
      }
      throw new ClientError(`${address} refused this client: ${(e as Error).message}`);
    }
    return new ClusterClient(address, fc);
  }

  async #readLoop(): Promise<void> {
    try {
      while (true) {
        const f = await this.#fc.read();
        if (f === null) break;
        if (f.type === FrameType.goodbye) {
          throw new ClientError(
            `${this.address} closed the connection: ${new TextDecoder().decode(f.body)}`,
          );
        }
        if (f.type !== FrameType.response) continue;
        const r = new ByteReader(f.body);
        const id = r.u32("request id");
        const status = r.u8("status");
        const payload = r.raw(r.remaining);
        const waiter = this.#pending.get(id);
        if (waiter === undefined) continue;
        this.#pending.delete(id);
        if (status === Status.ok) waiter.resolve(payload);
        else if (status === Status.notLeader) {
          const info = JSON.parse(new TextDecoder().decode(payload));
          waiter.reject(new ApiError(Status.notLeader, info.message, info.leaderAddress));
        } else waiter.reject(new ApiError(status, new TextDecoder().decode(payload)));
      }
      this.#closedError = new ClientError(`${this.address} closed the connection`);
    } catch (e) {
      this.#closedError = e instanceof ClientError
        ? e
        : new ClientError(`Connection to ${this.address} failed: ${(e as Error).message}`);
    } finally {
      this.#fc.close();
      for (const w of this.#pending.values()) w.reject(this.#closedError!);
      this.#pending.clear();
    }
  }

  /** Sends one request and resolves with the answer's payload; rejects with ApiError or ClientError. */
  request(op: number, payload: Uint8Array = new Uint8Array(0)): Promise<Uint8Array> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const id = this.#nextId;
    this.#nextId = this.#nextId === 0xffff_ffff ? 1 : this.#nextId + 1;
    const body = new ByteWriter(5 + payload.length).u32(id).u8(op).raw(payload).finish();
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      if (!this.#fc.send(FrameType.request, body)) {
        this.#pending.delete(id);
        reject(new ClientError(`The connection to ${this.address} is closed or backed up`));
      }
    });
  }

  /** Sends a JSON request and parses the JSON answer. */
  async requestJson<T>(op: number, body: unknown = {}): Promise<T> {
    const answer = await this.request(op, new TextEncoder().encode(JSON.stringify(body)));
    return JSON.parse(new TextDecoder().decode(answer)) as T;
  }

  /** Closes the connection. */
  close(): void {
    this.#fc.close();
  }
}

/**
 * Runs `f` against the leader: connects to `address`, and when the node
 * answers "not leader", follows it to the leader (a few hops at most).
 */
export async function withLeader<T>(
  address: string,
  credentials: ClusterCredentials,
  f: (client: ClusterClient) => Promise<T>,
): Promise<T> {
  let target = address;
  const electionDeadline = performance.now() + ELECTION_WAIT_MS;
  for (let hop = 0; hop < 4;) {
    const client = await ClusterClient.connect(target, credentials);
    try {
      return await f(client);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== Status.notLeader) throw e;
      if (e.leaderAddress && e.leaderAddress !== target) {
        target = e.leaderAddress;
        hop++;
        continue;
      }
      // No leader known: an election is running (or quorum is lost). Wait a little for it.
      if (e.leaderAddress || performance.now() > electionDeadline) throw e;
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      client.close();
    }
  }
  throw new ClientError(
    "The cluster kept redirecting to other nodes; it may be electing a leader, retry",
  );
}

/** Decodes a propose answer: the committed index. */
export function decodeIndex(payload: Uint8Array): number {
  return new ByteReader(payload).u64("index");
}

/** Encodes a propose answer. */
export function encodeIndex(index: number): Uint8Array {
  return new ByteWriter(8).u64(index).finish();
}

/** One committed entry as `read` returns it. */
export interface LogEntryView {
  /** Log index. */
  index: number;
  /** Term. */
  term: number;
  /** 0 normal, 1 conf, 2 noop. */
  type: number;
  /** Entry bytes. */
  data: Uint8Array;
}

/** Longest a `read` may wait for new entries. */
export const READ_WAIT_MS_MAX = 60_000;

/** Encodes a `read` request. */
export function encodeReadRequest(from: number, count: number, waitMs = 0): Uint8Array {
  return new ByteWriter(16).u64(from).u32(count).u32(waitMs).finish();
}

/** Decodes a `read` request. */
export function decodeReadRequest(
  payload: Uint8Array,
): { from: number; count: number; waitMs: number } {
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

/** One event as `log` returns it. */
export interface EventView {
  /** Event number. */
  eve: number;
  /** Stored mug. */
  mug: number;
  /** Jam bytes of the job. */
  job: Uint8Array;
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

/** Decodes a `log` request. */
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
