// The Chromium the browser tests run in, in one place: its executable and its
// flags. Used by vitest.browser.config.ts (and by any later test that drives a
// page itself, such as the demo's).
//
// The binary comes with `npm install`: @sparticuz/chromium ships it inside
// the package, brotli-compressed. It is unpacked once per machine into
// <os.tmpdir()>/bus1-chromium-<version>/: into a fresh folder first, which is
// then renamed into place, so a run never sees a half-written binary (two
// processes unpacking at once, or an unpacking killed midway, leave only
// their own staging folder). Within a process it is unpacked once.
// @sparticuz/chromium's own executablePath() writes straight to
// <tmpdir>/chromium, which has both of those races (docs: TOOLCHAIN.md).
//
// BUS1_CHROMIUM=/path/to/chromium uses another binary instead (Debian's:
// `apt-get install chromium`, then BUS1_CHROMIUM=/usr/bin/chromium).
//
// No flag of @sparticuz/chromium's own list (`chromium.args`): it turns on
// SharedArrayBuffer without cross-origin isolation and turns off web
// security, so a page missing COOP/COEP would still pass.
import {
  accessSync, constants, createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync,
} from "node:fs";
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { createBrotliDecompress } from "node:zlib";

/** Headless Chromium on a machine with no network but localhost (TOOLCHAIN.md, "Chromium from Debian"). */
export const CHROMIUM_ARGS = Object.freeze([
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // no DNS lookups: every name but the test server's fails at once
  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]);

/** Headers that make a page (and its workers) cross-origin isolated: SharedArrayBuffer, shared wasm memory. */
export const ISOLATION_HEADERS = Object.freeze({
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
});

const HOW = "Run `npm install` (it brings @sparticuz/chromium), or install Debian's Chromium " +
  "(`apt-get install chromium`) and set BUS1_CHROMIUM=/usr/bin/chromium.";

let unpacked = null;

/**
 * The path of the Chromium to run: $BUS1_CHROMIUM, else the one of
 * @sparticuz/chromium, unpacked on first use. Throws, saying how to get
 * one, when there is none: a missing browser fails the tests, never skips them.
 */
export function chromiumPath() {
  const chosen = process.env.BUS1_CHROMIUM;
  if (chosen) {
    try {
      accessSync(chosen, constants.X_OK);
    } catch {
      return Promise.reject(new Error(`BUS1_CHROMIUM=${chosen} is not an executable file: point it at a Chromium ` +
        "(Debian's: `apt-get install chromium`, then /usr/bin/chromium), or unset it to use @sparticuz/chromium's (`npm install`)."));
    }
    return Promise.resolve(chosen);
  }
  unpacked ??= unpack().catch((e) => {
    unpacked = null;
    throw e;
  });
  return unpacked;
}

async function unpack() {
  let pkg;
  try {
    // its `exports` has only ".": build/index.js, one folder down from the package's root
    pkg = dirname(dirname(createRequire(import.meta.url).resolve("@sparticuz/chromium")));
  } catch {
    throw new Error(`No Chromium: @sparticuz/chromium is not installed. ${HOW}`);
  }
  const version = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")).version;
  const home = join(tmpdir(), `bus1-chromium-${version}`);
  const binary = join(home, "chromium");
  if (existsSync(binary)) return binary;
  const bin = join(pkg, "bin");
  if (!existsSync(join(bin, "chromium.br"))) {
    throw new Error(`No Chromium: ${bin}/chromium.br is missing (a broken install of @sparticuz/chromium?). ${HOW}`);
  }
  const staging = mkdtempSync(join(tmpdir(), `bus1-chromium-${version}-unpacking-`));
  try {
    await Promise.all([
      pipeline(createReadStream(join(bin, "chromium.br")), createBrotliDecompress(),
        createWriteStream(join(staging, "chromium"), { mode: 0o700 })),
      // the GL libraries it loads from its own folder, and its fonts
      untar(join(bin, "swiftshader.tar.br"), staging),
      untar(join(bin, "fonts.tar.br"), join(staging, "fonts")),
    ]);
    try {
      renameSync(staging, home);
    } catch (e) {
      // another process put a complete one in place first: use that one
      if (!existsSync(binary)) throw e;
      rmSync(staging, { recursive: true, force: true });
    }
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    throw new Error(`Could not unpack @sparticuz/chromium into ${home}: ${e?.message ?? e}. ${HOW}`, { cause: e });
  }
  return binary;
}

/** Extracts a brotli-compressed tarball into `dir` with the system's tar. */
async function untar(file, dir) {
  mkdirSync(dir, { recursive: true });
  const tar = spawn("tar", ["-x", "-C", dir], { stdio: ["pipe", "ignore", "pipe"] });
  let stderr = "";
  tar.stderr.on("data", (d) => { stderr += d; });
  const exited = new Promise((resolve, reject) => {
    tar.on("error", reject);
    tar.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`tar -x of ${file} failed (${code}): ${stderr}`))));
  });
  await Promise.all([pipeline(createReadStream(file), createBrotliDecompress(), tar.stdin), exited]);
}
