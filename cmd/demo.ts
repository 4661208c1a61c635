/**
 * `seguro demo`: a 3-node cluster on this machine, ~zod booted from a pill,
 * a runtime streaming events through the runtime socket, the master killed
 * with SIGKILL, the runtime following the new master, and a check that
 * every released event survived. The demo itself is `runDemo` in
 * server/demo.ts; this command prints its progress.
 * @module
 */

import { exists } from "../vere/pier.ts";
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { DEFAULT_DEMO_PILL, type DemoReporter, runDemo } from "../server/demo.ts";
import { runVereDemo, type VereDemoResult } from "../server/demo_vere.ts";
import { vereCacheDir, vereProblem } from "../server/vere_process.ts";
import { fileURLToPath } from "node:url";
import { CliError } from "./lib/errors.ts";
import { colors, count, print } from "./lib/output.ts";
import { cliErrorOf } from "./lib/options.ts";

/** Prints the demo's progress as lines for people. */
const printer: DemoReporter = {
  starting(root) {
    print(colors.bold("1. Starting a 3-node cluster on 127.0.0.1 (data in " + root + ")"));
  },
  nodeStarted({ id, address, master }) {
    print(`   node ${id} at ${address}${master ? " (master)" : ", joined and promoted"}`);
  },
  booting() {
    print(colors.bold("2. Booting ~zod"));
  },
  booted({ pill, events }) {
    if (pill !== undefined) {
      print(`   ~zod booted from ${pill}: ${events} boot events planned and committed`);
    } else {
      print(
        `   ${
          colors.yellow("no pill found")
        }: planning a small GENERATED boot sequence (not a real ship)`,
      );
    }
  },
  streaming({ rate, node }) {
    print(
      colors.bold(`3. A runtime plans ~${rate} events/s through node ${node}'s runtime socket`),
    );
  },
  progress({ planned, released, commitIndex, eventsPerSecond, lag }) {
    const lagText = lag ? lag.map((m) => `n${m.node} ${m.behind}`).join(", ") : "?";
    print(
      `    planned ${count(planned)}  released ${count(released)}  committed idx ${
        count(commitIndex)
      }  ${eventsPerSecond.toFixed(0)} ev/s  lag: ${lagText}`,
    );
  },
  killing(node) {
    print(colors.bold(`4. kill -9 the master (node ${node})`));
  },
  failedOver({ node, failoverMs }) {
    print(
      `   node ${node} is master; the runtime reconnected and was released again after ${failoverMs} ms`,
    );
  },
  checking() {
    print(colors.bold("5. Checking every released event on the new master"));
  },
  finished(r) {
    print(colors.bold("Report"));
    print(
      `   events released before the kill: ${count(r.releasedBeforeKill)}, after: ${
        count(r.releasedAfterKill)
      }`,
    );
    print(
      `   failover (kill -9 of the master to the first release by the new one): ${r.failoverMs} ms`,
    );
    print(`   released events checked on the new master: ${count(r.checked)}; lost: ${r.lost}`);
    if (r.lost > 0) return;
    print(colors.green("   no released event was lost"));
    if (r.kept) {
      print(
        `Cluster left running (data in ${r.kept.root}); stop it with: kill ${
          r.kept.pids.join(" ")
        }`,
      );
    }
  },
};

/** The vere the demo runs when none is named: the one built for this repo's tests, if there. */
const DEFAULT_DEMO_VERE = fileURLToPath(
  new URL("../../shared/tools/vere/urbit-3.0", import.meta.url),
);

/** Prints the vere demo's result; an error when the nodes' logs differ. */
function printVereResult(r: VereDemoResult): void {
  print(colors.bold("Report"));
  print(
    `   ~zod's events on the cluster: ${count(r.eveAtKill)} at the kill, ${
      count(r.eveAtEnd)
    } at the end`,
  );
  print(
    `   failover: vere started on the new master ${
      (r.startMs / 1000).toFixed(1)
    } s after the kill -9, live after ${(r.liveMs / 1000).toFixed(1)} s (replayed ${r.replayed})`,
  );
  print(
    `   tail-delay window: ${r.window} events the killed vere computed were never committed ` +
      "(stock vere releases effects without waiting; the hook-mode vere closes this window)",
  );
  print(`   surviving nodes with the same log of ~zod: ${r.agree} of ${r.compared}`);
  if (r.kept) {
    print(
      `Cluster left running (data in ${r.kept.root}); stop it with: kill ${r.kept.pids.join(" ")}`,
    );
  }
  if (r.agree < r.compared) throw new CliError("the surviving nodes' logs of ~zod differ");
  print(colors.green("   the surviving nodes hold the same log"));
}

/** Builds the `demo` command. */
export function demoCommand(): CommandUnknownOpts {
  return new Command("demo")
    .description(
      "run a 3-node cluster here, boot ~zod, stream events, kill the master, check nothing released was lost",
    )
    .option(
      "--pill <file>",
      "boot ~zod from this pill (default ../shared/fixtures/brass.pill when present)",
    )
    .option("--no-pill", "plan a small generated boot sequence instead of a real pill")
    .option("--seconds <n>", "seconds of load before and after the kill", (v) => Number(v), 4)
    .option("--rate <n>", "events per second the runtime plans", (v) => Number(v), 2000)
    .option("--keep", "leave the cluster running at the end")
    .option(
      "--runtime <runtime>",
      "vere: the real Urbit runtime, run by the nodes (--exec); stand-in: a test client of the runtime protocol (default: vere when it runs here and a pill is at hand)",
    )
    .option(
      "--vere <file>",
      "the vere binary for --runtime vere (default ../shared/tools/vere/urbit-3.0)",
    )
    .action(async (options) => {
      const runtime = options.runtime;
      if (runtime !== undefined && runtime !== "vere" && runtime !== "stand-in") {
        throw new CliError(`--runtime ${runtime} is not a runtime; give vere or stand-in`);
      }
      const vere = options.vere ?? DEFAULT_DEMO_VERE;
      const pill = typeof options.pill === "string" ? options.pill : DEFAULT_DEMO_PILL;
      const problem = vereProblem(vere) ??
        (options.pill === false ? "--no-pill was given" : undefined) ??
        (exists(pill) ? undefined : `no pill at ${pill}`);
      if (runtime === "vere" && problem !== undefined) {
        throw new CliError(
          `the demo cannot run the real vere: ${problem}; or use --runtime stand-in`,
        );
      }
      try {
        if (problem === undefined && runtime !== "stand-in") {
          print(colors.bold(`Runtime: the real vere at ${vere}`));
          const r = await runVereDemo({
            vere,
            pill,
            cacheDir: vereCacheDir(),
            seconds: options.seconds,
            keep: options.keep === true,
          }, { step: (t) => print(colors.bold(t)), line: (t) => print(t) });
          printVereResult(r);
          return;
        }
        print(
          colors.bold(
            `Runtime: the stand-in (a runtime-protocol client that plans made-up events)${
              runtime === "stand-in" ? "" : `, as ${problem}`
            }`,
          ),
        );
        await runDemo({
          pill: options.pill,
          seconds: options.seconds,
          rate: options.rate,
          keep: options.keep === true,
        }, printer);
      } catch (e) {
        throw cliErrorOf(e);
      }
    });
}
