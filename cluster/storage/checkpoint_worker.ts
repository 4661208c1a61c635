/**
 * The checkpoint worker of cluster/storage/wal_flush.ts: copies a
 * database's write-ahead log into the database file on its own connection
 * at `synchronous=FULL` (fsync of the log before, of the database after), so
 * the node's event loop never waits for it. Opens its connection for each
 * checkpoint and closes it after, so that the node's own connection, closed
 * last, checkpoints what is left and removes the log.
 * @module
 */

/// <reference lib="deno.worker" />

import { DatabaseSync } from "node:sqlite";

const BUSY = 0;
const CLOSING = 1;

let path = "";
let flags: Int32Array<ArrayBufferLike> = new Int32Array(2);

function checkpoint(): void {
  Atomics.store(flags, BUSY, 1);
  try {
    if (Atomics.load(flags, CLOSING) === 1) return;
    const db = new DatabaseSync(path);
    try {
      db.exec("PRAGMA busy_timeout = 1000");
      db.exec("PRAGMA synchronous = FULL");
      const row = db.prepare("PRAGMA wal_checkpoint(PASSIVE)").get();
      self.postMessage({ type: "done", log: row?.log, checkpointed: row?.checkpointed });
    } finally {
      db.close();
    }
  } catch (e) {
    self.postMessage({ type: "failed", error: (e as Error).message });
  } finally {
    Atomics.store(flags, BUSY, 0);
    Atomics.notify(flags, BUSY);
  }
}

self.onmessage = (e: MessageEvent<{ type: string; path?: string; flags?: Int32Array }>) => {
  if (e.data.type === "init") {
    path = e.data.path!;
    flags = e.data.flags!;
  } else if (e.data.type === "checkpoint") checkpoint();
};
