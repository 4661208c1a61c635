/**
 * `seguro demo`: a 3-node cluster on this machine, ~zod booted from a pill,
 * a runtime streaming events through the runtime socket, the master killed
 * with SIGKILL, the runtime following the new master, and a check that
 * every released event survived. The demo itself is `runDemo` in
 * server/demo.ts; this command prints its progress.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { type DemoReporter, runDemo } from "../server/demo.ts";
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
    .action(async (options) => {
      try {
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
