/**
 * The `seguro` binary: builds the CLI from cmd/ and runs it.
 * @module
 */

import { runCli } from "./cmd/mod.ts";

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
