/**
 * Boots the cached fake ~zod of every real vere present (tests/real_vere.ts),
 * one after the other, so that the e2e tests find them ready. `.ci/run` starts
 * it in the background (niced) while the unit tests run; a test that needs a
 * pier still being booted waits on the cache's lock. Absent binaries are
 * skipped with their reason.
 *
 * Run: `deno run -A tests/real_vere_boot.ts`
 * @module
 */

import { bootedPier, vereMissing, type VereVersion } from "./real_vere.ts";

for (const version of ["3.0", "1.16"] as VereVersion[]) {
  const missing = vereMissing(version);
  if (missing !== undefined) {
    console.log(`real vere ${version}: skipped (${missing})`);
    continue;
  }
  const started = performance.now();
  try {
    const pier = await bootedPier(version);
    console.log(
      `real vere ${version}: ${pier} ready in ${
        ((performance.now() - started) / 1000).toFixed(0)
      } s`,
    );
  } catch (e) {
    console.log(`real vere ${version}: ${(e as Error).message}`);
  }
}
