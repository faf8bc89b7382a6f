// What each build of the core is made of (docs/ABI.md §1): the private builds
// run on a memory no other thread can see, so they are compiled without the
// threads feature and hold no atomic instruction (assembly/sync.ts); the
// builds of a shared bus hold them. Read with Binaryen's wasm-dis, which
// comes with AssemblyScript (scripts/inline.mjs runs its wasm-opt).
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { Bus, Bus1Error } from "bus1-wasm";
// internals: the core's exports and views, to leave a lock taken
import { coreOf } from "../dist/host-common/bus.js";

const require = createRequire(import.meta.url);
const wasmDis = join(dirname(require.resolve("binaryen/package.json")), "bin", "wasm-dis");

/** The build's instructions that act on a shared memory, by name, with how often each occurs. */
function atomicInstructions(name: string): Record<string, number> {
  const file = fileURLToPath(new URL(`../build/bus1.${name}.wasm`, import.meta.url));
  const text = execFileSync(process.execPath, [wasmDis, file], { maxBuffer: 64 << 20 }).toString();
  const found: Record<string, number> = {};
  for (const m of text.matchAll(/\((i32|i64|memory)\.atomic\.[\w.]+|\(atomic\.fence/g)) {
    const op = m[0].slice(1);
    found[op] = (found[op] ?? 0) + 1;
  }
  return found;
}

describe("builds", () => {
  test.each(["private", "debug-private"])("the %s build holds no atomic instruction, no wait and no notify", (name) => {
    expect(atomicInstructions(name)).toEqual({});
  });

  test.each(["threads", "debug"])("the %s build takes its locks with atomics and sleeps in memory.atomic.wait32", (name) => {
    const found = atomicInstructions(name);
    expect(found["i32.atomic.rmw.cmpxchg"]).toBeGreaterThan(0);
    expect(found["i32.atomic.store"]).toBeGreaterThan(0);
    expect(found["memory.atomic.wait32"]).toBeGreaterThan(0);
    expect(found["memory.atomic.notify"]).toBeGreaterThan(0);
  });

  test("a private bus whose one thread finds a lock taken (a call that never ended) breaks at once", async () => {
    const bus = await Bus.create({ shared: false });
    try {
      const a = bus.connect();
      const core = coreOf(bus);
      // the Peer record's first word is its lock (docs/ABI.md §7.5); the slot entry's first word is the record
      const record = core.views().u32[(core.ex.wake_addr(a.ref.slot, a.ref.gen) - 8) >>> 2];
      core.views().u32[record >>> 2] = (1 << 10) | 1;
      const started = performance.now();
      let error: unknown = null;
      try {
        a.recv();
      } catch (e) {
        error = e;
      }
      expect(performance.now() - started).toBeLessThan(1000);
      expect(error).toBeInstanceOf(Bus1Error);
      expect((error as Bus1Error).code).toBe("ESHUTDOWN");
      expect(() => bus.connect()).toThrow(expect.objectContaining({ code: "ESHUTDOWN" }));
    } finally {
      bus.close();
    }
  });
});

