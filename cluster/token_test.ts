import assert from "node:assert/strict";
import {
  decodeToken,
  encodeToken,
  issueClientCredential,
  newClusterSecret,
  readClusterSecret,
} from "./token.ts";
import { describeCertificate } from "./certs.ts";
import { formatAddress, parseAddress } from "./address.ts";

Deno.test("cluster tokens round-trip with their CA and plaintext flag; damaged and old ones are refused with the fix", async () => {
  const credentials = { clusterId: "00ff".repeat(8), secret: await newClusterSecret(false) };
  const token = encodeToken(credentials);
  assert.match(token, /^sgt2\.[A-Za-z0-9_-]{600,900}$/);
  assert.deepEqual(decodeToken(` ${token}\n`), credentials);
  const secret = readClusterSecret(credentials.secret);
  assert.equal(secret.plaintext, false);
  assert.match(secret.ca.keyPem, /^-----BEGIN PRIVATE KEY-----/);
  assert.equal(readClusterSecret(await newClusterSecret(true)).plaintext, true);
  assert.throws(() => decodeToken("abc"), /starts with neither 'sgt2\.' nor 'sgc1\.'/);
  assert.throws(() => decodeToken(token.slice(0, -4)), /holds no CA|damaged/);
  assert.throws(() => decodeToken(`sgt1.${"A".repeat(64)}`), /before TLS \(sgt1\)/);
  assert.throws(
    () => readClusterSecret(new Uint8Array(32).fill(1)),
    /holds no CA: it was made by a seguro before TLS/,
  );
});

Deno.test("a client credential carries one role and round-trips; it holds no CA key", async () => {
  const token = { clusterId: "ab".repeat(16), secret: await newClusterSecret(false) };
  const monitor = await issueClientCredential(token, "monitor", 30);
  const text = encodeToken(monitor);
  assert.match(text, /^sgc1\./);
  const back = decodeToken(text);
  assert.deepEqual(back, monitor);
  assert.ok("client" in back);
  assert.deepEqual(describeCertificate(back.client.certPem).holder, {
    kind: "client",
    role: "monitor",
  });
  assert.equal(back.client.caPem, readClusterSecret(token.secret).ca.certPem);
  assert.notEqual(back.client.keyPem, readClusterSecret(token.secret).ca.keyPem);
  assert.throws(() => decodeToken(text.slice(0, 40)), /damaged/);
});

Deno.test("addresses parse host:port and [v6]:port, and refuse the rest", () => {
  assert.deepEqual(parseAddress("127.0.0.1:7700"), { hostname: "127.0.0.1", port: 7700 });
  assert.deepEqual(parseAddress("[::1]:80"), { hostname: "::1", port: 80 });
  assert.equal(formatAddress(parseAddress("[::1]:80")), "[::1]:80");
  assert.equal(formatAddress(parseAddress("node-a.example:1")), "node-a.example:1");
  for (const bad of ["7700", "host:", "host:99999", "a b:1", "::1:80"]) {
    assert.throws(() => parseAddress(bad), /is not an address; write HOST:PORT/);
  }
});
