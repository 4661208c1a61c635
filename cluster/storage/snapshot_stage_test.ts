import assert from "node:assert/strict";
import { Store } from "../store.ts";
import { sha256 } from "../images.ts";
import type { SnapshotMeta } from "../../core/mod.ts";
import type { SnapshotPiece } from "./snapshot_stage.ts";

const CONF = { voters: [1, 2, 3], learners: [] };
const SNAPSHOT: SnapshotMeta = { index: 40, term: 3, conf: CONF };

function memoryStore(id: number): Store {
  return Store.inMemory(`stage-${id}`, {
    identity: { clusterId: "ab".repeat(16), nodeId: id, groupId: 1 },
    secret: new Uint8Array(32).fill(id),
    conf: CONF,
    addresses: new Map(CONF.voters.map((v) => [v, `n${v}:1`])),
  });
}

function job(ship: bigint, eve: number, added: number): Uint8Array {
  return new TextEncoder().encode(`job ${ship} ${eve} of the ship added at ${added}`);
}

function chunkBytes(epoch: number, offset: number): Uint8Array {
  return new Uint8Array(100).map((_, i) => (epoch * 7 + offset + i) & 0xff);
}

/** Writes ship `ship` (added at `added`) with events 1..`events` and `chunks` image chunks. */
function put(store: Store, ship: bigint, added: number, events: number, chunks: number): void {
  store.applyTransaction(0, () => {
    if (store.ships.get(ship) === undefined) {
      store.ships.insertShip({ ship, fake: true, optimism: -1, life: 0, addedIndex: added });
    }
    const from = store.ships.get(ship)!.lastEve + 1;
    for (let eve = from; eve <= events; eve++) {
      store.ships.appendEvent(ship, {
        eve,
        mug: eve,
        job: job(ship, eve, added),
        entryIndex: eve + 10,
        entryTerm: 2,
      });
    }
    if (chunks > 0 && store.images.get(ship, 1) === undefined) store.images.insert(ship, 1);
    for (let c = (store.images.get(ship, 1)?.size ?? 0) / 100; c < chunks; c++) {
      store.images.appendChunk(ship, 1, c * 100, chunkBytes(1, c * 100));
    }
  });
}

/** What a receiver would fetch, served from `from`'s tables. */
function fetchAll(to: Store, from: Store): SnapshotPiece[] {
  const asked: SnapshotPiece[] = [];
  for (let piece = to.snapshotStage.need(); piece !== undefined; piece = to.snapshotStage.need()) {
    asked.push(piece);
    assert.ok(asked.length < 100, "the receiver keeps asking");
    if (piece.kind === "events") {
      to.snapshotStage.stageEvents(piece.ship, from.ships.events(piece.ship, piece.from, 3));
    } else {
      const data = from.images.chunk(piece.ship, piece.epoch, piece.offset)!;
      to.snapshotStage.stageImageChunk(piece.ship, piece.epoch, piece.offset, data);
    }
  }
  return asked;
}

function stateOf(store: Store) {
  return {
    ships: store.ships.list(),
    events: store.ships.list().map((s) => store.ships.events(s.ship, 1, 1000)),
    images: store.ships.list().map((s) => store.images.list(s.ship)),
    chunks: store.ships.list().map((s) => [...store.images.chunks(s.ship, 1)]),
    settings: store.snapshotStage.manifestOfState().settings,
  };
}

Deno.test("a follower fetches only what it lacks, and the install makes its state the leader's", () => {
  const leader = memoryStore(1);
  const follower = memoryStore(2);
  try {
    put(leader, 7n, 5, 10, 3);
    leader.applyTransaction(0, () => {
      leader.images.complete(7n, 1, sha256(new Uint8Array(0))); // any digest: carried as is
      leader.machineSettings.setDefaultOptimism(2);
    });
    put(follower, 7n, 5, 4, 1); // the same ship: a prefix is held
    put(follower, 9n, 6, 2, 0); // a ship the leader no longer has
    follower.applyTransaction(0, () => follower.machineSettings.setRun(9n, true));

    follower.snapshotStage.stage({
      snapshot: SNAPSHOT,
      manifest: leader.snapshotStage.manifestOfState(),
    });
    const asked = fetchAll(follower, leader);
    assert.deepEqual(asked, [
      { kind: "events", ship: 7n, from: 5 },
      { kind: "events", ship: 7n, from: 8 },
      { kind: "image", ship: 7n, epoch: 1, offset: 100 },
      { kind: "image", ship: 7n, epoch: 1, offset: 200 },
    ]);
    follower.persist({
      snapshot: SNAPSHOT,
      entries: [],
      hardState: { term: 3, vote: 0, commit: 40 },
    });
    assert.deepEqual(stateOf(follower), stateOf(leader));
    assert.equal(follower.snapshotStage.staged(), undefined);
    assert.equal(follower.loadRaftState().applied, 40);
  } finally {
    leader.close();
    follower.close();
  }
});

Deno.test("a new offer keeps what is staged for the same ship, and drops a ship that came back", () => {
  const leader = memoryStore(1);
  const follower = memoryStore(2);
  try {
    put(leader, 7n, 5, 6, 0);
    put(leader, 8n, 6, 6, 0);
    follower.snapshotStage.stage({
      snapshot: SNAPSHOT,
      manifest: leader.snapshotStage.manifestOfState(),
    });
    const stage = follower.snapshotStage;
    stage.stageEvents(7n, leader.ships.events(7n, 1, 3));
    stage.stageEvents(8n, leader.ships.events(8n, 1, 3));
    // Later: ship 7 has more events; ship 8 was removed and added again (other events).
    put(leader, 7n, 5, 9, 0);
    leader.applyTransaction(0, () => leader.ships.deleteShip(8n));
    put(leader, 8n, 30, 2, 0);
    const later = { ...SNAPSHOT, index: 60, term: 4 };
    stage.stage({ snapshot: later, manifest: leader.snapshotStage.manifestOfState() });
    assert.deepEqual(stage.need(), { kind: "events", ship: 7n, from: 4 });
    const asked = fetchAll(follower, leader);
    assert.deepEqual(asked.map((p) => p.kind === "events" && [p.ship, p.from]), [
      [7n, 4],
      [7n, 7],
      [8n, 1],
    ]);
    follower.persist({ snapshot: later, entries: [], hardState: { term: 4, vote: 0, commit: 60 } });
    assert.deepEqual(stateOf(follower), stateOf(leader));
  } finally {
    leader.close();
    follower.close();
  }
});

Deno.test("a snapshot whose state is not whole is refused at install, and nothing is written", () => {
  const leader = memoryStore(1);
  const dir = Deno.makeTempDirSync();
  try {
    put(leader, 7n, 5, 6, 0);
    const init = {
      identity: { clusterId: "ab".repeat(16), nodeId: 2, groupId: 1 },
      secret: new Uint8Array(32).fill(2),
      conf: CONF,
      addresses: new Map(CONF.voters.map((v) => [v, `n${v}:1`])),
    };
    let follower = Store.create(`${dir}/data`, init);
    follower.snapshotStage.stage({
      snapshot: SNAPSHOT,
      manifest: leader.snapshotStage.manifestOfState(),
    });
    follower.snapshotStage.stageEvents(7n, leader.ships.events(7n, 1, 5)); // one short
    const hardState = { term: 3, vote: 0, commit: 40 };
    assert.throws(
      () => follower.persist({ snapshot: SNAPSHOT, entries: [], hardState }),
      /ship 7 holds events 1..5 after 0 on installing snapshot 40, which has them up to 6/,
    );
    follower.close(); // a failed write already closed it
    follower = Store.open(`${dir}/data`);
    try {
      assert.equal(follower.loadRaftState().snapshot.index, 0);
      assert.deepEqual(follower.ships.list(), []);
      assert.equal(follower.snapshotStage.staged()?.snapshot.index, 40);
      assert.deepEqual(follower.snapshotStage.need(), { kind: "events", ship: 7n, from: 6 });
    } finally {
      follower.close();
    }
    const other = memoryStore(4);
    try {
      assert.throws(
        () => other.persist({ snapshot: SNAPSHOT, entries: [], hardState }),
        /the staged offer is none/,
      );
    } finally {
      other.close();
    }
  } finally {
    leader.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("an older offer after a newer one installs its own state, not what was staged past it", () => {
  const leader = memoryStore(1);
  const follower = memoryStore(2);
  try {
    put(leader, 7n, 5, 6, 0);
    const older = leader.snapshotStage.manifestOfState();
    put(leader, 7n, 5, 10, 0);
    follower.snapshotStage.stage({
      snapshot: { ...SNAPSHOT, index: 60 },
      manifest: leader.snapshotStage.manifestOfState(),
    });
    fetchAll(follower, leader); // events 1..10 staged
    // The leader that staged them went; a new one offers its (older) applied state.
    follower.snapshotStage.stage({ snapshot: SNAPSHOT, manifest: older });
    assert.equal(follower.snapshotStage.need(), undefined);
    follower.persist({
      snapshot: SNAPSHOT,
      entries: [],
      hardState: { term: 3, vote: 0, commit: 40 },
    });
    assert.deepEqual(follower.ships.events(7n, 1, 100).map((e) => e.eve), [1, 2, 3, 4, 5, 6]);
    assert.equal(follower.ships.get(7n)?.lastEve, 6);
  } finally {
    leader.close();
    follower.close();
  }
});

Deno.test("a ship this node holds as another ship (removed and added again) is staged apart and replaced at install", () => {
  const leader = memoryStore(1);
  const follower = memoryStore(2);
  try {
    put(follower, 8n, 6, 5, 2); // the old ship 8: 5 events, an image of 2 chunks
    put(leader, 8n, 30, 3, 1); // the new one: 3 other events, 1 chunk
    const manifest = leader.snapshotStage.manifestOfState();
    follower.snapshotStage.stage({ snapshot: SNAPSHOT, manifest });
    const asked = fetchAll(follower, leader);
    assert.deepEqual(asked[0], { kind: "events", ship: 8n, from: 1 });
    // Until the install, the old ship is what the node holds.
    assert.equal(follower.ships.get(8n)?.lastEve, 5);
    assert.equal(follower.ships.events(8n, 1, 100).length, 5);
    follower.persist({
      snapshot: SNAPSHOT,
      entries: [],
      hardState: { term: 3, vote: 0, commit: 40 },
    });
    assert.deepEqual(stateOf(follower), stateOf(leader));
  } finally {
    leader.close();
    follower.close();
  }
});
