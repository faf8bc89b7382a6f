// Output of a run: the printed tables, bench/results.json and the SVG chart.
//
// Every comparison row holds medians (nanoseconds per operation) of
// bus1-wasm and of its baselines; a ratio is baseline ÷ bus1-wasm, so above 1
// bus1-wasm is the faster. A target is [op, threshold, label?] on a ratio or a
// figure.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { WILD_SPREAD, pct, summarize } from "./harness.js";

// ---- formatting ------------------------------------------------------------

export function formatNs(ns) {
  if (!Number.isFinite(ns)) return String(ns);
  const abs = Math.abs(ns);
  if (abs >= 1e9) return `${(ns / 1e9).toPrecision(3)} s`;
  if (abs >= 1e6) return `${(ns / 1e6).toPrecision(3)} ms`;
  if (abs >= 1e3) return `${(ns / 1e3).toPrecision(3)} µs`;
  return `${ns.toPrecision(3)} ns`;
}

function formatBytes(b) {
  if (Math.abs(b) >= 1 << 20) return `${(b / (1 << 20)).toFixed(2)} MiB`;
  if (Math.abs(b) >= 1 << 10) return `${(b / 1024).toFixed(1)} KiB`;
  return `${Math.round(b)} B`;
}

function formatRatio(x) {
  return `${x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toPrecision(2)}×`;
}

export function formatValue(value, unit) {
  if (unit === "ns") return formatNs(value);
  if (unit === "B") return formatBytes(value);
  if (unit === "×") return formatRatio(value);
  if (unit === "yes/no") return value ? "yes" : "no";
  return `${value} ${unit}`;
}

function targetLabel([op, threshold, label], unit = "×") {
  if (label) return label;
  const sign = op === ">=" ? "≥" : op === "<=" ? "≤" : "=";
  if (unit === "×") return `${sign} ${Number.isInteger(threshold) ? threshold : threshold.toFixed(2)}×`;
  return `${sign} ${unit === "yes/no" ? (threshold ? "yes" : "no") : formatValue(threshold, unit)}`;
}

function holds([op, threshold], value) {
  if (op === ">=") return value >= threshold;
  if (op === "<=") return value <= threshold;
  return value === threshold;
}

function table(header, lines) {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const fmt = (cells) => cells.map((c, i) => (c ?? "").padEnd(widths[i])).join("  ").trimEnd();
  return [fmt(header), widths.map((w) => "─".repeat(w)).join("  "), ...lines.map(fmt)].join("\n");
}

// ---- what was measured ----------------------------------------------------

/** One entry per (row, baseline) ratio and per figure with a target. */
export function targets(results) {
  const list = [];
  for (const row of results.rows) {
    for (const [name, base] of Object.entries(row.baselines)) {
      const target = row.targets[name];
      if (!target) continue;
      const value = base.median / row.bus1.median;
      list.push({
        label: `${row.group}, ${row.case}: vs ${name}`, value, unit: "×",
        target: targetLabel(target), op: target[0], threshold: target[1], pass: holds(target, value),
      });
    }
  }
  for (const f of results.figures) {
    if (!f.target) continue;
    list.push({
      label: `${f.group}: ${f.name}`, value: f.value, unit: f.unit,
      target: targetLabel(f.target, f.unit), op: f.target[0], threshold: f.target[1], pass: holds(f.target, f.value),
    });
  }
  return list;
}

function spreadOf(summary) {
  return summary ? pct(summary.spread) : "";
}

/** The tables of a run, as text. */
export function formatTables(results) {
  const out = [];
  const print = (line) => out.push(line);
  const lines = [];
  for (const row of results.rows) {
    let first = true;
    for (const [name, base] of Object.entries(row.baselines)) {
      const target = row.targets[name];
      const ratio = base.median / row.bus1.median;
      lines.push([
        first ? `${row.group}, ${row.case}` : "",
        first ? formatNs(row.bus1.median) : "",
        `${name} ${formatNs(base.median)}`,
        formatRatio(ratio),
        target ? targetLabel(target) : "",
        target ? (holds(target, ratio) ? "pass" : "FAIL") : "",
        `${spreadOf(row.bus1)} / ${spreadOf(base)}`,
        first && row.rerun ? `re-run (${pct(row.rerun.first)} → ${pct(row.rerun.second)}, kept ${row.rerun.kept})` : "",
      ]);
      first = false;
    }
  }
  print("bus1-wasm against Node's own APIs (median per operation; ratio = baseline ÷ bus1-wasm, > 1: bus1-wasm is faster)");
  print(table(["case", "bus1-wasm", "baseline", "ratio", "target", "", "spread bus1 / base", "note"], lines));

  if (results.kernelTable) {
    const k = results.kernelTable;
    print("\nthe bus1 kernel's test-io table, one thread (medians; + is the extra cost over the send with no destination)");
    print(table(["", "cost", "spread"], k.rows.map((r) => [
      r.name, r === k.rows[0] ? formatNs(r.cost.median) : `+ ${formatNs(r.cost.median)}`, spreadOf(r.cost),
    ])));
  }

  const figures = results.figures.map((f) => [
    `${f.group}: ${f.name}`, formatValue(f.value, f.unit), f.spread ? spreadOf(f.spread) : "",
    f.target ? targetLabel(f.target, f.unit) : "", f.target ? (holds(f.target, f.value) ? "pass" : "FAIL") : "",
    f.rerun ? "re-run" : "",
  ]);
  print("\ncapabilities, memory and the floor (medians over rounds)");
  print(table(["figure", "value", "spread", "target", "", "note"], figures));

  const list = targets(results);
  const passed = list.filter((t) => t.pass).length;
  print(`\ntargets: ${passed} of ${list.length} hold`);
  for (const t of list.filter((t) => !t.pass)) print(`  not met: ${t.label} = ${formatValue(t.value, t.unit)} (target ${t.target})`);
  print(`spread: (p75 − p25) ÷ median over ${results.settings.rounds} rounds; a case above ${pct(WILD_SPREAD)} is measured again once`);
  return out.join("\n");
}

// ---- results.json ----------------------------------------------------------

/**
 * Each row with its ratios: baseline ÷ bus1-wasm of the medians (the figure
 * reported), and the same ratio round by round (the rounds are paired).
 */
function withRatios(row) {
  const ratios = {};
  for (const [name, base] of Object.entries(row.baselines)) {
    ratios[name] = {
      ofMedians: base.median / row.bus1.median,
      byRound: summarize(base.samples.map((b, r) => b / row.bus1.samples[r])),
    };
  }
  return { ...row, ratios };
}

export function writeJson(file, results) {
  mkdirSync(dirname(file), { recursive: true });
  const round = (_, v) => (typeof v === "number" && !Number.isInteger(v) ? +v.toPrecision(6) : v);
  const json = { ...results, rows: results.rows.map(withRatios), targets: targets(results) };
  writeFileSync(file, `${JSON.stringify(json, round, 2)}\n`);
}

// ---- bench/history.json: the targets of every full run ---------------------

/** How many full runs the history keeps. */
const HISTORY_KEEP = 30;

/** Appends the targets of a full run to the history file; returns the history. */
export function appendHistory(file, results) {
  let history = [];
  try {
    history = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    // no history yet
  }
  history.push({
    date: results.date, commit: results.git?.commit ?? null, node: results.node,
    load: results.load, targets: targets(results).map(({ label, target, value, unit, pass }) => ({
      label, target, value: +value.toPrecision(4), unit, pass,
    })),
  });
  history = history.slice(-HISTORY_KEEP);
  writeFileSync(file, `${JSON.stringify(history, null, 1)}\n`);
  return history;
}

/** The targets of the last `n` full runs side by side, and whether each held in all of them. */
export function formatHistory(history, n = 3) {
  const runs = history.slice(-n);
  if (runs.length === 0) return "";
  const labels = runs[runs.length - 1].targets.map((t) => t.label);
  const rows = labels.map((label) => {
    const ts = runs.map((r) => r.targets.find((t) => t.label === label));
    const cells = ts.map((t) => (t ? `${formatValue(t.value, t.unit)} ${t.pass ? "ok" : "--"}` : "n/a"));
    return [label, ts[ts.length - 1].target, ...cells, ts.every((t) => t?.pass) ? "yes" : "no"];
  });
  const head = ["target", "", ...runs.map((r) => r.date.slice(0, 16).replace("T", " ")), `all ${runs.length}`];
  return `the last ${runs.length} full runs (bench/history.json)\n${table(head, rows)}`;
}

// ---- bench/README.md -------------------------------------------------------

const BEGIN = "<!-- results: written by bench/run.js -->", END = "<!-- /results -->";

/** Puts the tables of a full run into bench/README.md, between the markers. */
export function updateReadme(file, results) {
  const text = readFileSync(file, "utf8");
  const from = text.indexOf(BEGIN), to = text.indexOf(END);
  if (from < 0 || to < from) return false;
  const section = [
    BEGIN,
    `Measured on ${results.machineLine}, in ${results.durationSeconds.toFixed(0)} s`
      + `${results.git ? ` at ${results.git.commit.slice(0, 10)}${results.git.dirty ? " (with uncommitted changes)" : ""}` : ""}:`,
    "",
    "```",
    formatTables(results),
    "```",
    "",
  ].join("\n");
  writeFileSync(file, text.slice(0, from) + section + text.slice(to));
  return true;
}

// ---- the chart -------------------------------------------------------------

const ROW = 20, GAP = 8;
const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * A horizontal bar per ratio, on a log scale from 0.01× to 100×: green when
 * it meets its target, red when not, grey when it has none; the target is a
 * black tick. Figures with a target (lower is better) follow on the same scale.
 */
export function renderSvg(results) {
  const bars = [];
  for (const row of results.rows) {
    for (const [name, base] of Object.entries(row.baselines)) {
      // a part of bus1-wasm's own time, not something to beat: table only
      if (row.breakdown?.includes(name)) continue;
      const target = row.targets[name] ?? null;
      const value = base.median / row.bus1.median;
      bars.push({
        group: row.group, label: `${row.group}, ${row.case} — vs ${name}`, value, target,
        pass: target ? holds(target, value) : null,
      });
    }
  }
  for (const f of results.figures) {
    if (!f.target || f.unit !== "×") continue;
    bars.push({
      group: f.group, label: `${f.group}: ${f.short ?? f.name} (lower is better)`, value: f.value, target: f.target,
      pass: holds(f.target, f.value),
    });
  }
  // a gap before each new group
  let y = 0;
  bars.forEach((b, i) => {
    if (i > 0 && b.group !== bars[i - 1].group) y += GAP;
    b.y = y;
    y += ROW;
  });

  const W = 1100, labelW = 430, plotX = labelW + 10, plotW = W - plotX - 190, rowH = ROW, top = 84;
  const H = top + y + 40;
  const lo = -2, hi = 2; // log10 of the axis ends
  const x = (v) => plotX + ((Math.log10(Math.min(Math.max(v, 10 ** lo), 10 ** hi)) - lo) / (hi - lo)) * plotW;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="10" y="22" font-size="15" font-weight="bold">bus1-wasm benchmarks: baseline time ÷ bus1-wasm time (right of 1×: bus1-wasm is faster)</text>`);
  out.push(`<text x="10" y="42" fill="#444">${esc(results.machineLine)}</text>`);
  out.push(`<text x="10" y="60" fill="#444">green: meets its target (black tick), red: misses it, grey: no target. Medians over ${results.settings.rounds} rounds.</text>`);
  for (let e = lo; e <= hi; e++) {
    const gx = x(10 ** e);
    out.push(`<line x1="${gx}" y1="${top - 8}" x2="${gx}" y2="${H - 30}" stroke="${e === 0 ? "#888" : "#ddd"}"/>`);
    out.push(`<text x="${gx}" y="${H - 14}" text-anchor="middle" fill="#444">${10 ** e}×</text>`);
  }
  bars.forEach((b) => {
    const y = top + b.y;
    const colour = b.pass === null ? "#9aa" : b.pass ? "#3a3" : "#d33";
    out.push(`<text x="${labelW}" y="${y + 14}" text-anchor="end">${esc(b.label)}</text>`);
    out.push(`<rect x="${plotX}" y="${y + 4}" width="${Math.max(1, x(b.value) - plotX)}" height="${rowH - 8}" fill="${colour}"/>`);
    const tx = b.target ? x(b.target[1]) : 0;
    if (b.target) {
      out.push(`<line x1="${tx}" y1="${y + 1}" x2="${tx}" y2="${y + rowH - 1}" stroke="#000" stroke-width="2"><title>target ${esc(targetLabel(b.target))}</title></line>`);
    }
    const textX = Math.max(x(b.value), tx) + 6;
    out.push(`<text x="${textX}" y="${y + 14}" fill="#222">${esc(formatRatio(b.value))}${b.target ? ` (target ${esc(targetLabel(b.target))})` : ""}</text>`);
  });
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

export function writeSvg(file, results) {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, renderSvg(results));
}
