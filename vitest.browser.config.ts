// The browser suite: vitest's browser mode in a real Chromium (scripts/chromium.mjs:
// @sparticuz/chromium from npm install, or BUS1_CHROMIUM=/path). Two projects,
// one Chromium each, run one after the other (sized for 2 cores):
//
// - "isolated": pages served with COOP/COEP, so cross-origin isolated:
//   shared buses that Web Workers attach to. The API's behaviour tests of the
//   Node suite run here too (tests/spec-tests.ts), and the
//   browser-only tests in tests/browser/.
// - "not-isolated": the same server without those headers: a private bus,
//   workers reach it through served peers (tests/browser/not-isolated/).
//
// "bus1-wasm" resolves to the browser host (dist/host-browser, from npm run build:ts).
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import type { Plugin } from "vite";
import { defineConfig } from "vitest/config";
import { playwright } from "@vitest/browser-playwright";
import { CHROMIUM_ARGS, ISOLATION_HEADERS, chromiumPath } from "./scripts/chromium.mjs";
import { SPEC_TESTS } from "./tests/spec-tests.js";

/**
 * Spec tests that stay out of the browser, and why (the Deno suite runs
 * them):
 * - tests/hardening.test.ts: node:worker_threads workers (the hostile-thread
 *   cases) in the same file as the rest;
 * - tests/remote-peer.test.ts: node:worker_threads workers as plugins (the
 *   served-peer behaviour runs here through tests/both-*, and with Web
 *   Workers in tests/browser/not-isolated/);
 * - tests/reclaim.test.ts: node:v8 and node:vm, to make a peer unreachable
 *   and collect it.
 */

const host = fileURLToPath(new URL("./dist/host-browser/index.js", import.meta.url));

const root = fileURLToPath(new URL(".", import.meta.url));

/**
 * /plain/dist/… and /plain/build/… serve the package's files as they are,
 * with no bundler's transform, and .wasm as application/octet-stream (as a
 * plain file server may): tests/browser/plain.test.ts loads the host the way a
 * page's <script type="module"> does, and its fallback from compileStreaming.
 */
function plainFiles(): Plugin {
  const types: Record<string, string> = { ".js": "text/javascript", ".wasm": "application/octet-stream" };
  return {
    name: "bus1-plain-files",
    configureServer(server) {
      server.middlewares.use("/plain/", (req, res, next) => {
        const path = normalize(decodeURIComponent((req.url ?? "").split("?")[0])).replace(/^[/\\]+/, "");
        const type = types[extname(path)];
        if (!type || !/^(dist|build)[/\\]/.test(path)) return next();
        readFile(join(root, path)).then((body) => {
          res.setHeader("Content-Type", type);
          res.end(body);
        }, () => next());
      });
    },
  };
}

export default defineConfig(async () => {
  // a missing browser fails here, with how to get one (never a skipped suite)
  const executablePath = await chromiumPath();
  // a fresh object per project: vitest writes into it
  const browser = () => ({
    enabled: true,
    headless: true,
    provider: playwright({ launchOptions: { executablePath, args: [...CHROMIUM_ARGS] } }),
    instances: [{ browser: "chromium" as const }],
    // one test file at a time: the stress tests want the cores
    fileParallelism: false,
    // no PNGs left in tests/ by a failure
    screenshotFailures: false,
  });
  return {
    plugins: [plainFiles()],
    resolve: {
      alias: [
        { find: /^bus1-wasm$/, replacement: host },
        { find: /^bus1-wasm\/browser$/, replacement: host },
      ],
    },
    test: {
      testTimeout: 30_000,
      hookTimeout: 30_000,
      fileParallelism: false,
      projects: [
        {
          extends: true,
          server: { headers: { ...ISOLATION_HEADERS } },
          test: {
            name: "isolated",
            sequence: { groupOrder: 0 },
            include: [...SPEC_TESTS, "tests/browser/*.test.ts"],
            browser: browser(),
          },
        },
        {
          extends: true,
          test: {
            name: "not-isolated",
            // after "isolated", not beside it: one Chromium at a time
            sequence: { groupOrder: 1 },
            include: ["tests/browser/not-isolated/*.test.ts"],
            browser: browser(),
          },
        },
      ],
    },
  };
});
