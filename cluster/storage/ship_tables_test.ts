import assert from "node:assert/strict";
import { Store } from "../store.ts";

function withStore(f: (store: Store) => void): void {
  const store = Store.inMemory("ship-tables-test", {
    identity: { clusterId: "ab".repeat(16), nodeId: 1, groupId: 1 },
    secret: new Uint8Array(32).fill(1),
    conf: { voters: [1], learners: [] },
  });
  try {
    f(store);
  } finally {
    store.close();
  }
}

function job(n: number, bytes = 3): Uint8Array {
  return new Uint8Array(bytes).fill(n);
}

Deno.test("ships list in @p order, comets included, and keep what they were added with", () => {
  withStore((store) => {
    const ships = store.ships;
    const comet = (1n << 127n) + 3n;
    for (const ship of [comet, 256n, 0n, 1n]) {
      ships.insertShip({ ship, fake: ship === 0n, optimism: -1, life: 2, addedIndex: 9 });
    }
    assert.deepEqual(ships.list().map((s) => s.ship), [0n, 1n, 256n, comet]);
    assert.deepEqual(ships.get(0n), {
      ship: 0n,
      fake: true,
      optimism: -1,
      life: 2,
      lastEve: 0,
      lastMug: 0,
      bytes: 0,
      addedIndex: 9,
      firstEve: 1,
    });
    assert.equal(ships.get(2n), undefined);
    ships.setOptimism(comet, 1);
    assert.equal(ships.get(comet)?.optimism, 1);
  });
});

Deno.test("appended events advance the ship's last event, mug and bytes", () => {
  withStore((store) => {
    const ships = store.ships;
    ships.insertShip({ ship: 5n, fake: true, optimism: -1, life: 0, addedIndex: 1 });
    for (let eve = 1; eve <= 3; eve++) {
      ships.appendEvent(5n, {
        eve,
        mug: 100 + eve,
        job: job(eve, eve),
        entryIndex: 10 + eve,
        entryTerm: 2,
      });
    }
    const info = ships.get(5n)!;
    assert.deepEqual([info.lastEve, info.lastMug, info.bytes], [3, 103, 1 + 2 + 3]);
    assert.deepEqual(ships.event(5n, 2), {
      eve: 2,
      mug: 102,
      job: job(2, 2),
      entryIndex: 12,
      entryTerm: 2,
    });
    assert.equal(ships.event(5n, 4), undefined);
    assert.equal(ships.event(6n, 1), undefined);
  });
});

Deno.test("events stop at the count or the byte budget, but always return one", () => {
  withStore((store) => {
    const ships = store.ships;
    ships.insertShip({ ship: 5n, fake: true, optimism: -1, life: 0, addedIndex: 1 });
    for (let eve = 1; eve <= 10; eve++) {
      ships.appendEvent(5n, { eve, mug: 0, job: job(eve, 100), entryIndex: eve, entryTerm: 1 });
    }
    const eves = (events: { eve: number }[]) => events.map((e) => e.eve);
    assert.deepEqual(eves(ships.events(5n, 3, 4)), [3, 4, 5, 6]);
    assert.deepEqual(eves(ships.events(5n, 9, 100)), [9, 10]);
    assert.deepEqual(eves(ships.events(5n, 11, 100)), []);
    assert.deepEqual(eves(ships.events(5n, 1, 100, 250)), [1, 2]);
    assert.deepEqual(eves(ships.events(5n, 1, 100, 10)), [1], "one event even over the budget");
  });
});

Deno.test("events read past a page of rows, each with its own bytes, and stop at the budget in any page", () => {
  withStore((store) => {
    const ships = store.ships;
    ships.insertShip({ ship: 5n, fake: true, optimism: -1, life: 0, addedIndex: 1 });
    for (let eve = 1; eve <= 700; eve++) {
      ships.appendEvent(5n, { eve, mug: eve, job: job(eve, 10), entryIndex: eve, entryTerm: 1 });
    }
    const all = ships.events(5n, 1, 1000);
    assert.equal(all.length, 700);
    all.forEach((e, i) => {
      assert.equal(e.eve, i + 1);
      assert.equal(e.mug, i + 1);
      assert.deepEqual(e.job, job(i + 1, 10));
    });
    assert.deepEqual(ships.events(5n, 200, 400).map((e) => e.eve)[399], 599);
    const budget = ships.events(5n, 1, 1000, 10 * 300);
    assert.deepEqual([budget.length, budget[299].eve], [300, 300], "stops in the second page");
  });
});

Deno.test("deleting a ship deletes its events and no other ship's", () => {
  withStore((store) => {
    const ships = store.ships;
    for (const ship of [1n, 2n]) {
      ships.insertShip({ ship, fake: true, optimism: -1, life: 0, addedIndex: 1 });
      ships.appendEvent(ship, { eve: 1, mug: 0, job: job(1), entryIndex: 1, entryTerm: 1 });
    }
    ships.deleteShip(1n);
    assert.equal(ships.get(1n), undefined);
    assert.deepEqual(ships.events(1n, 1, 10), []);
    assert.equal(ships.events(2n, 1, 10).length, 1);
    // Added again, it starts empty.
    ships.insertShip({ ship: 1n, fake: true, optimism: -1, life: 0, addedIndex: 2 });
    assert.equal(ships.get(1n)?.lastEve, 0);
    assert.deepEqual(ships.events(1n, 1, 10), []);
  });
});
