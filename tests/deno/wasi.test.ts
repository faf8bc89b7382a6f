// The WASI build (build/bus1.wasi.wasm) under Deno: Deno's node:wasi, Deno
// Workers on one shared memory, the same scenario through the raw exports of
// docs/ABI.md as tests/wasi.test.ts runs under Node (tests/wasi/scenario.mjs).
import { describe, expect, it } from "vitest";
import { readFile } from "node:fs/promises";
// @ts-ignore: plain JavaScript, shared with the Node test
import { loadBuild, runScenario, runStaleLock, WASI_BUILD_IMPORTS } from "../wasi/scenario.mjs";

const wasm = () => readFile(new URL("../../build/bus1.wasi.wasm", import.meta.url));

describe("WASI build under Deno", () => {
  it("runs in Deno", () => {
    expect(typeof (globalThis as { Deno?: unknown }).Deno).toBe("object");
  });

  it("imports only the memory, WASI and bus1.objects_drop", async () => {
    const { imports } = await loadBuild(await wasm());
    expect(imports).toEqual(WASI_BUILD_IMPORTS);
  });

  it("runs the scenario from two Workers on one memory", async () => {
    const { module } = await loadBuild(await wasm());
    const { log, wasiCalls } = await runScenario(module);
    expect(log).toEqual(["setup", "one", "two", "three", "keys", "both", "both", "held", "destroy 24", "obj1",
      "objects_drop", "release 16", "destroy 8", "teardown"]);
    expect(wasiCalls.A.clock_time_get).toBeGreaterThan(0);
  }, 30_000);

  it("breaks the bus when a lock stays with one holder for 5 s of WASI clock", async () => {
    const { module } = await loadBuild(await wasm());
    const { elapsed } = await runStaleLock(module);
    expect(elapsed).toBeGreaterThanOrEqual(5000);
  }, 30_000);
});
