import { defineConfig } from "vitest/config";

// Runs in Deno (npm run test:deno): the API's behaviour tests of the Node
// suite against host-deno, plus tests/deno/**. The package resolves by its
// own name through the "deno" condition of its exports, as for a Deno user.
if (typeof (globalThis as { Deno?: unknown }).Deno === "undefined") {
  throw new Error("vitest.deno.config.ts runs in Deno: use `npm run test:deno` (the deno binary comes with `npm install`, "
    + "as node_modules/.bin/deno; without it the script fails with `deno: not found`)");
}

/**
 * The shared spec tests that run in Deno. Every other top-level test stays
 * Node-only, for this reason:
 * - threads, concurrency, churn, faults, fuzz-threads, transfer-threads,
 *   transfer-hostile: node:worker_threads workers with workerData/parentPort
 *   and "exit" events (tests/deno/threads.test.ts runs the ordering checks
 *   of concurrency.test.ts with Deno's Web Workers instead);
 * - served-hostile, bench, fuzz: child processes of `node` (served-hostile,
 *   fuzz's isolation) or the Node benchmark runner;
 * - inspect-threads: node:worker_threads workers (inspect.test.ts runs here).
 */
const SPEC_TESTS = [
  "tests/both-*.test.ts",
  "tests/send.test.ts",
  "tests/handles.test.ts",
  "tests/operations.test.ts",
  "tests/kernel-scenarios.test.ts",
  "tests/quota.test.ts",
  "tests/objects.test.ts",
  "tests/wait-readable.test.ts",
  "tests/bad-input.test.ts",
  "tests/hardening.test.ts",
  "tests/remote-peer.test.ts",
  "tests/reclaim.test.ts",
  "tests/determinism.test.ts",
  "tests/property.test.ts",
  "tests/inspect.test.ts",
  "tests/memory-growth.test.ts",
];

export default defineConfig({
  resolve: { conditions: ["deno"] },
  ssr: { resolve: { conditions: ["deno"], externalConditions: ["deno"] } },
  test: {
    include: [...SPEC_TESTS, "tests/deno/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // a 2-core machine: two test files at a time
    maxWorkers: 2,
  },
});
