/**
 * `seguro doctor`: reads every page of a stopped node's database and says
 * whether it is sound. `seguro run` checks only what it can check at once
 * (the header, that the file is Seguro's, its schema version), so a node
 * starts as fast on a long log as on a short one; this is the full check, on
 * demand. The check itself is cluster/store.ts's `checkIntegrity`.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { checkIntegrity } from "../cluster/store.ts";
import { CliError } from "./lib/errors.ts";
import { dataDirOf } from "./lib/options.ts";
import { note, print, toJson } from "./lib/output.ts";

/** Bytes as megabytes (10^6): one decimal below 10 MB, whole above. */
function megabytes(bytes: number): string {
  const mb = bytes / 1e6;
  return mb < 10 ? mb.toFixed(1) : Math.round(mb).toLocaleString("en-US");
}

/** Builds the `doctor` command. */
export function doctorCommand(): CommandUnknownOpts {
  return new Command("doctor")
    .description(
      "check every page of a stopped node's database (SQLite integrity_check); exit 1 on findings",
    )
    .option(
      "--data-dir <dir>",
      "the data dir to check (default $SEGURO_DATA_DIR or ~/.seguro); its node must be stopped",
    )
    .option("--json", "print JSON")
    .action((options) => {
      const dir = dataDirOf(options);
      if (!exists(dir)) {
        throw new CliError(
          `the data dir ${dir} does not exist; pass the --data-dir of a stopped Seguro node`,
        );
      }
      const started = performance.now();
      const report = checkIntegrity(dir, {
        onStart: (path, bytes) =>
          note(
            `checking ${path}: reading all ${
              megabytes(bytes)
            } MB of it; keep the node stopped until this ends`,
          ),
      });
      const seconds = (performance.now() - started) / 1000;
      const ok = report.findings.length === 0;
      if (options.json) {
        print(toJson({ dataDir: dir, ok, ...report, seconds: Number(seconds.toFixed(3)) }));
      } else if (ok) {
        print(
          `ok: ${report.path} passed the integrity check (${megabytes(report.bytes)} MB in ${
            seconds.toFixed(1)
          } s)`,
        );
      } else {
        for (const finding of report.findings) print(finding);
      }
      if (!ok) {
        throw new CliError(
          `${report.path} failed the integrity check (${report.findings.length} finding${
            report.findings.length === 1 ? "" : "s"
          }${
            options.json ? "" : " above"
          }); remove this node from the cluster ('seguro member remove' on another node) and join again with a fresh data dir`,
        );
      }
    });
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
