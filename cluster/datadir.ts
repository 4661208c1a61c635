/**
 * A node's data dir: the store (`seguro.db`) plus two small files the admin
 * commands read while the node runs and holds the database lock:
 *
 * - `node.json` (mode 0600): cluster id, node id, listen and advertise addresses;
 * - `token` (mode 0600): the cluster token, i.e. the cluster CA (cluster/token.ts);
 * - `node-cert.pem`, `node-key.pem` (0600): the node's TLS identity
 *   (cluster/node_identity.ts).
 * @module
 */

import { join } from "node:path";
import { PRIVATE_FILE_MODE } from "./private_files.ts";
import { decodeToken, encodeToken } from "./token.ts";
import type { ClusterToken } from "./token.ts";

/** Where a data dir is when none is given: $SEGURO_DATA_DIR, else ~/.seguro. */
export function defaultDataDir(): string {
  const fromEnv = Deno.env.get("SEGURO_DATA_DIR");
  if (fromEnv) return fromEnv;
  const home = Deno.env.get("HOME") ?? ".";
  return join(home, ".seguro");
}

/** What node.json holds. */
export interface NodeFile {
  /** Cluster id. */
  clusterId: string;
  /** This node's id. */
  nodeId: number;
  /** Address the node listens on. */
  listen: string;
  /** Address other nodes reach it at. */
  advertise: string;
}

/** Writes node.json and the token file (both 0600), each tmp -> fsync -> rename. */
export function writeNodeFiles(dir: string, node: NodeFile, credentials: ClusterToken): void {
  writeDurably(join(dir, "node.json"), JSON.stringify(node, null, 2) + "\n", PRIVATE_FILE_MODE);
  writeDurably(join(dir, "token"), encodeToken(credentials) + "\n", PRIVATE_FILE_MODE);
}

/** Writes `text` to `path` with `mode`: tmp -> fsync -> rename, so a crash leaves the old file or the new. */
export function writeDurably(path: string, text: string, mode: number): void {
  const tmp = `${path}.tmp`;
  const file = Deno.openSync(tmp, { write: true, create: true, truncate: true, mode });
  try {
    file.writeSync(new TextEncoder().encode(text));
    file.syncSync();
  } finally {
    file.close();
  }
  Deno.chmodSync(tmp, mode);
  Deno.renameSync(tmp, path);
}

/** Reads node.json; undefined when the dir has none. */
export function readNodeFile(dir: string): NodeFile | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(join(dir, "node.json"))) as NodeFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`${join(dir, "node.json")} is unreadable: ${(e as Error).message}`);
  }
}

/** Reads the token file of a data dir. */
export function readTokenFile(dir: string): ClusterToken {
  const credentials = decodeToken(Deno.readTextFileSync(join(dir, "token")));
  if (!("secret" in credentials)) {
    throw new RangeError(`${join(dir, "token")} holds a client credential, not the cluster token`);
  }
  return credentials;
}
