/**
 * `deno task install`: makes `seguro` a command on this machine from this
 * checkout, with `deno install --global` and the release permission set
 * (deno.json `permissions.seguro`). Needs no network once the dependencies
 * are cached (`deno task check` or any task caches them).
 *
 * `--root DIR` installs into DIR/bin instead of Deno's default
 * (`$DENO_INSTALL_ROOT`, else `~/.deno`).
 * @module
 */

import { join } from "node:path";
import { MAIN_PATH, runFlags } from "../server/self_command.ts";

if (import.meta.main) {
  const args = [...Deno.args];
  const at = args.indexOf("--root");
  const root = at >= 0 ? args[at + 1] : undefined;
  if ((at >= 0 && root === undefined) || args.length !== (at >= 0 ? 2 : 0)) {
    console.error("error: usage: deno task install [--root DIR]");
    Deno.exit(2);
  }
  const config = join(MAIN_PATH, "..", "deno.json");
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "install",
      "--global",
      "--force",
      "--quiet",
      "--name",
      "seguro",
      "--config",
      config,
      ...(root === undefined ? [] : ["--root", root]),
      ...runFlags(),
      MAIN_PATH,
    ],
    stdout: "inherit",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    const text = new TextDecoder().decode(stderr).trim().split("\n")[0];
    console.error(`error: deno install failed: ${text}`);
    Deno.exit(1);
  }
  const home = Deno.env.get("HOME") ?? "~";
  const bin = join(root ?? Deno.env.get("DENO_INSTALL_ROOT") ?? join(home, ".deno"), "bin");
  const onPath = (Deno.env.get("PATH") ?? "").split(":").includes(bin);
  console.log(`installed ${join(bin, "seguro")} (runs this checkout's main.ts)`);
  if (!onPath) console.log(`add it to your PATH:  export PATH="${bin}:$PATH"`);
}
