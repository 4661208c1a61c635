import assert from "node:assert/strict";
import { ApiError, notLeader, Status } from "../cluster/admin_protocol.ts";
import { ClientError } from "../cluster/api.ts";
import {
  type Retry,
  type RetryCause,
  retryCause,
  type RetryClient,
  type RetryClock,
  retryReason,
  retryThroughLeader,
  StalledError,
} from "./leader_retry.ts";

/** Time that passes only when the runner sleeps; `onSleep` changes the world meanwhile. */
class FakeClock implements RetryClock {
  ms = 0;
  readonly slept: number[] = [];
  onSleep: (n: number) => void = () => {};

  now(): number {
    return this.ms;
  }

  sleep(ms: number): Promise<void> {
    this.slept.push(ms);
    this.ms += ms;
    this.onSleep(this.slept.length);
    return Promise.resolve();
  }
}

/** Three members a:1, b:1, c:1; `leader` leads (null: an election), `up` are running. */
class FakeCluster {
  readonly all = ["a:1", "b:1", "c:1"];
  readonly up = new Set(this.all);
  leader: string | null = "a:1";
  readonly connects: string[] = [];
  readonly answerTimeouts = new Set<number>();
  readonly clients: FakeClient[] = [];

  connect = (address: string, answerTimeoutMs: number): Promise<FakeClient> => {
    this.answerTimeouts.add(answerTimeoutMs);
    this.connects.push(address);
    if (!this.up.has(address)) {
      return Promise.reject(
        new ClientError(`Cannot reach ${address} (connection refused); check it`, "unreachable"),
      );
    }
    const client = new FakeClient(this, address);
    this.clients.push(client);
    return Promise.resolve(client);
  };
}

class FakeClient implements RetryClient {
  readonly address: string;
  readonly #cluster: FakeCluster;
  closed = false;

  constructor(cluster: FakeCluster, address: string) {
    this.#cluster = cluster;
    this.address = address;
  }

  status() {
    const { leader, all } = this.#cluster;
    return Promise.resolve({
      role: leader === this.address ? "leader" : "follower",
      leaderAddress: leader,
      members: all.map((address) => ({ address })),
    });
  }

  close(): void {
    this.closed = true;
  }
}

/** Runs `runs` one per attempt (the last must not throw), recording the retries. */
async function runAll(
  cluster: FakeCluster,
  clock: FakeClock,
  runs: ((client: FakeClient, progressed: () => void) => string)[],
  start = "a:1",
): Promise<{ result: string; retries: Retry[]; ranOn: string[] }> {
  const retries: Retry[] = [];
  const ranOn: string[] = [];
  const result = await retryThroughLeader(start, (client: FakeClient, progressed) => {
    ranOn.push(client.address);
    const run = runs[ranOn.length - 1];
    assert.ok(run !== undefined, `attempt ${ranOn.length} was not expected`);
    return Promise.resolve(run(client, progressed));
  }, { connect: cluster.connect, clock, retrying: (r) => retries.push(r) });
  assert.ok(cluster.clients.every((c) => c.closed), "every connection is closed");
  return { result, retries, ranOn };
}

function fail(e: Error): () => never {
  return () => {
    throw e;
  };
}

const LEADER_CHANGED = new ApiError(
  Status.error,
  "Leadership changed before the write committed; it may or may not be applied, retry it",
);

Deno.test("retry: each passing failure is retried after 100 ms, doubling up to 5 s", async () => {
  const cluster = new FakeCluster();
  const clock = new FakeClock();
  const failures: [Error, RetryCause][] = [
    [LEADER_CHANGED, "leaderChanged"],
    [
      new ApiError(
        Status.error,
        "The write was replaced after a leader change and did not commit; retry it",
      ),
      "leaderChanged",
    ],
    [notLeader(0, undefined), "noLeader"],
    [
      new ApiError(Status.error, "Uncommitted entries already hold 9 bytes; retry after commits"),
      "busy",
    ],
    [new ClientError("a:1 closed the connection", "lost"), "lost"],
    [new ClientError("Connection to a:1 failed: Connection reset by peer", "lost"), "lost"],
    [new ClientError("a:1 did not answer within 30 s", "timeout"), "timeout"],
    [new ApiError(Status.error, "Leadership is being transferred to node 2"), "leaderChanged"],
    [new ApiError(Status.error, "This node is not the leader"), "leaderChanged"],
  ];
  const { result, retries, ranOn } = await runAll(cluster, clock, [
    ...failures.map(([e]) => fail(e)),
    () => "done",
  ]);
  assert.equal(result, "done");
  assert.deepEqual(retries.map((r) => r.cause), failures.map(([, cause]) => cause));
  assert.deepEqual(clock.slept, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
  assert.deepEqual(retries.map((r) => r.delayMs), clock.slept);
  assert.deepEqual(retries.map((r) => r.message), failures.map(([e]) => e.message));
  // After a lost connection or with no leader, the next member is asked; it names the
  // leader, a:1, which runs every attempt.
  const a = "a:1";
  const b = "b:1";
  assert.ok(ranOn.every((node) => node === a), ranOn.join());
  assert.deepEqual(retries.map((r) => r.next), [a, a, b, a, b, b, b, a, a]);
  assert.deepEqual(cluster.connects, [a, a, a, b, a, a, b, a, b, a, b, a, a, a]);
  assert.deepEqual([...cluster.answerTimeouts], [30_000]);
});

Deno.test("retry: progress resets the backoff and the stall clock", async () => {
  const cluster = new FakeCluster();
  const clock = new FakeClock();
  const lost = new ClientError("a:1 closed the connection", "lost");
  const { result } = await runAll(cluster, clock, [
    fail(lost),
    fail(lost),
    fail(lost),
    (_, progressed) => {
      progressed();
      throw LEADER_CHANGED;
    },
    fail(lost),
    () => "done",
  ]);
  assert.equal(result, "done");
  assert.deepEqual(clock.slept, [100, 200, 400, 100, 200]);

  // 50 s of failures, progress, then 60 s more before it gives up.
  const clock2 = new FakeClock();
  let progressedAt: number | undefined;
  const e = await retryThroughLeader("a:1", (_client, progressed) => {
    if (progressedAt === undefined && clock2.ms >= 50_000) {
      progressedAt = clock2.ms;
      progressed();
    }
    return Promise.reject(lost);
  }, { connect: new FakeCluster().connect, clock: clock2 }).catch((e) => e);
  assert.ok(e instanceof StalledError);
  assert.equal(clock2.ms, progressedAt! + 60_000);
});

Deno.test("retry: gives up once failures went on for stallMs with no progress", async () => {
  const cluster = new FakeCluster();
  const clock = new FakeClock();
  const retries: Retry[] = [];
  const lost = new ClientError("a:1 closed the connection", "lost");
  const e = await retryThroughLeader("a:1", () => Promise.reject(lost), {
    connect: cluster.connect,
    clock,
    retrying: (r) => retries.push(r),
  }).catch((e) => e);
  assert.ok(e instanceof StalledError);
  assert.equal(e.stalledMs, 60_000);
  assert.equal(e.last.cause, "lost");
  assert.equal(e.message, "No progress for 60 s; the last failure: a:1 closed the connection");
  // 100 ms doubling to 5 s, the last wait cut to end at 60 s exactly.
  assert.deepEqual(clock.slept, [100, 200, 400, 800, 1600, 3200, ...Array(10).fill(5000), 3700]);
  assert.equal(retries.length, clock.slept.length);
  assert.equal(clock.ms, 60_000);

  // Shorter limits are the caller's.
  const quick = new FakeClock();
  const quickCluster = new FakeCluster();
  const e2 = await retryThroughLeader("a:1", () => Promise.reject(lost), {
    connect: quickCluster.connect,
    clock: quick,
    limits: { stallMs: 1000, backoffFirstMs: 10, backoffMaxMs: 200 },
  }).catch((e) => e);
  assert.ok(e2 instanceof StalledError);
  assert.deepEqual(quick.slept, [10, 20, 40, 80, 160, 200, 200, 200, 90]);
  // A node silent for longer than the job may stall is given up on sooner.
  assert.deepEqual([...quickCluster.answerTimeouts], [1000]);
});

Deno.test("retry: refusals, and any failure before a node answered, fail at once", async () => {
  const refusals = [
    new ApiError(Status.error, "~zod already has a different event 5; re-sync from event 5"),
    new ApiError(Status.error, "~zod is not on this cluster; add it with 'seguro ship add'"),
    new ClientError("a:1 belongs to cluster 00000000..., not the token's cluster", "refused"),
    new ClientError("a:1 closed the connection: More than 1024 requests in flight"),
    new Error("/tmp/zod: no .urb/log here, so not a vere pier; give the directory of one"),
  ];
  for (const refusal of refusals) {
    const clock = new FakeClock();
    await assert.rejects(
      retryThroughLeader("a:1", () => Promise.reject(refusal), {
        connect: new FakeCluster().connect,
        clock,
      }),
      (e) => e === refusal,
    );
    assert.deepEqual(clock.slept, [], refusal.message);
  }
  // A wrong address fails at once, as it did before imports retried.
  const cluster = new FakeCluster();
  const clock = new FakeClock();
  await assert.rejects(
    retryThroughLeader("d:1", () => Promise.resolve("done"), { connect: cluster.connect, clock }),
    (e) => e instanceof ClientError && e.failure === "unreachable",
  );
  assert.deepEqual(clock.slept, []);
  // stallMs 0: the first failure of any kind is the import's.
  await assert.rejects(
    retryThroughLeader("a:1", () => Promise.reject(LEADER_CHANGED), {
      connect: cluster.connect,
      clock,
      limits: { stallMs: 0 },
    }),
    (e) => e === LEADER_CHANGED,
  );
  assert.deepEqual(clock.slept, []);
});

Deno.test("retry: finds the leader through status and not-leader hints, and the other members", async () => {
  const cluster = new FakeCluster();
  const clock = new FakeClock();
  // During the second wait, c:1 wins the election that a:1's death started.
  clock.onSleep = (n) => {
    if (n === 2) cluster.leader = "c:1";
  };
  const { result, retries, ranOn } = await runAll(cluster, clock, [
    (_, progressed) => {
      progressed();
      cluster.up.delete("a:1"); // kill -9 of the leader
      cluster.leader = null;
      throw new ClientError("a:1 closed the connection", "lost");
    },
    () => {
      cluster.leader = "b:1"; // a transfer
      throw notLeader(2, "b:1");
    },
    () => "done",
  ], "b:1");
  assert.equal(result, "done");
  assert.deepEqual(ranOn, ["a:1", "c:1", "b:1"]);
  // b:1 names a:1; after a:1 dies, c:1 (no leader yet), b:1 (names c:1), c:1, then b:1 named.
  assert.deepEqual(cluster.connects, ["b:1", "a:1", "c:1", "b:1", "c:1", "b:1"]);
  assert.deepEqual(
    retries.map((r) => [r.cause, r.address, r.next, r.delayMs, retryReason(r)]),
    [
      ["lost", "a:1", "c:1", 100, "lost the connection to a:1"],
      ["noLeader", "c:1", "b:1", 200, "no leader: an election is running"],
      ["leaderMoved", "c:1", "b:1", 400, "leader moved to b:1"],
    ],
  );
});

Deno.test("retryCause: the node's words for a moving leader are those the cluster says", () => {
  // Matched by their start (the protocol has no status for them): a change of wording in
  // the driver or the Raft core must show up here, not as an import that stops retrying.
  const sources = ["../cluster/driver.ts", "../core/raft.ts"]
    .map((f) => Deno.readTextFileSync(new URL(f, import.meta.url))).join("\n");
  const passing: [string, RetryCause][] = [
    ["Leadership changed before the write committed", "leaderChanged"],
    ["The write was replaced", "leaderChanged"],
    ["Leadership is being transferred to node", "leaderChanged"],
    ["This node is not the leader", "leaderChanged"],
    ["Uncommitted entries already hold", "busy"],
  ];
  for (const [start, cause] of passing) {
    assert.ok(sources.includes(start), `'${start}' is no longer said by the cluster`);
    assert.equal(retryCause(new ApiError(Status.error, `${start} ...`)), cause);
  }
  assert.equal(retryCause(notLeader(2, "b:1")), "leaderMoved");
  assert.equal(retryCause(notLeader(0, undefined)), "noLeader");
  assert.equal(retryCause(new ApiError(Status.error, "Internal error: disk full")), undefined);
  assert.equal(retryCause(new ClientError("x", "unreachable")), "unreachable");
  assert.equal(retryCause(new ClientError("x")), undefined);
  assert.equal(retryCause(new Error("x")), undefined);
});
