import assert from "node:assert/strict";
import fc from "fast-check";
import { SHIP_MAX, shipKey, shipOfKey } from "./ships.ts";

Deno.test("ship keys round-trip every ship up to a comet and refuse beyond", () => {
  fc.assert(fc.property(fc.bigInt({ min: 0n, max: SHIP_MAX }), (ship) => {
    const key = shipKey(ship);
    assert.equal(key.length, 16);
    assert.equal(shipOfKey(key), ship);
  }));
  assert.deepEqual([...shipKey(0x0102n)], [...new Array(14).fill(0), 1, 2]);
  assert.throws(() => shipKey(SHIP_MAX + 1n), RangeError);
  assert.throws(() => shipKey(-1n), RangeError);
});

Deno.test("ship keys sort as the ships they name (the tables list ships in @p order)", () => {
  fc.assert(fc.property(
    fc.bigInt({ min: 0n, max: SHIP_MAX }),
    fc.bigInt({ min: 0n, max: SHIP_MAX }),
    (a, b) => {
      const [ka, kb] = [shipKey(a), shipKey(b)];
      let order = 0;
      for (let i = 0; i < 16 && order === 0; i++) order = Math.sign(ka[i] - kb[i]);
      assert.equal(order, a < b ? -1 : a > b ? 1 : 0);
    },
  ));
});
