/**
 * `seguro token new`: a fresh cluster token, for static clusters
 * (`seguro run --machines`). `seguro init` makes its own.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { encodeToken } from "../cluster/token.ts";
import { print } from "./lib/output.ts";

/** Builds the `token` command group. */
export function tokenCommand(): CommandUnknownOpts {
  const group = new Command("token").description("cluster tokens (the shared secret)");
  group
    .command("new")
    .description("print a new random cluster token (for 'seguro run --machines')")
    .action(() => {
      const id = Array.from(
        crypto.getRandomValues(new Uint8Array(16)),
        (b) => b.toString(16).padStart(2, "0"),
      ).join("");
      print(encodeToken({ clusterId: id, secret: crypto.getRandomValues(new Uint8Array(32)) }));
    });
  return group;
}
