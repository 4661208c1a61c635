import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Store } from "../store.ts";
import { encodeCommand, Machine } from "../machine.ts";
import { sha256 } from "../images.ts";

const CONF = { voters: [1], learners: [] };

function job(eve: number): Uint8Array {
  return new Uint8Array(200).fill(eve & 0xff);
}

/** Persists and applies `commands` as entries from `from`. */
function commit(store: Store, machine: Machine, commands: Uint8Array[], from: number): void {
  const last = from + commands.length - 1;
  store.persist({
    entries: commands.map((data, i) => ({ index: from + i, term: 1, type: "normal", data })),
    hardState: { term: 1, vote: 1, commit: last },
  });
  store.applyTransaction(last, () => {
    commands.forEach((data, i) => assert.ok(machine.apply(data, from + i, 1).ok));
  });
}

function eventsCommand(first: number, count: number): Uint8Array {
  const events = Array.from({ length: count }, (_, i) => ({ mug: first + i, job: job(first + i) }));
  return encodeCommand({ kind: "events", ship: 0n, firstEve: first, events });
}

/** Log entries on disk, by index. */
function storedEntries(path: string): number[] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return db.prepare("SELECT idx FROM log_entry ORDER BY idx").all().map((r) => Number(r.idx));
  } finally {
    db.close();
  }
}

Deno.test("events and image chunks are stored once: in their entry, kept through compaction", () => {
  const dir = Deno.makeTempDirSync();
  try {
    let store = Store.create(`${dir}/d`, {
      identity: { clusterId: "ab".repeat(16), nodeId: 1, groupId: 1 },
      secret: new Uint8Array(32).fill(1),
      conf: CONF,
    });
    let machine = new Machine(store);
    const chunk = new Uint8Array(300).fill(7);
    commit(store, machine, [
      encodeCommand({ kind: "shipAdd", ship: 0n, fake: true, optimism: -1, life: 0 }), // 1
      eventsCommand(1, 4), // 2
      encodeCommand({ kind: "shipSet", ship: 0n, optimism: 1 }), // 3
      eventsCommand(5, 4), // 4
      eventsCommand(3, 2), // 5: a re-sent batch, every event skipped
      encodeCommand({
        kind: "imageChunk",
        ship: 0n,
        epoch: 4,
        offset: 0,
        sha256: sha256(chunk),
        data: chunk,
      }), // 6
      eventsCommand(9, 2), // 7
    ], 1);
    store.compact({ index: 6, term: 1, conf: CONF });
    store.close();
    // The event rows hold no job bytes: the entries do.
    const db = new DatabaseSync(`${dir}/d/seguro.db`, { readOnly: true });
    const inline = db.prepare("SELECT sum(length(job)) AS n FROM event").get()!.n;
    db.close();
    assert.equal(Number(inline), 0);
    // Kept: the entries events and the chunk point into (2, 4, 6) and the log after 6.
    assert.deepEqual(storedEntries(`${dir}/d/seguro.db`), [2, 4, 6, 7]);

    store = Store.open(`${dir}/d`);
    machine = new Machine(store);
    assert.deepEqual(store.loadRaftState().entries.map((e) => e.index), [7], "the log is after 6");
    const events = store.ships.events(0n, 1, 100);
    assert.deepEqual(events.map((e) => e.eve), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const e of events) assert.deepEqual(e.job, job(e.eve));
    assert.deepEqual(store.ships.event(0n, 6)?.job, job(6));
    assert.deepEqual(store.images.chunk(0n, 4, 0), chunk);
    assert.equal(store.ships.get(0n)?.bytes, 10 * 200);

    // A chop drops the entries only the chopped events pointed into (2), not 4 (it holds 5..8).
    store.applyTransaction(7, () => store.ships.chop(0n, 6));
    store.close();
    assert.deepEqual(storedEntries(`${dir}/d/seguro.db`), [4, 6, 7]);
    store = Store.open(`${dir}/d`);
    assert.deepEqual(store.ships.events(0n, 1, 100).map((e) => e.eve), [6, 7, 8, 9, 10]);
    assert.deepEqual(store.ships.get(0n)?.firstEve, 6);
    assert.equal(store.ships.get(0n)?.bytes, 5 * 200);

    // Removing the ship drops the rest of its entries that are only state.
    store.applyTransaction(7, () => {
      store.ships.deleteShip(0n);
      store.images.deleteShip(0n);
    });
    store.close();
    assert.deepEqual(storedEntries(`${dir}/d/seguro.db`), [7]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
