// The API's behaviour tests of the Node suite that also run in the other
// hosts (written once: they import "bus1-wasm" and use web-standard APIs).
// vitest.deno.config.ts and vitest.browser.config.ts each run these and add
// what only their host can run; each says why a spec test it leaves out
// stays out.
export const SPEC_TESTS = [
  "tests/both-*.test.ts",
  "tests/send.test.ts",
  "tests/handles.test.ts",
  "tests/operations.test.ts",
  "tests/kernel-scenarios.test.ts",
  "tests/quota.test.ts",
  "tests/objects.test.ts",
  "tests/bad-input.test.ts",
  "tests/determinism.test.ts",
  "tests/wait-readable.test.ts",
  "tests/property.test.ts",
  "tests/inspect.test.ts",
  "tests/memory-growth.test.ts",
];
