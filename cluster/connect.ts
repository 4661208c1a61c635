/**
 * Turns a fresh TCP connection into an authenticated frame connection: TLS
 * and the signed hellos (cluster/tls.ts, cluster/handshake.ts), or, with
 * `--insecure-plaintext`, the HMAC hellos of the cluster secret. The one
 * place the transport and the client start a connection.
 * @module
 */

import { tcpStream } from "./byte_stream.ts";
import { FrameConn } from "./frame.ts";
import {
  handshake,
  HANDSHAKE_TIMEOUT_MS,
  type Hello,
  type LocalHello,
  secureHandshake,
} from "./handshake.ts";
import { secureAccept, secureConnect, type TlsIdentity } from "./tls.ts";

/** How this side secures its connections. */
export type Security =
  | {
    readonly kind: "tls";
    /** This side's certificate now (a node's changes on `cert rotate`). */
    readonly identity: () => TlsIdentity;
  }
  | {
    /** `--insecure-plaintext`: authenticated by the cluster secret, NOT encrypted. */
    readonly kind: "plaintext";
    readonly secret: Uint8Array;
  };

/** A connection through its handshake. */
export interface OpenedConn {
  readonly fc: FrameConn;
  /** The other side's hello (with a client's role and a certificate's serial). */
  readonly hello: Hello;
}

/** Options of {@linkcode openConn}. */
export interface OpenOptions {
  /** The connection's send queue bound (FrameConn's default otherwise). */
  queueBytesMax?: number;
  /** True for the serial of a revoked certificate: refused before this side proves anything. */
  isRevoked?: (serial: string) => boolean;
}

/**
 * Runs TLS (unless plaintext) and the hellos on `conn` as `side`. On
 * failure `conn` is closed and HandshakeError (or a TLS one) is thrown.
 */
export async function openConn(
  conn: Deno.TcpConn,
  side: "initiator" | "acceptor",
  local: LocalHello,
  security: Security,
  options: OpenOptions = {},
): Promise<OpenedConn> {
  const { queueBytesMax, isRevoked } = options;
  if (security.kind === "plaintext") {
    const fc = new FrameConn(tcpStream(conn), queueBytesMax);
    try {
      return { fc, hello: await handshake(fc, side, local, security.secret) };
    } catch (e) {
      fc.close();
      throw e;
    }
  }
  const me = security.identity();
  const channel = side === "initiator"
    ? await secureConnect(conn, me, HANDSHAKE_TIMEOUT_MS)
    : await secureAccept(conn, me, HANDSHAKE_TIMEOUT_MS);
  const fc = new FrameConn(channel.stream, queueBytesMax);
  try {
    return { fc, hello: await secureHandshake(fc, side, local, channel, me, isRevoked) };
  } catch (e) {
    fc.close();
    throw e;
  }
}
