/**
 * `seguro token new`: a fresh cluster token (for `seguro run --machines`;
 * `seguro init` makes its own), or with `--role`, a client credential
 * issued with the cluster token (docs/security.md, "Roles"); `seguro token
 * revoke SERIAL`: a replicated revocation every node enforces.
 * @module
 */

import { Command, type CommandUnknownOpts, Option } from "@commander-js/extra-typings";
import { readTokenFile } from "../cluster/datadir.ts";
import {
  type ClusterToken,
  encodeToken,
  issueClientCredential,
  newClusterSecret,
} from "../cluster/token.ts";
import { describeCertificate } from "../cluster/certs.ts";
import {
  cliErrorOf,
  dataDirOf,
  targetFlags,
  targetOf,
  type TargetOptions,
  tokenFromOptions,
} from "./lib/options.ts";
import { withLeader } from "../cluster/api.ts";
import { CliError, UsageError } from "./lib/errors.ts";
import { note, print } from "./lib/output.ts";

const ROLES = ["admin", "monitor"] as const;
const VALID_DAYS_MAX = 3650;

function validDaysOption(value: string): number {
  const days = Number(value);
  if (!Number.isInteger(days) || days < 1 || days > VALID_DAYS_MAX) {
    throw new UsageError(`--valid-days takes a whole number of days from 1 to ${VALID_DAYS_MAX}`);
  }
  return days;
}

/** The cluster token from SEGURO_TOKEN / --token-file, else the data dir's. */
function clusterTokenOf(options: { tokenFile?: string; dataDir?: string }): ClusterToken {
  const given = tokenFromOptions(options);
  if (given !== undefined) {
    if (!("secret" in given)) {
      throw new UsageError(
        "a credential is issued with the cluster token (sgt2.), not with another credential",
      );
    }
    return given;
  }
  const dir = dataDirOf(options);
  try {
    return readTokenFile(dir);
  } catch (e) {
    throw new CliError(
      `no cluster token: set SEGURO_TOKEN, pass --token-file FILE, or --data-dir of a node (${
        (e as Error).message
      })`,
    );
  }
}

/** Builds the `token` command group. */
export function tokenCommand(): CommandUnknownOpts {
  const group = new Command("token").description("cluster tokens and client credentials");
  group
    .command("new")
    .description(
      "print a new cluster token (for 'seguro run --machines'), or with --role a client credential",
    )
    .addOption(
      new Option("--role <role>", "issue a client credential with this role").choices(ROLES),
    )
    .option("--valid-days <days>", "how long the credential is valid (default 90)", validDaysOption)
    .option("--data-dir <dir>", "a node's data dir, whose cluster token issues the credential")
    .option("--token-file <file>", "file holding the cluster token (or set SEGURO_TOKEN)")
    .option(
      "--insecure-plaintext",
      "a cluster token for a cluster WITHOUT TLS (for benchmarks only)",
    )
    .action(async (options) => {
      if (options.role === undefined) {
        if (options.validDays !== undefined) {
          throw new UsageError("--valid-days goes with --role: a cluster token does not expire");
        }
        const id = Array.from(
          crypto.getRandomValues(new Uint8Array(16)),
          (b) => b.toString(16).padStart(2, "0"),
        ).join("");
        const secret = await newClusterSecret(options.insecurePlaintext === true);
        print(encodeToken({ clusterId: id, secret }));
        return;
      }
      const credential = await issueClientCredential(
        clusterTokenOf(options),
        options.role,
        options.validDays ?? 90,
      );
      const info = describeCertificate(credential.client.certPem);
      note(
        `a ${options.role} credential, serial ${info.serial}, valid until ${info.notAfter.toISOString()}; it is a password: pass it in SEGURO_TOKEN or --token-file`,
      );
      print(encodeToken(credential));
    });
  targetFlags(
    group.command("revoke").description(
      "revoke a client credential by its serial ('token new' printed it): every node refuses it",
    ).argument("<serial>", "the credential's serial (hex)"),
  ).action(async (serial: string, options: TargetOptions) => {
    const target = targetOf(options);
    let revoked: string;
    try {
      revoked = await withLeader(
        target.address,
        target.credentials,
        (c) => c.revokeCertificate(serial),
      );
    } catch (e) {
      throw cliErrorOf(e);
    }
    print(`revoked ${revoked}: every node refuses it, and closes connections made with it`);
  });
  return group;
}
