/**
 * Measures readEvents over a 100,000-event pier the C oracle wrote, and
 * writePier in 1,000-event transactions. Not a test:
 * `deno run --allow-all tests/pier/bench_pier.ts`.
 * @module
 */

import { join } from "node:path";
import { logDir, type PierEvent, readEvents, writePier } from "../../vere/pier.ts";
import { oraclePath, removeOracle, runOracle } from "./oracle.ts";

const EVENTS = 100_000;

if (oraclePath() === undefined) {
  throw new Error("The oracle cannot be built; install gcc and liblmdb-dev");
}
const pier = Deno.makeTempDirSync({ prefix: "seguro-bench-" });
try {
  const epoch = join(logDir(pier), "0i0");
  Deno.mkdirSync(epoch, { recursive: true });
  const created = runOracle(["create", epoch, String(EVENTS), "4096", "0", "1000"]);
  console.log(created.stderr.trim());
  console.log(runOracle(["bench", epoch]).stdout.trim());

  const events: PierEvent[] = [];
  let bytes = 0;
  const readStart = performance.now();
  for (const event of readEvents(pier)) {
    events.push(event);
    bytes += 4 + event.job.length;
  }
  const readSeconds = (performance.now() - readStart) / 1000;
  console.log(
    `readEvents: ${events.length} events, ${(bytes / 1e6).toFixed(1)} MB in ${
      readSeconds.toFixed(3)
    } s` +
      ` = ${Math.round(events.length / readSeconds)} events/s, ${
        (bytes / 1e6 / readSeconds).toFixed(0)
      } MB/s`,
  );

  const out = join(pier, "copy");
  const writeStart = performance.now();
  writePier(out, {
    meta: { version: 3, who: 0n, fake: true, life: 1 },
    events,
    vereVersion: "4.0",
  });
  const writeSeconds = (performance.now() - writeStart) / 1000;
  console.log(
    `writePier (1,000-event txns, fsynced): ${events.length} events in ${
      writeSeconds.toFixed(3)
    } s` +
      ` = ${Math.round(events.length / writeSeconds)} events/s, ${
        (bytes / 1e6 / writeSeconds).toFixed(0)
      } MB/s`,
  );
} finally {
  Deno.removeSync(pier, { recursive: true });
  removeOracle();
}
