/**
 * The start of every connection, after TLS: each side sends a hello (who it
 * is) and proves it holds its certificate's key ({@linkcode secureHandshake}).
 * With `--insecure-plaintext` there is no TLS, and each side proves instead
 * that it holds the cluster secret with an HMAC over both hellos
 * ({@linkcode handshake}). Nothing else is accepted until both proofs check.
 *
 * ```
 * hello := "SGRO" version:u16 kind:u8 (1 peer, 2 client) clusterId:16 bytes
 *          nodeId:u32 (0 for a client) nonce:32 bytes address:text
 * auth  := HMAC-SHA256(secret, label || initiator hello || acceptor hello)
 *          label = "seguro/1 initiator" or "seguro/1 acceptor"
 * ```
 * Both hellos carry fresh random nonces, so a proof cannot be replayed on
 * another connection, and the labels differ by side, so a proof cannot be
 * reflected back. The secret never crosses the wire.
 * @module
 */

import { createHmac, timingSafeEqual } from "node:crypto";
import { ByteReader, ByteWriter, WireError } from "./codec.ts";
import { FRAME_BYTES_MAX, type FrameConn, FrameType } from "./frame.ts";
import { HandshakeError, WrongClusterError } from "./handshake_error.ts";
import { type Holder, type Role, signBinding, verifyBinding } from "./certs.ts";
import type { SecureChannel, TlsIdentity } from "./tls.ts";

/**
 * Version of the node-to-node and client protocol: 2 since TLS (a version-1
 * node meets a TLS ClientHello and refuses it as a bad hello).
 */
export const PROTOCOL_VERSION = 2;
const MAGIC = new TextEncoder().encode("SGRO");
const ADDRESS_BYTES_MAX = 255;
/** A handshake that has not finished in this time closes the connection. */
export const HANDSHAKE_TIMEOUT_MS = 5000;

/** Who is on the other end: another node, or an admin client (the CLI). */
export type ConnKind = "peer" | "client";

/** A hello frame, decoded. */
export interface Hello {
  /** Protocol version of the sender. */
  version: number;
  /** Peer or client. */
  kind: ConnKind;
  /** The cluster the sender belongs to, 32 hex characters. */
  clusterId: string;
  /** The sender's node id; 0 for a client. */
  nodeId: number;
  /** Where the sender can be reached (nodes), or "" (clients). */
  address: string;
  /** 32 random bytes. */
  nonce: Uint8Array;
  /**
   * Set by the handshake, never sent: what a client may do (its
   * certificate's role; "admin" for the cluster secret of plaintext mode).
   */
  role?: Role;
  /** Set by the handshake on TLS: the serial of the other side's certificate. */
  serial?: string;
}

/** 16 bytes of a cluster id from its 32 hex characters. */
export function clusterIdBytes(clusterId: string): Uint8Array {
  if (!/^[0-9a-f]{32}$/.test(clusterId)) {
    throw new RangeError(`A cluster id is 32 lowercase hex characters (got '${clusterId}')`);
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(clusterId.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function hexOf(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Encodes a hello frame body. */
export function encodeHello(hello: Hello): Uint8Array {
  const address = new TextEncoder().encode(hello.address);
  if (address.length > ADDRESS_BYTES_MAX) {
    throw new RangeError(`An address is at most ${ADDRESS_BYTES_MAX} bytes`);
  }
  return new ByteWriter(64 + address.length)
    .raw(MAGIC)
    .u16(hello.version)
    .u8(hello.kind === "peer" ? 1 : 2)
    .raw(clusterIdBytes(hello.clusterId))
    .u32(hello.nodeId)
    .raw(hello.nonce)
    .bytes(address)
    .finish();
}

/** Decodes a hello frame body; throws WireError when malformed. */
export function decodeHello(body: Uint8Array): Hello {
  const r = new ByteReader(body);
  const magic = r.raw(4, "magic");
  if (magic.some((b, i) => b !== MAGIC[i])) {
    throw new WireError("The first frame is not a Seguro hello (bad magic)");
  }
  const version = r.u16("version");
  const kindCode = r.u8("connection kind");
  if (kindCode !== 1 && kindCode !== 2) {
    throw new WireError(`The connection kind ${kindCode} is unknown`);
  }
  const clusterId = hexOf(r.raw(16, "cluster id"));
  const nodeId = r.u32("node id");
  const nonce = r.raw(32, "nonce").slice();
  const addressBytes = r.bytes("address");
  if (addressBytes.length > ADDRESS_BYTES_MAX) throw new WireError("The address is too long");
  const address = new TextDecoder().decode(addressBytes);
  r.end("hello");
  return { version, kind: kindCode === 1 ? "peer" : "client", clusterId, nodeId, address, nonce };
}

function proof(secret: Uint8Array, label: string, initiator: Uint8Array, acceptor: Uint8Array) {
  return createHmac("sha256", secret)
    .update(label)
    .update(initiator)
    .update(acceptor)
    .digest();
}

/** What this side says about itself. */
export interface LocalHello {
  /** Peer (a node) or client (the CLI). */
  kind: ConnKind;
  /** This side's cluster id (a client gets it from the join token or the data dir). */
  clusterId: string;
  /** This node's id, 0 for a client. */
  nodeId: number;
  /** Where this node can be reached, "" for a client. */
  address: string;
}

function freshNonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(32));
}

/** Reads the other side's hello: its bytes (for the proofs) and what it says. */
async function readHello(fc: FrameConn): Promise<{ theirs: Uint8Array; hello: Hello }> {
  try {
    const theirs = await readFrame(fc, FrameType.hello, "hello");
    return { theirs, hello: decodeHello(theirs) };
  } catch (e) {
    if (fc.closed) throw new HandshakeError(`No hello within ${HANDSHAKE_TIMEOUT_MS} ms`, true);
    throw e instanceof WireError ? new HandshakeError(e.message) : e;
  }
}

async function refuseWith(fc: FrameConn, reason: string): Promise<never> {
  await fc.goodbye(reason);
  throw new HandshakeError(reason);
}

/** Refuses (with a goodbye saying why) a hello of another version or another cluster. */
async function checkHello(fc: FrameConn, hello: Hello, local: LocalHello): Promise<void> {
  if (hello.version !== PROTOCOL_VERSION) {
    await refuseWith(
      fc,
      `Protocol version ${hello.version} is not supported (this node speaks ${PROTOCOL_VERSION}); run the same seguro version on every node`,
    );
  }
  if (hello.clusterId !== local.clusterId) {
    // Told: on TLS its certificate is of this cluster's CA; in plaintext it proved nothing yet,
    // but learns only a cluster id prefix it could read off the wire anyway.
    await fc.goodbye(
      `Wrong cluster: the sender of this goodbye belongs to cluster ${
        local.clusterId.slice(0, 8)
      }..., not ${hello.clusterId.slice(0, 8)}...`,
    );
    throw new WrongClusterError(local.clusterId, hello.clusterId);
  }
}

async function readFrame(fc: FrameConn, type: number, what: string): Promise<Uint8Array> {
  const f = await fc.read();
  if (f === null) throw new HandshakeError(`The connection closed before the ${what}`, true);
  if (f.type === FrameType.goodbye) {
    throw new HandshakeError(`The other side refused: ${new TextDecoder().decode(f.body)}`);
  }
  if (f.type !== type) throw new HandshakeError(`Expected the ${what}, got frame type ${f.type}`);
  return f.body;
}

/**
 * Runs the plaintext handshake on a fresh connection and returns the other
 * side's hello once both proofs check. On failure the connection is closed (after a
 * goodbye saying why, where that is safe) and HandshakeError is thrown.
 */
export async function handshake(
  fc: FrameConn,
  side: "initiator" | "acceptor",
  local: LocalHello,
  secret: Uint8Array,
): Promise<Hello> {
  const timer = setTimeout(() => fc.close(), HANDSHAKE_TIMEOUT_MS);
  try {
    const mine = encodeHello({ version: PROTOCOL_VERSION, ...local, nonce: freshNonce() });
    fc.send(FrameType.hello, mine);
    const { theirs, hello } = await readHello(fc);
    const refuse = (reason: string) => refuseWith(fc, reason);
    await checkHello(fc, hello, local);
    if (side === "acceptor" && hello.kind === "peer" && hello.nodeId < 1) {
      await refuse("A peer must have a node id of at least 1");
    }
    const [initiator, acceptor] = side === "initiator" ? [mine, theirs] : [theirs, mine];
    const myLabel = `seguro/1 ${side}`;
    const theirLabel = `seguro/1 ${side === "initiator" ? "acceptor" : "initiator"}`;
    fc.send(FrameType.auth, proof(secret, myLabel, initiator, acceptor));
    const theirProof = await readFrame(fc, FrameType.auth, "proof of the cluster secret");
    const expected = proof(secret, theirLabel, initiator, acceptor);
    if (theirProof.length !== expected.length || !timingSafeEqual(theirProof, expected)) {
      await refuse("Authentication failed: the cluster secret does not match (check the token)");
    }
    fc.frameBytesMax = FRAME_BYTES_MAX;
    return { ...hello, role: hello.kind === "client" ? "admin" : undefined };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The hellos on a TLS connection (cluster/tls.ts), caller first: the
 * initiator sends its hello and a signature, with its certificate's key,
 * over the session binding and its hello; the acceptor checks the
 * signature, that the certificate is not revoked (`isRevoked`), and the
 * hello against the certificate, and only then sends its own (verify before
 * proving). A signature covers the session's
 * Finished messages, so it proves the key's holder is on THIS session, not
 * relaying another. Returns the other side's hello, with the role of a
 * client's certificate and the certificate's serial.
 */
export async function secureHandshake(
  fc: FrameConn,
  side: "initiator" | "acceptor",
  local: LocalHello,
  channel: SecureChannel,
  me: TlsIdentity,
  isRevoked: (serial: string) => boolean = () => false,
): Promise<Hello> {
  const timer = setTimeout(() => fc.close(), HANDSHAKE_TIMEOUT_MS);
  try {
    const mine = encodeHello({ version: PROTOCOL_VERSION, ...local, nonce: freshNonce() });
    const prove = async (label: string, ...hellos: Uint8Array[]) => {
      fc.send(FrameType.hello, mine);
      fc.send(FrameType.auth, await signBinding(me.keyPem, transcript(label, channel, hellos)));
    };
    if (side === "initiator") await prove("seguro/2 initiator", mine);
    const { theirs, hello } = await readHello(fc);
    const signature = await readFrame(fc, FrameType.auth, "proof of the certificate's key");
    const refuse = (reason: string) => refuseWith(fc, reason);
    // The signature first: until it checks, a certificate proves nothing (anyone may have
    // seen it), so nothing about this node, not even why it refuses, goes out before.
    const [label, hellos] = side === "acceptor"
      ? ["seguro/2 initiator", [theirs]]
      : ["seguro/2 acceptor", [mine, theirs]];
    if (!await verifyBinding(channel.peer, transcript(label, channel, hellos), signature)) {
      throw new HandshakeError(
        "Authentication failed: the hello is not signed by the certificate's key",
      );
    }
    if (isRevoked(channel.peer.serial)) {
      await refuse(`The certificate ${channel.peer.serial} was revoked`);
    }
    const holder = channel.peer.holder!;
    await checkHello(fc, hello, local);
    if (hello.kind === "peer") {
      if (holder.kind !== "node" || holder.nodeId !== hello.nodeId) {
        await refuse(
          `A hello as node ${hello.nodeId} came with a certificate for ${describeHolder(holder)}`,
        );
      }
    } else if (side === "initiator") {
      await refuse("A client answered as if it were a node");
    } else if (holder.kind !== "client") {
      await refuse(`A client hello came with a certificate for ${describeHolder(holder)}`);
    }
    if (side === "acceptor") await prove("seguro/2 acceptor", theirs, mine);
    fc.frameBytesMax = FRAME_BYTES_MAX;
    return {
      ...hello,
      role: holder.kind === "client" ? holder.role : undefined,
      serial: channel.peer.serial,
    };
  } finally {
    clearTimeout(timer);
  }
}

function transcript(label: string, channel: SecureChannel, hellos: Uint8Array[]): Uint8Array {
  const w = new ByteWriter(64 + channel.binding.length + hellos.reduce((n, h) => n + h.length, 0))
    .bytes(new TextEncoder().encode(label))
    .bytes(channel.binding);
  for (const h of hellos) w.bytes(h);
  return w.finish();
}

function describeHolder(holder: Holder): string {
  return holder.kind === "node" ? `node ${holder.nodeId}` : `a client (${holder.role})`;
}
