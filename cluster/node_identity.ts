/**
 * A node's TLS identity in its data dir: `node-cert.pem` and `node-key.pem`
 * (0600), issued by the cluster CA for this node id. A node issues its own
 * at start when it has none, when they are another CA's or another node
 * id's, or when fewer than {@linkcode RENEW_BEFORE_DAYS} days remain; and
 * on `seguro cert rotate`.
 * @module
 */

import { join } from "node:path";
import {
  type CertificateInfo,
  certificateProblem,
  describeCertificate,
  issueCertificate,
  keyMatchesCertificate,
  NODE_VALID_DAYS,
} from "./certs.ts";
import { writeDurably } from "./datadir.ts";
import { PRIVATE_FILE_MODE } from "./private_files.ts";
import { type ClusterSecret, readClusterSecret } from "./token.ts";
import type { TlsIdentity } from "./tls.ts";
import type { Security } from "./connect.ts";

/** A node renews its certificate (at start, and while it runs) when fewer days than this remain. */
export const RENEW_BEFORE_DAYS = 30;
/** How often a running node looks at its certificate's expiry. */
export const RENEW_CHECK_MS = 6 * 3600_000;
const DAY_MS = 86_400_000;
const CERT_FILE = "node-cert.pem";
const KEY_FILE = "node-key.pem";

/** The node's identity from `dir`, issuing a new one first when it must (see the module doc). */
export async function loadNodeIdentity(
  dir: string,
  cluster: ClusterSecret,
  nodeId: number,
  now = new Date(),
): Promise<TlsIdentity> {
  const held = readHeld(dir);
  if (held !== undefined && await usable(held, cluster, nodeId, now)) {
    return { caPem: cluster.ca.certPem, ...held };
  }
  return await rotateNodeIdentity(dir, cluster, nodeId, now);
}

/** Issues the node a new key and certificate and writes them to `dir`. */
export async function rotateNodeIdentity(
  dir: string,
  cluster: ClusterSecret,
  nodeId: number,
  now = new Date(),
): Promise<TlsIdentity> {
  const fresh = await issueCertificate(cluster.ca, { kind: "node", nodeId }, now, NODE_VALID_DAYS);
  // The key first: a crash between the two leaves a certificate that fails
  // to match the key, and the next start issues both again.
  writeDurably(join(dir, KEY_FILE), fresh.keyPem, PRIVATE_FILE_MODE);
  writeDurably(join(dir, CERT_FILE), fresh.certPem, PRIVATE_FILE_MODE);
  return { caPem: cluster.ca.certPem, ...fresh };
}

function readHeld(dir: string): { certPem: string; keyPem: string } | undefined {
  try {
    return {
      certPem: Deno.readTextFileSync(join(dir, CERT_FILE)),
      keyPem: Deno.readTextFileSync(join(dir, KEY_FILE)),
    };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

async function usable(
  held: { certPem: string; keyPem: string },
  cluster: ClusterSecret,
  nodeId: number,
  now: Date,
): Promise<boolean> {
  try {
    if (await certificateProblem(held.certPem, cluster.ca.certPem, now) !== undefined) return false;
    const info = describeCertificate(held.certPem);
    const renewAt = info.notAfter.getTime() - RENEW_BEFORE_DAYS * DAY_MS;
    const mine = info.holder?.kind === "node" && info.holder.nodeId === nodeId;
    return mine && now.getTime() < renewAt &&
      await keyMatchesCertificate(held.certPem, held.keyPem);
  } catch {
    return false;
  }
}

/**
 * How a node secures its connections, from its data dir and the cluster
 * secret: plaintext for a cluster made with `--insecure-plaintext`, else TLS
 * with the node's certificate, which {@linkcode rotate} replaces (new
 * connections use the new one at once; open ones keep theirs).
 */
export class NodeSecurity {
  /** What the transport is given. */
  readonly security: Security;
  readonly #dir: string;
  readonly #cluster: ClusterSecret;
  readonly #nodeId: number;
  #identity: TlsIdentity | undefined;
  /** What the node's certificate says (parsed once per certificate, not per status). */
  #info: CertificateInfo | undefined;
  readonly #caInfo: CertificateInfo;
  #renewal: ReturnType<typeof setInterval> | undefined;

  private constructor(dir: string, cluster: ClusterSecret, nodeId: number, identity?: TlsIdentity) {
    this.#dir = dir;
    this.#cluster = cluster;
    this.#nodeId = nodeId;
    this.#identity = identity;
    this.#info = identity === undefined ? undefined : describeCertificate(identity.certPem);
    this.#caInfo = describeCertificate(cluster.ca.certPem);
    this.security = identity === undefined
      ? { kind: "plaintext", secret: cluster.secret }
      : { kind: "tls", identity: () => this.#identity! };
  }

  /** Loads (or issues) the node's identity; throws RangeError for a secret with no CA. */
  static async load(dir: string, secret: Uint8Array, nodeId: number): Promise<NodeSecurity> {
    const cluster = readClusterSecret(secret);
    if (cluster.plaintext) return new NodeSecurity(dir, cluster, nodeId);
    return new NodeSecurity(dir, cluster, nodeId, await loadNodeIdentity(dir, cluster, nodeId));
  }

  /** The node's certificate, or undefined in plaintext. */
  get certificate(): CertificateInfo | undefined {
    return this.#identity === undefined ? undefined : this.#info;
  }

  /** When the node's certificate and the CA expire (ISO 8601), for `status`; null in plaintext. */
  expiry(): { node: { serial: string; notAfter: string }; caNotAfter: string } | null {
    const node = this.certificate;
    if (node === undefined) return null;
    return {
      node: { serial: node.serial, notAfter: node.notAfter.toISOString() },
      caNotAfter: this.#caInfo.notAfter.toISOString(),
    };
  }

  /**
   * Renews the certificate while the node runs, when fewer than
   * {@linkcode RENEW_BEFORE_DAYS} days remain (checked every
   * {@linkcode RENEW_CHECK_MS}); a node up for months never meets its own
   * certificate's end. Stopped by {@linkcode close}.
   */
  renewWhileRunning(log: (line: string) => void): void {
    if (this.#identity === undefined || this.#renewal !== undefined) return;
    const timer = setInterval(async () => {
      try {
        const fresh = await this.renewIfDue(new Date());
        if (fresh === undefined) return;
        log(
          `renewed this node's TLS certificate: ${fresh.serial}, valid until ${fresh.notAfter.toISOString()}`,
        );
      } catch (e) {
        log(
          `could not renew this node's TLS certificate: ${
            (e as Error).message
          }; run 'seguro cert rotate'`,
        );
      }
    }, RENEW_CHECK_MS);
    Deno.unrefTimer(timer);
    this.#renewal = timer;
  }

  /** Rotates when fewer than {@linkcode RENEW_BEFORE_DAYS} days remain at `now`; the new certificate, or undefined. */
  async renewIfDue(now: Date): Promise<CertificateInfo | undefined> {
    if (this.#info === undefined) return undefined;
    if (this.#info.notAfter.getTime() - now.getTime() > RENEW_BEFORE_DAYS * DAY_MS) {
      return undefined;
    }
    return await this.rotate();
  }

  /** Stops the renewal. */
  close(): void {
    clearInterval(this.#renewal);
    this.#renewal = undefined;
  }

  /** Issues the node a new key and certificate; throws in plaintext, which has none. */
  async rotate(): Promise<CertificateInfo> {
    if (this.#identity === undefined) {
      throw new RangeError("This cluster runs with --insecure-plaintext: it has no certificates");
    }
    this.#identity = await rotateNodeIdentity(this.#dir, this.#cluster, this.#nodeId);
    this.#info = describeCertificate(this.#identity.certPem);
    return this.#info;
  }
}
