// The benchmark suite: `npm run bench` (about 6 minutes on 2 cores) or
// `node bench/run.js --quick` (about a minute, fewer rounds, shorter windows).
//
//   --quick          3 rounds, short windows, 100,000 messages in the memory
//                    case; results go to bench/quick/, not over the full run's
//   --only=a,b       only these groups (same-thread, cross-worker, served-peer, multicast,
//                    kernel-io, capabilities, memory, floor); nothing is written
//
// A full run also appends its targets to bench/history.json and prints the
// last three full runs side by side.
//
// Each group is a module of bench/ that exports run(settings) and returns
// comparison rows and/or figures (see report.js). The package must be built
// (`npm run build`): the suite imports bus1-wasm by its own name.

import os from "node:os";
import { execSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { WILD_SPREAD, now } from "./harness.js";
import { formatTables, writeJson, writeSvg, targets, updateReadme, appendHistory, formatHistory } from "./report.js";

const GROUPS = ["same-thread", "cross-worker", "served-peer", "multicast", "kernel-io", "capabilities", "memory", "floor"];

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const onlyArg = args.find((a) => a.startsWith("--only="));
const only = onlyArg ? onlyArg.slice("--only=".length).split(",") : null;
for (const a of args) {
  if (a !== "--quick" && a !== onlyArg) throw new Error(`unknown argument ${a} (use --quick, --only=group,…)`);
}
for (const g of only ?? []) if (!GROUPS.includes(g)) throw new Error(`no group ${g}: ${GROUPS.join(", ")}`);

const settings = quick
  ? { quick, rounds: 5, windowMs: 30, wildSpread: WILD_SPREAD }
  : { quick, rounds: 9, windowMs: 150, wildSpread: WILD_SPREAD };

const print = (line) => process.stdout.write(`${line}\n`);
const here = (path) => fileURLToPath(new URL(path, import.meta.url));

function git() {
  try {
    const run = (cmd) => execSync(cmd, { cwd: here("."), stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
    // what a full run writes itself does not count: three runs back to back are all at the commit
    const own = ["bench/results.json", "bench/history.json", "bench/README.md", "docs/bench.svg"]
      .map((f) => `':(top,exclude)${f}'`).join(" ");
    return { commit: run("git rev-parse HEAD"), dirty: run(`git status --porcelain -- ':(top)' ${own}`) !== "" };
  } catch {
    return null;
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length, model: cpus[0]?.model?.trim() ?? "unknown", memoryBytes: os.totalmem(),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  };
}

try {
  await import("bus1-wasm");
} catch (e) {
  print(`bus1-wasm does not load (${e?.message ?? e}): build it first with \`npm run build\``);
  process.exit(1);
}

const started = now();
const m = machine();
const date = new Date().toISOString();
const loadStart = os.loadavg();
print(`bus1-wasm benchmarks${quick ? " (quick)" : ""}: ${m.cpus} × ${m.model}, Node ${process.version}, ${date}`);
print(`${settings.rounds} rounds per case, windows of ${settings.windowMs} ms (${settings.windowMs * 2} ms across threads); `
  + `load average ${loadStart.map((x) => x.toFixed(2)).join(" ")}`);
if (loadStart[0] > m.cpus) print(`warning: the load average is above ${m.cpus}: other processes compete for the cores, expect noise`);

const results = {
  date, mode: quick ? "quick" : "full", node: process.version, v8: process.versions.v8, machine: m, git: git(),
  settings, rows: [], figures: [], kernelTable: null, memoryRun: null, errors: [],
};

for (const name of GROUPS) {
  if (only && !only.includes(name)) continue;
  const t = now();
  print(`${name}:`);
  try {
    const group = await import(`./${name}.js`);
    const out = await group.run({ ...settings, log: print });
    results.rows.push(...(out.rows ?? []));
    results.figures.push(...(out.figures ?? []));
    results.kernelTable ??= out.kernelTable ?? null;
    results.memoryRun ??= out.memoryRun ?? null;
  } catch (e) {
    print(`  failed: ${e?.stack ?? e}`);
    results.errors.push({ group: name, error: String(e?.stack ?? e) });
    process.exitCode = 1;
  }
  print(`  (${((now() - t) / 1000).toFixed(1)} s)`);
}

const loadEnd = os.loadavg();
results.load = { start: loadStart, end: loadEnd };
results.durationSeconds = (now() - started) / 1000;
results.machineLine = `${m.cpus} × ${m.model}, Node ${process.version}, ${date.slice(0, 10)}${quick ? ", --quick" : ""}; `
  + `load average ${loadStart[0].toFixed(1)} → ${loadEnd[0].toFixed(1)}`;

print("");
print(formatTables(results));
print(`\n${results.durationSeconds.toFixed(0)} s; load average at the end ${loadEnd.map((x) => x.toFixed(2)).join(" ")}`);
if (results.errors.length) print(`groups that failed: ${results.errors.map((e) => e.group).join(", ")}`);

if (only) {
  print("(--only: nothing written)");
} else {
  const json = here(quick ? "./quick/results.json" : "./results.json");
  const svg = here(quick ? "./quick/bench.svg" : "../docs/bench.svg");
  writeJson(json, results);
  writeSvg(svg, results);
  print(`wrote ${json} and ${svg}`);
  if (!quick && updateReadme(here("./README.md"), results)) print(`and the tables in ${here("./README.md")}`);
  if (!quick && results.errors.length === 0) {
    // a full run's targets join the history: do they hold run after run?
    print(`\n${formatHistory(appendHistory(here("./history.json"), results))}`);
  }
}
if (targets(results).some((t) => !t.pass)) print("(targets not met do not fail the run: the exit code reports errors only)");
// A worker that failed may still be blocked in a wait: do not hang on it.
process.exit(process.exitCode ?? 0);
