/**
 * The release build up to what this machine can do: `deno compile` needs its
 * runtime (denort) from dl.deno.land, which is unreachable here, so the
 * compile runs with DENORT_BIN set to a stand-in ELF executable (/bin/true):
 * the binary it writes carries the real embedded program and metadata, but
 * does not run. Checked: the permissions baked in are the release set,
 * SHA256SUMS matches, install.sh installs only a binary whose checksum
 * matches, and an unreachable download is a one-line error naming DENORT_BIN.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bakedPermissions, bakedV8Flags, binaryName, releasePermissions } from "./build.ts";

const BUILD = fileURLToPath(new URL("./build.ts", import.meta.url));
const HOST = "x86_64-unknown-linux-gnu";
const linuxX64 = Deno.build.os === "linux" && Deno.build.arch === "x86_64";
/** Ignored elsewhere, with the reason in the test's name. */
const onlyHere = linuxX64 ? "" : " (ignored: the stand-in denort, /bin/true, is x86_64 Linux)";

async function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder();
  return { code: r.code, out: text.decode(r.stdout) + text.decode(r.stderr) };
}

function build(args: string[], env: Record<string, string>) {
  return run(Deno.execPath(), [
    "run",
    "-q",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-run",
    BUILD,
    ...args,
  ], env);
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name:
    `dist: a release binary bakes in exactly the release permission set and the V8 flags; sums and install.sh${onlyHere}`,
  ignore: !linuxX64,
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "seguro-dist-" });
    try {
      const r = await build(
        ["--release", "--target", HOST, "--out", out, "--base-url", `file://${out}`],
        { DENORT_BIN: "/bin/true" },
      );
      assert.equal(r.code, 0, r.out);
      const name = binaryName(HOST);
      const binary = await Deno.readFile(join(out, name));
      assert.deepEqual(bakedPermissions(binary), releasePermissions());
      assert.deepEqual(releasePermissions(), ["env", "ffi", "net", "read", "run", "write"]);
      assert.ok(
        bakedV8Flags(binary).includes("--initial-old-space-size=64"),
        `the V8 flags are baked in: ${bakedV8Flags(binary)}`,
      );
      const sums = await Deno.readTextFile(join(out, "SHA256SUMS"));
      assert.equal(sums, `${await sha256(binary)}  ${name}\n`);

      // install.sh: downloads, checks, installs.
      const dest = join(out, "bin");
      const env = { SEGURO_INSTALL_DIR: dest, HOME: out, PATH: Deno.env.get("PATH") ?? "" };
      const ok = await run("sh", [join(out, "install.sh")], env);
      assert.equal(ok.code, 0, ok.out);
      assert.match(ok.out, /installed .*\/bin\/seguro \(0\.1\.0, x86_64-unknown-linux-gnu\)/);
      assert.deepEqual(await Deno.readFile(join(dest, "seguro")), binary);
      // A binary that does not match its checksum is refused and nothing is installed.
      await Deno.remove(join(dest, "seguro"));
      await Deno.writeFile(join(out, name), Uint8Array.of(1, 2, 3));
      const bad = await run("sh", [join(out, "install.sh")], env);
      assert.equal(bad.code, 1, bad.out);
      assert.match(bad.out, /does not match its SHA-256 in SHA256SUMS; nothing installed/);
      await assert.rejects(Deno.stat(join(dest, "seguro")), Deno.errors.NotFound);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: `dist: the permission check sees a binary built with fewer permissions${onlyHere}`,
  ignore: !linuxX64,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "seguro-dist-" });
    try {
      const output = join(dir, "partial");
      const script = join(dir, "hello.ts");
      await Deno.writeTextFile(script, "console.log('hello');\n");
      const r = await run(Deno.execPath(), [
        "compile",
        "--quiet",
        "--no-config",
        "--allow-read",
        "--allow-net",
        "--output",
        output,
        script,
      ], { DENORT_BIN: "/bin/true" });
      assert.equal(r.code, 0, r.out);
      assert.deepEqual(bakedPermissions(await Deno.readFile(output)), ["net", "read"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("dist: an unreachable runtime download is one line naming DENORT_BIN; nothing written", async () => {
  const out = await Deno.makeTempDir({ prefix: "seguro-dist-" });
  try {
    // A proxy that refuses every connection: the download fails here and everywhere.
    const r = await build(["--target", HOST, "--out", out], {
      HTTPS_PROXY: "http://127.0.0.1:9",
      HTTP_PROXY: "http://127.0.0.1:9",
    });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out.trim(), /^error: deno compile could not get its runtime .*DENORT_BIN/);
    assert.equal(r.out.trim().split("\n").length, 1, r.out);
    assert.deepEqual([...Deno.readDirSync(out)], []);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
