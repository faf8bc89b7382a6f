// The WASI build (build/bus1.wasi.wasm, asconfig.wasi.json) under Node's
// node:wasi: the imports a non-JS host must provide, and a scenario run
// through the raw exports of docs/ABI.md by two worker_threads on one shared
// memory, each with its own WASI instance (tests/wasi/scenario.mjs, shared
// with tests/deno/wasi.test.ts). ABI.md, "Hosting the core without JavaScript".
import { describe, expect, it } from "vitest";
import { readFile } from "node:fs/promises";
// @ts-ignore: plain JavaScript, shared with the Deno test
import { loadBuild, runScenario, runStaleLock, WASI_BUILD_IMPORTS } from "./wasi/scenario.mjs";

const build = (name: string) => readFile(new URL(`../build/bus1.${name}.wasm`, import.meta.url));

describe("WASI build under node:wasi", () => {
  it("imports only the memory, three WASI functions and bus1.objects_drop", async () => {
    const { imports } = await loadBuild(await build("wasi"));
    expect(imports).toEqual(WASI_BUILD_IMPORTS);
    const exports = WebAssembly.Module.exports(new WebAssembly.Module(await build("wasi"))).map((e) => e.name);
    expect(exports).toContain("_initialize");
    expect(exports).toContain("memory");
    expect(exports).not.toContain("_start");
  });

  it("leaves the JS builds' imports as they were (the private ones, which never wait for a lock, need no clock)", async () => {
    for (const name of ["threads", "private", "debug", "debug-private"]) {
      const m = new WebAssembly.Module(await build(name));
      const imports = WebAssembly.Module.imports(m).map((i) => `${i.module}.${i.name}`).sort();
      const clock = name.includes("private") ? [] : ["env.now"];
      expect(imports, name).toEqual(["env.abort", "env.memory", ...clock, "env.objects_drop"].sort());
    }
  });

  it("runs the scenario from two threads on one memory", async () => {
    const { module } = await loadBuild(await build("wasi"));
    const { log, wasiCalls } = await runScenario(module);
    expect(log).toEqual(["setup", "one", "two", "three", "keys", "both", "both", "held", "destroy 24", "obj1",
      "objects_drop", "release 16", "destroy 8", "teardown"]);
    // the only WASI calls: the clock, while A waited for the lock B held
    expect(wasiCalls.A.clock_time_get).toBeGreaterThan(0);
    expect(Object.keys(wasiCalls.A)).toEqual(["clock_time_get"]);
    expect(Object.keys(wasiCalls.B)).toEqual([]);
  }, 30_000);

  it("breaks the bus when a lock stays with one holder for 5 s of WASI clock", async () => {
    const { module } = await loadBuild(await build("wasi"));
    const { elapsed, clockCalls } = await runStaleLock(module);
    expect(elapsed).toBeGreaterThanOrEqual(5000);
    expect(clockCalls).toBeGreaterThan(100);
  }, 30_000);
});
