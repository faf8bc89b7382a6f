// The benchmark suite's own machinery (bench/): how a target is judged from
// the figures, the history of full runs, and a short run of real groups that
// must finish without an error. Nothing here measures speed: the suite does
// that (npm run bench); these tests only keep its verdicts and its plumbing
// honest.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
// @ts-expect-error: plain JavaScript, no declarations
import { targets, appendHistory, formatHistory } from "../bench/report.js";

type Target = { label: string; value: number; pass: boolean; target: string };

const summary = (median: number) => ({ median, p25: median, p75: median, min: median, max: median, n: 1, spread: 0, samples: [median] });

/** A results object as bench/run.js builds it, with one row and two figures. */
function results(bus1: number, channel: number, fragmentation: number) {
  return {
    date: "2026-11-25T10:00:00.000Z", git: { commit: "abc" }, node: "v20", load: { start: [1], end: [1] },
    rows: [{
      group: "same thread", case: "64 B", unit: "ns", per: "message",
      bus1: summary(bus1),
      baselines: { MessageChannel: summary(channel), "its core alone": summary(bus1 / 2) },
      targets: { MessageChannel: [">=", 10] },
      breakdown: ["its core alone"],
    }],
    figures: [
      { group: "memory", name: "fragmentation", value: fragmentation, unit: "×", target: ["<=", 1.3] },
      { group: "memory", name: "peer bytes", value: 210, unit: "B" },
    ],
    errors: [],
  };
}

describe("bench: targets", () => {
  it("judges a comparison by baseline time ÷ bus1-wasm time, and only where a target is set", () => {
    const list: Target[] = targets(results(100, 1000, 1.19));
    expect(list.map((t) => t.label)).toEqual(["same thread, 64 B: vs MessageChannel", "memory: fragmentation"]);
    expect(list[0].value).toBeCloseTo(10);
    expect(list[0].pass).toBe(true);
    expect(list[1].pass).toBe(true);
  });

  it("fails a ratio below its floor and a figure above its ceiling", () => {
    const list: Target[] = targets(results(101, 1000, 1.31));
    expect(list[0].pass).toBe(false);
    expect(list[1].pass).toBe(false);
  });
});

describe("bench: history of full runs", () => {
  it("keeps every full run's targets, at most 30, and says a target holds only if it held in each of the last three", () => {
    const dir = mkdtempSync(join(tmpdir(), "bus1-bench-"));
    try {
      const file = join(dir, "history.json");
      let history: unknown[] = [];
      for (let i = 0; i < 32; i++) history = appendHistory(file, results(100, i === 30 ? 900 : 1000, 1.19));
      expect(history).toHaveLength(30);
      expect(JSON.parse(readFileSync(file, "utf8"))).toHaveLength(30);
      const text: string = formatHistory(history);
      const line = (label: string) => text.split("\n").find((l) => l.startsWith(label)) ?? "";
      expect(text).toMatch(/^the last 3 full runs/);
      // 9× in the second of the last three runs: not held in all three
      expect(line("same thread, 64 B: vs MessageChannel")).toMatch(/10\.0× ok\s+9\.00× --\s+10\.0× ok\s+no$/);
      expect(line("memory: fragmentation")).toMatch(/yes$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("bench: a short run", () => {
  it("runs the same-thread, cross-worker and floor groups in quick mode without an error, and writes nothing", () => {
    const run = spawnSync(process.execPath, ["bench/run.js", "--quick", "--only=same-thread,cross-worker,floor"], {
      encoding: "utf8", timeout: 120_000,
    });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).not.toMatch(/failed/);
    for (const text of ["same thread, 64 B", "its core alone", "cross-worker ping-pong, 8 B", "SAB ring",
      "floor: core round trip", "(--only: nothing written)"]) {
      expect(run.stdout).toContain(text);
    }
  }, 150_000);
});
