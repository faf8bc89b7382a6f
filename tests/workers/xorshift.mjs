// xorshift32, the tests' reproducible random numbers, for any host and either
// side of a worker (tests/ordering.ts's plans, tests/workers/stress-agent.mjs,
// inspect-agent.mjs, chaos.mjs).

/** A generator of numbers in [0, 1) from `seed` (0 counts as 1): the same seed, the same sequence. */
export function xorshift32(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}
