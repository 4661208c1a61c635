/**
 * The tests that start real clusters (tests/e2e, tests/docs, the nemesis),
 * in two lanes that run side by side, each one test file after another:
 *
 * - the real-vere lane: the files that run the real vere, in the order
 *   `.ci/run`'s background preparation (tests/real_vere_boot.ts) makes what
 *   they need ready, after the files that need none of it;
 * - the other lane: the nemesis, the docs, and every other e2e file.
 *
 * Within a lane, one file at a time (real clusters of the same lane do not
 * starve each other's timers); two lanes at once keep a 2-core machine
 * about as busy as the unit tests do. The real-vere lane's output streams;
 * the other lane's is printed whole when it ends, so that each `deno test`
 * keeps its own lines and summary. Exits non-zero when either lane fails.
 *
 * Run by `deno task test`, after the unit tests:
 * `deno run --allow-run --allow-read tests/e2e_lanes.ts`
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** The permissions of `deno task test`'s other run. */
const PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-net",
  "--allow-ffi",
];
/** The real-vere lane, in this order. */
const REAL_VERE_LANE = [
  "tests/e2e/pier_test.ts",
  "tests/e2e/import_failover_test.ts",
  "tests/e2e/exec_test.ts",
  "tests/e2e/demo_test.ts",
  "tests/e2e/real_vere_exec_test.ts",
  "tests/e2e/hook_vere_test.ts",
  "tests/e2e/real_vere_test.ts",
];

function otherLane(): string[] {
  const e2e = [...Deno.readDirSync(join(ROOT, "tests/e2e"))]
    .filter((f) => f.isFile && f.name.endsWith("_test.ts"))
    .map((f) => `tests/e2e/${f.name}`)
    .filter((f) => !REAL_VERE_LANE.includes(f))
    .sort();
  return ["tests/nemesis/nemesis_test.ts", "tests/docs/docs_test.ts", ...e2e];
}

function lane(files: string[]): Deno.ChildProcess {
  for (const f of files) Deno.statSync(join(ROOT, f)); // a renamed file fails here, loudly
  return new Deno.Command(Deno.execPath(), {
    args: ["test", ...PERMISSIONS, ...files],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Copies `from` to this process's stdout line by line (never half a line), until it ends. */
async function forwardLines(
  from: ReadableStream<Uint8Array>,
  write: (line: Uint8Array) => void,
): Promise<void> {
  let held = new Uint8Array(0);
  for await (const chunk of from) {
    const joined = new Uint8Array(held.length + chunk.length);
    joined.set(held);
    joined.set(chunk, held.length);
    const end = joined.lastIndexOf(0x0a) + 1;
    if (end > 0) write(joined.subarray(0, end));
    held = joined.slice(end);
  }
  if (held.length > 0) write(held);
}

async function collect(from: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(from).arrayBuffer());
}

const streamed = lane(REAL_VERE_LANE);
const held = lane(otherLane());
const out = (bytes: Uint8Array) => Deno.stdout.writeSync(bytes);
const heldOutput = Promise.all([collect(held.stdout), collect(held.stderr), held.status]).then(
  ([stdout, stderr, status]) => {
    // Printed between two lines of the streamed lane.
    out(stdout);
    out(stderr);
    return status;
  },
);
const [, , streamedStatus] = await Promise.all([
  forwardLines(streamed.stdout, out),
  forwardLines(streamed.stderr, out),
  streamed.status,
]);
const heldStatus = await heldOutput;
Deno.exit(streamedStatus.success && heldStatus.success ? 0 : 1);
