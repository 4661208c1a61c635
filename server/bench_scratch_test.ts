import assert from "node:assert/strict";
import type { ShipJson } from "../cluster/admin_protocol.ts";
import { renderShip } from "../vere/event.ts";
import { benchShip, chosenShip, scratchShipOf } from "./bench_scratch.ts";
import { NodeError, NodeUsageError } from "./errors.ts";
import type { ClusterTarget } from "./pier_client.ts";

/** A target nothing listens at (port 1 on loopback). */
const UNREACHABLE: ClusterTarget = {
  address: "127.0.0.1:1",
  credentials: { clusterId: "0".repeat(32), secret: new Uint8Array(32) },
};

function shipJson(ship: bigint, fake: boolean): ShipJson {
  return { ship: String(ship), fake, life: 0, lastEve: 0, lastMug: 0, bytes: 0, optimism: -1 };
}

const SHIPS = [shipJson(0n, true), shipJson(0x10000n, false)];

Deno.test("bench: --ship must be on the cluster, and fake unless --yes", () => {
  assert.equal(chosenShip({ events: 10 }, SHIPS), undefined);
  assert.equal(chosenShip({ ship: 0n, events: 10 }, SHIPS), 0n);
  assert.equal(chosenShip({ ship: 0x10000n, realOk: true, events: 10 }, SHIPS), 0x10000n);
  assert.throws(
    () => chosenShip({ ship: 0x10000n, events: 10_000 }, SHIPS),
    (e) =>
      e instanceof NodeUsageError &&
      e.message.startsWith(`${renderShip(0x10000n)} is a real ship and the 10,000 /bench events`),
  );
  assert.throws(
    () => chosenShip({ ship: 1n, events: 10 }, SHIPS),
    (e) =>
      e instanceof NodeError && !(e instanceof NodeUsageError) &&
      e.message.startsWith("~nec is not on this cluster"),
  );
});

Deno.test("bench: the scratch ship is a planet the cluster does not hold", () => {
  for (let i = 0; i < 100; i++) {
    const ship = scratchShipOf(SHIPS);
    assert.ok(ship >= 0x10000n && ship < 0x1_0000_0000n);
    assert.ok(!SHIPS.some((s) => s.ship === String(ship)));
  }
});

Deno.test("bench: an unreachable node fails before a ship is chosen", async () => {
  const seen: string[] = [];
  await assert.rejects(
    benchShip(UNREACHABLE, {
      socket: "/nonexistent/runtime.sock",
      events: 1,
      sizeBytes: 100,
      inflight: 1,
      progress: (p) => seen.push(p.kind),
    }),
  );
  assert.deepEqual(seen, []);
});
