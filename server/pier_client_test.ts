import assert from "node:assert/strict";
import { LOG_VERSION, PierError, writePier } from "../vere/pier.ts";
import { haveLiblmdb } from "../tests/pier/oracle.ts";
import { NodeError } from "./errors.ts";
import { pierFailure, shipPierMeta } from "./pier_client.ts";

Deno.test("pierFailure: a pier's error names the pier; any other error is kept", () => {
  const named = pierFailure(new PierError("no .urb/log here"), "/tmp/zod");
  assert.ok(named instanceof NodeError);
  assert.equal(named.message, "/tmp/zod: no .urb/log here");
  const other = new Error("something else");
  assert.equal(pierFailure(other, "/tmp/zod"), other);
});

Deno.test({
  name: "shipPierMeta: the pier's META when the pier is the ship's; another ship's is refused",
  ignore: !haveLiblmdb(),
  fn() {
    // writePier takes a directory that exists, so long as it holds no .urb/log.
    const pier = Deno.makeTempDirSync({ prefix: "seguro-pier-client-" });
    try {
      const meta = { version: LOG_VERSION, who: 0n, fake: true, life: 1 };
      writePier(pier, {
        meta,
        events: [{ eve: 1, mug: 1, job: new Uint8Array(3) }],
        vereVersion: "4.0",
      });
      assert.deepEqual(shipPierMeta(0n, pier), meta);
      assert.throws(
        () => shipPierMeta(1n, pier),
        (e) =>
          e instanceof NodeError &&
          e.message === `${pier} belongs to ~zod, not ~nec; check the ship or the pier`,
      );
    } finally {
      Deno.removeSync(pier, { recursive: true });
    }
  },
});
