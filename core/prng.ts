/**
 * A small seeded pseudo-random generator (xoshiro128**), so that everything
 * random in the core and the simulator replays from one seed.
 *
 * @module
 */

/** A seeded random source. */
export interface Prng {
  /** Uniform integer in [0, maxExclusive). */
  int(maxExclusive: number): number;
  /** Uniform float in [0, 1). */
  float(): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
}

/** Creates a generator from a 32-bit seed (any integer; equal seeds give equal streams). */
export function createPrng(seed: number): Prng {
  // splitmix32 expands the seed into four non-zero state words.
  let s = seed >>> 0;
  function splitmix(): number {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  }
  let a = splitmix(), b = splitmix(), c = splitmix(), d = splitmix();
  if ((a | b | c | d) === 0) a = 1;
  function next(): number {
    const result = Math.imul(rotl(Math.imul(b, 5) >>> 0, 7), 9) >>> 0;
    const t = (b << 9) >>> 0;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result;
  }
  function float(): number {
    return next() / 4294967296;
  }
  return {
    int(maxExclusive: number): number {
      return Math.floor(float() * maxExclusive);
    },
    float,
    chance(p: number): boolean {
      return float() < p;
    },
  };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
