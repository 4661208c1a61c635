/**
 * The cluster's certificates (docs/security.md, "TLS and roles"): a cluster
 * CA, node certificates and client credentials, all ECDSA P-256 through
 * WebCrypto and `@peculiar/x509`. What a certificate allows is in its URI
 * SANs (`seguro:node:<id>`, `seguro:role:<role>`); subjects say nothing
 * about the cluster, so a stranger shown one learns nothing.
 *
 * The transport (cluster/tls.ts) checks a peer's certificate here itself,
 * and each side proves it holds its certificate's key by signing the TLS
 * session's Finished messages ({@linkcode signBinding}): what a peer may do
 * never rests on the TLS library's handling of client certificates alone.
 * @module
 */

import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(crypto);

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;
/** Certificates start this long before they are issued: another machine's clock may be behind. */
export const CLOCK_SKEW_MS = 5 * 60_000;
/** A CA lives this long; node and client certificates much less. */
export const CA_VALID_DAYS = 3650;
/** Default life of a node certificate (renewed before it ends). */
export const NODE_VALID_DAYS = 90;
const URI_PREFIX = "seguro:";

/** What a client credential may do. */
export type Role = "admin" | "monitor" | "runtime" | "join";
const ROLES: readonly Role[] = ["admin", "monitor", "runtime", "join"];

/** Who holds a certificate, as its SANs say. */
export type Holder =
  | { readonly kind: "node"; readonly nodeId: number }
  | { readonly kind: "client"; readonly role: Role };

/** A certificate with its private key, both PEM (the key PKCS#8). */
export interface CertifiedKey {
  readonly certPem: string;
  readonly keyPem: string;
}

/** What a certificate says. */
export interface CertificateInfo {
  /** Serial number, hex. */
  readonly serial: string;
  /** Its holder, or undefined when its SANs name none (a CA, or not ours). */
  readonly holder: Holder | undefined;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** A certificate or key that is malformed, or a request that cannot be met. */
export class CertError extends Error {
  /** Makes the error; the message names the problem. */
  constructor(message: string) {
    super(message);
    this.name = "CertError";
  }
}

/** Makes a cluster CA, valid from `now` for {@linkcode CA_VALID_DAYS}. */
export async function createClusterCa(now: Date): Promise<CertifiedKey> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: "CN=seguro cluster CA",
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + CA_VALID_DAYS * DAY_MS),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await keyPem(keys.privateKey) };
}

/** Issues a certificate for `holder` with a new key, signed by `ca`, valid from `now` for `validDays`. */
export async function issueCertificate(
  ca: CertifiedKey,
  holder: Holder,
  now: Date,
  validDays: number,
): Promise<CertifiedKey> {
  if (!Number.isInteger(validDays) || validDays < 1) {
    throw new CertError(`A certificate must be valid at least 1 day (got ${validDays})`);
  }
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importKey(ca.keyPem);
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: holder.kind === "node" ? "CN=seguro node" : "CN=seguro client",
    issuer: caCert.subject,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(Math.min(now.getTime() + validDays * DAY_MS, caCert.notAfter.getTime())),
    signingKey: caKey,
    publicKey: keys.publicKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      // A node is both: it accepts connections and makes them.
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension([
        { type: "url", value: holderUri(holder) },
        // The name every TLS client checks: one per cluster, not per machine.
        { type: "dns", value: "seguro" },
      ]),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await keyPem(keys.privateKey) };
}

/** What `certPem` says; throws {@linkcode CertError} on a malformed one. */
export function describeCertificate(certPem: string): CertificateInfo {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (e) {
    throw new CertError(`The certificate is malformed: ${(e as Error).message}`);
  }
  return infoOf(cert);
}

function infoOf(cert: x509.X509Certificate): CertificateInfo {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = san?.names.items.filter((n) => n.type === "url").map((n) => n.value) ?? [];
  const holders = uris.map(holderOfUri).filter((h) => h !== undefined);
  return {
    serial: cert.serialNumber,
    holder: holders.length === 1 ? holders[0] : undefined,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  };
}

/**
 * Why `cert` (PEM or DER) is not a valid certificate of the cluster whose
 * CA is `caPem` at `now` (one line, with the fix), or undefined when it is.
 */
export async function certificateProblem(
  cert: string | Uint8Array,
  caPem: string,
  now: Date,
): Promise<string | undefined> {
  let parsed: x509.X509Certificate;
  try {
    parsed = new x509.X509Certificate(typeof cert === "string" ? cert : cert.slice());
  } catch (e) {
    return `the certificate is malformed: ${(e as Error).message}`;
  }
  return await problemOf(parsed, caCertificate(caPem), now);
}

async function problemOf(
  cert: x509.X509Certificate,
  ca: x509.X509Certificate,
  now: Date,
): Promise<string | undefined> {
  const signed = cert.issuer === ca.subject &&
    await cert.verify({ publicKey: ca.publicKey, signatureOnly: true }).catch(() => false);
  if (!signed) {
    return "the certificate is not signed by this cluster's CA: it is another cluster's, or forged";
  }
  if (now < cert.notBefore) {
    return `the certificate is valid only from ${cert.notBefore.toISOString()}; check this machine's clock`;
  }
  if (now > cert.notAfter) {
    return `the certificate expired on ${cert.notAfter.toISOString()}; issue a new one`;
  }
  return undefined;
}

/** A peer's certificate, checked: who holds it, and its public key for {@linkcode verifyBinding}. */
export interface CheckedPeer extends CertificateInfo {
  /** The certificate's public key. */
  readonly publicKey: CryptoKey;
}

/**
 * Checks a certificate a peer presented (DER) against the cluster CA at
 * `now`; throws {@linkcode CertError} with the one-line reason when it is
 * not the cluster's, not valid now, or names no holder.
 */
export async function checkPeerCertificate(
  der: Uint8Array,
  caPem: string,
  now: Date,
): Promise<CheckedPeer> {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(der.slice());
  } catch (e) {
    throw new CertError(`the certificate is malformed: ${(e as Error).message}`);
  }
  const problem = await problemOf(cert, caCertificate(caPem), now);
  if (problem !== undefined) throw new CertError(problem);
  const info = infoOf(cert);
  if (info.holder === undefined) {
    throw new CertError("the certificate names no Seguro node or role; issue one with seguro");
  }
  const publicKey = await cert.publicKey.export(ALGORITHM, ["verify"]);
  return { ...info, publicKey };
}

/** CAs and keys parsed once per process (a node has one of each, plus one per rotation). */
const CACHED_MAX = 16;
const caCache = new Map<string, x509.X509Certificate>();

function caCertificate(caPem: string): x509.X509Certificate {
  let ca = caCache.get(caPem);
  if (ca === undefined) {
    if (caCache.size >= CACHED_MAX) caCache.clear();
    ca = new x509.X509Certificate(caPem);
    caCache.set(caPem, ca);
  }
  return ca;
}

const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;
const signingKeys = new Map<string, Promise<CryptoKey>>();

/** Signs `data` with the private key `keyPem` (a session binding: cluster/handshake.ts). */
export async function signBinding(keyPem: string, data: Uint8Array): Promise<Uint8Array> {
  let key = signingKeys.get(keyPem);
  if (key === undefined) {
    if (signingKeys.size >= CACHED_MAX) signingKeys.clear();
    key = importKey(keyPem);
    signingKeys.set(keyPem, key);
  }
  return new Uint8Array(await crypto.subtle.sign(SIGN, await key, data as BufferSource));
}

/** True when `signature` is the holder of `peer`'s certificate signing `data`. */
export async function verifyBinding(
  peer: CheckedPeer,
  data: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  return await crypto.subtle.verify(
    SIGN,
    peer.publicKey,
    signature as BufferSource,
    data as BufferSource,
  ).catch(() => false);
}

/** True when `keyPem` is the private key of the certificate `certPem`. */
export async function keyMatchesCertificate(certPem: string, keyPem: string): Promise<boolean> {
  const probe = new TextEncoder().encode("seguro key check");
  const publicKey = await new x509.X509Certificate(certPem).publicKey.export(ALGORITHM, ["verify"]);
  const signature = await signBinding(keyPem, probe);
  return await crypto.subtle.verify(SIGN, publicKey, signature as BufferSource, probe);
}

/** The DER bytes of a PEM certificate or key. */
export function derOf(pem: string): Uint8Array {
  return new Uint8Array(x509.PemConverter.decodeFirst(pem));
}

/** A PEM certificate (`label` "CERTIFICATE") or key ("PRIVATE KEY") from DER bytes. */
export function pemOf(der: Uint8Array, label: "CERTIFICATE" | "PRIVATE KEY"): string {
  return x509.PemConverter.encode(der.slice().buffer, label);
}

function holderUri(h: Holder): string {
  return h.kind === "node" ? `${URI_PREFIX}node:${h.nodeId}` : `${URI_PREFIX}role:${h.role}`;
}

function holderOfUri(uri: string): Holder | undefined {
  const node = /^seguro:node:([1-9][0-9]{0,9})$/.exec(uri);
  if (node) return { kind: "node", nodeId: Number(node[1]) };
  const role = /^seguro:role:([a-z]+)$/.exec(uri);
  if (role && (ROLES as readonly string[]).includes(role[1])) {
    return { kind: "client", role: role[1] as Role };
  }
  return undefined;
}

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f; // a positive serial
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
  return x509.PemConverter.encode(der.buffer, "PRIVATE KEY");
}

async function importKey(pem: string): Promise<CryptoKey> {
  try {
    const der = x509.PemConverter.decodeFirst(pem);
    return await crypto.subtle.importKey("pkcs8", der, ALGORITHM, false, ["sign"]);
  } catch (e) {
    throw new CertError(`The private key is malformed: ${(e as Error).message}`);
  }
}
