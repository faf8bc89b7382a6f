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
});
