import assert from "node:assert/strict";
import { join } from "node:path";
import { NodeError } from "./errors.ts";
import type { ClusterTarget } from "./pier_client.ts";
import { exportPier } from "./pier_export.ts";

const CREDENTIALS = { clusterId: "c0ffee00".repeat(4), secret: new Uint8Array(32).fill(4) };

/** A target nothing listens at (port 1 on loopback). */
const UNREACHABLE: ClusterTarget = { address: "127.0.0.1:1", credentials: CREDENTIALS };

/** Runs `f` in a new temporary directory and removes it after. */
async function inTempDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "seguro-export-test-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("export: a directory that holds something is refused; nothing is created", async () => {
  await inTempDir(async (dir) => {
    const out = join(dir, "zod");
    Deno.mkdirSync(out);
    Deno.writeTextFileSync(join(out, "note"), "mine");
    await assert.rejects(
      exportPier(UNREACHABLE, 0n, { dir: out, vereVersion: "4.0" }),
      (e) =>
        e instanceof NodeError &&
        e.message ===
          `${out} exists and is not an empty directory; export into a new or empty directory`,
    );
    assert.deepEqual(names(dir), ["zod"]);
    assert.deepEqual(names(out), ["note"]);
  });
});

Deno.test("export: a missing parent directory is refused", async () => {
  await inTempDir(async (dir) => {
    await assert.rejects(
      exportPier(UNREACHABLE, 0n, { dir: join(dir, "no", "zod"), vereVersion: "4.0" }),
      (e) =>
        e instanceof NodeError &&
        e.message ===
          `the directory ${join(dir, "no")} does not exist; create it, or export elsewhere`,
    );
    assert.deepEqual(names(dir), []);
  });
});

Deno.test("export: a node it cannot reach fails it; its temporary directory is removed", async () => {
  await inTempDir(async (dir) => {
    await assert.rejects(
      exportPier(UNREACHABLE, 0n, { dir: join(dir, "zod"), vereVersion: "4.0" }),
      /Cannot reach 127\.0\.0\.1:1 \(connection refused\)/,
    );
    assert.deepEqual(names(dir), []);
  });
});

Deno.test("export: an abort rejects with its reason and leaves nothing", async () => {
  await inTempDir(async (dir) => {
    const stop = new AbortController();
    const reason = new Error("stopped by the test");
    stop.abort(reason);
    const notes: unknown[] = [];
    await assert.rejects(
      exportPier(UNREACHABLE, 0n, {
        dir: join(dir, "zod"),
        vereVersion: "4.0",
        signal: stop.signal,
        progress: (p) => notes.push(p),
      }),
      (e) => e === reason,
    );
    assert.deepEqual(names(dir), []);
    assert.deepEqual(notes, [], "no node was asked, so no range");
  });
});
