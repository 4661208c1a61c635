/**
 * A runtime's writes to a pier, for tests of standby piers and the tail:
 * events whose mug and job bytes are a tag, as vere would append them.
 * @module
 */

import { join } from "node:path";
import { Env, eventKey } from "../../vere/lmdb.ts";
import { encodeEventValue } from "../../vere/pier.ts";

/** Writes events `first`, `first + 1`, ... tagged `tags` into `pier`'s log (one transaction). */
export function runtimeWrites(pier: string, first: number, tags: number[]): void {
  const env = Env.open(join(pier, ".urb", "log", "0i0"));
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
