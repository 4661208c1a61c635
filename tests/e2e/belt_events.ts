/**
 * Made-up events for e2e tests of piers and exports: event `eve` of a ship is
 * a vere `/d %belt` with a distinct time and a mug derived from `eve`.
 * @module
 */

import { cell, cord, jam, list, tuple } from "../../vere/noun.ts";
import { daFromUnix } from "../../vere/event.ts";
import type { PierEvent } from "../../vere/pier.ts";

/** Events `from`..`to` (with their eve numbers, as a pier holds them). */
export function beltEvents(from: number, to: number): PierEvent[] {
  const out: PierEvent[] = [];
  for (let eve = from; eve <= to; eve++) {
    const job = jam(
      tuple(
        daFromUnix(1_700_000_000n + BigInt(eve), 0),
        list([cord("d")]),
        cord("belt"),
        cell(BigInt(eve), 0n),
      ),
    );
    out.push({ eve, mug: (eve * 2654435761) >>> 1, job });
  }
  return out;
}
