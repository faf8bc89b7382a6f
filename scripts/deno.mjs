// Runs the Deno that `npm install` brings (the `deno` devDependency) with the
// given arguments, offline (DENO_NO_UPDATE_CHECK=1). Without it, fails with a
// message saying how to get it: a missing Deno fails the tests, never skips them.
//
//   node scripts/deno.mjs run -A node_modules/vitest/vitest.mjs run --config vitest.deno.config.ts
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const bin = fileURLToPath(new URL(`../node_modules/.bin/deno${process.platform === "win32" ? ".cmd" : ""}`, import.meta.url));
if (!existsSync(bin)) {
  console.error("Deno is missing: run `npm install` in this repository (it brings the `deno` package, the real binary, " +
    "which works offline), then run this again.");
  process.exit(1);
}
const r = spawnSync(bin, process.argv.slice(2), { stdio: "inherit", env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" } });
if (r.error) {
  console.error(`Deno could not be started (${r.error.message}): run \`npm install\` again to restore it.`);
  process.exit(1);
}
process.exit(r.status ?? 1);
