/**
 * A runtime's writes to a pier, for tests of standby piers and the tail:
 * events whose mug and job bytes are a tag, as vere would append them.
 * @module
 */

import { Env, eventKey } from "../../vere/lmdb.ts";
import { encodeEventValue, listEpochs } from "../../vere/pier.ts";

/**
 * Writes events `first`, `first + 1`, ... tagged `tags` into the newest epoch
 * of `pier`'s log (one transaction), as vere appends.
 */
export function runtimeWrites(pier: string, first: number, tags: number[]): void {
  const env = Env.open(listEpochs(pier).at(-1)!.dir);
  try {
    env.writeTxn((txn) => {
      const db = txn.openDb("EVENTS", { integerKey: true });
      tags.forEach((t, i) => {
        txn.put(db, eventKey(first + i), encodeEventValue(t, Uint8Array.of(t, t, t)));
      });
    });
  } finally {
    env.close();
  }
}
