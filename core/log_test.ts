import assert from "node:assert/strict";
import { RaftInvariantError } from "./errors.ts";
import { ENTRY_OVERHEAD_BYTES, entrySizeBytes, RaftLog } from "./log.ts";
import type { Entry, SnapshotMeta } from "./messages.ts";

const BOOT: SnapshotMeta = { index: 0, term: 0, conf: { voters: [1, 2, 3], learners: [] } };

function entries(from: number, terms: number[]): Entry[] {
  return terms.map((term, i) => ({
    index: from + i,
    term,
    type: "normal",
    data: new TextEncoder().encode(`${from + i}/${term}`),
  }));
}

Deno.test("maybeAppend refuses a mismatched predecessor and truncates a conflicting suffix", () => {
  const log = new RaftLog(BOOT, entries(1, [1, 1, 2, 2]), 0);
  assert.equal(log.maybeAppend(4, 3, entries(5, [3])), undefined, "no entry 4 of term 3");
  assert.equal(log.maybeAppend(2, 1, entries(3, [3, 3, 3])), 5);
  assert.deepEqual([3, 4, 5].map((i) => log.termAt(i)), [3, 3, 3]);
  assert.equal(log.persistedIndex, 2, "the truncated suffix is no longer durable");
  assert.deepEqual(log.takeUnstableEntries().map((e) => e.index), [3, 4, 5]);
});

Deno.test("maybeAppend never truncates a committed entry", () => {
  const log = new RaftLog(BOOT, entries(1, [1, 1, 2]), 3);
  assert.throws(
    () => log.maybeAppend(1, 1, entries(2, [5])),
    /append would truncate committed entry 2/,
  );
});

Deno.test("maybeAppend asserts log matching: same index and term means same bytes", () => {
  const log = new RaftLog(BOOT, entries(1, [1, 1]), 0);
  const forged: Entry = { index: 2, term: 1, type: "normal", data: new Uint8Array([9]) };
  assert.throws(() => log.maybeAppend(1, 1, [forged]), /log matching broken: entry 2 term 1/);
});

Deno.test("commitTo never decreases and never passes the durable index", () => {
  const log = new RaftLog(BOOT, entries(1, [1, 1]), 1);
  log.append(entries(3, [2]));
  assert.throws(() => log.commitTo(3), /commit index 3 would pass the last durable index 2/);
  log.commitTo(2);
  assert.throws(() => log.commitTo(1), RaftInvariantError);
  log.takeUnstableEntries();
  log.persistedTo(3, 2);
  log.commitTo(3);
  assert.equal(log.committed, 3);
});

Deno.test("persistedTo ignores a write whose entries were replaced meanwhile", () => {
  const log = new RaftLog(BOOT, entries(1, [1]), 0);
  log.append(entries(2, [1, 1]));
  assert.equal(log.takeUnstableEntries().length, 2);
  log.maybeAppend(1, 1, entries(2, [2])); // replaces 2..3 while the write is in flight
  log.persistedTo(3, 1);
  assert.equal(log.persistedIndex, 1);
});

Deno.test("compaction keeps terms, membership and the slice bounds right", () => {
  const log = new RaftLog(BOOT, entries(1, [1, 1, 1, 2, 2]), 5);
  log.appliedTo(5);
  const snap = log.compact(3);
  assert.deepEqual(snap, { index: 3, term: 1, conf: BOOT.conf });
  assert.equal(log.firstIndex(), 4);
  assert.equal(log.termAt(3), 1);
  assert.equal(log.termAt(2), undefined);
  assert.deepEqual(log.slice(4, 6, 1 << 20).map((e) => e.index), [4, 5]);
  assert.deepEqual(log.findConflictByTerm(5, 1), { index: 3, term: 1 });
});

Deno.test("heldBytes counts exactly the entries held through append, truncation, compaction and restore", () => {
  const held = (log: RaftLog) => {
    let sum = 0;
    for (let i = log.firstIndex(); i <= log.lastIndex(); i++) sum += entrySizeBytes(log.entry(i));
    return sum;
  };
  const log = new RaftLog(BOOT, entries(1, [1, 1, 2, 2, 2]), 0);
  assert.equal(log.heldBytes(), held(log));
  assert.ok(log.heldBytes() > 5 * ENTRY_OVERHEAD_BYTES);
  log.maybeAppend(2, 1, entries(3, [3, 3]));
  assert.equal(log.heldBytes(), held(log), "after truncating a suffix");
  log.takeUnstableEntries();
  log.persistedTo(4, 3);
  log.commitTo(4);
  log.appliedTo(3);
  log.compact(3);
  assert.equal(log.heldBytes(), held(log), "after compaction");
  log.restore({ index: 9, term: 4, conf: BOOT.conf });
  assert.equal(log.heldBytes(), 0, "after a snapshot replaced the log");
});
