import assert from "node:assert/strict";
import { join } from "node:path";
import { NodeError } from "./errors.ts";
import { attachPier } from "./pier_attach.ts";

Deno.test("attach: a directory that is no pier is refused before the cluster is asked", async () => {
  const dir = await Deno.makeTempDir({ prefix: "seguro-attach-test-" });
  try {
    const pier = join(dir, "zod");
    Deno.mkdirSync(pier);
    // Port 1 on loopback: nothing answers there, so a request would fail otherwise.
    const target = {
      address: "127.0.0.1:1",
      credentials: { clusterId: "0".repeat(32), secret: new Uint8Array(32) },
    };
    const seen: unknown[] = [];
    await assert.rejects(
      attachPier(target, 0n, { pier, pollMs: 5, progress: (p) => seen.push(p) }),
      (e) =>
        e instanceof NodeError &&
        e.message === `${pier}: no .urb/log here, so not a vere pier; give the directory of one`,
    );
    assert.deepEqual(seen, [], "it never started to follow");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
