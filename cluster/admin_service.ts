/**
 * The node's side of the admin protocol (cluster/admin_protocol.ts): serves
 * authenticated client connections, decodes each request with the shared
 * codecs and dispatches it to a handler typed against the protocol's table
 * (so the compiler checks that every op and action answers with its declared
 * type), then encodes the answer.
 *
 * Requests on one connection are handled concurrently and answered as they
 * finish. A handler throws {@linkcode ApiError} to answer with an error.
 * @module
 */

import { createHash } from "node:crypto";
import { setImmediate } from "node:timers";
import {
  ADMIN_CODECS,
  ApiError,
  type CertRequest,
  type ChopPlan,
  type LogEntryView,
  type MemberAction,
  type MemberActions,
  type MemberRequest,
  type NodeStatus,
  Op,
  type OpCodec,
  type OpName,
  type RequestOf,
  REQUESTS_IN_FLIGHT_MAX,
  type ResponseOf,
  roleRefusal,
  type ShipAction,
  type ShipActions,
  type ShipJson,
  type ShipRequest,
  type ShipRuntimeJson,
  type ShipVerify,
  Status,
} from "./admin_protocol.ts";
import { ByteReader, ByteWriter, WireError } from "./codec.ts";
import type { Role } from "./certs.ts";
import type { NodeDriver } from "./driver.ts";
import { entryTypeCode } from "./entry_type.ts";
import { FrameConn, FrameType } from "./frame.ts";
import { checkImage, planChop } from "./chop.ts";
import { decodeCommand, encodeCommand, SERIAL, SHIP_LAYOUTS, type ShipLayout } from "./machine.ts";
import type { Membership } from "./membership.ts";
import { optimismProblem } from "./release.ts";
import { SHIP_MAX, type ShipInfo } from "./ships.ts";

/** Largest data a `read` answers with (it stops after the entry that passes it). */
const READ_BYTES_MAX = 4 * 1024 * 1024;
/** Largest number of entries one `read` answers with. */
const READ_ENTRIES_MAX = 100_000;
/** Problems `verify` reports at most. */
const VERIFY_PROBLEMS_MAX = 20;
/** Events `verify` reads per step (it yields between steps). */
const VERIFY_CHUNK_EVENTS = 500;

/**
 * Checks one stored job for `seguro log verify`: the problem found, or
 * undefined when it is sound. Injected by whoever runs the node (server/
 * passes vere's jam round trip), so cluster/ needs no Urbit knowledge.
 */
export type JobCheck = (job: Uint8Array) => string | undefined;

/** What the admin service needs from its node. */
export interface AdminServiceConfig {
  /** Consensus, state machine and ship master. */
  driver: NodeDriver;
  /** Membership changes. */
  membership: Membership;
  /** The cluster id (for `join` answers). */
  clusterId: string;
  /** The node's status. */
  status(): NodeStatus;
  /** Resolves when `ready()` holds after a Ready, after `waitMs`, or when the node stops. */
  waitFor(ready: () => boolean, waitMs: number): Promise<void>;
  /** Renders a ship in messages. */
  shipName(ship: bigint): string;
  /** Where this node runs a ship's runtime, for `ship list`. */
  shipRuntime?: (ship: bigint) => ShipRuntimeJson | undefined;
  /** Checks each job in `verify`; without it, verify checks numbering and digests only. */
  checkJob?: JobCheck;
  /** Log sink. */
  log(line: string): void;
  /** Replaces this node's TLS certificate (`cert rotate`); absent in plaintext. */
  rotateCertificate?: () => Promise<{ serial: string; notAfter: Date }>;
}

/** A handler for every op, typed by the protocol's table. */
type OpHandlers = { readonly [K in OpName]: (request: RequestOf<K>) => Promise<ResponseOf<K>> };

/** A handler for every ship action. */
type ShipHandlers = {
  readonly [A in ShipAction]: (
    request: { action: A } & ShipActions[A]["request"],
  ) => Promise<ShipActions[A]["response"]>;
};

/** A handler for every member action. */
type MemberHandlers = {
  readonly [A in MemberAction]: (
    request: { action: A } & MemberActions[A]["request"],
  ) => Promise<MemberActions[A]["response"]>;
};

/** Op names by wire code. */
const OP_NAMES: ReadonlyMap<number, OpName> = new Map(
  (Object.keys(Op) as OpName[]).map((name) => [Op[name], name]),
);

function shipJson(info: ShipInfo, layout: ShipLayout | undefined): ShipJson {
  return {
    ...(layout === undefined ? {} : { layout }),
    ship: String(info.ship),
    fake: info.fake,
    life: info.life,
    firstEve: info.firstEve,
    lastEve: info.lastEve,
    lastMug: info.lastMug,
    bytes: info.bytes,
    optimism: info.optimism,
  };
}

/** The ship a request names, checked; `action` names the request in the error. */
function shipOf(text: unknown, action: string): bigint {
  if (typeof text !== "string" || !/^[0-9]{1,39}$/.test(text) || BigInt(text) > SHIP_MAX) {
    throw new ApiError(
      Status.error,
      text === undefined
        ? `A ship '${action}' request must name a ship`
        : `'${text}' is not a ship number`,
    );
  }
  return BigInt(text);
}

/** Answers the admin protocol for one node. */
export class AdminService {
  readonly #cfg: AdminServiceConfig;
  readonly #ops: OpHandlers;
  readonly #ships: ShipHandlers;
  readonly #members: MemberHandlers;

  /** Makes the service of one node. */
  constructor(config: AdminServiceConfig) {
    this.#cfg = config;
    const { driver, membership } = config;
    this.#ops = {
      status: () => Promise.resolve(config.status()),
      cert: (request) => this.#cert(request),
      propose: (data) => driver.propose(data),
      join: async ({ address }) => ({
        nodeId: await membership.addLearner(String(address)),
        clusterId: config.clusterId,
        leaderId: driver.id,
      }),
      member: (request) => this.#member(request),
      read: (request) => this.#read(request.from, request.count, request.waitMs),
      ship: (request) => this.#ship(request),
      events: (payload) => this.#write(payload),
      log: async ({ ship, from, count, waitMs }) => {
        const have = () => (driver.machine.ships.get(ship)?.lastEve ?? 0) >= from;
        if (waitMs > 0 && !have()) await config.waitFor(have, waitMs);
        return driver.machine.ships.events(ship, from, count);
      },
      image: ({ ship, epoch, offset }) =>
        Promise.resolve(driver.machine.images.chunk(ship, epoch, offset) ?? new Uint8Array(0)),
    };
    this.#ships = {
      list: () => Promise.resolve(this.#list()),
      add: async (request) => {
        const ship = shipOf(request.ship, "add");
        await driver.proposeCommand(encodeCommand({
          kind: "shipAdd",
          ship,
          fake: request.fake === true,
          optimism: -1,
          life: Number(request.life ?? 0),
        }));
        return this.#shipJson(ship);
      },
      remove: async (request) => {
        const ship = shipOf(request.ship, "remove");
        await driver.proposeCommand(encodeCommand({ kind: "shipRemove", ship }));
        return { removed: String(ship) };
      },
      set: async (request) => {
        const ship = shipOf(request.ship, "set");
        const optimism = Number(request.optimism);
        const problem = optimismProblem(optimism, driver.raft.conf.voters.length);
        if (problem !== undefined) throw new ApiError(Status.error, problem);
        await driver.proposeCommand(encodeCommand({ kind: "shipSet", ship, optimism }));
        return this.#shipJson(ship);
      },
      layout: async (request) => {
        const ship = shipOf(request.ship, "layout");
        const layout = request.layout;
        if (!SHIP_LAYOUTS.includes(layout)) {
          throw new ApiError(
            Status.error,
            `'${layout}' is not a pier layout; give one of ${SHIP_LAYOUTS.join(", ")}`,
          );
        }
        await driver.proposeCommand(encodeCommand({ kind: "shipLayout", ship, layout }));
        return this.#shipJson(ship);
      },
      run: async (request) => {
        const ship = shipOf(request.ship, "run");
        await driver.proposeCommand(
          encodeCommand({ kind: "shipRun", ship, run: request.run === true }),
        );
        return { ...this.#shipJson(ship), run: driver.machine.runs(ship) };
      },
      verify: (request) => this.#verify(shipOf(request.ship, "verify")),
      chop: (request) => this.#chop(request),
      default: async (request) => {
        const optimism = Number(request.optimism);
        const problem = optimismProblem(optimism, driver.raft.conf.voters.length, {
          clusterDefault: true,
        });
        if (problem !== undefined) throw new ApiError(Status.error, problem);
        await driver.proposeCommand(encodeCommand({ kind: "defaultOptimism", optimism }));
        return { defaultOptimism: optimism };
      },
    };
    this.#members = {
      add: async ({ address }) => {
        const nodeId = await membership.addLearner(String(address));
        return { message: `Added node ${nodeId} at ${address} as a learner`, nodeId };
      },
      remove: async ({ nodeId, force }) => ({
        message: await membership.remove(Number(nodeId), force === true),
      }),
      promote: async ({ nodeId }) => {
        const id = Number(nodeId);
        await membership.promote(id);
        return { message: `Promoted node ${id} to voter` };
      },
      transfer: async ({ nodeId }) => ({ message: await membership.transfer(Number(nodeId)) }),
    };
  }

  /** Serves one authenticated client connection, whose certificate has `role`, until it closes. */
  serve(fc: FrameConn, role: Role): Promise<void> {
    return serveClient(fc, (op, payload) => this.handle(op, payload, role), this.#cfg.log);
  }

  /** Answers one request of a client with `role`: its payload in, the answer's out (or an ApiError). */
  handle(op: number, payload: Uint8Array, role: Role): Promise<Uint8Array> {
    const name = OP_NAMES.get(op);
    if (name === undefined) {
      return Promise.reject(
        new ApiError(
          Status.error,
          `Unknown request kind ${op}; is this seguro older than the client?`,
        ),
      );
    }
    if (role !== "admin") {
      const refusal = roleRefusal(role, name, actionOf(name, payload));
      if (refusal !== undefined) return Promise.reject(new ApiError(Status.error, refusal));
    }
    return this.#dispatch(name, payload);
  }

  async #dispatch<K extends OpName>(name: K, payload: Uint8Array): Promise<Uint8Array> {
    // The table ties each op's codec to its handler; indexing by a generic key loses that.
    const codec = ADMIN_CODECS[name] as OpCodec<RequestOf<K>, ResponseOf<K>>;
    const handler = this.#ops[name] as (request: RequestOf<K>) => Promise<ResponseOf<K>>;
    return codec.encodeResponse(await handler(codec.decodeRequest(payload)));
  }

  async #cert(request: CertRequest): Promise<ResponseOf<"cert">> {
    const { driver, log, rotateCertificate } = this.#cfg;
    if (request?.action === "revoke") {
      const serial = String(request.serial ?? "").toLowerCase();
      if (!SERIAL.test(serial)) {
        throw new ApiError(
          Status.error,
          `'${request.serial}' is not a certificate serial; 'seguro token new' printed it (hex)`,
        );
      }
      driver.requireLeader();
      await driver.proposeCommand(encodeCommand({ kind: "revoke", serial }));
      log(`revoked certificate ${serial}: every node refuses it from now on`);
      return { revoked: serial };
    }
    if (request?.action !== "rotate") {
      throw new ApiError(
        Status.error,
        `Unknown cert action '${(request as { action?: unknown })?.action}'`,
      );
    }
    if (rotateCertificate === undefined) {
      throw new ApiError(
        Status.error,
        "This cluster runs with --insecure-plaintext: it has no certificates to rotate",
      );
    }
    const fresh = await rotateCertificate();
    const nodeId = driver.raft.id;
    log(
      `node ${nodeId}: new TLS certificate ${fresh.serial}, valid until ${fresh.notAfter.toISOString()}; new connections use it`,
    );
    return { nodeId, serial: fresh.serial, notAfter: fresh.notAfter.toISOString() };
  }

  #ship(request: ShipRequest): Promise<ResponseOf<"ship">> {
    const action = request?.action;
    if (typeof action !== "string" || !Object.hasOwn(this.#ships, action)) {
      throw new ApiError(Status.error, `Unknown ship action '${action}'`);
    }
    const handler = this.#ships[action] as (r: ShipRequest) => Promise<ResponseOf<"ship">>;
    return handler(request);
  }

  /** The ship's record after a command about it was applied. */
  #shipJson(ship: bigint): ShipJson {
    const machine = this.#cfg.driver.machine;
    return shipJson(machine.ships.get(ship)!, machine.layout(ship));
  }

  #member(request: MemberRequest): Promise<ResponseOf<"member">> {
    const action = request?.action;
    if (typeof action !== "string" || !Object.hasOwn(this.#members, action)) {
      throw new ApiError(Status.error, `Unknown member action '${action}'`);
    }
    const handler = this.#members[action] as (r: MemberRequest) => Promise<ResponseOf<"member">>;
    return handler(request);
  }

  #list(): ShipJson[] {
    const { driver, shipRuntime } = this.#cfg;
    const machine = driver.machine;
    return machine.ships.list().map((info) => ({
      ...shipJson(info, machine.layout(info.ship)),
      defaultOptimism: machine.defaultOptimism,
      master: driver.raft.leaderId,
      run: machine.runs(info.ship),
      runtime: shipRuntime?.(info.ship),
      images: machine.images.list(info.ship),
    }));
  }

  /**
   * Plans a chop on the leader and, with `confirm`, checks the image it
   * starts the log after (its SHA-256 over its chunks, time-sliced) and
   * proposes it; answers once applied. A request whose `firstEve` (the plan
   * the user agreed to) differs from the plan now is refused.
   */
  async #chop(request: ShipActions["chop"]["request"]): Promise<ChopPlan> {
    const { driver, shipName } = this.#cfg;
    const ship = shipOf(request.ship, "chop");
    driver.requireLeader();
    const machine = driver.machine;
    if (machine.layout(ship) === "log1") {
      throw new ApiError(
        Status.error,
        `${
          shipName(ship)
        } has a log-1 pier: vere before 3.0 keeps one log from event 1, so it cannot be chopped; start it once with vere 3.x, import that pier, then chop`,
      );
    }
    const plan = await planChop(
      machine.ships,
      machine.images,
      ship,
      Number(request.keepEpochs ?? 1),
      shipName,
    );
    if (typeof plan === "string") throw new ApiError(Status.error, plan);
    if (request.confirm !== true) return plan;
    if (request.firstEve !== undefined && request.firstEve !== plan.firstEve) {
      throw new ApiError(
        Status.error,
        `${
          shipName(ship)
        }'s log changed since the chop was planned: it would now start at event ${plan.firstEve}, not ${request.firstEve}; nothing was dropped, run the chop again`,
      );
    }
    const problem = await checkImage(machine.images, ship, plan.epoch, shipName);
    if (problem !== undefined) throw new ApiError(Status.error, problem);
    await driver.proposeCommand(encodeCommand({ kind: "chop", ship, firstEve: plan.firstEve }));
    this.#cfg.log(
      `chopped ${
        shipName(ship)
      }: dropped events ${plan.fromEve}-${plan.toEve}; its log starts at event ${plan.firstEve}, after epoch ${plan.epoch}'s image`,
    );
    return { ...plan, chopped: true };
  }

  /** An events, imageChunk or imageDone command, proposed; answers once applied. */
  async #write(payload: Uint8Array): Promise<ResponseOf<"events">> {
    const { driver } = this.#cfg;
    const command = decodeCommand(payload);
    if (
      command.kind !== "events" && command.kind !== "imageChunk" && command.kind !== "imageDone"
    ) {
      throw new ApiError(
        Status.error,
        "An events request must carry an events, imageChunk or imageDone command",
      );
    }
    // Runtime plans and admin writes of one ship never interleave (ShipMaster M2).
    const release = command.kind === "events" ? driver.ships.claim(command.ship) : () => {};
    if (typeof release === "string") throw new ApiError(Status.error, release);
    try {
      const applied = await driver.proposeCommand(payload);
      return { appended: applied.appended, skipped: applied.skipped };
    } finally {
      release();
    }
  }

  /**
   * Entries from `from` that this node has committed and applied (at most
   * `count`, at most {@linkcode READ_BYTES_MAX} of data): what a reader sees
   * here is also in this node's state (its ship tables and standby piers).
   * With `waitMs`, waits that long for entry `from`. An entry compacted away
   * is refused, naming where the log starts (an empty answer would read as
   * "nothing yet").
   */
  async #read(from: number, count: number, waitMs: number): Promise<LogEntryView[]> {
    const { raft } = this.#cfg.driver;
    const held = () => {
      if (from < raft.firstIndex) {
        throw new ApiError(
          Status.error,
          `Entries before ${raft.firstIndex} are compacted on this node (their effects are in its state: ships, events, images); read from ${raft.firstIndex}`,
        );
      }
    };
    held();
    if (waitMs > 0 && raft.appliedIndex < from) {
      await this.#cfg.waitFor(() => raft.appliedIndex >= from, waitMs);
      // Meanwhile the log may have been compacted past `from`, or replaced by a snapshot.
      held();
    }
    const out: LogEntryView[] = [];
    const last = Math.min(raft.appliedIndex, from + Math.min(count, READ_ENTRIES_MAX) - 1);
    let bytes = 0;
    for (let i = from; i <= last && bytes < READ_BYTES_MAX; i++) {
      const e = raft.entryAt(i);
      out.push({ index: e.index, term: e.term, type: entryTypeCode(e.type), data: e.data });
      bytes += e.data.length;
    }
    return out;
  }

  /**
   * Checks one ship's log on this node: events numbered first..last with no gap
   * (first is 1 until a chop starts the log later),
   * each job sound by the injected check; and a SHA-256 over (eve, mug, job)
   * of every event, to compare across nodes. Yields between chunks so the
   * node keeps serving.
   */
  async #verify(ship: bigint): Promise<ShipVerify> {
    const { driver, checkJob } = this.#cfg;
    const ships = driver.machine.ships;
    const info = ships.get(ship);
    if (info === undefined) {
      throw new ApiError(Status.error, `${this.#cfg.shipName(ship)} is not on this cluster`);
    }
    const hash = createHash("sha256");
    const problems: { eve: number; problem: string }[] = [];
    const report = (eve: number, problem: string) => {
      if (problems.length < VERIFY_PROBLEMS_MAX) problems.push({ eve, problem });
    };
    let expected = info.firstEve;
    let bytes = 0;
    while (expected <= info.lastEve) {
      const chunk = ships.events(ship, expected, VERIFY_CHUNK_EVENTS);
      if (chunk.length === 0) break;
      for (const e of chunk) {
        if (e.eve !== expected) report(expected, `missing (next stored is ${e.eve})`);
        expected = e.eve + 1;
        const head = new DataView(new ArrayBuffer(12));
        head.setUint32(0, Math.floor(e.eve / 0x1_0000_0000));
        head.setUint32(4, e.eve >>> 0);
        head.setUint32(8, e.mug);
        hash.update(new Uint8Array(head.buffer)).update(e.job);
        bytes += e.job.length;
        const problem = checkJob?.(e.job);
        if (problem !== undefined) report(e.eve, problem);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (ships.get(ship)?.firstEve !== info.firstEve) {
      throw new ApiError(
        Status.error,
        `${
          this.#cfg.shipName(ship)
        }'s log was chopped on node ${driver.id} while it was checked; run the verify again`,
      );
    }
    if (expected !== info.lastEve + 1) {
      report(expected, `events end at ${expected - 1}, not ${info.lastEve}`);
    }
    return {
      nodeId: driver.id,
      ship: String(ship),
      firstEve: info.firstEve,
      lastEve: info.lastEve,
      bytes,
      digest: hash.digest("hex"),
      problems,
    };
  }
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
      // Started in arrival order: writes on one connection are proposed in the order sent.
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

/** The action of a ship or member request, for the role check (undefined when unreadable). */
function actionOf(op: OpName, payload: Uint8Array): string | undefined {
  if (op !== "ship" && op !== "member") return undefined;
  try {
    const action = (ADMIN_CODECS[op].decodeRequest(payload) as { action?: unknown }).action;
    return typeof action === "string" ? action : undefined;
  } catch {
    return undefined;
  }
}
