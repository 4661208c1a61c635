/**
 * The typed client of a node's admin protocol (cluster/admin_protocol.ts):
 * what the CLI, the tests and the benchmarks use to talk to a node.
 *
 * ```ts ignore
 *
 * const client = await ClusterClient.connect("127.0.0.1:7400", credentials);
 * const status = await client.status();
 * const ships = await client.ships.list();
 * client.close();
 * await withLeader("127.0.0.1:7400", credentials, (c) => c.members.add("10.0.0.4:7400"));
 * ```
 * Every method sends the same bytes the untyped JSON requests of earlier
 * versions sent, so clients and nodes of mixed versions still talk.
 * @module
 */

import { ByteReader, ByteWriter } from "./codec.ts";
import { type FrameConn, FrameType } from "./frame.ts";
import { openConn } from "./connect.ts";
import { ForeignCertificateError, HandshakeError, WrongClusterError } from "./handshake_error.ts";
import { parseAddress } from "./address.ts";
import { clientSecurity, type ClusterCredentials } from "./token.ts";
import { type Command, encodeCommand, type ShipLayout } from "./machine.ts";
import {
  ADMIN_CODECS,
  ApiError,
  type CertRotated,
  type ChopPlan,
  type EventView,
  type JoinAnswer,
  type LogEntryView,
  type MemberAction,
  type MemberRequest,
  type MemberRequestOf,
  type MemberResponseOf,
  type NodeStatus,
  Op,
  type OpName,
  type RequestOf,
  type ResponseOf,
  type ShipAction,
  type ShipJson,
  type ShipRequest,
  type ShipRequestOf,
  type ShipResponseOf,
  type ShipVerify,
  Status,
  type WriteResult,
} from "./admin_protocol.ts";

/** How long a command waits for an election to end before it reports "no leader". */
const ELECTION_WAIT_MS = 5000;

/** A command the `events` op carries: a ship's events, or a piece of its epoch snapshot. */
export type ShipWriteCommand = Extract<Command, { kind: "events" | "imageChunk" | "imageDone" }>;

/** The `ship` op, one method per action (ships as numbers here, decimal strings on the wire). */
export class ShipClient {
  readonly #client: ClusterClient;

  /** Wraps `client` (see {@linkcode ClusterClient.ships}). */
  constructor(client: ClusterClient) {
    this.#client = client;
  }

  async #action<A extends ShipAction>(request: ShipRequestOf<A>): Promise<ShipResponseOf<A>> {
    // One action of the union: the table ties its request to its answer.
    return await this.#client.call("ship", request as ShipRequest) as ShipResponseOf<A>;
  }

  /** Every ship, with the answering node's view of its master and runtime. */
  list(): Promise<ShipJson[]> {
    return this.#action({ action: "list" });
  }

  /** Adds a ship with no events (leader only). */
  add(ship: bigint, options: { fake?: boolean; life?: number } = {}): Promise<ShipJson> {
    return this.#action({
      action: "add",
      ship: String(ship),
      fake: options.fake === true,
      life: options.life ?? 0,
    });
  }

  /** Removes a ship and every event of it (leader only). */
  remove(ship: bigint): Promise<{ removed: string }> {
    return this.#action({ action: "remove", ship: String(ship) });
  }

  /**
   * Plans a chop of the ship's log keeping `keepEpochs` epochs (default 1); with
   * `confirm`, the leader checks the epoch's image and applies it (leader only).
   */
  chop(
    ship: bigint,
    options: { keepEpochs?: number; confirm?: boolean; firstEve?: number } = {},
  ): Promise<ChopPlan> {
    return this.#action({ action: "chop", ship: String(ship), ...options });
  }

  /** Sets a ship's optimism: replicas, -1 (the cluster default) or -2 (a quorum) (leader only). */
  set(ship: bigint, optimism: number): Promise<ShipJson> {
    return this.#action({ action: "set", ship: String(ship), optimism });
  }

  /** Records the layout of the ship's pier; an older one than recorded changes nothing (leader only). */
  layout(ship: bigint, layout: ShipLayout): Promise<ShipJson> {
    return this.#action({ action: "layout", ship: String(ship), layout });
  }

  /** Turns the master's `--exec` runtime for the ship on or off (leader only). */
  run(ship: bigint, run: boolean): Promise<ShipJson & { run: boolean }> {
    return this.#action({ action: "run", ship: String(ship), run });
  }

  /** Checks the ship's log on this node. */
  verify(ship: bigint): Promise<ShipVerify> {
    return this.#action({ action: "verify", ship: String(ship) });
  }

  /** Sets the cluster's default optimism: replicas or -2 (a quorum) (leader only). */
  setDefault(optimism: number): Promise<{ defaultOptimism: number }> {
    return this.#action({ action: "default", optimism });
  }

  /**
   * Appends events, or stores a piece of an epoch snapshot (leader only):
   * resolves once applied, rejects with the state machine's refusal. The
   * command is encoded before this returns, so its buffers may be reused.
   */
  write(command: ShipWriteCommand): Promise<WriteResult> {
    return this.#client.call("events", encodeCommand(command));
  }

  /**
   * Up to `count` applied events of `ship` from `from` (a few MiB at most);
   * with `waitMs`, waits that long for event `from` to exist.
   */
  events(ship: bigint, from: number, count: number, waitMs = 0): Promise<EventView[]> {
    return this.#client.call("log", { ship, from, count, waitMs });
  }

  /** The chunk of the ship's epoch snapshot stored at `offset` (empty: none). */
  imageChunk(ship: bigint, epoch: number, offset: number): Promise<Uint8Array> {
    return this.#client.call("image", { ship, epoch, offset });
  }
}

/** The `member` op, one method per action (leader only). */
export class MemberClient {
  readonly #client: ClusterClient;

  /** Wraps `client` (see {@linkcode ClusterClient.members}). */
  constructor(client: ClusterClient) {
    this.#client = client;
  }

  async #action<A extends MemberAction>(
    request: MemberRequestOf<A>,
  ): Promise<MemberResponseOf<A>> {
    return await this.#client.call("member", request as MemberRequest) as MemberResponseOf<A>;
  }

  /** Registers a learner at `address` (HOST:PORT); then `seguro join` runs there. */
  add(address: string): Promise<{ message: string; nodeId: number }> {
    return this.#action({ action: "add", address });
  }

  /** Removes a member; refused when the rest would lose quorum, unless `force`. */
  remove(nodeId: number, options: { force?: boolean } = {}): Promise<{ message: string }> {
    return this.#action({ action: "remove", nodeId, force: options.force === true });
  }

  /** Makes a learner a voter. */
  promote(nodeId: number): Promise<{ message: string }> {
    return this.#action({ action: "promote", nodeId });
  }

  /** Hands leadership to another voter. */
  transfer(nodeId: number): Promise<{ message: string }> {
    return this.#action({ action: "transfer", nodeId });
  }
}

/**
 * What went wrong between a client and a node: the first three are passing
 * (the node may answer another time); `refused` is not.
 */
export type ClientFailure =
  /** The node could not be reached (connection refused, no route). */
  | "unreachable"
  /** The connection broke or closed. */
  | "lost"
  /** The node did not answer in time (see {@linkcode ConnectOptions.answerTimeoutMs}). */
  | "timeout"
  /** The node refused this client: another cluster, another secret, a protocol error. */
  | "refused";

/** Why a client could not reach or use a node; the message says what to do. */
export class ClientError extends Error {
  /** What went wrong. */
  readonly failure: ClientFailure;
  /** Makes a ClientError. */
  constructor(message: string, failure: ClientFailure = "refused") {
    super(message);
    this.name = "ClientError";
    this.failure = failure;
  }
}

/** Tries of a connection whose handshake the node closed (a burst from one address). */
const CONNECT_ATTEMPTS = 6;
/** First wait before such a try (then doubled each time): at most about 2.4 s in all. */
const CONNECT_BACKOFF_MS = 25;

/** Options of {@linkcode ClusterClient.connect}. */
export interface ConnectOptions {
  /**
   * Give up on the node when connecting, or a request (beyond its own
   * `waitMs`), takes longer than this: the connection is closed and every
   * request waiting on it fails with a `timeout` ClientError. Without it, a
   * client waits as long as the connection stays up.
   */
  answerTimeoutMs?: number;
}

/** A connection from the CLI (or a test, or the benchmark) to one node. */
export class ClusterClient {
  /** The node's address. */
  readonly address: string;
  /** Ship operations. */
  readonly ships: ShipClient = new ShipClient(this);
  /** Membership changes (leader only). */
  readonly members: MemberClient = new MemberClient(this);
  readonly #fc: FrameConn;
  readonly #pending = new Map<
    number,
    { resolve: (b: Uint8Array) => void; reject: (e: Error) => void }
  >();
  #nextId = 1;
  #closedError: Error | undefined;
  readonly #answerTimeoutMs: number | undefined;

  private constructor(address: string, fc: FrameConn, answerTimeoutMs: number | undefined) {
    this.address = address;
    this.#fc = fc;
    this.#answerTimeoutMs = answerTimeoutMs;
    this.#readLoop();
  }

  /** Connects to `address` and authenticates with the credentials. */
  static async connect(
    address: string,
    credentials: ClusterCredentials,
    options: ConnectOptions = {},
  ): Promise<ClusterClient> {
    // A handshake the node closed is tried again: in a burst of connections from one
    // address the node closes the oldest still in their handshake (cluster/admission.ts).
    for (let attempt = 1;; attempt++) {
      try {
        return await ClusterClient.#connectOnce(address, credentials, options);
      } catch (e) {
        if (!(e instanceof ClientError) || e.failure !== "lost" || attempt >= CONNECT_ATTEMPTS) {
          throw e;
        }
        // Exponential, jittered: a burst spreads out instead of colliding again.
        const delayMs = CONNECT_BACKOFF_MS * 2 ** attempt * (0.5 + Math.random());
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  static async #connectOnce(
    address: string,
    credentials: ClusterCredentials,
    options: ConnectOptions,
  ): Promise<ClusterClient> {
    const { answerTimeoutMs } = options;
    const { hostname, port } = parseAddress(address);
    const abort = new AbortController();
    const timer = answerTimeoutMs === undefined
      ? undefined
      : setTimeout(() => abort.abort(), answerTimeoutMs);
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname, port, signal: abort.signal });
    } catch (e) {
      if (abort.signal.aborted) {
        throw new ClientError(
          `${address} did not accept a connection within ${
            answerTimeoutMs! / 1000
          } s; check that the machine is up and reachable`,
          "timeout",
        );
      }
      const why = e instanceof Deno.errors.ConnectionRefused
        ? "connection refused"
        : (e as Error).message;
      throw new ClientError(
        `Cannot reach ${address} (${why}); check the address and that 'seguro run' is running there`,
        "unreachable",
      );
    } finally {
      clearTimeout(timer);
    }
    let fc: FrameConn;
    try {
      ({ fc } = await openConn(conn, "initiator", {
        kind: "client",
        clusterId: credentials.clusterId,
        nodeId: 0,
        address: "",
      }, await clientSecurity(credentials)));
    } catch (e) {
      if (e instanceof WrongClusterError) {
        throw new ClientError(
          `${address} belongs to cluster ${e.remote.slice(0, 8)}..., not the token's cluster ${
            e.local.slice(0, 8)
          }...; check the address, or use that cluster's token`,
        );
      }
      if (e instanceof ForeignCertificateError) {
        throw new ClientError(
          `${address} is not a node of the token's cluster ${
            credentials.clusterId.slice(0, 8)
          }... (its certificate is another CA's); check the address, or use that cluster's token`,
        );
      }
      // A node that stops while the client connects closes the connection mid-handshake.
      const lost = !(e instanceof HandshakeError) || e.lost;
      throw new ClientError(
        `${address} refused this client: ${(e as Error).message}`,
        lost ? "lost" : "refused",
      );
    }
    return new ClusterClient(address, fc, answerTimeoutMs);
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
      // A connection given up on (a timeout) keeps that reason.
      this.#closedError ??= new ClientError(`${this.address} closed the connection`, "lost");
    } catch (e) {
      this.#closedError ??= e instanceof ClientError
        ? e
        : new ClientError(`Connection to ${this.address} failed: ${(e as Error).message}`, "lost");
    } finally {
      this.#fc.close();
      for (const w of this.#pending.values()) w.reject(this.#closedError!);
      this.#pending.clear();
    }
  }

  /**
   * Sends request `request` of kind `op` and resolves with its decoded
   * answer; rejects with ApiError (the node refused) or ClientError (the
   * connection failed). Encoded before this returns.
   */
  async call<K extends OpName>(op: K, request: RequestOf<K>): Promise<ResponseOf<K>> {
    const codec = ADMIN_CODECS[op];
    const payload = codec.encodeRequest(request);
    // A long poll may wait its waitMs on the node before it answers.
    const waitMs = op === "read" || op === "log" ? (request as { waitMs: number }).waitMs : 0;
    return codec.decodeResponse(await this.#send(Op[op], payload, waitMs));
  }

  /** This node's status. */
  status(): Promise<NodeStatus> {
    return this.call("status", {});
  }

  /** Proposes opaque bytes (leader only); resolves with the index once committed and applied. */
  propose(data: Uint8Array): Promise<number> {
    return this.call("propose", data);
  }

  /** Asks the leader to add a node that will listen at `address` as a learner. */
  join(address: string): Promise<JoinAnswer> {
    return this.call("join", { address });
  }

  /** Has the node connected to replace its TLS certificate; resolves with the new one. */
  async rotateCertificate(): Promise<CertRotated> {
    return await this.call("cert", { action: "rotate" }) as CertRotated;
  }

  /** Revokes the certificate with `serial` (leader only); resolves once applied. */
  async revokeCertificate(serial: string): Promise<string> {
    return (await this.call("cert", { action: "revoke", serial }) as { revoked: string }).revoked;
  }

  /**
   * Committed entries from `from` (at most `count`, a few MiB); with
   * `waitMs`, waits that long for one to be committed.
   */
  read(from: number, count: number, waitMs = 0): Promise<LogEntryView[]> {
    return this.call("read", { from, count, waitMs });
  }

  #send(op: number, payload: Uint8Array, waitMs: number): Promise<Uint8Array> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const id = this.#nextId;
    this.#nextId = this.#nextId === 0xffff_ffff ? 1 : this.#nextId + 1;
    const body = new ByteWriter(5 + payload.length).u32(id).u8(op).raw(payload).finish();
    return new Promise((resolve, reject) => {
      const timeoutMs = this.#answerTimeoutMs;
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
        // Closing fails every request on the connection: the read loop rejects them.
        this.#closedError ??= new ClientError(
          `${this.address} did not answer within ${timeoutMs / 1000} s`,
          "timeout",
        );
        this.#fc.close();
      }, timeoutMs + waitMs);
      this.#pending.set(id, {
        resolve: (b) => {
          clearTimeout(timer);
          resolve(b);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      if (!this.#fc.send(FrameType.request, body)) {
        this.#pending.delete(id);
        clearTimeout(timer);
        reject(
          new ClientError(`The connection to ${this.address} is closed or backed up`, "lost"),
        );
      }
    });
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
