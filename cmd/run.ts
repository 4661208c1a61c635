/**
 * `seguro run`: runs an existing node; with `--machines`, first bootstraps a
 * static cluster from a list of addresses.
 * @module
 */

import { Command, type CommandUnknownOpts, Option } from "@commander-js/extra-typings";

import { readNodeFile } from "../cluster/datadir.ts";

import { CliError, positiveOption, UsageError } from "./lib/errors.ts";

import {
  addressOption,
  cliErrorOf,
  dataDirOf,
  electionTimeoutOption,
  LOG_FORMAT_FLAG_HELP,
  LOG_TAIL_FLAG_HELP,
  logFormatOf,
  logFormatOption,
  logTailOption,
  METRICS_FLAG_HELP,
  metricsOption,
  tokenFromOptions,
} from "./lib/options.ts";

import { runNode } from "../server/node.ts";
import { assertFreshDataDir, createNodeDir } from "../server/bootstrap.ts";

import { note } from "./lib/output.ts";

/** `--runtime-tcp` is gone: say why and what to use, in one line. */
function runtimeTcpRemoved(): never {
  throw new UsageError(
    "--runtime-tcp was removed: the runtime protocol carries no credential, so only the node's user may reach it, on the Unix socket runtime.sock in the data dir (mode 0600); point the runtime there",
  );
}

function machinesOption(value: string): string[] {
  const list = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (list.length === 0) throw new UsageError("--machines needs at least one HOST:PORT");
  const out = list.map(addressOption);
  if (new Set(out).size !== out.length) throw new UsageError("--machines lists an address twice");
  return out;
}

/** Builds the `run` command. */
export function runCommand(): CommandUnknownOpts {
  return new Command("run")
    .description(
      "run this machine's node in the foreground (SIGINT/SIGTERM stop it cleanly; a second signal stops it at once)",
    )
    .option("--data-dir <dir>", "the node's data dir (default $SEGURO_DATA_DIR or ~/.seguro)")
    .option(
      "--listen <host:port>",
      "with --machines on a new data dir: where to listen; later it must match the recorded address (to move a node: 'seguro member remove ID', then join again)",
      addressOption,
    )
    .option(
      "--advertise <host:port>",
      "with --machines on a new data dir: this machine's entry of the list; later it must match the recorded one",
      addressOption,
    )
    .option(
      "--machines <list>",
      "bootstrap a static cluster: every member's HOST:PORT, comma-separated, same order on every machine (needs the token)",
      machinesOption,
    )
    .addOption(new Option("--runtime-tcp <port>").hideHelp().argParser(runtimeTcpRemoved))
    .option(
      "--standby-dir <dir>",
      "keep a standby pier per ship here, up to this node's applied events",
    )
    .option(
      "--exec <command>",
      "while master, run this for each ship marked with 'seguro ship run' ({pier} = its standby pier; {socket} = this node's runtime socket, for the hook-mode vere: --seguro {socket}); needs --standby-dir",
    )
    .option(
      "--exec-grace-ms <ms>",
      "how long a stopping runtime gets between SIGTERM and SIGKILL (default 5000)",
      positiveOption("--exec-grace-ms"),
    )
    .option(
      "--standby-play <seconds>",
      "warm standby: every this many seconds, run the --exec runtime's own 'play' on a standby pier that grew, so a failover replays few events",
      positiveOption("--standby-play"),
    )
    .option(
      "--election-timeout-ms <ms>",
      "base election timeout, kept for later runs (default 500; raise it on heavily loaded machines)",
      electionTimeoutOption,
    )
    .option("--log-tail <entries>", LOG_TAIL_FLAG_HELP, logTailOption)
    .option("--metrics <host:port>", METRICS_FLAG_HELP, metricsOption)
    .option("--log-format <format>", LOG_FORMAT_FLAG_HELP, logFormatOption)
    .option("--token <token>", "cluster token for --machines (prefer SEGURO_TOKEN or --token-file)")
    .option("--token-file <file>", "file holding the cluster token")
    .action(async (options) => {
      const dir = dataDirOf(options);
      if (options.machines !== undefined && readNodeFile(dir) === undefined) {
        bootstrapStatic(dir, options.machines, options);
      }
      const code = await runNode(dir, {
        listen: options.listen,
        advertise: options.advertise,
        standbyDir: options.standbyDir,
        electionTimeoutMs: options.electionTimeoutMs,
        logTailEntries: options.logTail,
        exec: options.exec,
        execGraceMs: options.execGraceMs,
        standbyPlayMs: options.standbyPlay === undefined ? undefined : options.standbyPlay * 1000,
        metrics: options.metrics,
        logFormat: logFormatOf(options),
      });
      if (code !== 0) throw new CliError("the node stopped after a fatal error; see the log above");
    });
}

function bootstrapStatic(
  dir: string,
  machines: string[],
  options: { listen?: string; advertise?: string; token?: string; tokenFile?: string },
): void {
  const credentials = tokenFromOptions(options);
  if (credentials === undefined) {
    throw new UsageError(
      "--machines needs the cluster token on every machine: make one with 'seguro token new', then set SEGURO_TOKEN",
    );
  }
  if (!("secret" in credentials)) {
    throw new UsageError(
      "--machines needs the cluster token (sgt2., from 'seguro token new'), not a client credential",
    );
  }
  const self = options.advertise ?? options.listen;
  const position = self === undefined ? -1 : machines.indexOf(self);
  if (position < 0) {
    throw new UsageError(
      "--machines: pass --advertise (or --listen) with this machine's own entry of the list",
    );
  }
  const nodeId = position + 1;
  // Every machine seeds the same addresses: the same state as if they had been applied.
  const existed = assertFreshDataDir(dir);
  try {
    createNodeDir(dir, {
      credentials,
      nodeId,
      listen: options.listen ?? self!,
      advertise: self!,
      voters: machines.map((_, i) => i + 1),
      addresses: new Map(machines.map((a, i) => [i + 1, a])),
    }, existed);
  } catch (e) {
    throw cliErrorOf(e);
  }
  note(`bootstrapped node ${nodeId} of a static ${machines.length}-node cluster in ${dir}`);
}
