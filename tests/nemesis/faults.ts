/**
 * The faults the nemesis injects into a real cluster, each with its heal:
 * kill -9 of the master, of a follower or of a majority (restarted after),
 * SIGSTOP/SIGCONT of the master, partitions by a node's link going down
 * (the master isolated, a follower isolated), a partition between two nodes
 * only (nft, the third sees both), one-way loss (everything the master sends,
 * or receives, dropped by nft), random loss (nft `numgen random`), and a
 * bandwidth limit (tc tbf). Where the kernel has netem, also delay,
 * duplication and reordering.
 * @module
 */

import type { Prng } from "../../core/prng.ts";
import type { Cluster } from "./cluster.ts";
import type { CommandResult, Network } from "./netns.ts";
import { sh } from "./netns.ts";

/** Every kind of fault. */
export type FaultKind =
  | "kill-master"
  | "kill-follower"
  | "kill-majority"
  | "pause-master"
  | "isolate-master"
  | "isolate-follower"
  | "split-pair"
  | "oneway-master-out"
  | "oneway-master-in"
  | "random-loss"
  | "bandwidth"
  | "netem-delay"
  | "netem-duplicate"
  | "netem-reorder";

/** Every kind, for the command line. */
export const FAULT_KINDS: readonly FaultKind[] = [
  "kill-master",
  "kill-follower",
  "kill-majority",
  "pause-master",
  "isolate-master",
  "isolate-follower",
  "split-pair",
  "oneway-master-out",
  "oneway-master-in",
  "random-loss",
  "bandwidth",
  "netem-delay",
  "netem-duplicate",
  "netem-reorder",
];

/** Faults that need netem. */
export const NETEM_FAULTS: readonly FaultKind[] = [
  "netem-delay",
  "netem-duplicate",
  "netem-reorder",
];

/** Faults aimed at the master: they are expected to move it. */
export const MASTER_FAULTS: readonly FaultKind[] = [
  "kill-master",
  "kill-majority",
  "pause-master",
  "isolate-master",
  "oneway-master-out",
  "oneway-master-in",
];

/** What a fault needs. */
export interface FaultContext {
  /** The cluster. */
  cluster: Cluster;
  /** Its namespaces. */
  net: Network;
  /** The round's random source. */
  prng: Prng;
  /** The master when the fault starts. */
  master: number;
}

/** A fault in force. */
export interface ActiveFault {
  /** Its kind. */
  kind: FaultKind;
  /** What was done, for the log. */
  description: string;
  /** Hold it this long before healing. */
  holdMs: number;
  /** Heal as soon as a new master has released (within the failover bound), not after holdMs. */
  untilFailover: boolean;
  /** Ends it: restarts, links up, rules and qdiscs removed. */
  heal(): Promise<void>;
}

function between(prng: Prng, lo: number, hi: number): number {
  return lo + prng.int(hi - lo + 1);
}

function followerOf(ctx: FaultContext): number {
  const others = ctx.net.ids.filter((id) => id !== ctx.master);
  return others[ctx.prng.int(others.length)];
}

// ------------------------------------------------------------ nft and tc

const TABLE = ["inet", "nemesis"];

async function nft(net: Network, id: number, args: string[]): Promise<void> {
  await net.inNode(id, "nft", args);
}

/** Creates the nemesis table with input and output chains in node `id`'s namespace. */
async function nftTable(net: Network, id: number): Promise<void> {
  await nft(net, id, ["add", "table", ...TABLE]);
  for (const hook of ["input", "output"]) {
    await nft(net, id, [
      "add",
      "chain",
      ...TABLE,
      hook,
      `{ type filter hook ${hook} priority 0 ; }`,
    ]);
  }
}

/** Drops, on the node's cluster link, `percent`% of packets (100: all) in one direction. */
async function nftDrop(
  net: Network,
  id: number,
  hook: "input" | "output",
  percent: number,
  peer?: string,
): Promise<void> {
  const iface = hook === "input" ? ["iifname", "eth0"] : ["oifname", "eth0"];
  const match = peer === undefined ? [] : ["ip", hook === "input" ? "saddr" : "daddr", peer];
  const loss = percent >= 100 ? [] : ["numgen", "random", "mod", "100", "<", String(percent)];
  await nft(net, id, ["add", "rule", ...TABLE, hook, ...iface, ...match, ...loss, "drop"]);
}

async function nftClear(net: Network, id: number): Promise<void> {
  await sh("ip", ["netns", "exec", net.nodeNs(id), "nft", "delete", "table", ...TABLE]);
}

/** `tc qdisc add dev DEV root QDISC...` in namespace `ns`; the result, not thrown. */
function tcTryAdd(ns: string, dev: string, qdisc: string[]): Promise<CommandResult> {
  return sh("ip", ["netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", ...qdisc]);
}

async function tcAdd(ns: string, dev: string, qdisc: string[]): Promise<void> {
  const r = await tcTryAdd(ns, dev, qdisc);
  if (r.code !== 0) {
    throw new Error(`tc qdisc add dev ${dev} root ${qdisc.join(" ")} failed: ${r.stderr.trim()}`);
  }
}

async function tcClear(ns: string, dev: string): Promise<void> {
  await sh("ip", ["netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"]);
}

/**
 * Whether `tc qdisc ... netem` works here (tried on a loopback in node 1's
 * namespace); the error when it does not.
 */
export async function probeNetem(net: Network): Promise<{ ok: boolean; why: string }> {
  const ns = net.nodeNs(net.ids[0]);
  const r = await tcTryAdd(ns, "lo", ["netem", "delay", "10ms"]);
  if (r.code === 0) {
    await tcClear(ns, "lo");
    return { ok: true, why: "" };
  }
  return { ok: false, why: r.stderr.trim() || `exit ${r.code}` };
}

/** Applies netem to every node's link, both ways (node side and bridge side). */
async function netemAll(net: Network, qdisc: string[]): Promise<() => Promise<void>> {
  for (const id of net.ids) {
    await tcAdd(net.nodeNs(id), "eth0", ["netem", ...qdisc]);
    await tcAdd(net.bridgeNs, net.port(id), ["netem", ...qdisc]);
  }
  return async () => {
    for (const id of net.ids) {
      await tcClear(net.nodeNs(id), "eth0");
      await tcClear(net.bridgeNs, net.port(id));
    }
  };
}

// ------------------------------------------------------------ the faults

/** Starts a fault of `kind`. */
export async function applyFault(kind: FaultKind, ctx: FaultContext): Promise<ActiveFault> {
  const { cluster, net, prng, master } = ctx;
  switch (kind) {
    case "kill-master":
      await cluster.signal(master, "SIGKILL");
      return {
        kind,
        description: `kill -9 of the master, node ${master}`,
        holdMs: 0,
        untilFailover: true,
        heal: () => cluster.restart(master),
      };
    case "kill-follower": {
      const f = followerOf(ctx);
      await cluster.signal(f, "SIGKILL");
      return {
        kind,
        description: `kill -9 of follower node ${f}`,
        holdMs: between(prng, 500, 2000),
        untilFailover: false,
        heal: () => cluster.restart(f),
      };
    }
    case "kill-majority": {
      const f = followerOf(ctx);
      await Promise.all([cluster.signal(master, "SIGKILL"), cluster.signal(f, "SIGKILL")]);
      return {
        kind,
        description: `kill -9 of the master, node ${master}, and of node ${f}`,
        holdMs: between(prng, 200, 1500),
        untilFailover: false,
        heal: async () => {
          await Promise.all([cluster.restart(master), cluster.restart(f)]);
        },
      };
    }
    case "pause-master": {
      const ms = between(prng, 1000, 3000);
      await cluster.signal(master, "SIGSTOP");
      return {
        kind,
        description: `SIGSTOP of the master, node ${master}, for ${ms} ms`,
        holdMs: ms,
        untilFailover: false,
        heal: () => cluster.signal(master, "SIGCONT"),
      };
    }
    case "isolate-master":
      await net.linkDown(master);
      return {
        kind,
        description: `link down: the master, node ${master}, isolated`,
        holdMs: 0,
        untilFailover: true,
        heal: () => net.linkUp(master),
      };
    case "isolate-follower": {
      const f = followerOf(ctx);
      await net.linkDown(f);
      return {
        kind,
        description: `link down: follower node ${f} isolated (the master keeps a majority)`,
        holdMs: between(prng, 1000, 3000),
        untilFailover: false,
        heal: () => net.linkUp(f),
      };
    }
    case "split-pair": {
      const f = followerOf(ctx);
      await nftTable(net, master);
      await nftDrop(net, master, "input", 100, net.ip(f));
      await nftDrop(net, master, "output", 100, net.ip(f));
      return {
        kind,
        description:
          `nft: the master, node ${master}, and node ${f} cut from each other (the third sees both)`,
        holdMs: between(prng, 1500, 4000),
        untilFailover: false,
        heal: () => nftClear(net, master),
      };
    }
    case "oneway-master-out":
    case "oneway-master-in": {
      const hook = kind === "oneway-master-out" ? "output" : "input";
      await nftTable(net, master);
      await nftDrop(net, master, hook, 100);
      return {
        kind,
        description: `nft: everything the master, node ${master}, ${
          hook === "output" ? "sends" : "receives"
        } is dropped`,
        holdMs: 0,
        untilFailover: true,
        heal: () => nftClear(net, master),
      };
    }
    case "random-loss": {
      const loss = new Map(net.ids.map((id) => [id, between(prng, 10, 40)]));
      for (const [id, p] of loss) {
        await nftTable(net, id);
        await nftDrop(net, id, "input", p);
        await nftDrop(net, id, "output", p);
      }
      return {
        kind,
        description: `nft: random loss each way, ${
          [...loss].map(([id, p]) => `node ${id} ${p}%`).join(", ")
        }`,
        holdMs: between(prng, 2000, 4000),
        untilFailover: false,
        heal: async () => {
          for (const id of net.ids) await nftClear(net, id);
        },
      };
    }
    case "bandwidth": {
      const kbit = [128, 256, 512, 1024][prng.int(4)];
      const tbf = ["tbf", "rate", `${kbit}kbit`, "burst", "16kbit", "latency", "200ms"];
      await tcAdd(net.nodeNs(master), "eth0", tbf);
      await tcAdd(net.bridgeNs, net.port(master), tbf);
      return {
        kind,
        description: `tc tbf: the master, node ${master}, limited to ${kbit} kbit/s each way`,
        holdMs: between(prng, 2000, 4000),
        untilFailover: false,
        heal: async () => {
          await tcClear(net.nodeNs(master), "eth0");
          await tcClear(net.bridgeNs, net.port(master));
        },
      };
    }
    case "netem-delay": {
      const ms = between(prng, 10, 80);
      const heal = await netemAll(net, ["delay", `${ms}ms`, `${Math.ceil(ms / 2)}ms`]);
      return {
        kind,
        description: `netem: ${ms} ms delay (jitter ${Math.ceil(ms / 2)} ms) on every link`,
        holdMs: between(prng, 2000, 4000),
        untilFailover: false,
        heal,
      };
    }
    case "netem-duplicate": {
      const p = between(prng, 5, 30);
      const heal = await netemAll(net, ["duplicate", `${p}%`]);
      return {
        kind,
        description: `netem: ${p}% of packets duplicated on every link`,
        holdMs: between(prng, 2000, 4000),
        untilFailover: false,
        heal,
      };
    }
    case "netem-reorder": {
      const p = between(prng, 10, 50);
      const heal = await netemAll(net, ["delay", "20ms", "reorder", `${p}%`, "50%"]);
      return {
        kind,
        description: `netem: ${p}% of packets reordered (20 ms delay) on every link`,
        holdMs: between(prng, 2000, 4000),
        untilFailover: false,
        heal,
      };
    }
  }
}
