/**
 * `deno run -A tests/nemesis/main.ts [--profile short|long] [--rounds N]
 * [--seed S]`: the real-fault nemesis (see nemesis.ts). Prints a line per
 * round and a summary; exits 1 on any violation or failure to run, 2 on a
 * usage error, 130 after Ctrl-C (having removed everything it made).
 *
 * Profiles: `short` (CI; about 30 s, under 2 minutes on a loaded machine):
 * 8 rounds dealt from kill -9 of the master (twice), SIGSTOP of the master,
 * the master isolated by link down, one-way loss from the master, kill -9 of
 * a follower, random loss and a follower isolated, then one exec-mode round.
 * `long`: faults drawn by weight until 200 master failovers (or 40 minutes),
 * then 5 exec-mode rounds.
 *
 * Other options: `--failovers N`, `--minutes M`, `--exec-rounds N`,
 * `--inflight N` (default 256), `--rate N` (plans/s, default unlimited),
 * `--faults a,b` (draw only these kinds), `--keep`, `--verbose`,
 * `--seguro DIR` (run the nodes from another checkout, e.g. an older commit
 * unpacked with `git archive`).
 * @module
 */

import { resolve } from "node:path";
import { runCleanup } from "./cleanup.ts";
import { THIS_REPO } from "./cluster.ts";
import { FAULT_KINDS, type FaultKind } from "./faults.ts";
import { INFLIGHT_DEFAULT } from "./limits.ts";
import { type NemesisOptions, runNemesis } from "./nemesis.ts";
import { formatSummary, passed } from "./summary.ts";

/** The options of a profile, before the command line's overrides. */
export function profileOptions(profile: "short" | "long"): Omit<NemesisOptions, "log" | "seed"> {
  const common = {
    inflight: INFLIGHT_DEFAULT,
    ratePerSecond: 0,
    keep: false,
    verbose: false,
    repo: THIS_REPO,
    faults: [],
  };
  return profile === "short"
    ? { ...common, profile, rounds: 8, failovers: 0, timeLimitMs: 150_000, execRounds: 1 }
    : {
      ...common,
      profile,
      rounds: 2_000,
      failovers: 200,
      timeLimitMs: 40 * 60_000,
      execRounds: 5,
    };
}

class UsageError extends Error {}

/** Parses the command line. */
export function parseArgs(argv: readonly string[]): Omit<NemesisOptions, "log"> {
  const profileAt = argv.indexOf("--profile");
  const profile = profileAt >= 0 ? argv[profileAt + 1] : "short";
  if (profile !== "short" && profile !== "long") {
    throw new UsageError(`--profile is short or long (got '${profile}')`);
  }
  const o: Omit<NemesisOptions, "log"> = {
    ...profileOptions(profile),
    seed: Date.now() % 1_000_000,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const int = (): number => {
      const v = argv[++i];
      const n = Number(v);
      if (v === undefined || !Number.isInteger(n) || n < 0) {
        throw new UsageError(`${a} needs a whole number (got '${v ?? ""}')`);
      }
      return n;
    };
    switch (a) {
      case "--profile":
        i++;
        break;
      case "--rounds":
        o.rounds = int();
        break;
      case "--seed":
        o.seed = int();
        break;
      case "--failovers":
        o.failovers = int();
        break;
      case "--minutes":
        o.timeLimitMs = int() * 60_000;
        break;
      case "--exec-rounds":
        o.execRounds = int();
        break;
      case "--inflight":
        o.inflight = Math.max(1, int());
        break;
      case "--rate":
        o.ratePerSecond = int();
        break;
      case "--seguro": {
        const dir = argv[++i];
        if (dir === undefined) throw new UsageError("--seguro needs a checkout's directory");
        o.repo = resolve(dir);
        break;
      }
      case "--faults": {
        const list = (argv[++i] ?? "").split(",").filter((k) => k !== "");
        const known = new Set<string>(FAULT_KINDS);
        const bad = list.find((k) => !known.has(k));
        if (list.length === 0 || bad !== undefined) {
          throw new UsageError(
            `--faults takes a comma-separated list of ${FAULT_KINDS.join(", ")} (got '${
              bad ?? ""
            }')`,
          );
        }
        o.faults = list as FaultKind[];
        break;
      }
      case "--keep":
        o.keep = true;
        break;
      case "--verbose":
        o.verbose = true;
        break;
      default:
        throw new UsageError(`unknown option '${a}'; see the comment at the top of main.ts`);
    }
  }
  return o;
}

if (import.meta.main) {
  let options;
  try {
    options = parseArgs(Deno.args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`nemesis: ${e.message}`);
    Deno.exit(2);
  }
  Deno.addSignalListener("SIGINT", async () => {
    console.error("nemesis: interrupted; removing the nodes, namespaces and temp dir");
    await runCleanup();
    Deno.exit(130);
  });
  const log = (line: string) => console.log(`${new Date().toISOString().slice(11, 23)} ${line}`);
  log(
    `nemesis: profile ${options.profile}, seed ${options.seed} (replay the same faults with --seed ${options.seed})`,
  );
  const result = await runNemesis({ ...options, log });
  console.log(formatSummary(result));
  Deno.exit(passed(result) ? 0 : 1);
}
