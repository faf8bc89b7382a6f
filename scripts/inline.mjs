// A second Binaryen pass over the release builds, with larger inlining
// limits than asc's -O3: V8 does not inline one wasm function into another,
// and the core's hot paths are chains of small functions. Measured A/B in
// one time window, with the exports called in batches of 500: send, recv and
// release are up to 5–10% faster; in a one-message loop the difference is
// within this machine's noise (docs/PERFORMANCE.md). Binaryen comes with
// AssemblyScript.
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const wasmOpt = join(dirname(require.resolve("binaryen/package.json")), "bin", "wasm-opt");
const features = ["--enable-threads", "--enable-bulk-memory", "--enable-sign-ext", "--enable-mutable-globals",
  "--enable-nontrapping-float-to-int"];

for (const file of process.argv.slice(2)) {
  execFileSync(process.execPath, [wasmOpt, file, ...features, "-fimfs=200", "-aimfs=40", "--inlining-optimizing", "-O3",
    "-o", file], { stdio: "inherit" });
}
