#!/usr/bin/env node
/**
 * npm run fuzz: the seeded fuzzer of issue 8 (tests/fuzz/fuzzer.mjs) for a
 * time budget, seed after seed, on a private and a shared bus in turn.
 *
 *   node tests/fuzz/run.mjs                       600 s, both kinds, seeds from the clock
 *   node tests/fuzz/run.mjs --seconds 60          a shorter budget
 *   node tests/fuzz/run.mjs --seed 42             replay one seed (both kinds, or --kind)
 *   node tests/fuzz/run.mjs --seed 42 --kind private --steps 1234 --trace
 *                                                 replay up to a step, printing every call
 *
 * Options:
 *   --seconds N     time budget (default 600), split between the kinds
 *   --seed S        run only seed S (a replay)
 *   --start S       first seed of a budget run (default: from the clock)
 *   --kind K        private | shared | both (default both)
 *   --steps N       steps per seed (default 4000)
 *   --plain         no Proxies, getters, lying lengths or odd buffers (reaches the core sooner)
 *   --keep-going    note wrong answers to single calls and go on (lists every kind of defect)
 *   --trace         print every call (with --seed)
 *   --quiet         print failures and the summary only
 *
 * Every run happens in a worker thread watched from here, so a hang is
 * reported (after 20 s without progress) instead of stopping the fuzzer.
 * Prints each failing seed with the command that replays it; exits 1 if any
 * run failed.
 */
import { runIsolated } from "./isolate.mjs";
import { DEFAULT_STEPS, formatFailure, signature } from "./fuzzer.mjs";

function parse(argv) {
  const o = { seconds: 600, seed: null, start: null, kind: "both", steps: DEFAULT_STEPS, plain: false, keepGoing: false, trace: false, quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < 0) usage(`${a} needs a number`);
      return v;
    };
    if (a === "--seconds") o.seconds = num();
    else if (a === "--seed") o.seed = num() >>> 0;
    else if (a === "--start") o.start = num() >>> 0;
    else if (a === "--steps") o.steps = Math.max(1, Math.floor(num()));
    else if (a === "--kind") {
      o.kind = argv[++i];
      if (!["private", "shared", "both"].includes(o.kind)) usage(`--kind must be private, shared or both`);
    } else if (a === "--plain") o.plain = true;
    else if (a === "--keep-going") o.keepGoing = true;
    else if (a === "--trace") o.trace = true;
    else if (a === "--quiet") o.quiet = true;
    else if (a === "--help" || a === "-h") usage();
    else usage(`unknown option ${a}`);
  }
  return o;
}

function usage(message) {
  if (message) console.error(`fuzz: ${message}`);
  console.error("usage: node tests/fuzz/run.mjs [--seconds N] [--seed S | --start S] [--kind private|shared|both] [--steps N] [--plain] [--keep-going] [--trace] [--quiet]");
  process.exit(2);
}

const o = parse(process.argv.slice(2));
const kinds = o.kind === "both" ? ["private", "shared"] : [o.kind];
const job = (seed, kind) => ({ seed, kind, steps: o.steps, hostile: !o.plain, keepGoing: o.keepGoing, trace: o.trace });
const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;
const failed = [];
/** Kind of failure -> the first run that showed it (printed in full once; later ones in one line). */
const kinds0 = new Map();
const ran = { private: 0, shared: 0 };
let steps = 0;

function report(r) {
  ran[r.kind]++;
  steps += r.steps;
  if (!r.ok) {
    failed.push(r);
    const sig = r.failure.sig ?? signature(r.failure.message);
    const first = kinds0.get(sig);
    if (first && o.seed === null) {
      console.log(`FAIL seed=${r.seed} kind=${r.kind} step=${r.failure.step}: ${r.failure.message.split("\n")[0].slice(0, 200)}`);
      console.log(`  (the same kind of failure as seed ${first.seed}/${first.kind} above) replay: ${r.failure.replay}`);
    } else {
      if (!first) kinds0.set(sig, r);
      console.log(formatFailure(r));
    }
  } else if (!o.quiet && o.seed !== null) {
    console.log(`seed ${r.seed} (${r.kind}): ok, ${r.steps} steps, ${r.counts.calls} calls, digest ${r.digest}`);
  }
}

let first, last;
if (o.seed !== null) {
  first = last = o.seed;
  await runIsolated(kinds.map((k) => job(o.seed, k)), { onResult: report, onTrace: (l) => console.log(l) });
} else {
  first = o.start ?? (Date.now() / 1000) >>> 0;
  last = first;
  const deadline = o.seconds;
  let lastNote = 0;
  if (!o.quiet) console.log(`fuzz: ${o.seconds} s, ${kinds.join(" + ")}, ${o.steps} steps per seed, seeds from ${first}${o.plain ? ", plain" : ""}`);
  function* jobs() {
    for (let seed = first; ; seed = (seed + 1) >>> 0) {
      for (const k of kinds) {
        if (elapsed() >= deadline) return;
        last = seed;
        yield job(seed, k);
      }
      if (!o.quiet && elapsed() - lastNote >= 30) {
        lastNote = elapsed();
        console.log(`fuzz: ${elapsed().toFixed(0)} s, ${ran.private + ran.shared} runs, ${failed.length} failed`);
      }
    }
  }
  await runIsolated(jobs(), { onResult: report });
}

const runs = ran.private + ran.shared;
const list = failed.slice(0, 12).map((r) => `${r.seed}/${r.kind}`).join(", ") + (failed.length > 12 ? `, … ${failed.length - 12} more` : "");
console.log(`fuzz: ${runs} runs (${ran.private} private, ${ran.shared} shared), ${steps} steps, seeds ${first}${last !== first ? `–${last}` : ""}, ` +
  `${elapsed().toFixed(1)} s: ${failed.length ? `${failed.length} failed, ${kinds0.size} kinds of failure (${list})` : "no failures"}`);
process.exit(failed.length ? 1 : 0);
