import assert from "node:assert/strict";
import { decodeToken, encodeToken } from "./token.ts";
import { formatAddress, parseAddress } from "./address.ts";

Deno.test("tokens round-trip and damaged ones are refused with the fix", () => {
  const credentials = { clusterId: "00ff".repeat(8), secret: new Uint8Array(32).fill(200) };
  const token = encodeToken(credentials);
  assert.match(token, /^sgt1\.[A-Za-z0-9_-]{64}$/);
  assert.deepEqual(decodeToken(` ${token}\n`), credentials);
  assert.throws(() => decodeToken("abc"), /does not start with 'sgt1\.'/);
  assert.throws(() => decodeToken(token.slice(0, -4)), /damaged/);
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
