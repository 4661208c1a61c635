/**
 * Prepares the real vere for the e2e tests, in the order they need it: the
 * cached fake ~zod of vere 3.0 (tests/real_vere.ts), then side by side the
 * patched vere of hook mode (tests/hook_vere.ts) and the fake ~zod of vere
 * 1.16.
 * `.ci/run` starts it in the background (niced) while the unit tests run; a
 * test that needs something still being prepared waits on its cache's lock.
 * What cannot be prepared here is skipped with its reason.
 *
 * Run: `deno run -A tests/real_vere_boot.ts`
 * @module
 */

import { hookBinary, hookMissing } from "./hook_vere.ts";
import { bootedPier, vereMissing, type VereVersion } from "./real_vere.ts";

async function step(what: string, missing: string | undefined, run: () => Promise<string>) {
  if (missing !== undefined) {
    console.log(`${what}: skipped (${missing})`);
    return;
  }
  const started = performance.now();
  try {
    const path = await run();
    console.log(`${what}: ${path} ready in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  } catch (e) {
    console.log(`${what}: ${(e as Error).message}`);
  }
}

const boot = (version: VereVersion) =>
  step(`real vere ${version}`, vereMissing(version), () => bootedPier(version));

await boot("3.0");
// Side by side: each uses what the tests leave idle (the build two cores, the boot one).
await Promise.all([step("hook-mode vere", hookMissing(), hookBinary), boot("1.16")]);
