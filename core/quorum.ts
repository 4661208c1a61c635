/**
 * Majority arithmetic: vote tallies and the committed index of a voter set.
 *
 * @module
 */

/** Number of voters that form a majority of `voterCount` voters. */
export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/** Outcome of an election as far as the votes received so far tell. */
export type VoteResult = "won" | "lost" | "pending";

/**
 * Tallies `votes` (voter id -> granted) over `voters`; votes from non-voters
 * are ignored.
 */
export function voteResult(
  voters: readonly number[],
  votes: ReadonlyMap<number, boolean>,
): VoteResult {
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  const need = majority(voters.length);
  if (granted >= need) return "won";
  if (voters.length - rejected < need) return "lost";
  return "pending";
}

/**
 * The largest index that a majority of `voters` have durably matched, where
 * `matchOf(id)` gives each voter's match index. Returns 0 for no voters.
 */
export function committedIndex(
  voters: readonly number[],
  matchOf: (id: number) => number,
): number {
  const n = voters.length;
  if (n === 0) return 0;
  if (n === 1) return matchOf(voters[0]);
  const matches = new Array<number>(n);
  for (let i = 0; i < n; i++) matches[i] = matchOf(voters[i]);
  matches.sort((a, b) => b - a);
  return matches[majority(n) - 1];
}
