/**
 * `seguro cert rotate`: the node asked (`--data-dir` or `--cluster`) issues
 * itself a new key and TLS certificate with the cluster CA and uses them for
 * new connections at once; open connections keep theirs until they close.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { ClusterClient } from "../cluster/api.ts";
import { cliErrorOf, targetFlags, targetOf, type TargetOptions } from "./lib/options.ts";
import { print, toJson } from "./lib/output.ts";

/** Builds the `cert` command group. */
export function certCommand(): CommandUnknownOpts {
  const group = new Command("cert").description("the nodes' TLS certificates");
  targetFlags(
    group.command("rotate").description(
      "replace the TLS certificate of the node given by --data-dir or --cluster, without downtime",
    ),
  )
    .option("--json", "print JSON")
    .action(async (options: TargetOptions & { json?: boolean }) => {
      const target = targetOf(options);
      let answer;
      try {
        const client = await ClusterClient.connect(target.address, target.credentials, {
          answerTimeoutMs: 30_000,
        });
        try {
          answer = await client.rotateCertificate();
        } finally {
          client.close();
        }
      } catch (e) {
        throw cliErrorOf(e);
      }
      if (options.json) {
        print(toJson(answer));
        return;
      }
      print(
        `node ${answer.nodeId}: new certificate ${answer.serial}, valid until ${answer.notAfter}`,
      );
    });
  return group;
}
