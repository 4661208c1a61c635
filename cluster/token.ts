/**
 * Credentials a user pastes: the cluster token and client credentials. Both
 * are passwords: pass them in a file or the SEGURO_TOKEN environment
 * variable (a `--token` flag shows in `ps` output).
 *
 * ```
 * cluster token     := "sgt2." base64url(clusterId:16 secret)
 * secret            := "SGCA" flags:u8 (bit 0: insecure plaintext)
 *                      caCert:u16-prefixed DER  caKey:u16-prefixed PKCS#8 DER
 * client credential := "sgc1." base64url(clusterId:16 caCert cert key), each u16-prefixed DER
 * ```
 * The cluster token holds the cluster CA's key: whoever has it may do
 * everything, and a node or a CLI holding it issues itself the certificate it
 * needs. A client credential (`seguro token new --role R`) holds one
 * certificate with one role and its key, and no more.
 * @module
 */

import { ByteReader, ByteWriter, WireError } from "./codec.ts";
import { clusterIdBytes } from "./handshake.ts";
import {
  type CertifiedKey,
  createClusterCa,
  derOf,
  issueCertificate,
  pemOf,
  type Role,
} from "./certs.ts";
import type { TlsIdentity } from "./tls.ts";
import type { Security } from "./connect.ts";

const CLUSTER_PREFIX = "sgt2.";
const CLIENT_PREFIX = "sgc1.";
const SECRET_MAGIC = new TextEncoder().encode("SGCA");
const FLAG_PLAINTEXT = 1;
/** Life of the admin certificate a CLI holding the cluster token issues itself. */
const SELF_ISSUED_VALID_DAYS = 1;

/** The cluster token: the cluster id and the secret (the CA, and whether the cluster is plaintext). */
export interface ClusterToken {
  /** Cluster id, 32 hex characters. */
  readonly clusterId: string;
  /** The encoded secret (see the module doc). */
  readonly secret: Uint8Array;
}

/** A client credential: one certificate, with its role and key. */
export interface ClientCredential {
  /** Cluster id, 32 hex characters. */
  readonly clusterId: string;
  /** The CA's certificate, this credential's certificate and its key. */
  readonly client: TlsIdentity;
}

/** What SEGURO_TOKEN may hold. */
export type ClusterCredentials = ClusterToken | ClientCredential;

/** What a cluster secret holds. */
export interface ClusterSecret {
  /** The cluster CA (certificate and key). */
  readonly ca: CertifiedKey;
  /** True for a cluster made with `--insecure-plaintext`. */
  readonly plaintext: boolean;
  /** The encoded secret itself (the HMAC key of plaintext mode). */
  readonly secret: Uint8Array;
}

/** Makes the secret of a new cluster: a fresh CA. */
export async function newClusterSecret(plaintext: boolean, now = new Date()): Promise<Uint8Array> {
  const ca = await createClusterCa(now);
  return new ByteWriter(1024)
    .raw(SECRET_MAGIC)
    .u8(plaintext ? FLAG_PLAINTEXT : 0)
    .bytes(derOf(ca.certPem))
    .bytes(derOf(ca.keyPem))
    .finish();
}

/** Reads a cluster secret; throws RangeError with the fix when it is not one. */
export function readClusterSecret(secret: Uint8Array): ClusterSecret {
  try {
    const r = new ByteReader(secret);
    const magic = r.raw(4, "magic");
    if (magic.some((b, i) => b !== SECRET_MAGIC[i])) throw new WireError("no CA");
    const flags = r.u8("flags");
    const certPem = pemOf(r.bytes("CA certificate"), "CERTIFICATE");
    const keyPem = pemOf(r.bytes("CA key"), "PRIVATE KEY");
    r.end("cluster secret");
    return { ca: { certPem, keyPem }, plaintext: (flags & FLAG_PLAINTEXT) !== 0, secret };
  } catch {
    throw new RangeError(
      "This cluster secret holds no CA: it was made by a seguro before TLS (P11); make a new cluster with 'seguro init' and move its ships with 'ship export' and 'ship import'",
    );
  }
}

function base64url(bytes: Uint8Array): string {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function unbase64url(text: string): Uint8Array {
  try {
    const bin = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return new Uint8Array(0);
  }
}

function hexOf(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Makes the text of a token or a client credential. */
export function encodeToken(credentials: ClusterCredentials): string {
  if ("secret" in credentials) {
    const raw = new Uint8Array(16 + credentials.secret.length);
    raw.set(clusterIdBytes(credentials.clusterId), 0);
    raw.set(credentials.secret, 16);
    return CLUSTER_PREFIX + base64url(raw);
  }
  const { caPem, certPem, keyPem } = credentials.client;
  return CLIENT_PREFIX + base64url(
    new ByteWriter(1024)
      .raw(clusterIdBytes(credentials.clusterId))
      .bytes(derOf(caPem))
      .bytes(derOf(certPem))
      .bytes(derOf(keyPem))
      .finish(),
  );
}

/** Reads a token or a client credential; throws RangeError saying what is wrong with it. */
export function decodeToken(text: string): ClusterCredentials {
  const token = text.trim();
  if (token.startsWith("sgt1.")) {
    throw new RangeError(
      "This token is from a seguro before TLS (sgt1); make a new cluster with 'seguro init', or a token with 'seguro token new'",
    );
  }
  const damaged = "The token is damaged; copy the whole token again";
  if (token.startsWith(CLUSTER_PREFIX)) {
    const raw = unbase64url(token.slice(CLUSTER_PREFIX.length));
    if (raw.length < 16 + 8) throw new RangeError(damaged);
    const secret = raw.slice(16);
    readClusterSecret(secret);
    return { clusterId: hexOf(raw.subarray(0, 16)), secret };
  }
  if (token.startsWith(CLIENT_PREFIX)) {
    try {
      const r = new ByteReader(unbase64url(token.slice(CLIENT_PREFIX.length)));
      const clusterId = hexOf(r.raw(16, "cluster id"));
      const caPem = pemOf(r.bytes("CA"), "CERTIFICATE");
      const certPem = pemOf(r.bytes("certificate"), "CERTIFICATE");
      const keyPem = pemOf(r.bytes("key"), "PRIVATE KEY");
      r.end("credential");
      return { clusterId, client: { caPem, certPem, keyPem } };
    } catch {
      throw new RangeError(damaged);
    }
  }
  throw new RangeError(
    "The token starts with neither 'sgt2.' nor 'sgc1.'; copy the whole token 'seguro init' or 'seguro token new' printed",
  );
}

const selfIssued = new Map<string, Promise<TlsIdentity>>();

/**
 * How a client holding `credentials` secures its connections: a client
 * credential's certificate; for the cluster token, an admin certificate it
 * issues itself (once per process); plaintext for a plaintext cluster.
 */
export async function clientSecurity(credentials: ClusterCredentials): Promise<Security> {
  if ("client" in credentials) {
    const identity = credentials.client;
    return { kind: "tls", identity: () => identity };
  }
  const { ca, plaintext } = readClusterSecret(credentials.secret);
  if (plaintext) return { kind: "plaintext", secret: credentials.secret };
  let identity = selfIssued.get(ca.keyPem);
  if (identity === undefined) {
    identity = issueCertificate(
      ca,
      { kind: "client", role: "admin" },
      new Date(),
      SELF_ISSUED_VALID_DAYS,
    )
      .then((c) => ({ caPem: ca.certPem, ...c }));
    selfIssued.set(ca.keyPem, identity);
  }
  const fixed = await identity;
  return { kind: "tls", identity: () => fixed };
}

/** Issues a client credential for `role`, valid `validDays`, with the cluster's CA. */
export async function issueClientCredential(
  token: ClusterToken,
  role: Role,
  validDays: number,
  now = new Date(),
): Promise<ClientCredential> {
  const { ca } = readClusterSecret(token.secret);
  const cert = await issueCertificate(ca, { kind: "client", role }, now, validDays);
  return { clusterId: token.clusterId, client: { caPem: ca.certPem, ...cert } };
}
