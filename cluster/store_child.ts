/**
 * A helper process for store_test.ts: opens a data dir in another process.
 *
 * - `hold DIR`: opens the store, prints `open <pid>`, and keeps it open
 *   until stdin closes (or the process is killed).
 * - `persist DIR`: opens the store and appends batches forever, printing
 *   `<lastIndex>` after each `persist` returns, until killed.
 * - `open DIR`: tries to open the store once and prints `ok` or the error.
 *
 * Entry i of the `persist` mode has term `childTerm(i)` and data
 * `childData(i)`, so the parent can check what survived a kill.
 *
 * @module
 */

import { Store } from "./store.ts";

/** Term of entry `index` written by the `persist` mode. */
export function childTerm(index: number): number {
  return 1 + Math.floor(index / 50);
}

/** Payload of entry `index` written by the `persist` mode: 1..64 bytes derived from the index. */
export function childData(index: number): Uint8Array {
  const data = new Uint8Array(1 + (index % 64));
  for (let i = 0; i < data.length; i++) data[i] = (index * 31 + i) & 0xff;
  return data;
}

async function main(mode: string | undefined, dir: string | undefined): Promise<void> {
  if (dir === undefined) throw new Error("usage: store_child.ts hold|persist|open DIR");
  const out = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
  if (mode === "open") {
    try {
      Store.open(dir).close();
      out("ok");
    } catch (e) {
      out(`${(e as Error).name}: ${(e as Error).message}`);
    }
    return;
  }
  const store = Store.open(dir);
  if (mode === "hold") {
    out(`open ${Deno.pid}`);
    for await (const _ of Deno.stdin.readable) {
      // Wait for stdin to close.
    }
    store.close();
    return;
  }
  if (mode !== "persist") throw new Error(`unknown mode ${mode}`);
  let last = store.lastIndex();
  for (let round = 0;; round++) {
    const count = 1 + (round % 3);
    const entries = [];
    for (let i = last + 1; i <= last + count; i++) {
      entries.push({ index: i, term: childTerm(i), type: "normal" as const, data: childData(i) });
    }
    last += count;
    store.persist({ entries, hardState: { term: childTerm(last), vote: 1, commit: last - 1 } });
    out(String(last));
  }
}

if (import.meta.main) await main(Deno.args[0], Deno.args[1]);
