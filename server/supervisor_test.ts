/**
 * The exec supervisor with a fake node (mastership, run flags and proposals
 * set by the test), real standby piers, and real child processes in place of
 * the runtime (`sleep`, `true`). Every wait is on an event: a launch, a log
 * line the supervisor writes, or an event reaching the fake node's log.
 */

import assert from "node:assert/strict";
import { runtimeWrites } from "../tests/pier/runtime_writes.ts";

import { join } from "node:path";

import { encodeCommand, Machine, type PlannedEvent } from "../cluster/machine.ts";

import { Store } from "../cluster/store.ts";

import { readEvents } from "../vere/pier.ts";

import { haveLiblmdb } from "../tests/pier/oracle.ts";

import { Alarms } from "./alarms.ts";

import { StandbyPiers } from "./standby.ts";

import { FENCE_MARGIN_MS, type Mastership, type SupervisedNode, Supervisor } from "./supervisor.ts";

const ZOD = 0n;
const LMDB = !haveLiblmdb();

/** A node whose mastership and run flags the test sets; proposals apply to a real machine. */
class FakeNode implements SupervisedNode {
  readonly id = 1;
  #master = false;
  #term = 1;
  readonly runs = new Set<bigint>();
  /** When set, proposals are refused with this reason. */
  refusal: string | undefined;
  /** How long a proposal takes to apply (a cluster's round trips); 0: at once. */
  proposeMs = 0;
  /** Called on each proposal (a writer the test runs alongside). */
  onPropose: (() => void) | undefined;
  readonly #listeners = new Set<() => void>();
  readonly #apply: (data: Uint8Array) => string | undefined;

  constructor(apply: (data: Uint8Array) => string | undefined) {
    this.#apply = apply;
  }

  mastership(): Mastership {
    return { master: this.#master, term: this.#term };
  }

  runShips(): bigint[] {
    return [...this.runs];
  }

  proposeEvents(ship: bigint, firstEve: number, events: PlannedEvent[]): Promise<unknown> {
    if (!this.#master) return Promise.reject(new Error("This node is not the leader"));
    if (this.refusal !== undefined) return Promise.reject(new Error(this.refusal));
    const refused = this.#apply(encodeCommand({ kind: "events", ship, firstEve, events }));
    this.onPropose?.();
    const outcome = refused === undefined ? Promise.resolve() : Promise.reject(new Error(refused));
    if (this.proposeMs === 0) return outcome;
    return new Promise((resolve) => setTimeout(resolve, this.proposeMs)).then(() => outcome);
  }

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Changes the mastership and tells the listeners, as ShipMaster's role event does. */
  setMastership(master: boolean, term: number): void {
    const flipped = master !== this.#master;
    this.#master = master;
    this.#term = term;
    if (flipped) { for (const l of this.#listeners) l(); }
  }
}

/** Lines, and promises of the first line (from now on) that matches. */
class Lines {
  readonly all: string[] = [];
  #waiting: { re: RegExp; from: number; resolve: (line: string) => void }[] = [];

  push = (line: string): void => {
    this.all.push(line);
    for (const w of [...this.#waiting]) {
      if (w.re.test(line)) {
        this.#waiting.splice(this.#waiting.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };

  /** The first line from index `from` (default: the next one logged) matching `re`. */
  next(re: RegExp, from = this.all.length): Promise<string> {
    const seen = this.all.slice(from).find((l) => re.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiting.push({ re, from, resolve }));
  }

  index(re: RegExp): number {
    return this.all.findIndex((l) => re.test(l));
  }
}

/**
 * A store with ~zod and `events` events applied, its standby piers, a fake node
 * and a supervisor whose runtime is `runtime` (a command line) instead of the guard.
 */
async function setup(runtime: string[], events = 3, drainMs?: number) {
  const dir = await Deno.makeTempDir({ prefix: "seguro-supervisor-" });
  const store = Store.create(join(dir, "node"), {
    identity: { clusterId: "ab".repeat(16), nodeId: 1, groupId: 1 },
    secret: new Uint8Array(32).fill(7),
    conf: { voters: [1], learners: [] },
  });
  const machine = new Machine(store);
  let index = 0;
  const apply = (data: Uint8Array): string | undefined => {
    index++;
    store.persist({
      entries: [{ index, term: 1, type: "normal", data }],
      hardState: { term: 1, vote: 1, commit: index },
    });
    let refused: string | undefined;
    store.applyTransaction(index, () => {
      const result = machine.apply(data, index, 1);
      if (!result.ok) refused = result.reason;
    });
    return refused;
  };
  assert.equal(
    apply(encodeCommand({ kind: "shipAdd", ship: ZOD, fake: true, optimism: -1, life: 0 })),
    undefined,
  );
  const tags = Array.from({ length: events }, (_, i) => i + 1);
  assert.equal(
    apply(encodeCommand({
      kind: "events",
      ship: ZOD,
      firstEve: 1,
      events: tags.map((t) => ({ mug: t, job: Uint8Array.of(t, t, t) })),
    })),
    undefined,
  );
  const lines = new Lines();
  const alarms = new Alarms(lines.push);
  const standby = new StandbyPiers(join(dir, "standby"), machine, lines.push, alarms);
  const node = new FakeNode(apply);
  /** Each launch: the argv the supervisor asked for, and what the test saw then. */
  const launches: { argv: string[]; master: Mastership; pierEvents: number }[] = [];
  const supervisor = new Supervisor({
    node,
    standby,
    exec: ["urbit", "-t", "{pier}"],
    graceMs: 200,
    electionMs: 1,
    log: lines.push,
    alarms,
    drainMs,
    launch: (argv) => {
      const pier = argv[2];
      launches.push({
        argv,
        master: node.mastership(),
        pierEvents: [...readEvents(pier)].length,
      });
      lines.push(`test: launch ${launches.length}`);
      return { cmd: runtime[0], args: runtime.slice(1) };
    },
  });
  const lastEve = () => machine.ships.get(ZOD)?.lastEve ?? 0;
  const close = async () => {
    await supervisor.close();
    standby.close();
    store.close();
    await Deno.remove(dir, { recursive: true });
  };
  return { dir, node, standby, supervisor, lines, launches, lastEve, alarms, close };
}

/** Makes the fake node master of ~zod in term 2, starts the supervisor, waits for launch 1. */
async function launched(t: Awaited<ReturnType<typeof setup>>): Promise<void> {
  t.node.runs.add(ZOD);
  t.node.setMastership(true, 2);
  t.supervisor.start();
  await t.lines.next(/^test: launch 1$/);
}

Deno.test({
  name:
    "supervisor: starts on a pier matching the applied state once master and fenced, tails it, fences at once on losing mastership",
  ignore: LMDB,
  async fn() {
    const t = await setup(["sleep", "3600"]);
    try {
      assert.equal(t.supervisor.fenceMs, 2 * 1 + 200 + FENCE_MARGIN_MS);
      t.node.runs.add(ZOD);
      t.supervisor.start();
      t.node.setMastership(true, 2);
      await t.lines.next(/^test: launch 1$/);
      const pier = t.standby.pierOf(ZOD);
      assert.deepEqual(t.launches[0], {
        argv: ["urbit", "-t", pier],
        master: { master: true, term: 2 },
        pierEvents: 3, // hold() wrote the applied events itself: no sync had run
      });
      assert.match(t.lines.all.join("\n"), /~zod: master in term 2; starting its runtime after/);
      assert.equal(t.supervisor.info(ZOD)?.state, "running");
      assert.equal(t.supervisor.info(ZOD)?.committedEve, 3);

      // What the runtime writes reaches the cluster (the tail wakes on the data file).
      runtimeWrites(pier, 4, [40, 50]);
      await t.lines.next(/~zod: tail committed up to event 5$/, 0);
      assert.equal(t.lastEve(), 5);
      assert.equal(t.supervisor.info(ZOD)?.committedEve, 5);
      assert.ok(t.supervisor.info(ZOD)?.tailP99Ms !== undefined);

      // Losing mastership sends SIGTERM before the notice returns.
      const stopped = t.lines.next(/~zod: runtime stopped at event 5$/);
      t.node.setMastership(false, 3);
      assert.equal(t.supervisor.info(ZOD)?.state, "stopping");
      await stopped;
      assert.match(
        t.lines.all.join("\n"),
        /stopping its runtime \(this node is no longer the master\)/,
      );
      await t.supervisor.close();
      assert.equal(t.supervisor.info(ZOD), undefined);
      assert.throws(() => t.standby.readHeld(ZOD, 0, 1), /is not held/, "the pier was released");
      assert.deepEqual(t.launches.length, 1);
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name:
    "supervisor: the run flag turned off stops the runtime, replicating what it wrote, while master",
  ignore: LMDB,
  async fn() {
    const t = await setup(["sleep", "3600"]);
    try {
      t.node.setMastership(true, 2);
      t.supervisor.start();
      assert.equal(t.launches.length, 0);
      t.node.runs.add(ZOD);
      t.supervisor.applied();
      await t.lines.next(/^test: launch 1$/);
      const stopped = t.lines.next(/~zod: runtime stopped at event 6/);
      runtimeWrites(t.standby.pierOf(ZOD), 4, [4, 5, 6]);
      t.node.runs.delete(ZOD);
      t.supervisor.applied();
      await stopped;
      assert.equal(t.lastEve(), 6, "nothing the runtime wrote is lost");
      assert.match(
        t.lines.all.join("\n"),
        /stopping its runtime \('seguro ship run' was turned off, or the ship was removed\)/,
      );
      // Back to a standby: the pier follows the applied state again.
      await t.supervisor.close();
      assert.throws(() => t.standby.readHeld(ZOD, 0, 1), /is not held/);
      assert.equal(t.launches.length, 1);
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name: "supervisor: a refused tail raises an alarm and leaves the runtime running",
  ignore: LMDB,
  async fn() {
    const t = await setup(["sleep", "3600"]);
    try {
      await launched(t);
      t.node.refusal = "Event 4 differs from the one the cluster holds";
      runtimeWrites(t.standby.pierOf(ZOD), 4, [4]);
      await t.lines.next(/~zod: ALARM tail stopped at event 4: Event 4 differs/, 0);
      const info = t.supervisor.info(ZOD);
      assert.equal(info?.state, "running");
      assert.match(info?.alarm ?? "", /^tail stopped at event 4: /);
      assert.equal(info?.committedEve, 3);
      assert.equal(t.lastEve(), 3);
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name:
    "supervisor: a runtime that exits on its own is reported and its pier released; one that cannot start is an alarm",
  ignore: LMDB,
  async fn() {
    const t = await setup(["true"]);
    try {
      t.node.runs.add(ZOD);
      t.node.setMastership(true, 2);
      t.supervisor.start();
      await t.lines.next(/~zod: the runtime exited with code 0; restarting it in 2 s$/, 0);
      const info = t.supervisor.info(ZOD);
      assert.equal(info?.state, "exited");
      assert.match(info?.alarm ?? "", /^the runtime exited with code 0/);
    } finally {
      await t.close();
    }

    const u = await setup(["/nonexistent/seguro-test-runtime"]);
    try {
      u.node.runs.add(ZOD);
      u.node.setMastership(true, 2);
      u.supervisor.start();
      await u.lines.next(/~zod: ALARM cannot start the runtime \(retrying in 2 s\)/, 0);
      assert.equal(u.supervisor.info(ZOD)?.state, "exited");
      assert.throws(() => u.standby.readHeld(ZOD, 0, 1), /is not held/, "released at once");
    } finally {
      await u.close();
    }
  },
});

Deno.test({
  name: "supervisor: a new term stops the runtime and fences again before the next one starts",
  ignore: LMDB,
  async fn() {
    const t = await setup(["sleep", "3600"]);
    try {
      await launched(t);
      // Master again at once in a later term: no role event, an applied batch shows it.
      t.node.setMastership(true, 4);
      t.supervisor.applied();
      assert.equal(t.supervisor.info(ZOD)?.state, "stopping", "SIGTERM before applied() returns");
      await t.lines.next(/^test: launch 2$/);
      const all = t.lines.all;
      const stopped = t.lines.index(/~zod: runtime stopped at event 3/);
      const fenced = t.lines.index(/~zod: master in term 4; starting its runtime after \d+ ms/);
      assert.ok(stopped >= 0 && fenced > stopped, all.join("\n"));
      assert.ok(fenced < all.indexOf("test: launch 2"));
      assert.deepEqual(t.launches[1].master, { master: true, term: 4 });
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name: "supervisor: close sends SIGTERM to every runtime before it returns to its caller",
  ignore: LMDB,
  async fn() {
    const t = await setup(["sleep", "3600"]);
    try {
      await launched(t);
      const closing = t.supervisor.close();
      assert.equal(t.supervisor.info(ZOD)?.state, "stopping", "SIGTERM before any await");
      assert.equal(t.supervisor.close(), closing, "a second close waits for the same one");
      await closing;
      assert.equal(t.supervisor.info(ZOD), undefined);
      assert.match(t.lines.all.join("\n"), /~zod: runtime stopped at event 3$/m);
    } finally {
      await t.close();
    }
  },
});

/**
 * Whether process `pid` has ended: gone, or a zombie nobody reaped yet (asked
 * of `ps`: the tests' permissions do not reach another process's /proc).
 */
async function ended(pid: number): Promise<boolean> {
  const out = await new Deno.Command("ps", { args: ["-o", "stat=", "-p", String(pid)] }).output();
  const stat = new TextDecoder().decode(out.stdout).trim();
  return stat === "" || stat.startsWith("Z");
}

Deno.test({
  name:
    "supervisor: a guard that ignores SIGTERM is killed after the grace with its whole process group, so its runtime does not live on",
  ignore: LMDB || Deno.build.os !== "linux",
  async fn() {
    const pidFile = await Deno.makeTempFile({ prefix: "seguro-supervisor-runtime-" });
    // The "guard" ignores SIGTERM, and so does the "runtime" it started (the ignore is inherited).
    const t = await setup(["sh", "-c", `trap '' TERM; sleep 3600 & echo $! > ${pidFile}; wait`]);
    let runtimePid = 0;
    try {
      await launched(t);
      for (let waitedMs = 0; runtimePid === 0; waitedMs += 10) {
        assert.ok(waitedMs < 10_000, "the runtime's pid was never written");
        runtimePid = Number(Deno.readTextFileSync(pidFile).trim() || 0);
        if (runtimePid === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.ok(!await ended(runtimePid));
      const started = performance.now();
      await t.supervisor.close();
      assert.ok(performance.now() - started < t.supervisor.closeMs);
      assert.match(
        t.lines.all.join("\n"),
        /~zod: the guard did not stop in time; killing it and its runtime/,
      );
      assert.ok(await ended(runtimePid), `the runtime ${runtimePid} outlived its killed guard`);
    } finally {
      await t.close();
      await Deno.remove(pidFile);
      if (runtimePid > 0 && !await ended(runtimePid)) Deno.kill(runtimePid, "SIGKILL");
    }
  },
});

Deno.test({
  name:
    "supervisor: the drain of a stopped runtime's pier that keeps growing gives up at its limit, so close ends",
  ignore: LMDB,
  async fn() {
    const t = await setup(["sleep", "3600"], 3, 500);
    try {
      await launched(t);
      // Something other than the runtime writes the pier (say a runtime its guard left
      // behind): one more event with each proposal, so the drain never catches up.
      const pier = t.standby.pierOf(ZOD);
      let next = t.lastEve() + 1;
      t.node.proposeMs = 20;
      t.node.onPropose = () => runtimeWrites(pier, next, [next++ % 250]);
      runtimeWrites(pier, next, [next++ % 250]);
      const started = performance.now();
      await t.supervisor.close();
      assert.ok(performance.now() - started < t.supervisor.closeMs);
      assert.match(
        t.lines.all.join("\n"),
        /~zod: gave up replicating its pier after 500 ms, at event \d+; any later events of it are not replicated/,
      );
      assert.equal(t.supervisor.info(ZOD), undefined);
      assert.throws(() => t.standby.readHeld(ZOD, 0, 1), /is not held/, "the pier was released");
    } finally {
      t.node.onPropose = undefined;
      await t.close();
    }
  },
});
