/**
 * Join tokens: the cluster id and the cluster secret in one string a user can
 * paste. A token is a password: pass it in a file or the SEGURO_TOKEN
 * environment variable (a `--token` flag shows in `ps` output).
 *
 * ```
 * token := "sgt1." base64url(clusterId:16 bytes secret:32 bytes)
 * ```
 * @module
 */

import { clusterIdBytes } from "./handshake.ts";

const PREFIX = "sgt1.";

/** What a token carries. */
export interface ClusterCredentials {
  /** Cluster id, 32 hex characters. */
  clusterId: string;
  /** The cluster secret, 32 bytes. */
  secret: Uint8Array;
}

function base64url(bytes: Uint8Array): string {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** Makes a token from credentials. */
export function encodeToken(credentials: ClusterCredentials): string {
  const raw = new Uint8Array(48);
  raw.set(clusterIdBytes(credentials.clusterId), 0);
  raw.set(credentials.secret, 16);
  return PREFIX + base64url(raw);
}

/** Reads a token; throws RangeError saying what is wrong with it. */
export function decodeToken(text: string): ClusterCredentials {
  const token = text.trim();
  if (!token.startsWith(PREFIX)) {
    throw new RangeError(
      "The token does not start with 'sgt1.'; copy the whole token 'seguro init' printed",
    );
  }
  let raw: Uint8Array;
  try {
    const bin = atob(token.slice(PREFIX.length).replaceAll("-", "+").replaceAll("_", "/"));
    raw = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    raw = new Uint8Array(0);
  }
  if (raw.length !== 48) {
    throw new RangeError("The token is damaged (wrong length); copy the whole token again");
  }
  const clusterId = Array.from(raw.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
  return { clusterId, secret: raw.slice(16) };
}
