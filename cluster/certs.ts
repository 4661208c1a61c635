/**
 * The cluster's certificates (docs/security.md, "TLS and roles"): a cluster
 * CA, node certificates and client credentials, all ECDSA P-256 through
 * WebCrypto and `@peculiar/x509`. What a certificate allows is in its URI
 * SANs (`seguro:node:<id>`, `seguro:role:<role>`); subjects say nothing
 * about the cluster, so a stranger shown one learns nothing.
 *
 * The first step of P11's TLS: the transport does not use these yet.
 * @module
 */

import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(crypto);

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;
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
    notBefore: now,
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
    notBefore: now,
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
 * Why `certPem` is not a valid certificate of the cluster whose CA is
 * `caPem` at `now` (one line, with the fix), or undefined when it is.
 */
export async function certificateProblem(
  certPem: string,
  caPem: string,
  now: Date,
): Promise<string | undefined> {
  const cert = new x509.X509Certificate(certPem);
  const ca = new x509.X509Certificate(caPem);
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
    throw new CertError(`The CA key is malformed: ${(e as Error).message}`);
  }
}
