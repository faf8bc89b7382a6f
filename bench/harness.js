// Timing and statistics shared by every case group.
//
// A *variant* is one way of doing the thing a case measures: bus1-wasm, or a
// baseline. `compare` measures all variants of a case once per round, in an
// order that rotates from round to round, so that slow drift on the machine
// (another process, thermal throttling, a GC that lands late) touches each of
// them alike; it reports the median of the rounds and their spread. A case
// whose spread is wild is measured a second time and the calmer of the two
// runs is kept; the result says so.

/** Relative spread, (p75 − p25) ÷ median, above which a case is re-run once. */
export const WILD_SPREAD = 0.25;

export const now = () => performance.now();

/** The q-quantile of an ascending array, interpolated linearly. */
export function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at), hi = Math.ceil(at);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}

/** Median, quartiles, extremes and relative spread of a list of samples. */
export function summarize(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const median = quantile(sorted, 0.5);
  const p25 = quantile(sorted, 0.25), p75 = quantile(sorted, 0.75);
  return {
    median, p25, p75, min: sorted[0], max: sorted[sorted.length - 1], n: sorted.length,
    spread: median > 0 ? (p75 - p25) / median : 0,
    samples: samples.map((x) => +x.toPrecision(6)),
  };
}

/**
 * Runs `run(n)` (n operations) in batches for about `ms` milliseconds and
 * returns nanoseconds per operation. The batch size is found first, so that
 * one batch takes about a millisecond and the clock's own cost is noise.
 */
export function timeLoop(run, ms) {
  let batch = 1;
  for (;;) {
    const t = now();
    run(batch);
    const dt = now() - t;
    if (dt >= 1 || batch >= 1 << 24) {
      batch = Math.max(1, Math.round(batch / Math.max(dt, 1e-3)));
      break;
    }
    batch *= dt < 0.05 ? 16 : 2;
  }
  let ops = 0;
  const start = now();
  let elapsed = 0;
  do {
    run(batch);
    ops += batch;
    elapsed = now() - start;
  } while (elapsed < ms);
  return (elapsed * 1e6) / ops;
}

/**
 * Measures each variant once per round, rotating the order each round.
 * `variants`: [{ name, measure: () => number | Promise<number> }], where a
 * measurement is a cost (nanoseconds per operation: lower is better).
 * Returns { [name]: summary, rounds: [[name, value] ...] per round }.
 */
export async function rounds(variants, count) {
  const values = new Map(variants.map((v) => [v.name, []]));
  for (let r = 0; r < count; r++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(r + i) % variants.length];
      values.get(v.name).push(await v.measure());
    }
  }
  const result = {};
  for (const [name, samples] of values) result[name] = summarize(samples);
  return result;
}

/** The largest relative spread among the variants of a result of `rounds`. */
export function worstSpread(result) {
  return Math.max(...Object.values(result).map((s) => s.spread));
}

/**
 * `rounds`, re-run once when a variant's spread exceeds WILD_SPREAD; keeps
 * the calmer run and says what happened in `rerun`.
 */
export async function compare(variants, count, log) {
  const first = await rounds(variants, count);
  const spread = worstSpread(first);
  if (spread <= WILD_SPREAD) return { result: first, rerun: null };
  log?.(`    spread ${pct(spread)} is wild: measuring again`);
  const second = await rounds(variants, count);
  const again = worstSpread(second);
  const keep = again <= spread ? second : first;
  return { result: keep, rerun: { first: spread, second: again, kept: keep === first ? "first" : "second" } };
}

/** Measures each variant once and throws the figure away: JIT, caches and pools warm up. */
export async function warmUp(variants, times = 1) {
  for (let i = 0; i < times; i++) for (const v of variants) await v.measure();
}

export function pct(x) {
  return `${(x * 100).toFixed(0)}%`;
}

/** A seeded PRNG (mulberry32): the same sizes and orders every run. */
export function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Blocks this thread for `ms` (Atomics.wait on a private word). */
const sleeper = new Int32Array(new SharedArrayBuffer(4));
export function sleep(ms) {
  Atomics.wait(sleeper, 0, 0, ms);
}
