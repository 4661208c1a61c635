import assert from "node:assert/strict";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import {
  CA_VALID_DAYS,
  certificateProblem,
  createClusterCa,
  describeCertificate,
  issueCertificate,
  NODE_VALID_DAYS,
} from "./certs.ts";

const NOW = new Date("2026-12-02T00:00:00Z");
const DAY_MS = 86_400_000;

Deno.test("a cluster CA issues node and client certificates whose SANs say who holds them", async () => {
  const ca = await createClusterCa(NOW);
  const caInfo = describeCertificate(ca.certPem);
  assert.equal(caInfo.holder, undefined);
  assert.equal(caInfo.notAfter.getTime() - NOW.getTime(), CA_VALID_DAYS * DAY_MS);
  assert.doesNotMatch(ca.certPem + ca.keyPem, /seguro:/, "the CA names no node or role");

  const node = await issueCertificate(ca, { kind: "node", nodeId: 3 }, NOW, NODE_VALID_DAYS);
  const info = describeCertificate(node.certPem);
  assert.deepEqual(info.holder, { kind: "node", nodeId: 3 });
  assert.equal(info.notAfter.getTime() - NOW.getTime(), NODE_VALID_DAYS * DAY_MS);
  assert.match(node.keyPem, /^-----BEGIN PRIVATE KEY-----/);
  assert.equal(await certificateProblem(node.certPem, ca.certPem, NOW), undefined);

  const monitor = await issueCertificate(ca, { kind: "client", role: "monitor" }, NOW, 30);
  assert.deepEqual(describeCertificate(monitor.certPem).holder, {
    kind: "client",
    role: "monitor",
  });
  assert.notEqual(describeCertificate(monitor.certPem).serial, info.serial);
});

Deno.test("another cluster's certificate, an expired one and one not yet valid are named as such", async () => {
  const ca = await createClusterCa(NOW);
  const other = await createClusterCa(NOW);
  const stranger = await issueCertificate(other, { kind: "node", nodeId: 1 }, NOW, 90);
  assert.match(
    (await certificateProblem(stranger.certPem, ca.certPem, NOW))!,
    /^the certificate is not signed by this cluster's CA/,
  );
  const node = await issueCertificate(ca, { kind: "node", nodeId: 1 }, NOW, 1);
  assert.match(
    (await certificateProblem(node.certPem, ca.certPem, new Date(NOW.getTime() + 2 * DAY_MS)))!,
    /^the certificate expired on 2026-12-03T00:00:00\.000Z; issue a new one$/,
  );
  assert.match(
    (await certificateProblem(node.certPem, ca.certPem, new Date(NOW.getTime() - DAY_MS)))!,
    /valid only from 2026-12-01T23:55:00\.000Z; check this machine's clock$/,
  );
  assert.throws(
    () => describeCertificate("not a certificate"),
    /^CertError: The certificate is malformed/,
  );
});

/** Runs one TLS 1.3 connection with mutual authentication; resolves with what each side saw. */
async function mutualTls(
  server: { certPem: string; keyPem: string; caPem: string },
  client: { certPem: string; keyPem: string; caPem: string },
): Promise<{ serverSaw: string | undefined; clientGot: string; refused: string | undefined }> {
  let serverSaw: string | undefined;
  let refused: string | undefined;
  const srv = tls.createServer({
    key: server.keyPem,
    cert: server.certPem,
    ca: server.caPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
  }, (sock) => {
    const uri = sock.getPeerCertificate().subjectaltname ?? "";
    serverSaw = /URI:(seguro:[^,]+)/.exec(uri)?.[1];
    sock.end("hello from the node");
  });
  srv.on("tlsClientError", (e) => refused = e.message);
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as AddressInfo).port;
  const clientGot = await new Promise<string>((resolve) => {
    let got = "";
    const sock = tls.connect({
      host: "127.0.0.1",
      port,
      servername: "seguro",
      key: client.keyPem,
      cert: client.certPem,
      ca: client.caPem,
      minVersion: "TLSv1.3",
    });
    sock.on("data", (d) => got += d.toString());
    sock.on("error", () => resolve(got));
    sock.on("close", () => resolve(got));
  });
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return { serverSaw, clientGot, refused };
}

Deno.test({
  name:
    "node:tls with these certificates: mutual TLS 1.3 works, and another cluster's client is refused before any byte",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const ca = await createClusterCa(new Date());
    const node = await issueCertificate(ca, { kind: "node", nodeId: 1 }, new Date(), 90);
    const admin = await issueCertificate(ca, { kind: "client", role: "admin" }, new Date(), 30);
    const ok = await mutualTls(
      { ...node, caPem: ca.certPem },
      { ...admin, caPem: ca.certPem },
    );
    assert.equal(ok.serverSaw, "seguro:role:admin");
    assert.equal(ok.clientGot, "hello from the node");

    const other = await createClusterCa(new Date());
    const stranger = await issueCertificate(
      other,
      { kind: "client", role: "admin" },
      new Date(),
      30,
    );
    const no = await mutualTls(
      { ...node, caPem: ca.certPem },
      { ...stranger, caPem: ca.certPem },
    );
    assert.equal(no.serverSaw, undefined, "the node never accepted it");
    assert.equal(no.clientGot, "", "and sent it nothing of its own protocol");
    assert.ok(no.refused !== undefined, "the node logged a TLS refusal");
  },
});
