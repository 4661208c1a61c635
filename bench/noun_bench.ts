/**
 * Times cue, jam and mug of a real pill with Seguro's codec and with
 * @urbit/nockjs, in one run, and prints MB/s and the ratio.
 *
 *     deno task bench [--pill PATH] [--runs N] [--json]
 *
 * Each figure is the median of N warm runs (after one warm-up run, which is
 * reported separately as "first"). nockjs recurses, so it gets one run per
 * operation: it is the anchor, not the subject.
 * @module
 */

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import * as nockjs from "@urbit/nockjs";
import { cue, jam, mug } from "../vere/noun.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    pill: {
      type: "string",
      default: fileURLToPath(new URL("../../shared/fixtures/brass.pill", import.meta.url)),
    },
    runs: { type: "string", default: "9" },
    json: { type: "boolean", default: false },
  },
});

const runs = Number(values.runs);
let bytes: Uint8Array;
try {
  bytes = Deno.readFileSync(values.pill);
} catch {
  console.error(`error: cannot read ${values.pill}; pass --pill PATH to a jammed pill`);
  Deno.exit(1);
}
const megabytes = bytes.length / 1e6;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function time<T>(f: () => T): [T, number] {
  const t0 = performance.now();
  const out = f();
  return [out, performance.now() - t0];
}

interface Row {
  op: string;
  impl: string;
  first_ms: number;
  median_ms: number;
  mb_per_s: number;
}
const rows: Row[] = [];

function measure(op: string, impl: string, f: () => unknown, n: number): number {
  const [, first] = time(f);
  const samples: number[] = [];
  for (let i = 0; i < n; i++) samples.push(time(f)[1]);
  const med = n > 0 ? median(samples) : first;
  rows.push({ op, impl, first_ms: first, median_ms: med, mb_per_s: megabytes / (med / 1000) });
  console.error(`  ${impl} ${op}: ${med.toFixed(1)} ms`);
  return med;
}

/** Times mug on a freshly cued noun each run (cells cache their mug once computed). */
function measureMug<N>(impl: string, fresh: () => N, f: (n: N) => unknown, n: number): void {
  const samples: number[] = [];
  for (let i = 0; i <= n; i++) {
    const noun = fresh();
    samples.push(time(() => f(noun))[1]);
  }
  const first = samples.shift()!;
  const med = n > 0 ? median(samples) : first;
  rows.push({
    op: "mug",
    impl,
    first_ms: first,
    median_ms: med,
    mb_per_s: megabytes / (med / 1000),
  });
  console.error(`  ${impl} mug: ${med.toFixed(1)} ms`);
}

console.error(`pill ${values.pill}: ${bytes.length} bytes; ${runs} warm runs each (nockjs: 1)`);

// Seguro. mug is timed on a fresh cue each run: cells cache their mug.
const ours = cue(bytes);
measure("cue", "seguro", () => cue(bytes), runs);
measure("jam", "seguro", () => jam(ours), runs);
measureMug("seguro", () => cue(bytes), (n) => mug(n), runs);

// nockjs: its cue takes the pill as an atom; its jam and mug recurse.
const atom = new nockjs.Atom(
  BigInt("0x" + Array.from(bytes).reverse().map((b) => b.toString(16).padStart(2, "0")).join("")),
);
let theirs: nockjs.Noun = nockjs.Atom.zero;
measure("cue", "nockjs", () => {
  theirs = nockjs.cue(atom);
}, 0);
measure("jam", "nockjs", () => nockjs.jam(theirs), 0);
measureMug("nockjs", () => nockjs.cue(atom), (n) => n.mug(), 0);

const ratio = (op: string) => {
  const a = rows.find((r) => r.op === op && r.impl === "nockjs")!.median_ms;
  const b = rows.find((r) => r.op === op && r.impl === "seguro")!.median_ms;
  return a / b;
};

if (values.json) {
  console.log(JSON.stringify({ pill_bytes: bytes.length, runs, rows }, null, 2));
} else {
  console.log("op   impl     first ms  median ms     MB/s  nockjs/seguro");
  for (const r of rows) {
    const x = r.impl === "seguro" ? `${ratio(r.op).toFixed(1)}x` : "";
    console.log(
      `${r.op.padEnd(4)} ${r.impl.padEnd(7)} ${r.first_ms.toFixed(1).padStart(9)} ${
        r.median_ms.toFixed(1).padStart(10)
      } ${r.mb_per_s.toFixed(1).padStart(8)}  ${x}`,
    );
  }
}
