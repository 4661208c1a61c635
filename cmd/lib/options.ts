/**
 * What the cluster commands share: finding the data dir, reading the token
 * without it showing in `ps`, reaching the cluster, the flags that say how a
 * node runs, and turning client and node failures into CLI errors.
 * @module
 */

import { LOG_FORMATS, type LogFormat } from "../../server/node.ts";
import { defaultDataDir, readNodeFile, readTokenFile } from "../../cluster/datadir.ts";
import { type ClusterCredentials, decodeToken } from "../../cluster/token.ts";
import { formatAddress, parseAddress } from "../../cluster/address.ts";
import { StoreError } from "../../cluster/store.ts";
import { ClientError } from "../../cluster/api.ts";
import { ApiError } from "../../cluster/admin_protocol.ts";
import { CliError, UsageError } from "./errors.ts";
import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { NodeError, NodeUsageError } from "../../server/errors.ts";

/** Parses --election-timeout-ms: at least 150 ms (3 ticks). */
export function electionTimeoutOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 150 || n > 60_000) {
    throw new UsageError(
      `--election-timeout-ms must be a whole number from 150 to 60000 (got '${value}')`,
    );
  }
  return n;
}

/** Options every cluster command accepts for finding its node or cluster. */
export interface TargetOptions {
  /** Data dir of a local node. */
  dataDir?: string;
  /** Address of any member (instead of a local data dir). */
  cluster?: string;
  /** Token on the command line (visible in `ps`; prefer the file or SEGURO_TOKEN). */
  token?: string;
  /** File holding the token. */
  tokenFile?: string;
}

/** The data dir: --data-dir, else $SEGURO_DATA_DIR, else ~/.seguro. */
export function dataDirOf(options: { dataDir?: string }): string {
  const dir = options.dataDir ?? defaultDataDir();
  let isDirectory = true;
  try {
    isDirectory = Deno.statSync(dir).isDirectory;
  } catch (e) {
    // NotADirectory: a parent of it is a file.
    if (e instanceof Deno.errors.NotADirectory) isDirectory = false;
    else if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (!isDirectory) {
    throw new CliError(
      `the data dir ${dir} is not a directory; pass --data-dir with the directory 'seguro init' or 'seguro join' made`,
    );
  }
  return dir;
}

/** Parses an address option; a bad one is a usage error. */
export function addressOption(value: string): string {
  try {
    return formatAddress(parseAddress(value));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The token from --token-file, SEGURO_TOKEN or --token (in that order), if any. */
export function tokenFromOptions(options: TargetOptions): ClusterCredentials | undefined {
  let text: string | undefined;
  let source = "";
  if (options.tokenFile !== undefined) {
    try {
      text = Deno.readTextFileSync(options.tokenFile);
      source = `the token file ${options.tokenFile}`;
    } catch (e) {
      throw new CliError(
        `cannot read the token file ${options.tokenFile}: ${(e as Error).message}`,
      );
    }
  } else if (Deno.env.get("SEGURO_TOKEN")) {
    text = Deno.env.get("SEGURO_TOKEN");
    source = "SEGURO_TOKEN";
  } else if (options.token !== undefined) {
    text = options.token;
    source = "--token";
  }
  if (text === undefined) return undefined;
  try {
    return decodeToken(text);
  } catch (e) {
    throw new UsageError(`${source}: ${(e as Error).message}`);
  }
}

/** Where an admin command connects, and with what credentials. */
export interface Target {
  /** Address of a member. */
  address: string;
  /** Cluster credentials. */
  credentials: ClusterCredentials;
}

/** Finds the cluster: --cluster plus a token, else the local data dir's node. */
export function targetOf(options: TargetOptions): Target {
  if (options.cluster !== undefined) {
    const credentials = tokenFromOptions(options);
    if (credentials === undefined) {
      throw new UsageError(
        "--cluster needs the cluster token: pass --token-file FILE or set SEGURO_TOKEN",
      );
    }
    return { address: addressOption(options.cluster), credentials };
  }
  const dir = dataDirOf(options);
  const node = readNodeFile(dir);
  if (node === undefined) {
    throw new CliError(
      `${dir} holds no Seguro node; pass --data-dir, or --cluster HOST:PORT with a token`,
    );
  }
  return { address: node.advertise, credentials: readTokenFile(dir) };
}

/** Turns client-side failures into one-line CLI errors. */
export function cliErrorOf(e: unknown): unknown {
  if (e instanceof NodeUsageError) return new UsageError(e.message);
  if (
    e instanceof ClientError || e instanceof ApiError || e instanceof StoreError ||
    e instanceof NodeError
  ) {
    return new CliError(e.message);
  }
  return e;
}

/** Adds the flags every cluster command takes to find its cluster. */
export function targetFlags<T extends CommandUnknownOpts>(command: T): T {
  return command
    .option(
      "--data-dir <dir>",
      "use the node of this data dir (default $SEGURO_DATA_DIR or ~/.seguro)",
    )
    .option("--cluster <host:port>", "use this member instead (needs the token)", addressOption)
    .option("--token-file <file>", "file holding the cluster token (or set SEGURO_TOKEN)")
    .option(
      "--token <token>",
      "the cluster token (visible in ps; prefer SEGURO_TOKEN or --token-file)",
    ) as T;
}

/** Help text of the `--metrics` flag (run, init, join). */
export const METRICS_FLAG_HELP = "serve Prometheus metrics at http://HOST:PORT/metrics";

/** Parses `--metrics HOST:PORT` (a port from 1 to 65535); a bad one is a usage error. */
export function metricsOption(value: string): string {
  let port = NaN;
  let address = "";
  try {
    const a = parseAddress(value);
    port = a.port;
    address = formatAddress(a);
  } catch {
    // reported below
  }
  if (!(port >= 1 && port <= 65535)) {
    throw new UsageError(
      `--metrics must be HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:9770 (got '${value}')`,
    );
  }
  return address;
}

/** Help text of the `--log-tail` flag (run, init, join). */
export const LOG_TAIL_FLAG_HELP =
  "Raft log entries this node keeps behind its applied index (default 20000, at most 16 MiB of them); a follower further behind catches up by snapshot";

/** Parses `--log-tail`. */
export function logTailOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 10_000_000) {
    throw new UsageError(`--log-tail must be a whole number from 1 to 10000000 (got '${value}')`);
  }
  return n;
}

/** Help text of the `--log-format` flag (run, init, join). */
export const LOG_FORMAT_FLAG_HELP =
  "the node's log: 'text' lines, or 'json', one object per line with an event name for the lines that matter (default $SEGURO_LOG_FORMAT, else text)";

/** Parses `--log-format`. */
export function logFormatOption(value: string): LogFormat {
  if (!(LOG_FORMATS as readonly string[]).includes(value)) {
    throw new UsageError(`--log-format must be ${LOG_FORMATS.join(" or ")} (got '${value}')`);
  }
  return value as LogFormat;
}

/** The log format: the flag, else $SEGURO_LOG_FORMAT, else text. */
export function logFormatOf(options: { logFormat?: LogFormat }): LogFormat {
  if (options.logFormat !== undefined) return options.logFormat;
  const env = Deno.env.get("SEGURO_LOG_FORMAT");
  if (env === undefined || env === "") return "text";
  try {
    return logFormatOption(env);
  } catch {
    throw new UsageError(`SEGURO_LOG_FORMAT must be ${LOG_FORMATS.join(" or ")} (got '${env}')`);
  }
}
