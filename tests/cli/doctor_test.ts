/**
 * `seguro doctor` as a user runs it: a child process with the release
 * permission set, on a real data dir that a real node ran on.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { assertOneLineError, type Run, seguro } from "./run_cli.ts";
import { freePort, NodeProcess } from "../e2e/harness.ts";

/** `text` as a regular expression that matches it literally. */
function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Exit 1, nothing on stdout, and one line on stderr: `error: ` and `pattern`. */
function assertRefused(run: Run, pattern: RegExp): void {
  assert.equal(run.stdout, "");
  assertOneLineError(run, 1, pattern);
}

/** XORs the header of the first page of table `name` in `dir`'s database; returns its number. */
function corruptPageOf(dir: string, name: string): number {
  const path = `${dir}/seguro.db`;
  // A read-write connection: it removes its -wal and -shm on close.
  const db = new DatabaseSync(path);
  const pageBytes = Number(db.prepare("PRAGMA page_size").get()?.page_size);
  const page = Number(
    db.prepare("SELECT min(pageno) AS page FROM dbstat WHERE name = ?").get(name)?.page,
  );
  db.close();
  assert.ok(page > 1, `no page of ${name}`);
  const file = Deno.openSync(path, { read: true, write: true });
  try {
    const header = new Uint8Array(16);
    file.seekSync((page - 1) * pageBytes, Deno.SeekMode.Start);
    assert.equal(file.readSync(header), header.length);
    file.seekSync((page - 1) * pageBytes, Deno.SeekMode.Start);
    file.writeSync(header.map((b) => b ^ 0x5a));
  } finally {
    file.close();
  }
  return page;
}

Deno.test("doctor: a sound data dir passes, a running node's is refused, a corrupt page is found", async () => {
  const root = await Deno.makeTempDir({ prefix: "seguro-cli-doctor-" });
  const dir = `${root}/n1`;
  const dirRe = literal(dir);
  try {
    const init = await seguro([
      "init",
      "--data-dir",
      dir,
      "--listen",
      `127.0.0.1:${freePort()}`,
      "--no-start",
    ]);
    assert.equal(init.code, 0, init.stderr);
    // A node runs on it, so its log holds entries; while it runs, the check is refused.
    const node = new NodeProcess(["run", "--data-dir", dir]);
    try {
      await node.waitForEvent("leader");
      assertRefused(
        await seguro(["doctor", "--data-dir", dir]),
        new RegExp(
          `^error: ${dirRe} is in use by another seguro process \\(pid \\d+\\?\\); stop the node first$`,
        ),
      );
    } finally {
      assert.equal((await node.kill("SIGTERM")).code, 0);
    }

    const ok = await seguro(["doctor", "--data-dir", dir]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(
      ok.stdout,
      new RegExp(
        `^ok: ${dirRe}/seguro\\.db passed the integrity check \\(\\d+\\.\\d MB in \\d+\\.\\d s\\)\\n$`,
      ),
    );
    assert.match(ok.stderr, /^checking .*seguro\.db: reading all \d+\.\d MB of it; keep the node/);
    const json = JSON.parse((await seguro(["doctor", "--data-dir", dir, "--json"])).stdout);
    assert.equal(json.ok, true);
    assert.deepEqual(json.findings, []);
    assert.equal(json.bytes, Deno.statSync(`${dir}/seguro.db`).size);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "node-cert.pem",
      "node-key.pem",
      "node.json",
      "seguro.db",
      "seguro.lock",
      "token",
    ]);

    const page = corruptPageOf(dir, "log_entry");
    const bad = await seguro(["doctor", "--data-dir", dir]);
    assert.equal(bad.code, 1, bad.stderr);
    const findings = bad.stdout.trimEnd().split("\n");
    assert.match(findings[0], new RegExp(`^Tree \\d+ page ${page}: `));
    const stderr = bad.stderr.trimEnd().split("\n");
    assert.equal(stderr.length, 2, bad.stderr); // the progress line, then the error
    assert.match(
      stderr[1],
      new RegExp(
        `^error: ${dirRe}/seguro\\.db failed the integrity check \\(${findings.length} findings? above\\); remove this node from the cluster`,
      ),
    );
    const badJson = await seguro(["doctor", "--data-dir", dir, "--json"]);
    assert.equal(badJson.code, 1);
    const report = JSON.parse(badJson.stdout);
    assert.equal(report.ok, false);
    assert.deepEqual(report.findings, findings);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("doctor: a missing dir, a dir that is not a data dir, a file that is not SQLite", async () => {
  const root = await Deno.makeTempDir({ prefix: "seguro-cli-doctor-" });
  try {
    assertRefused(
      await seguro(["doctor", "--data-dir", `${root}/nope`]),
      /^error: the data dir .*\/nope does not exist; pass the --data-dir of a stopped Seguro node$/,
    );
    assertRefused(
      await seguro(["doctor", "--data-dir", root]),
      /^error: .* is not a Seguro data dir \(no seguro\.db\); /,
    );
    await Deno.writeTextFile(`${root}/seguro.db`, "not a database\n");
    assertRefused(
      await seguro(["doctor", "--data-dir", root]),
      /^error: .*seguro\.db is not a SQLite database; /,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
