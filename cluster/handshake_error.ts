/**
 * Why a connection's start failed: TLS (cluster/tls.ts) or the hellos
 * after it (cluster/handshake.ts).
 * @module
 */

/** The handshake failed; the message is the reason, safe to log (no secrets). */
export class HandshakeError extends Error {
  /** True when the connection closed or went silent, rather than a side refusing the other. */
  readonly lost: boolean;
  /** Makes a HandshakeError with the reason. */
  constructor(message: string, lost = false) {
    super(message);
    this.name = "HandshakeError";
    this.lost = lost;
  }
}

/** The other side belongs to another cluster (another token's, or another data dir's). */
export class WrongClusterError extends HandshakeError {
  /** The cluster this side belongs to (a client: its token's). */
  readonly local: string;
  /** The cluster the other side said it belongs to. */
  readonly remote: string;

  /** Makes the error; the message names both clusters from this side's point of view. */
  constructor(local: string, remote: string) {
    super(
      `Wrong cluster: the other side belongs to cluster ${remote.slice(0, 8)}..., this side to ${
        local.slice(0, 8)
      }...`,
    );
    this.name = "WrongClusterError";
    this.local = local;
    this.remote = remote;
  }
}

/** The other side's certificate is not signed by this side's cluster CA: another cluster's, or forged. */
export class ForeignCertificateError extends HandshakeError {
  /** Makes the error; the message says so and what to check. */
  constructor() {
    super(
      "TLS: the other side's certificate is not signed by this cluster's CA (another cluster's, or forged); check the address and the token",
    );
    this.name = "ForeignCertificateError";
  }
}
