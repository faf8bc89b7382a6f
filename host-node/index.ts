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
import { threadId, Worker } from "node:worker_threads";
import { EventEmitter } from "node:events";
import { availableParallelism } from "node:os";
import { installPlatform } from "../host-common/platform.js";
import { Bus1Error } from "../host-common/errors.js";

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

// A Worker is recognised, and its thread read, through the getter of its class
// (it reads a handle only Node can make: a look-alike object throws), and its
// exit through EventEmitter's own methods: all captured here, at load time.
const workerThreadId = Function.prototype.call.bind(
  Object.getOwnPropertyDescriptor(Worker.prototype, "threadId")!.get!) as (w: unknown) => number;
const on = Function.prototype.call.bind(EventEmitter.prototype.on) as
  (target: unknown, event: string, listener: () => void) => void;
const off = Function.prototype.call.bind(EventEmitter.prototype.removeListener) as
  (target: unknown, event: string, listener: () => void) => void;

/**
 * Calls `onExit(threadId)` once the worker's thread is really gone: an "exit"
 * that someone emits by hand while the thread runs is ignored (Node sets the
 * worker's threadId to −1 when the thread has ended).
 */
function watchWorker(worker: unknown, onExit: (thread: number) => void): void {
  let id: number;
  try {
    id = workerThreadId(worker);
  } catch {
    throw Bus1Error.of("EINVAL", "watch", "worker must be a worker_threads.Worker");
  }
  if (id < 0) return; // already gone: it left before it could attach anything
  const listener = () => {
    if (workerThreadId(worker) !== -1) return;
    off(worker, "exit", listener);
    onExit(id);
  };
  on(worker, "exit", listener);
}

installPlatform({
  name: "node",
  module: loadModule,
  sharedAvailable: () => typeof SharedArrayBuffer === "function",
  canBlock: () => true,
  threadId: () => threadId,
  watch: watchWorker,
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
