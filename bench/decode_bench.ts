/**
 * How long decoding a runtime's %plan frame holds the event loop: the
 * one-piece decode (`decodeRuntimeFrame`, used below 1 MiB) against the
 * sliced one the runtime socket uses from 1 MiB (`decodeRuntimeFrameSliced`,
 * pausing every 512 KiB), for jobs of 1 to 64 MiB. The longest gap between
 * ticks of a 1 ms timer during the sliced decode is the loop's longest
 * block; P11's goal is about 20 ms.
 *
 *     deno task bench:decode [--json]
 * @module
 */

import { parseArgs } from "node:util";
import { jam } from "../vere/noun.ts";
import {
  decodeRuntimeFrame,
  decodeRuntimeFrameSliced,
  encodeRuntimeMessage,
} from "../vere/runtime_protocol.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { json: { type: "boolean", default: false } },
});

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A jammed %plan whose job has `bytes` bytes, cut into 256 KiB parts as a socket delivers them. */
function planParts(bytes: number): { whole: Uint8Array; parts: Uint8Array[] } {
  const job = new Uint8Array(bytes);
  for (let i = 0; i < job.length; i++) job[i] = (i * 131 + 7) & 0xff;
  job[job.length - 1] = 1;
  const whole = jam(encodeRuntimeMessage({ type: "plan", ship: 0n, eve: 5, mug: 0x1234, job }));
  const parts: Uint8Array[] = [];
  for (let at = 0; at < whole.length; at += 256 * 1024) {
    parts.push(whole.subarray(at, at + 256 * 1024));
  }
  return { whole, parts };
}

const rows: { job_mib: number; whole_ms: number; sliced_ms: number; longest_block_ms: number }[] =
  [];
for (const mib of [1, 4, 16, 64]) {
  const { whole, parts } = planParts(mib * 1024 * 1024);
  decodeRuntimeFrame(whole, { from: "runtime" }); // warm up
  let t = performance.now();
  decodeRuntimeFrame(whole, { from: "runtime" });
  const wholeMs = performance.now() - t;
  let last = performance.now();
  let longest = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 1);
  t = performance.now();
  last = t;
  await decodeRuntimeFrameSliced(parts, yieldToLoop);
  const slicedMs = performance.now() - t;
  longest = Math.max(longest, performance.now() - last);
  clearInterval(ticker);
  rows.push({ job_mib: mib, whole_ms: wholeMs, sliced_ms: slicedMs, longest_block_ms: longest });
  console.error(
    `${mib} MiB: whole ${wholeMs.toFixed(1)} ms; sliced ${slicedMs.toFixed(1)} ms, longest block ${
      longest.toFixed(1)
    } ms`,
  );
}
if (values.json) console.log(JSON.stringify(rows, null, 2));
else {
  console.log("job MiB   whole ms   sliced ms   longest block ms");
  for (const r of rows) {
    console.log(
      `${String(r.job_mib).padStart(7)} ${r.whole_ms.toFixed(1).padStart(10)} ${
        r.sliced_ms.toFixed(1).padStart(11)
      } ${r.longest_block_ms.toFixed(1).padStart(18)}`,
    );
  }
}
