/**
 * TLS 1.3 on a TCP connection, both ways, with a certificate on each side
 * (docs/security.md). The TLS library (node:tls) encrypts and checks the
 * node's certificate for the dialler; the acceptor asks for the caller's
 * certificate and this module checks it itself (cluster/certs.ts), so what
 * a caller may do never rests on the library's handling of client
 * certificates. Who proves what to whom on top is cluster/handshake.ts.
 * @module
 */

import tls from "node:tls";
import { Duplex } from "node:stream";
import { type ByteStream, TlsStream } from "./byte_stream.ts";
import { CertError, type CheckedPeer, checkPeerCertificate } from "./certs.ts";
import { ForeignCertificateError, HandshakeError } from "./handshake_error.ts";

/** This side's TLS identity: the cluster CA's certificate, and this side's certificate and key (PEM). */
export interface TlsIdentity {
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** A connection through its TLS handshake. */
export interface SecureChannel {
  /** The encrypted stream. */
  readonly stream: ByteStream;
  /** The other side's certificate, checked against the cluster CA. */
  readonly peer: CheckedPeer;
  /**
   * The session's two Finished messages (client's, then server's): unique to
   * this TLS session, so a signature over them cannot be replayed or relayed
   * into another one.
   */
  readonly binding: Uint8Array;
}

const TLS_CHUNK_BYTES = 64 * 1024;

/** A Deno TCP connection as a node stream, for node:tls to run on. */
function duplexOf(conn: Deno.TcpConn): Duplex {
  conn.setNoDelay(true);
  const buf = new Uint8Array(TLS_CHUNK_BYTES);
  return new Duplex({
    read() {
      // One buffer per connection, read into again and again; what is pushed is a copy of
      // the bytes read (a 64 KiB buffer per read made an acknowledgement cost 64 KiB).
      conn.read(buf).then(
        (n) => this.push(n === null ? null : buf.slice(0, n)),
        (e) => this.destroy(e),
      );
    },
    write(chunk: Uint8Array, _encoding, done) {
      writeAll(conn, chunk).then(() => done(), done);
    },
    final(done) {
      conn.closeWrite().then(() => done(), () => done());
    },
    destroy(error, done) {
      try {
        conn.close();
      } catch {
        // already closed
      }
      done(error);
    },
  });
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

/**
 * Runs the acceptor's side of TLS on `conn`, asking for the caller's
 * certificate; resolves once the caller's certificate checks against the
 * CA. Throws {@linkcode HandshakeError} (and closes `conn`) otherwise, or
 * after `timeoutMs`.
 */
export function secureAccept(
  conn: Deno.TcpConn,
  me: TlsIdentity,
  timeoutMs: number,
): Promise<SecureChannel> {
  const sock = new tls.TLSSocket(duplexOf(conn), {
    isServer: true,
    key: me.keyPem,
    cert: me.certPem,
    ca: me.caPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
  });
  return settle(sock, "secure", remoteOf(conn), me, timeoutMs);
}

/**
 * Runs the dialler's side of TLS on `conn`, presenting this side's
 * certificate; resolves once the node's certificate checks against the CA.
 */
export function secureConnect(
  conn: Deno.TcpConn,
  me: TlsIdentity,
  timeoutMs: number,
): Promise<SecureChannel> {
  const sock = tls.connect({
    socket: duplexOf(conn),
    // Every node certificate names "seguro"; the node id is checked in the hello.
    servername: "seguro",
    key: me.keyPem,
    cert: me.certPem,
    ca: me.caPem,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
    checkServerIdentity: () => undefined,
  });
  return settle(sock, "secureConnect", remoteOf(conn), me, timeoutMs);
}

function remoteOf(conn: Deno.TcpConn): string {
  return `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
}

function settle(
  sock: tls.TLSSocket,
  ready: "secure" | "secureConnect",
  remote: string,
  me: TlsIdentity,
  timeoutMs: number,
): Promise<SecureChannel> {
  return new Promise((resolve, reject) => {
    let done = false;
    const fail = (e: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      reject(e instanceof HandshakeError ? e : tlsError(e));
    };
    const timer = setTimeout(
      () => fail(new HandshakeError(`No TLS handshake within ${timeoutMs} ms`, true)),
      timeoutMs,
    );
    sock.once("error", fail);
    const closed = () => fail(new HandshakeError("The connection closed during TLS", true));
    sock.once("close", closed);
    sock.once("end", closed);
    sock.once(ready, async () => {
      try {
        const der = sock.getPeerCertificate()?.raw;
        if (der === undefined || der.length === 0) {
          throw new HandshakeError("The other side presented no certificate");
        }
        const peer = await checkPeerCertificate(new Uint8Array(der), me.caPem, new Date());
        const client = ready === "secure" ? sock.getPeerFinished() : sock.getFinished();
        const server = ready === "secure" ? sock.getFinished() : sock.getPeerFinished();
        if (client === undefined || server === undefined) {
          throw new HandshakeError("The TLS session has no Finished messages to bind to");
        }
        const binding = new Uint8Array(client.length + server.length);
        binding.set(client, 0);
        binding.set(server, client.length);
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.removeAllListeners("error");
        sock.removeAllListeners("close");
        sock.removeAllListeners("end");
        resolve({ stream: new TlsStream(sock, remote), peer, binding });
      } catch (e) {
        fail(e instanceof CertError ? new HandshakeError(`Refused: ${e.message}`) : e);
      }
    });
  });
}

function tlsError(e: unknown): HandshakeError {
  const message = e instanceof Error ? e.message : String(e);
  if (/unable to verify|unknown ?issuer|UnknownIssuer|certificate verify/i.test(message)) {
    return new ForeignCertificateError();
  }
  return new HandshakeError(tlsReason(message), lostTls(message));
}

function tlsReason(message: string): string {
  if (/expired|NotValidYet|not yet valid/i.test(message)) {
    return `TLS: the other side's certificate is outside its validity (${message}); check both machines' clocks, or renew it`;
  }
  if (/no certificates|did not return a certificate|CertificateRequired/i.test(message)) {
    return "TLS: the other side presented no certificate; use a seguro credential";
  }
  if (
    /wrong version|unexpected message|record overflow|corrupt|InvalidContentType|unsupported protocol/i
      .test(message)
  ) {
    return `TLS: the other side does not speak TLS 1.3 (${message}); is it running with --insecure-plaintext, or an older seguro?`;
  }
  return `TLS: ${message}`;
}

function lostTls(message: string): boolean {
  return /hang up|ECONNRESET|closed|EOF|broken pipe/i.test(message);
}
