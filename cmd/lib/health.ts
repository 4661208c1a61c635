/**
 * The HEALTH column of `seguro status`: one word per member, from whether the
 * CLI reached it, how long ago the leader last heard from it (measured
 * against the election timeout, the time after which Raft itself stops
 * counting a silent member), and how far its log is behind the leader's.
 * @module
 */

/** A member's health: the rule is {@linkcode memberHealth}. */
export type Health = "ok" | "lagging" | "stale" | "unreachable" | "no leader";

/** Entries behind the leader's last index beyond which a member in contact is `lagging`. */
export const LAG_ENTRIES_MAX = 1000;

/** What the health of one member is decided from. */
export interface HealthFacts {
  /** The CLI got this member's own status. */
  reachable: boolean;
  /** Some member answered as the leader. */
  leaderKnown: boolean;
  /** This member is that leader. */
  isLeader: boolean;
  /** Milliseconds since the leader last heard from it; null if it never has. */
  contactMs: number | null;
  /** Entries its log is behind the leader's last index; null if unknown. */
  lag: number | null;
  /** The leader's base election timeout in milliseconds. */
  electionTimeoutMs: number;
}

/**
 * The health of one member, first match wins:
 * - `unreachable`: the CLI could not get its status (down, or cut off from here);
 * - `no leader`: no member answered as leader, so contact and lag are unknown;
 * - `ok` for the leader itself;
 * - `stale`: the leader has not heard from it for an election timeout or more
 *   (or never): it is up but not in contact with the leader;
 * - `lagging`: in contact, but more than {@linkcode LAG_ENTRIES_MAX} entries behind;
 * - `ok` otherwise.
 *
 * @example
 * ```ts
 * memberHealth({
 *   reachable: true, leaderKnown: true, isLeader: false,
 *   contactMs: 4800, lag: 46, electionTimeoutMs: 500,
 * }); // "stale"
 * ```
 */
export function memberHealth(facts: HealthFacts): Health {
  if (!facts.reachable) return "unreachable";
  if (!facts.leaderKnown) return "no leader";
  if (facts.isLeader) return "ok";
  if (facts.contactMs === null || facts.contactMs >= facts.electionTimeoutMs) return "stale";
  if (facts.lag !== null && facts.lag > LAG_ENTRIES_MAX) return "lagging";
  return "ok";
}
