/**
 * A fake `urbit` for `seguro run --exec` tests and the operations guide: no
 * real runtime exists on this machine. Run as
 * `deno run -A fake_urbit.ts PIER JOURNAL_DIR [~SHIP]`, it behaves toward the
 * pier as vere does: it takes `.vere.lock`, opens the newest epoch of
 * `.urb/log` through liblmdb, and commits one `[now ovum]` event (with the
 * real mug of the job) every 5 ms until SIGTERM, when it releases the lock
 * and exits 0. Given `~SHIP` and a directory with no pier, it first creates
 * an empty pier for that fake ship (as `urbit -F` would, minus the boot).
 *
 * It also witnesses fencing: it holds an exclusive flock on
 * `JOURNAL_DIR/<ship>.running` while it runs (the kernel drops it when the
 * process dies, even by SIGKILL). A second fake urbit for the same ship that
 * finds the lock taken writes `OVERLAP` to the journal and exits 3. The
 * journal (`JOURNAL_DIR/journal.log`) gets one line per start and stop:
 * `<ms> start <pid> <pier> <last event>` and `<ms> stop <pid> <pier> <last event>`.
 */

import { basename, join } from "node:path";
import { Env, eventKey } from "../../vere/lmdb.ts";
import { isPierLocked, listEpochs, LOG_VERSION, writePier } from "../../vere/pier.ts";
import { cell, cord, jam, list, mug, tuple } from "../../vere/noun.ts";
import { daFromMillis, parseShip } from "../../vere/event.ts";

const [pier, journalDir, shipName] = Deno.args;
if (pier === undefined || journalDir === undefined) {
  console.error("usage: fake_urbit.ts PIER JOURNAL_DIR [~SHIP]");
  Deno.exit(2);
}
let fresh = false;
try {
  Deno.statSync(join(pier, ".urb", "log"));
} catch {
  fresh = true;
}
if (shipName !== undefined && fresh) {
  const who = parseShip(shipName);
  if (who === undefined) {
    console.error(`fake_urbit: ${shipName} is not a ship name like ~zod`);
    Deno.exit(2);
  }
  writePier(pier, {
    meta: { version: LOG_VERSION, who, fake: true, life: 0 },
    events: [],
    vereVersion: "4.0",
  });
}
const journal = join(journalDir, "journal.log");
const record = (line: string) =>
  Deno.writeTextFileSync(journal, `${Date.now()} ${line}\n`, { append: true });

const witness = Deno.openSync(join(journalDir, `${basename(pier)}.running`), {
  create: true,
  write: true,
});
if (!witness.tryLockSync(true)) {
  record(`OVERLAP ${Deno.pid} ${pier}`);
  Deno.exit(3);
}
if (isPierLocked(pier)) {
  record(`LOCKED ${Deno.pid} ${pier}`);
  Deno.exit(4);
}
const lockPath = join(pier, ".vere.lock");
Deno.writeTextFileSync(lockPath, `${Deno.pid}\n`);

const epochs = listEpochs(pier);
const newest = epochs[epochs.length - 1];
const env = Env.open(newest.dir);
// Epoch 0i<N> holds events N+1 onward (a standby pier starts at its newest image).
let last = newest.base +
  env.readTxn((txn) => txn.stat(txn.openDb("EVENTS", { integerKey: true })).entries);
let stopping = false;
// Before "running" is printed: a SIGTERM sent as soon as it is seen must find the listener.
Deno.addSignalListener("SIGTERM", () => {
  stopping = true; // the event timer writes nothing more; the exit below ends it
  env.close();
  Deno.removeSync(lockPath);
  record(`stop ${Deno.pid} ${pier} ${last}`);
  witness.close();
  Deno.exit(0);
});
record(`start ${Deno.pid} ${pier} ${last}`);
console.log(`fake urbit ${Deno.pid}: running ${pier} from event ${last + 1}`);

function nextEvent(eve: number): Uint8Array {
  const job = tuple(
    daFromMillis(Date.now()),
    list([cord("d"), cord("term"), 1n]),
    cord("belt"),
    cell(cord("txt"), list([BigInt(eve)])),
  );
  const bytes = jam(job);
  const value = new Uint8Array(4 + bytes.length);
  new DataView(value.buffer).setUint32(0, mug(job), true);
  value.set(bytes, 4);
  return value;
}

setInterval(() => {
  if (stopping) return;
  const eve = last + 1;
  env.writeTxn((txn) => {
    const db = txn.openDb("EVENTS", { integerKey: true });
    txn.put(db, eventKey(eve), nextEvent(eve), { noOverwrite: true });
  });
  last = eve;
}, 5);
