/**
 * The Node host: loads the wasm core from the package and installs it.
 *
 * Node 20's V8 (11.x) resets wasm locals after memory.atomic.wait in code
 * compiled by Liftoff, its baseline tier (TOOLCHAIN.md). The core is compiled
 * with Liftoff turned off on such versions, before the first module is made,
 * so users need no flag.
 */
import { readFile } from "node:fs/promises";
import { setFlagsFromString, serialize, deserialize } from "node:v8";
import { threadId } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { installPlatform } from "../host-common/bus.js";

const v8Major = Number(process.versions.v8.split(".")[0]);
let engineReady = false;

function prepareEngine(): void {
  if (engineReady) return;
  engineReady = true;
  if (v8Major < 12) setFlagsFromString("--no-liftoff");
}

const modules = new Map<boolean, Promise<WebAssembly.Module>>();

function loadModule(shared: boolean): Promise<WebAssembly.Module> {
  let m = modules.get(shared);
  if (!m) {
    prepareEngine();
    // BUS1_WASM_DEBUG=1 loads the builds with the core's assertions on (npm run test:debug)
    const debug = process.env.BUS1_WASM_DEBUG === "1";
    const build = debug ? (shared ? "debug" : "debug-private") : (shared ? "threads" : "private");
    const file = new URL(`../../build/bus1.${build}.wasm`, import.meta.url);
    m = readFile(file).then((bytes) => WebAssembly.compile(new Uint8Array(bytes)));
    modules.set(shared, m);
  }
  return m;
}

installPlatform({
  name: "node",
  module: loadModule,
  sharedAvailable: () => typeof SharedArrayBuffer === "function",
  canBlock: () => true,
  threadId: () => threadId,
  cpus: availableParallelism(),
  cloner: {
    serialize(value: unknown): Uint8Array | null {
      try {
        const b = serialize(value);
        return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
      } catch {
        return null; // not cloneable: only the sending thread can receive it
      }
    },
    deserialize: (bytes: Uint8Array) => deserialize(bytes),
  },
});

export * from "../host-common/index.js";
