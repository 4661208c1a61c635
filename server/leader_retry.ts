/**
 * Running a resumable client job through the cluster's leader until it is
 * done: when the leader changes, the connection breaks or a node stops
 * answering, the job is run again on a new connection (to the leader a node
 * names, or to another member), after an exponential backoff. The job must be
 * resumable: each run re-reads where the cluster is and continues from there.
 * Bounded: once failures have gone on for `stallMs` with no progress, it gives
 * up. Used by `seguro ship import` (server/pier_import.ts).
 *
 * @example
 * ```ts ignore
 * const done = await retryThroughLeader("127.0.0.1:7400", async (client, progressed) => {
 *   // re-read where the cluster is, write the rest, calling progressed() after each write
 * }, {
 *   connect: (address, answerTimeoutMs) =>
 *     ClusterClient.connect(address, credentials, { answerTimeoutMs }),
 *   retrying: (r) => console.error(`${retryReason(r)}; retrying in ${r.delayMs} ms`),
 * });
 * ```
 * @module
 */

import { ApiError, notLeader, Status } from "../cluster/admin_protocol.ts";
import { ClientError } from "../cluster/api.ts";

/** How a job is retried; every bound in one place. */
export interface RetryLimits {
  /** Wait before the first retry after progress; it doubles with each failure. */
  backoffFirstMs: number;
  /** Longest wait between two runs. */
  backoffMaxMs: number;
  /** Give up once failures have gone on this long with no progress; 0: never retry. */
  stallMs: number;
  /** A node that takes longer than this to connect or to answer is given up on (and retried). */
  answerTimeoutMs: number;
}

/** The default limits: 100 ms doubling to 5 s, giving up after 60 s with no progress. */
export const RETRY_LIMITS: Readonly<RetryLimits> = {
  backoffFirstMs: 100,
  backoffMaxMs: 5_000,
  stallMs: 60_000,
  answerTimeoutMs: 30_000,
};

/** Hops from member to member a connection follows to find the leader. */
const REDIRECTS_MAX = 3;

/** Why a run failed in a way that another run may not. */
export type RetryCause =
  /** Leadership changed before a write committed (it may or may not have been applied). */
  | "leaderChanged"
  /** The node is not the leader; it named the one that is. */
  | "leaderMoved"
  /** No leader is known: an election is running. */
  | "noLeader"
  /** The leader's uncommitted entries are at their limit. */
  | "busy"
  /** The node could not be reached. */
  | "unreachable"
  /** The connection broke or closed. */
  | "lost"
  /** The node did not answer in time. */
  | "timeout";

/**
 * Refusals of a write that say nothing about the write itself, by the start
 * of their message: where leadership moves in cluster/driver.ts and
 * core/raft.ts, and the leader's bound on uncommitted bytes. (The protocol
 * has no status for them yet, so their words are matched.)
 */
const PASSING_REFUSALS: readonly { start: string; cause: RetryCause }[] = [
  { start: "Leadership changed before the write committed", cause: "leaderChanged" },
  { start: "The write was replaced", cause: "leaderChanged" },
  { start: "Leadership is being transferred to node", cause: "leaderChanged" },
  { start: "This node is not the leader", cause: "leaderChanged" },
  { start: "Uncommitted entries already hold", cause: "busy" },
];

/** Why `e` may pass on another run, or undefined when it will not (a refusal, a bug). */
export function retryCause(e: unknown): RetryCause | undefined {
  if (e instanceof ClientError) return e.failure === "refused" ? undefined : e.failure;
  if (!(e instanceof ApiError)) return undefined;
  if (e.status === Status.notLeader) return e.leaderAddress ? "leaderMoved" : "noLeader";
  if (e.status !== Status.error) return undefined;
  return PASSING_REFUSALS.find((r) => e.message.startsWith(r.start))?.cause;
}

/** A failed run, and the next one about to start. */
export interface Retry {
  /** Why the run failed. */
  cause: RetryCause;
  /** The node the failed run talked to (or tried to reach). */
  address: string;
  /** The node the next run starts at. */
  next: string;
  /** How long until the next run. */
  delayMs: number;
  /** The failure as the node or the client said it. */
  message: string;
}

/** The failure of a retry, in a few words: "leader changed", "lost the connection to HOST:PORT". */
export function retryReason(retry: Pick<Retry, "cause" | "address" | "next">): string {
  switch (retry.cause) {
    case "leaderChanged":
      return "leader changed";
    case "leaderMoved":
      return `leader moved to ${retry.next}`;
    case "noLeader":
      return "no leader: an election is running";
    case "busy":
      return "the leader is busy";
    case "unreachable":
      return `cannot reach ${retry.address}`;
    case "lost":
      return `lost the connection to ${retry.address}`;
    case "timeout":
      return `${retry.address} did not answer`;
  }
}

/** The job made no progress for `limits.stallMs` while it kept failing; `last` says how. */
export class StalledError extends Error {
  /** The last failure. */
  readonly last: Retry;
  /** How long the failures went on without progress. */
  readonly stalledMs: number;
  /** Makes the error; the message names the last failure. */
  constructor(last: Retry, stalledMs: number) {
    super(`No progress for ${(stalledMs / 1000).toFixed(0)} s; the last failure: ${last.message}`);
    this.name = "StalledError";
    this.last = last;
    this.stalledMs = stalledMs;
  }
}

/** Time, as the runner sees it: a seam, so tests run without sleeping. */
export interface RetryClock {
  /** Milliseconds from any fixed origin. */
  now(): number;
  /** Resolves after `ms`. */
  sleep(ms: number): Promise<void>;
}

/** The real clock. */
export const SYSTEM_CLOCK: RetryClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** What the runner needs of a connection to a member (ClusterClient has it). */
export interface RetryClient {
  /** The member's address. */
  readonly address: string;
  /** The member's role, the leader it knows and every member's address. */
  status(): Promise<{
    role: string;
    leaderAddress: string | null;
    members: readonly { address: string | null }[];
  }>;
  /** Closes the connection. */
  close(): void;
}

/** Options of {@linkcode retryThroughLeader}. */
export interface RetryOptions<C extends RetryClient> {
  /** Connects to the member at `address`, giving up on it after `answerTimeoutMs`. */
  connect: (address: string, answerTimeoutMs: number) => Promise<C>;
  /** Limits other than {@linkcode RETRY_LIMITS}. */
  limits?: Partial<RetryLimits>;
  /** Time; {@linkcode SYSTEM_CLOCK} by default. */
  clock?: RetryClock;
  /** Told of each failed run before the wait for the next. */
  retrying?: (retry: Retry) => void;
}

/** The members a runner knows, in the order it learned them, for trying one after another. */
class Members {
  readonly #addresses: string[];

  constructor(first: string) {
    this.#addresses = [first];
  }

  learn(addresses: readonly (string | null)[]): void {
    for (const a of addresses) {
      if (a !== null && !this.#addresses.includes(a)) this.#addresses.push(a);
    }
  }

  /** The member after `address` (the first when `address` is unknown). */
  after(address: string): string {
    const i = this.#addresses.indexOf(address);
    return this.#addresses[(i + 1) % this.#addresses.length];
  }
}

/**
 * Runs `attempt` with a connection to the leader (found from `address`, the
 * members it names and the leader they name) until it returns, and returns
 * what it returns. A run that fails in a passing way ({@linkcode retryCause})
 * is run again after a wait of `backoffFirstMs`, doubling per failure up to
 * `backoffMaxMs`; each call of `progressed` resets the wait. Its failure is
 * thrown unchanged when it is not passing, when no node has answered yet (a
 * wrong address or token fails at once), or when `stallMs` is 0. Once
 * failures have gone on for `stallMs` with no progress, it throws a
 * StalledError.
 */
export async function retryThroughLeader<T, C extends RetryClient>(
  address: string,
  attempt: (client: C, progressed: () => void) => Promise<T>,
  options: RetryOptions<C>,
): Promise<T> {
  const limits = { ...RETRY_LIMITS, ...options.limits };
  if (!(limits.backoffFirstMs > 0 && limits.backoffMaxMs >= limits.backoffFirstMs)) {
    throw new RangeError(
      `backoff ${limits.backoffFirstMs} to ${limits.backoffMaxMs} ms is not a positive, rising range`,
    );
  }
  if (!(limits.stallMs >= 0 && limits.answerTimeoutMs > 0)) {
    throw new RangeError(
      `stallMs must be at least 0 and answerTimeoutMs above 0 (got ${limits.stallMs} and ${limits.answerTimeoutMs})`,
    );
  }
  const clock = options.clock ?? SYSTEM_CLOCK;
  // A node that stays silent longer than the job may stall would never be retried.
  const answerTimeoutMs = limits.stallMs === 0
    ? limits.answerTimeoutMs
    : Math.min(limits.answerTimeoutMs, limits.stallMs);
  const members = new Members(address);
  let reached = false;
  let current = address;
  let next = address;
  let failures = 0;
  let stalledSince: number | undefined;
  const progressed = () => {
    failures = 0;
    stalledSince = undefined;
  };

  /** A connection to the member that says it leads, starting at `start`. */
  const connectLeader = async (start: string): Promise<C> => {
    current = start;
    for (let hop = 0;; hop++) {
      const client = await options.connect(current, answerTimeoutMs);
      try {
        const status = await client.status();
        reached = true;
        members.learn(status.members.map((m) => m.address));
        if (status.role === "leader") return client;
        const leader = status.leaderAddress;
        if (leader === null || leader === current || hop === REDIRECTS_MAX) {
          throw notLeader(0, undefined); // an election is running, or was when it answered
        }
        client.close();
        current = leader;
      } catch (e) {
        client.close();
        throw e;
      }
    }
  };

  while (true) {
    let client: C | undefined;
    try {
      client = await connectLeader(next);
      return await attempt(client, progressed);
    } catch (e) {
      // Closed before the wait: requests still in flight fail now, not after it.
      client?.close();
      const cause = retryCause(e);
      if (cause === undefined || !reached || limits.stallMs === 0) throw e;
      const now = clock.now();
      stalledSince ??= now;
      const stalledMs = now - stalledSince;
      failures++;
      const backoffMs = limits.backoffFirstMs * 2 ** Math.min(failures - 1, 30);
      const hint = e instanceof ApiError ? e.leaderAddress : null;
      // A node that just lost leadership learns the new leader first: ask it again. A node
      // that is gone, or knows no leader, is passed over for the next member.
      next = hint !== null
        ? hint
        : cause === "leaderChanged" || cause === "busy"
        ? current
        : members.after(current);
      const retry: Retry = {
        cause,
        address: current,
        next,
        delayMs: Math.max(0, Math.min(backoffMs, limits.backoffMaxMs, limits.stallMs - stalledMs)),
        message: (e as Error).message,
      };
      if (stalledMs >= limits.stallMs) throw new StalledError(retry, stalledMs);
      options.retrying?.(retry);
      await clock.sleep(retry.delayMs);
    } finally {
      client?.close();
    }
  }
}
