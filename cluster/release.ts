/**
 * Release tracking ("optimism"): on the master, an event's effects may be
 * released once the master and K other replicas hold it durably. K is per
 * ship (or the cluster default: a quorum, K = majority - 1, where released
 * and committed coincide).
 *
 * With K below the quorum a release can precede commit; such events are
 * remembered until their entry commits, and if a failover erases one (its
 * index ends up holding an entry of another term) it is reported as
 * "released but lost", never silently.
 *
 * The tracker is pure: the node feeds it what the core knows (durable index
 * here, match indexes of replicas) and carries out what it returns.
 * @module
 */

/** A ship's optimism meaning "whatever the cluster default is". */
export const OPTIMISM_DEFAULT = -1;
/** Optimism meaning "a quorum": K = majority - 1 (the cluster default unless changed). */
export const OPTIMISM_QUORUM = -2;

/** Events of one ship carried by one Raft entry. */
export interface PlannedEntry {
  /** Raft index of the entry. */
  index: number;
  /** Term it was proposed in. */
  term: number;
  /** The ship. */
  ship: bigint;
  /** First and last event number in the entry. */
  firstEve: number;
  /** Last event number in the entry. */
  lastEve: number;
  /** Replicas besides the master that must hold it (resolved, >= 0). */
  k: number;
  /**
   * K is "a quorum": also wait until the entry is committed AND the state
   * machine accepted it, so learners (which hold entries but do not vote)
   * never make a release precede commit, and a release never covers an
   * event the state machine refused.
   */
  quorum?: boolean;
  /** Set by {@linkcode ReleaseTracker.accepted}: applied here, every event accepted. */
  accepted?: boolean;
  /**
   * Released before commit and no longer in this node's log (truncated, not
   * yet overwritten): recorded durably by the caller, so that a crash before
   * the verdict cannot hide the loss.
   */
  saved?: boolean;
}

/** Which entry: its index and term. */
export interface EntryId {
  /** Raft index. */
  readonly index: number;
  /** Its term (0: unknown). */
  readonly term: number;
}

/** What an audit found. */
export interface AuditResult {
  /** Released entries now replaced by another term's: losses to report. */
  lost: Loss[];
  /** Released entries the log no longer reaches: record them durably (then `saved`). */
  save: PlannedEntry[];
  /** Recorded entries with a verdict now (lost, or applied as they were): forget the record. */
  forget: PlannedEntry[];
}

/** A release to announce: every event of `ship` up to `eve`. */
export interface Release {
  /** The ship. */
  ship: bigint;
  /** Released up to and including this event. */
  eve: number;
}

/** Events released before commit whose entry was then overwritten. */
export interface Loss {
  /** The ship. */
  ship: bigint;
  /** First lost event. */
  firstEve: number;
  /** Last lost event. */
  lastEve: number;
  /** The entry index that held them. */
  index: number;
  /** The term they were released in. */
  term: number;
}

/**
 * Why `optimism` cannot be set on a cluster of `voters` voters, or undefined
 * when it can: a number of replicas besides the master from 0 to
 * `voters - 1`, {@linkcode OPTIMISM_QUORUM}, or, for one ship (not for the
 * cluster default), {@linkcode OPTIMISM_DEFAULT}. The one place the range
 * is checked: the CLI only parses the words, the leader checks the value.
 *
 * @example
 * ```ts
 * optimismProblem(2, 3); // undefined
 * optimismProblem(99, 3); // "Optimism 99 is out of range: ... from 0 to 2, ..."
 * ```
 */
export function optimismProblem(
  optimism: number,
  voters: number,
  options: { clusterDefault?: boolean } = {},
): string | undefined {
  const others = Math.max(0, voters - 1);
  const words = options.clusterDefault ? "or 'quorum'" : "'quorum' or 'default'";
  const range =
    `a number of replicas besides the master from 0 to ${others} (this cluster has ${voters} voter${
      voters === 1 ? "" : "s"
    }), ${words}`;
  if (optimism === OPTIMISM_QUORUM) return undefined;
  if (optimism === OPTIMISM_DEFAULT) {
    return options.clusterDefault
      ? `The cluster default cannot be 'default'; give ${range}`
      : undefined;
  }
  if (Number.isSafeInteger(optimism) && optimism >= 0 && optimism <= others) return undefined;
  return `Optimism ${optimism} is out of range: give ${range}`;
}

/** Resolves a ship's optimism setting to K for a cluster of `voters` voters and `replicas` other members. */
export function resolveK(optimism: number, voters: number, replicas: number): number {
  if (optimism < 0) return Math.max(0, Math.floor(voters / 2)); // quorum (or an unset default)
  return Math.min(Math.max(0, optimism), replicas);
}

/** Tracks planned entries until released, and released-but-uncommitted ones until committed. */
export class ReleaseTracker {
  #pending: PlannedEntry[] = [];
  #uncommitted: PlannedEntry[] = [];
  #stalledFor: { need: number; have: number } | undefined;
  #lastPlanned = 0;

  /** Entries waiting for replicas. */
  get pendingCount(): number {
    return this.#pending.length;
  }

  /** Released entries not yet known committed. */
  get uncommittedCount(): number {
    return this.#uncommitted.length;
  }

  /** Why the oldest pending entry waits (too few replicas hold it), if it does. */
  get stalled(): { need: number; have: number } | undefined {
    return this.#stalledFor;
  }

  /** Registers an entry proposed on this master. Indexes must increase. */
  planned(entry: PlannedEntry): void {
    if (entry.index <= this.#lastPlanned) {
      throw new Error(`planned entry ${entry.index} does not follow ${this.#lastPlanned}`);
    }
    this.#lastPlanned = entry.index;
    this.#pending.push(entry);
  }

  /**
   * Releases what is now held widely enough: `durable` is the master's own
   * durable index, `matches` the durable index of each other replica,
   * `applied` the applied index (entries at or below it are committed and
   * their apply results known). Entries are released in index order.
   */
  update(durable: number, matches: readonly number[], applied: number): Release[] {
    const out: Release[] = [];
    this.#stalledFor = undefined;
    let released = 0;
    for (const e of this.#pending) {
      const have = matches.filter((m) => m >= e.index).length;
      const waitsForApply = e.quorum === true && e.accepted !== true;
      if (durable < e.index || have < e.k || waitsForApply) {
        if (durable >= e.index && have < e.k) this.#stalledFor = { need: e.k, have };
        break;
      }
      out.push({ ship: e.ship, eve: e.lastEve });
      if (e.index > applied) this.#uncommitted.push(e);
      released++;
    }
    if (released > 0) this.#pending = this.#pending.slice(released);
    return out;
  }

  /**
   * The state machine accepted every event of the planned entry at `index`
   * (of `term`): a quorum entry may now be released.
   */
  accepted(index: number, term: number): void {
    const e = this.#pending.find((p) => p.index === index && p.term === term);
    if (e !== undefined) e.accepted = true;
  }

  /**
   * The state machine refused the planned entry at `index` (of `term`), so no
   * later entry of that ship can be accepted either (a gap). Drops them all
   * from the pending list; returns those already released (only possible
   * with K below a quorum), which are losses.
   */
  refused(index: number, term: number, ship: bigint): Loss[] {
    const hit = (p: PlannedEntry) => p.ship === ship && p.index >= index;
    this.#pending = this.#pending.filter((p) => !hit(p));
    const lost: Loss[] = [];
    for (const e of this.#uncommitted) {
      if (e.ship !== ship || e.index !== index || e.term !== term) continue;
      lost.push({ ship, firstEve: e.firstEve, lastEve: e.lastEve, index, term });
    }
    this.#uncommitted = this.#uncommitted.filter((e) => !(e.index === index && e.term === term));
    return lost;
  }

  /**
   * Checks released-but-uncommitted entries against the log after a change
   * of leader: `termAt(index)` is the term of the entry now at that index
   * (undefined if the log no longer reaches it), `applied` the applied index
   * (entries at or below it committed, and a refusal by the state machine
   * was reported through {@linkcode refused}), `appliedFrom(ship, eve)` the
   * index and term of the entry the applied event came from (undefined: not
   * applied; term 0: unknown, stored before schema 5),
   * `appliedTerm` the term of the entry at the applied index.
   * Returns the losses and forgets them; entries applied as they were are
   * dropped.
   */
  audit(
    termAt: (index: number) => number | undefined,
    applied: number,
    appliedFrom: (ship: bigint, eve: number) => EntryId | undefined = () => undefined,
    appliedTerm = 0,
  ): AuditResult {
    const result: AuditResult = { lost: [], save: [], forget: [] };
    const keep: PlannedEntry[] = [];
    for (const e of this.#uncommitted) {
      const t = termAt(e.index);
      // Its first event already applied from another entry: replaced, whatever the log
      // at its index says now (the new master may have packed events differently).
      const from = appliedFrom(e.ship, e.firstEve);
      // A committed entry of a later term before it: terms never decrease along a log and
      // every later leader holds that entry (Leader Completeness), so no leader will ever
      // hold this one again; it can never commit, even if no entry has replaced it here.
      const unreachable = e.index > applied && appliedTerm > e.term;
      // (Once the log is compacted past it, the term of the applied event's entry tells.)
      const replaced = (t !== undefined && t !== e.term) ||
        (from !== undefined &&
          (from.index !== e.index || (from.term !== 0 && from.term !== e.term)));
      if (replaced || unreachable) {
        result.lost.push({
          ship: e.ship,
          firstEve: e.firstEve,
          lastEve: e.lastEve,
          index: e.index,
          term: e.term,
        });
        if (e.saved === true) result.forget.push(e);
      } else if (t === undefined || e.index > applied) {
        if (t === undefined && e.saved !== true) {
          e.saved = true;
          result.save.push(e);
        }
        keep.push(e);
      } else if (e.saved === true) {
        result.forget.push(e);
      }
    }
    this.#uncommitted = keep;
    return result;
  }

  /**
   * After a restart: entries this node proposed as master that were durable
   * here but not known committed may have been released before the crash
   * (with K below the quorum); audit them like released ones.
   */
  rememberPossiblyReleased(entries: readonly PlannedEntry[]): void {
    for (const e of entries) {
      const known = this.#uncommitted.some((u) => u.index === e.index && u.term === e.term);
      if (!known) this.#uncommitted.push(e);
    }
  }

  /** Drops planned entries that will never be released here (this node lost leadership). */
  abandonPending(): PlannedEntry[] {
    const dropped = this.#pending;
    this.#pending = [];
    this.#lastPlanned = 0; // a later term appends at indexes this one may have used
    return dropped;
  }
}
