import type { ShipLayout } from "../cluster/machine.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ApiError,
  notLeader,
  type ShipJson,
  Status,
  type WriteResult,
} from "../cluster/admin_protocol.ts";
import { ClientError, type ShipWriteCommand } from "../cluster/api.ts";
import { sameBytes } from "../cluster/codec.ts";
import { IMAGE_CHUNK_BYTES, sha256 } from "../cluster/images.ts";
import { LOG_VERSION, writePier } from "../vere/pier.ts";
import { haveLiblmdb } from "../tests/pier/oracle.ts";
import { hex } from "../tests/fixtures.ts";
import { NodeError } from "./errors.ts";
import type { ClusterTarget } from "./pier_client.ts";
import {
  IMPORT_BATCH_BYTES,
  type ImportClient,
  importPier,
  type ImportProgress,
} from "./pier_import.ts";

/** A target nothing listens at (port 1 on loopback): a check that passes ends there. */
const UNREACHABLE: ClusterTarget = {
  address: "127.0.0.1:1",
  credentials: { clusterId: "0".repeat(32), secret: new Uint8Array(32) },
};

Deno.test("import: a pier in use is refused unless --live, before its META is read", async () => {
  const pier = await Deno.makeTempDir({ prefix: "seguro-import-test-" });
  try {
    Deno.writeTextFileSync(join(pier, ".vere.lock"), `${Deno.pid}\n`);
    await assert.rejects(
      importPier(UNREACHABLE, 0n, { pier }),
      (e) =>
        e instanceof NodeError &&
        e.message ===
          `${pier} is in use by a running urbit (.vere.lock); stop it first, or pass --live`,
    );
    // --live passes the lock; this directory then fails as no pier, naming it.
    await assert.rejects(
      importPier(UNREACHABLE, 0n, { pier, live: true }),
      (e) =>
        e instanceof NodeError &&
        e.message === `${pier}: no .urb/log here, so not a vere pier; give the directory of one`,
    );
  } finally {
    await Deno.remove(pier, { recursive: true });
  }
});

/** The first member of the fake cluster below. */
const FAKE_TARGET: ClusterTarget = { ...UNREACHABLE, address: "a:1" };

/** A ship's state as the fake cluster holds it: the machine's rules for events and images. */
class FakeShip {
  readonly events: { mug: number; job: Uint8Array }[] = [];
  readonly images = new Map<number, { chunks: Uint8Array[]; size: number; sha256?: string }>();
  layout: ShipLayout | undefined;

  write(command: ShipWriteCommand): WriteResult {
    if (command.kind === "events") {
      let appended = 0;
      let skipped = 0;
      command.events.forEach((e, i) => {
        const eve = command.firstEve + i;
        const held = this.events[eve - 1];
        if (held !== undefined) {
          assert.ok(held.mug === e.mug && sameBytes(held.job, e.job), `event ${eve} differs`);
          skipped++;
          return;
        }
        if (eve !== this.events.length + 1) {
          throw new ApiError(Status.error, `event ${eve} would leave a gap`);
        }
        this.events.push({ mug: e.mug, job: e.job.slice() });
        appended++;
      });
      return { appended, skipped };
    }
    const image = this.images.get(command.epoch) ?? { chunks: [], size: 0 };
    this.images.set(command.epoch, image);
    if (command.kind === "imageChunk") {
      const i = command.offset / IMAGE_CHUNK_BYTES;
      if (command.offset < image.size) assert.ok(sameBytes(image.chunks[i], command.data));
      else if (command.offset !== image.size) throw new ApiError(Status.error, "a gap");
      else {
        image.chunks.push(command.data.slice());
        image.size += command.data.length;
      }
    } else {
      const whole = new Uint8Array(image.size);
      image.chunks.forEach((c, i) => whole.set(c, i * IMAGE_CHUNK_BYTES));
      assert.equal(hex(sha256(whole)), hex(command.sha256));
      image.sha256 = hex(command.sha256);
    }
    return { appended: 0, skipped: 0 };
  }
}

/** What the fake does to write number N: fail with `error`, after applying it when `applied`. */
interface Fault {
  error: Error;
  applied: boolean;
  /** What else happens (a leader dies or moves). */
  then?: () => void;
}

/** Three members a:1, b:1, c:1 holding one ship, with faults injected by write number. */
class FakeCluster {
  readonly all = ["a:1", "b:1", "c:1"];
  readonly up = new Set(this.all);
  leader: string | null = "a:1";
  ship: FakeShip | undefined;
  writes = 0;
  /** The next `list` answers as a new leader that has not applied everything yet. */
  staleList = false;
  readonly faults = new Map<number, Fault>();

  connect = (address: string): Promise<ImportClient> => {
    if (!this.up.has(address)) {
      return Promise.reject(new ClientError(`Cannot reach ${address}`, "unreachable"));
    }
    return Promise.resolve(this.#client(address));
  };

  #client(address: string): ImportClient {
    let dead: Error | undefined;
    const leaderOnly = () => {
      if (dead) throw dead;
      if (this.leader !== address) throw notLeader(this.leader ? 1 : 0, this.leader ?? undefined);
    };
    const json = (ship: FakeShip): ShipJson => ({
      ship: "0",
      fake: true,
      life: 0,
      lastEve: this.staleList ? 0 : ship.events.length,
      lastMug: 0,
      bytes: 0,
      optimism: -1,
      layout: ship.layout,
      images: [...ship.images].map(([epoch, i]) => ({ epoch, size: i.size, sha256: i.sha256 })),
    });
    return {
      address,
      close: () => {
        dead ??= new ClientError(`${address} closed the connection`, "lost");
      },
      status: () =>
        Promise.resolve({
          role: this.leader === address ? "leader" : "follower",
          leaderAddress: this.leader,
          members: this.all.map((a) => ({ address: a })),
        }),
      ships: {
        list: () => {
          const ships = this.ship === undefined ? [] : [json(this.ship)];
          this.staleList = false;
          return Promise.resolve(ships);
        },
        add: (ship, options) => {
          leaderOnly();
          assert.equal(ship, 0n);
          assert.deepEqual(options, { fake: true, life: 0 });
          if (this.ship !== undefined) {
            return Promise.reject(new ApiError(Status.error, "~zod is already on this cluster"));
          }
          this.ship = new FakeShip();
          return Promise.resolve(json(this.ship));
        },
        layout: (ship, layout) => {
          leaderOnly();
          assert.equal(ship, 0n);
          this.ship!.layout = layout;
          return Promise.resolve(json(this.ship!));
        },
        write: (command) => {
          try {
            leaderOnly();
            const fault = this.faults.get(++this.writes);
            if (fault === undefined) return Promise.resolve(this.ship!.write(command));
            if (fault.applied) this.ship!.write(command);
            fault.then?.();
            // A lost or timed-out connection fails every later request on it too.
            if (fault.error instanceof ClientError) dead = fault.error;
            throw fault.error;
          } catch (e) {
            return Promise.reject(e);
          }
        },
      },
    };
  }
}

Deno.test({
  name: "import: goes on by itself after each passing failure; every event once, images whole",
  ignore: !haveLiblmdb(),
  async fn() {
    const root = Deno.makeTempDirSync({ prefix: "seguro-import-retry-" });
    try {
      // 48 events of a sixteenth of a batch (three batches) in two epochs, the second with an image.
      const job = (eve: number) => new Uint8Array(IMPORT_BATCH_BYTES / 16).fill(eve);
      const events = Array.from(
        { length: 48 },
        (_, i) => ({ eve: i + 1, mug: i, job: job(i + 1) }),
      );
      const image = new Uint8Array(2_500_000).map((_, i) => (i * 7) & 0xff); // three chunks
      const meta = { version: LOG_VERSION, who: 0n, fake: true, life: 0 };
      const pier = join(root, "zod");
      writePier(pier, {
        meta,
        vereVersion: "4.0",
        epochs: [{ base: 0, events: events.slice(0, 32) }, {
          base: 32,
          events: events.slice(32),
          image,
        }],
      });

      const cluster = new FakeCluster();
      // Numbered are the writes that reach the leader; the others are refused: not leader.
      const faults: [number, Fault][] = [
        // Batch 1 is applied, its answer lost to a leader change (batch 2, in flight, is
        // refused by the old leader); b:1 leads, and has not applied batch 1 yet.
        [1, {
          error: new ApiError(
            Status.error,
            "Leadership changed before the write committed; it may or may not be applied, retry it",
          ),
          applied: true,
          then: () => {
            cluster.leader = "b:1";
            cluster.staleList = true;
          },
        }],
        // 2: batch 1 again (skipped, as held). 3: batch 2, when b:1 is killed; the election
        // ends after the second wait, with c:1.
        [3, {
          error: new ClientError("b:1 closed the connection", "lost"),
          applied: false,
          then: () => {
            cluster.up.delete("b:1");
            cluster.leader = null;
          },
        }],
        // 4: batch 2 on c:1, applied; then c:1 stops answering.
        [4, { error: new ClientError("c:1 did not answer within 30 s", "timeout"), applied: true }],
        [5, {
          error: new ApiError(
            Status.error,
            "Uncommitted entries already hold 8388608 bytes; retry after commits",
          ),
          applied: false,
        }],
        // 6: batch 3. 7: image chunk 0. 8: chunk 1, in an election; then 1 and 2 again, done.
        [8, { error: notLeader(0, undefined), applied: false }],
      ];
      for (const [n, fault] of faults) cluster.faults.set(n, fault);
      let electionWaits = 0;
      const clock = {
        now: () => 0,
        slept: [] as number[],
        sleep(ms: number) {
          this.slept.push(ms);
          if (cluster.leader === null && ++electionWaits === 2) cluster.leader = "c:1";
          return Promise.resolve();
        },
      };
      const seen: ImportProgress[] = [];
      const result = await importPier(FAKE_TARGET, 0n, {
        pier,
        progress: (p) => seen.push(p),
        connect: cluster.connect,
        clock,
      });

      const ship = cluster.ship!;
      assert.deepEqual(ship.events.map((e) => e.mug), events.map((e) => e.mug));
      assert.ok(ship.events.every((e, i) => sameBytes(e.job, events[i].job)));
      const stored = ship.images.get(32)!;
      assert.equal(stored.sha256, hex(sha256(image)));
      assert.deepEqual(result, {
        events: 48,
        bytes: 3 * IMPORT_BATCH_BYTES,
        seconds: result.seconds,
        lastEve: 48,
        imageBytes: image.length,
      });
      const retries = seen.flatMap((p) =>
        p.kind === "retrying" ? [[p.retry.cause, p.retry.address, p.fromEve, p.images]] : []
      );
      assert.deepEqual(retries, [
        ["leaderChanged", "a:1", 1, false],
        ["lost", "b:1", 17, false],
        ["noLeader", "c:1", 17, false],
        ["timeout", "c:1", 17, false],
        ["busy", "c:1", 33, false],
        ["noLeader", "c:1", 49, true],
      ]);
      // Each confirmed write, or a re-read that found more, resets the backoff.
      assert.deepEqual(clock.slept, [100, 100, 200, 400, 100, 100]);
      assert.equal(seen[0].kind, "added");
      assert.equal(cluster.writes, 11);
    } finally {
      Deno.removeSync(root, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "import: a refusal stops it at once; no progress for --retry-ms is one line saying what to do",
  ignore: !haveLiblmdb(),
  async fn() {
    const root = Deno.makeTempDirSync({ prefix: "seguro-import-retry-" });
    try {
      const pier = join(root, "zod");
      const meta = { version: LOG_VERSION, who: 0n, fake: true, life: 0 };
      const events = [1, 2, 3].map((eve) => ({ eve, mug: eve, job: new Uint8Array([eve]) }));
      writePier(pier, { meta, vereVersion: "4.0", events });
      const clock = { now: () => 0, sleep: () => Promise.resolve() };

      // The cluster holds another event 1: refused, not retried.
      const differs = new FakeCluster();
      const refusal = new ApiError(
        Status.error,
        "~zod already has a different event 1; re-sync from event 1",
      );
      differs.faults.set(1, { error: refusal, applied: false });
      await assert.rejects(
        importPier(FAKE_TARGET, 0n, { pier, connect: differs.connect, clock }),
        (e) => e === refusal,
      );
      assert.equal(differs.writes, 1);

      // An election that never ends: it gives up after 60 s (of the fake clock) with no progress.
      const dead = new FakeCluster();
      let ms = 0;
      dead.faults.set(1, {
        error: new ClientError("a:1 closed the connection", "lost"),
        applied: false,
        then: () => {
          dead.leader = null;
        },
      });
      await assert.rejects(
        importPier(FAKE_TARGET, 0n, {
          pier,
          connect: dead.connect,
          clock: { now: () => ms, sleep: (n) => Promise.resolve(void (ms += n)) },
        }),
        (e) =>
          e instanceof NodeError &&
          e.message ===
            "the import of ~zod made no progress for 60 s (no leader: an election is running); " +
              "check that most voters are up with 'seguro status', then run the same command again: " +
              "it resumes after the last event the cluster holds",
      );
      assert.equal(ms, 60_000);
    } finally {
      Deno.removeSync(root, { recursive: true });
    }
  },
});
