import { defineConfig } from "vitest/config";
import { SPEC_TESTS } from "./tests/spec-tests.js";

// Runs in Deno (npm run test:deno): the API's behaviour tests of the Node
// suite against host-deno, plus tests/deno/**. The package resolves by its
// own name through the "deno" condition of its exports, as for a Deno user.
if (typeof (globalThis as { Deno?: unknown }).Deno === "undefined") {
  throw new Error("vitest.deno.config.ts runs in Deno: use `npm run test:deno` (scripts/deno.mjs runs the Deno that "
    + "`npm install` brings, and says so when it is missing)");
}

/**
 * Deno runs the shared spec tests (tests/spec-tests.ts) and four more that
 * a browser cannot (hardening and remote-peer start Node-style workers, which
 * Deno's node:worker_threads provides; reclaim and served-spares use node:v8
 * and node:vm).
 * Every other top-level test stays Node-only, for this reason:
 * - threads, concurrency, churn, faults, fuzz-threads, transfer-threads,
 *   transfer-hostile, drained: node:worker_threads workers with workerData/parentPort
 *   and "exit" events (tests/deno/threads.test.ts runs the ordering checks
 *   of concurrency.test.ts with Deno's Web Workers instead);
 * - served-hostile, bench, fuzz, builds: child processes of `node`
 *   (served-hostile, fuzz's isolation, Binaryen's wasm-dis reading the
 *   builds) or the Node benchmark runner;
 * - inspect-threads: node:worker_threads workers (inspect.test.ts runs here).
 */

export default defineConfig({
  resolve: { conditions: ["deno"] },
  ssr: { resolve: { conditions: ["deno"], externalConditions: ["deno"] } },
  test: {
    include: [...SPEC_TESTS, "tests/hardening.test.ts", "tests/remote-peer.test.ts", "tests/reclaim.test.ts", "tests/served-spares.test.ts", "tests/deno/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // a 2-core machine: two test files at a time
    maxWorkers: 2,
  },
});
