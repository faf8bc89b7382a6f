import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    // run by their own configs: vitest.deno.config.ts (in Deno), vitest.browser.config.ts (in Chromium)
    exclude: ["tests/deno/**", "tests/browser/**", "**/node_modules/**"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
  },
});
