/**
 * Every limit of the nemesis in one place: timeouts, bounds on loops and
 * buffers, and the defaults of the runtime client. Names carry their unit.
 * @module
 */

/** Plans a runtime keeps in flight (sent, not yet covered by a `%done`). */
export const INFLIGHT_DEFAULT = 256;

/** The fixed timeout of one wait of the runtime client: a connect, a `%hail`, a `%head`, a `%logs`. */
export const CLIENT_WAIT_MS = 2_000;

/** A leading connection with plans in flight and no `%done` for this long is abandoned. */
export const CLIENT_STALL_MS = 3_000;

/** After `%fence`, how long the client waits for `%lead` on the same connection. */
export const FENCE_WAIT_MS = 1_000;

/** How long one discovery attempt waits for some node to say `%lead`. */
export const DISCOVERY_MS = 2_000;

/** After a node failed the client, how long a `%lead` from another node is preferred over it. */
export const DISCOVERY_PREFER_OTHER_MS = 300;

/** Events the runtime client asks for in one `%read` (the node answers at most 10,000). */
export const READ_COUNT = 10_000;

/** Events re-read behind the local head at a re-sync, before looking further back. */
export const RESYNC_WINDOW_EVENTS = 512;

/** Largest frame body the client accepts (the node's limit, docs/runtime-protocol.md section 1). */
export const FRAME_BYTES_MAX = 64 * 1024 * 1024;

/** Bytes the client queues for writing before it waits for the socket. */
export const CLIENT_QUEUE_BYTES_MAX = 8 * 1024 * 1024;

/** How long a stopping client waits for `%done` of its plans in flight. */
export const CLIENT_DRAIN_MS = 10_000;

/** Wait for a node's first log lines (listening) after a start. */
export const NODE_START_MS = 30_000;

/** Wait for a node to exit after SIGTERM before it gets SIGKILL. */
export const NODE_STOP_MS = 15_000;

/** Wait for the first master of a fresh cluster. */
export const FIRST_LEADER_MS = 30_000;

/** Wait for one admin command (`seguro ship add`, ...). */
export const ADMIN_MS = 30_000;

/** Wait for one `ip`, `nft` or `tc` command. */
export const NET_COMMAND_MS = 10_000;

/** From a fault's start, how long the client may take to be released by a new master. */
export const FAILOVER_MS = 30_000;

/** From a fault's heal, how long the client may take to be released again. */
export const RECOVERY_MS = 30_000;

/** After a restart, how long the next round waits for the node to follow a leader (then goes on). */
export const REJOIN_MS = 10_000;

/** A round whose waits passed their bounds is slow; one not recovered by this long fails the run. */
export const SLOW_ROUND_MS = 120_000;

/** Wait for every node to hold the same log head before the cluster is stopped. */
export const CONVERGE_MS = 60_000;

/** Interval between two looks at the nodes' heads while they converge (there is no event for it). */
export const CONVERGE_POLL_MS = 100;

/** Wait for a runtime to start on a new master in exec mode (lease wait included). */
export const EXEC_FAILOVER_MS = 40_000;

/** Log lines of a node kept in memory (all are written to its log file). */
export const NODE_LINES_KEPT = 400;

/** Log lines of each node printed when a run fails. */
export const NODE_LINES_SHOWN = 25;

/** Violations of each kind spelled out in a report (all are counted). */
export const VIOLATIONS_SHOWN = 10;

/** Rounds at most, whatever the command line says. */
export const ROUNDS_MAX = 10_000;
