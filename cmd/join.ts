/**
 * `seguro join HOST:PORT`: adds this machine to a cluster and runs it.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";

import { readNodeFile } from "../cluster/datadir.ts";

import { withLeader } from "../cluster/api.ts";

import type { JoinAnswer } from "../cluster/admin_protocol.ts";

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
  tokenFromOptions,
} from "./lib/options.ts";

import { bindEndpoints, closeEndpoints, type NodeEndpoints, runNode } from "../server/node.ts";

import {
  advertiseOf,
  assertFreshDataDir,
  createNodeDir,
  LISTEN_DEFAULT,
} from "../server/bootstrap.ts";

import { note } from "./lib/output.ts";

/** Builds the `join` command. */
export function joinCommand(): CommandUnknownOpts {
  return new Command("join")
    .description(
      "add this machine to a cluster as a learner (promoted once caught up), then run it",
    )
    .argument("<host:port>", "address of any member of the cluster", addressOption)
    .option(
      "--token <token>",
      "the cluster token (visible in ps; prefer SEGURO_TOKEN or --token-file)",
    )
    .option("--token-file <file>", "file holding the cluster token")
    .option(
      "--data-dir <dir>",
      "where this node keeps its data (default $SEGURO_DATA_DIR or ~/.seguro)",
    )
    .option("--listen <host:port>", "address to listen on", addressOption, LISTEN_DEFAULT)
    .option(
      "--advertise <host:port>",
      "address other machines reach this node at (default: --listen)",
      addressOption,
    )
    .option("--no-start", "only join; start the node later with 'seguro run'")
    .option(
      "--election-timeout-ms <ms>",
      "base election timeout, kept for later runs (default 500; raise it on loaded machines)",
      electionTimeoutOption,
    )
    .option("--log-tail <entries>", LOG_TAIL_FLAG_HELP, logTailOption)
    .option("--metrics <host:port>", METRICS_FLAG_HELP, metricsOption)
    .option("--log-format <format>", LOG_FORMAT_FLAG_HELP, logFormatOption)
    .action(async (member, options) => {
      if (!options.start && options.metrics !== undefined) {
        throw new UsageError(
          "--metrics serves the running node, and --no-start does not run it: pass --metrics to 'seguro run'",
        );
      }
      const dir = dataDirOf(options);
      const credentials = tokenFromOptions(options);
      const existing = readNodeFile(dir);
      let endpoints: NodeEndpoints | undefined;
      if (existing !== undefined) {
        // Idempotent: this machine already joined; just run it.
        if (credentials !== undefined && credentials.clusterId !== existing.clusterId) {
          throw new CliError(
            `${dir} belongs to cluster ${existing.clusterId.slice(0, 8)}..., not the token's ${
              credentials.clusterId.slice(0, 8)
            }...; use another --data-dir`,
          );
        }
        note(`${dir} already holds node ${existing.nodeId}; running it`);
      } else {
        if (credentials === undefined) {
          throw new UsageError(
            "join needs the cluster token: set SEGURO_TOKEN or pass --token-file FILE",
          );
        }
        if (!("secret" in credentials)) {
          throw new UsageError(
            "join needs the cluster token (sgt2., from the data dir's 'token' file), not a client credential: a node holds the cluster CA",
          );
        }
        const advertise = advertiseOf(options.listen, options.advertise);
        // Checked before the cluster is asked: a busy port must not leave a learner behind.
        const existed = assertFreshDataDir(dir);
        endpoints = bindEndpoints(
          options.listen,
          options.start ? options.metrics : undefined,
          "stop what uses it, or pass --listen HOST:PORT",
        );
        note(`asking ${member} to add ${advertise} to the cluster...`);
        let answer: JoinAnswer;
        try {
          answer = await withLeader(
            member,
            credentials,
            (c) => c.join(advertise),
          );
        } catch (e) {
          closeEndpoints(endpoints);
          throw cliErrorOf(e);
        }
        try {
          createNodeDir(dir, {
            credentials: { clusterId: answer.clusterId, secret: credentials.secret },
            nodeId: answer.nodeId,
            listen: options.listen,
            advertise,
            voters: [],
          }, existed);
        } catch (e) {
          closeEndpoints(endpoints);
          throw cliErrorOf(e);
        }
        note(`joined as node ${answer.nodeId} (a learner until it has caught up; then a voter)`);
      }
      if (!options.start) {
        closeEndpoints(endpoints);
        return;
      }
      const code = await runNode(dir, {
        electionTimeoutMs: options.electionTimeoutMs,
        logTailEntries: options.logTail,
        metrics: options.metrics,
        logFormat: logFormatOf(options),
        endpoints,
      });
      if (code !== 0) throw new CliError("the node stopped after a fatal error; see the log above");
    });
}
