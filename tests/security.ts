/**
 * TLS for tests: one cluster token per test process (a real CA), and the
 * node and client identities issued with it, so tests run the same TLS and
 * signed hellos as a real node.
 * @module
 */

import { issueCertificate, NODE_VALID_DAYS, type Role } from "../cluster/certs.ts";
import type { Security } from "../cluster/connect.ts";
import { newClusterSecret, readClusterSecret } from "../cluster/token.ts";
import type { ClusterToken } from "../cluster/token.ts";

/** A cluster token with a fresh CA (TLS), or with the plaintext flag. */
export async function testToken(
  clusterId: string,
  options: { plaintext?: boolean } = {},
): Promise<ClusterToken> {
  return { clusterId, secret: await newClusterSecret(options.plaintext === true) };
}

/** How node `nodeId` of the token's cluster secures its connections. */
export async function nodeSecurity(token: ClusterToken, nodeId: number): Promise<Security> {
  const { ca, plaintext } = readClusterSecret(token.secret);
  if (plaintext) return { kind: "plaintext", secret: token.secret };
  const cert = await issueCertificate(ca, { kind: "node", nodeId }, new Date(), NODE_VALID_DAYS);
  const identity = { caPem: ca.certPem, ...cert };
  return { kind: "tls", identity: () => identity };
}

/** How a client with `role` of the token's cluster secures its connections. */
export async function clientSecurityOf(token: ClusterToken, role: Role): Promise<Security> {
  const { ca } = readClusterSecret(token.secret);
  const cert = await issueCertificate(ca, { kind: "client", role }, new Date(), 1);
  const identity = { caPem: ca.certPem, ...cert };
  return { kind: "tls", identity: () => identity };
}
