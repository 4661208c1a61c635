/**
 * `seguro init`: creates a one-node cluster and runs it.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";

import { encodeToken, newClusterSecret } from "../cluster/token.ts";

import { CliError, UsageError } from "./lib/errors.ts";

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
} from "./lib/options.ts";

import { bindEndpoints, closeEndpoints, runNode } from "../server/node.ts";

import {
  advertiseOf,
  assertFreshDataDir,
  createNodeDir,
  LISTEN_DEFAULT,
} from "../server/bootstrap.ts";

import { colors, print } from "./lib/output.ts";

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** Builds the `init` command. */
export function initCommand(): CommandUnknownOpts {
  return new Command("init")
    .description("create a new cluster with this machine as its first node, then run it")
    .option(
      "--data-dir <dir>",
      "where this node keeps its data (default $SEGURO_DATA_DIR or ~/.seguro)",
    )
    .option(
      "--listen <host:port>",
      "address to listen on for peers and clients",
      addressOption,
      LISTEN_DEFAULT,
    )
    .option(
      "--advertise <host:port>",
      "address other machines reach this node at (default: --listen)",
      addressOption,
    )
    .option("--no-start", "only create the node; start it later with 'seguro run'")
    .option(
      "--election-timeout-ms <ms>",
      "base election timeout, kept for later runs (default 500; raise it on loaded machines)",
      electionTimeoutOption,
    )
    .option("--log-tail <entries>", LOG_TAIL_FLAG_HELP, logTailOption)
    .option("--metrics <host:port>", METRICS_FLAG_HELP, metricsOption)
    .option("--log-format <format>", LOG_FORMAT_FLAG_HELP, logFormatOption)
    .option(
      "--insecure-plaintext",
      "no TLS: connections are authenticated but NOT encrypted (for benchmarks only)",
    )
    .action(async (options) => {
      if (!options.start && options.metrics !== undefined) {
        throw new UsageError(
          "--metrics serves the running node, and --no-start does not run it: pass --metrics to 'seguro run'",
        );
      }
      const dir = dataDirOf(options);
      const advertise = advertiseOf(options.listen, options.advertise);
      // Everything that can fail is checked before anything is created: a failed
      // init leaves no data dir behind and prints no token.
      const existed = assertFreshDataDir(dir);
      const endpoints = bindEndpoints(
        options.listen,
        options.start ? options.metrics : undefined,
        "stop what uses it, or pass --listen HOST:PORT",
      );
      const clusterId = randomHex(16);
      const secret = await newClusterSecret(options.insecurePlaintext === true);
      try {
        createNodeDir(dir, {
          credentials: { clusterId, secret },
          nodeId: 1,
          listen: options.listen,
          advertise,
          voters: [1],
        }, existed);
      } catch (e) {
        closeEndpoints(endpoints);
        throw cliErrorOf(e);
      }
      const token = encodeToken({ clusterId, secret });
      print(`Created cluster ${clusterId} with node 1 at ${advertise} (data dir ${dir}).`);
      if (options.insecurePlaintext) {
        print(
          colors.yellow(
            "It runs WITHOUT TLS (--insecure-plaintext): anyone on the path reads every event.",
          ),
        );
      }
      print("");
      print("To add a machine, run this on it (the token is a password: it is also in");
      print(`${dir}/token; SEGURO_TOKEN keeps it out of 'ps'):`);
      print("");
      print(colors.bold(`  SEGURO_TOKEN=${token} seguro join ${advertise} --listen HOST:PORT`));
      print("");
      if (!options.start) {
        closeEndpoints(endpoints);
        print(`Start this node with: seguro run --data-dir ${dir}`);
        return;
      }
      const code = await runNode(dir, {
        electionTimeoutMs: options.electionTimeoutMs,
        logTailEntries: options.logTail,
        endpoints,
        logFormat: logFormatOf(options),
      });
      if (code !== 0) throw new CliError("the node stopped after a fatal error; see the log above");
    });
}
