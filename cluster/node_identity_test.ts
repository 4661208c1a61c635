import assert from "node:assert/strict";
import { join } from "node:path";
import { describeCertificate } from "./certs.ts";
import { loadNodeIdentity, NodeSecurity, RENEW_BEFORE_DAYS } from "./node_identity.ts";
import { newClusterSecret, readClusterSecret } from "./token.ts";

const DAY_MS = 86_400_000;

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "seguro-identity-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a node's identity is issued once, kept, and issued again when it is another node's, another CA's or near its end", async () => {
  await withDir(async (dir) => {
    const cluster = readClusterSecret(await newClusterSecret(false));
    const first = await loadNodeIdentity(dir, cluster, 3);
    assert.deepEqual(describeCertificate(first.certPem).holder, { kind: "node", nodeId: 3 });
    assert.equal(Deno.statSync(join(dir, "node-key.pem")).mode! & 0o777, 0o600);
    assert.equal((await loadNodeIdentity(dir, cluster, 3)).certPem, first.certPem, "kept");
    const other = await loadNodeIdentity(dir, cluster, 4);
    assert.deepEqual(describeCertificate(other.certPem).holder, { kind: "node", nodeId: 4 });
    const otherCa = readClusterSecret(await newClusterSecret(false));
    const moved = await loadNodeIdentity(dir, otherCa, 4);
    assert.notEqual(moved.certPem, other.certPem, "another CA's certificate is replaced");
    const late = new Date(Date.now() + (90 - RENEW_BEFORE_DAYS + 1) * DAY_MS);
    const renewed = await loadNodeIdentity(dir, otherCa, 4, late);
    assert.notEqual(renewed.certPem, moved.certPem, "renewed when fewer than 30 days remain");
    // A key that does not match the certificate (a crash between the two writes): issued again.
    Deno.writeTextFileSync(join(dir, "node-key.pem"), first.keyPem);
    const mended = await loadNodeIdentity(dir, otherCa, 4, late);
    assert.notEqual(mended.keyPem, first.keyPem);
  });
});

Deno.test("a running node renews its certificate when it is due, and not before", async () => {
  await withDir(async (dir) => {
    const secret = await newClusterSecret(false);
    const security = await NodeSecurity.load(dir, secret, 1);
    const serial = security.certificate!.serial;
    assert.equal(await security.renewIfDue(new Date()), undefined);
    assert.equal(security.certificate!.serial, serial);
    const due = new Date(Date.now() + (90 - RENEW_BEFORE_DAYS + 1) * DAY_MS);
    const fresh = await security.renewIfDue(due);
    assert.ok(fresh !== undefined && fresh.serial !== serial);
    assert.equal(security.certificate!.serial, fresh.serial, "new connections use the new one");
    const plain = await NodeSecurity.load(dir, await newClusterSecret(true), 1);
    assert.equal(plain.security.kind, "plaintext");
    assert.equal(plain.expiry(), null);
    await assert.rejects(plain.rotate(), /--insecure-plaintext: it has no certificates/);
  });
});
