import assert from "node:assert/strict";
import { join } from "node:path";
import { NodeError } from "./errors.ts";
import type { ClusterTarget } from "./pier_client.ts";
import { importPier } from "./pier_import.ts";

/** A target nothing listens at (port 1 on loopback): a check that passes ends there. */
const UNREACHABLE: ClusterTarget = {
  address: "127.0.0.1:1",
  credentials: { clusterId: "0".repeat(32), secret: new Uint8Array(32) },
};

Deno.test("import: a pier in use is refused unless --live, before its META is read", async () => {
  const pier = await Deno.makeTempDir({ prefix: "seguro-import-test-" });
  try {
    Deno.writeTextFileSync(join(pier, ".vere.lock"), `${Deno.pid}\n`);
    await assert.rejects(
      importPier(UNREACHABLE, 0n, { pier }),
      (e) =>
        e instanceof NodeError &&
        e.message ===
          `${pier} is in use by a running urbit (.vere.lock); stop it first, or pass --live`,
    );
    // --live passes the lock; this directory then fails as no pier, naming it.
    await assert.rejects(
      importPier(UNREACHABLE, 0n, { pier, live: true }),
      (e) =>
        e instanceof NodeError &&
        e.message === `${pier}: no .urb/log here, so not a vere pier; give the directory of one`,
    );
  } finally {
    await Deno.remove(pier, { recursive: true });
  }
});
