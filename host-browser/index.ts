/**
 * The browser host: loads the wasm core next to this module and installs the
 * platform. Plain ESM with no import a browser cannot resolve: load it with
 * `<script type="module">` from the package's files, or let a bundler take it
 * (the .wasm files are named by literal `new URL(…, import.meta.url)`, which
 * Vite and webpack copy as assets).
 *
 * What a browser gives, and what it does not:
 *
 * - Shared memory only on a cross-origin isolated page (COOP same-origin and
 *   COEP require-corp), and then in its dedicated workers too. There
 *   `Bus.create()` makes a shared bus that workers attach to. Elsewhere it
 *   makes a private bus; workers then get served peers (`bus.serve(peer,
 *   port)` / `RemotePeer.connect(port)`).
 * - Blocking: a window's main thread may not (`Atomics.wait` throws there),
 *   so `peer.wait()` with a timeout is a Bus1Error EOPNOTSUPP there (use
 *   `await peer.readable()`), and the core's locks spin, never sleep, in that
 *   thread (the context is opened with canBlock false). A dedicated worker of
 *   an isolated page may block.
 * - Thread ids: browsers have none. Each thread that loads this module draws
 *   a random 31-bit one at once (the core keys its thread table by it; two
 *   threads of one origin share one with odds of about n²/2³² for n
 *   threads): drawing again while it is taken would need an await at load,
 *   which bundlers may refuse.
 * - Exits: a Worker has no exit event. Each thread, the main one too, holds
 *   a Web Lock named after its id for as long as it lives, and the watch of
 *   host-common/liveness.ts learns of its end when the browser lets go of it.
 *   `bus.watch(worker)` checks that `worker` is a Worker and then has the bus
 *   reclaim every bus1 thread of this origin whose lock comes free, until
 *   the bus is closed. (Chromium ends a worker blocked in Atomics.wait about
 *   2 s after terminate().) Without the Web Locks API (a page that is not a
 *   secure context) there is no watch (EOPNOTSUPP).
 * - Objects: no synchronous structured serialization and no synchronous
 *   read of a port's message, so neither a Cloner nor a Courier: objects
 *   reach receivers in the sending thread only; one received in another
 *   thread is a Bus1Error EOPNOTSUPP in its place.
 * - Chromium refuses TextDecoder.decode and TextEncoder.encodeInto on views
 *   of shared memory: nothing in the package uses them on bus memory; copy a
 *   payload (`msg.payload.slice()`) before decoding it.
 */
import { compileOnce, installPlatform, type Platform } from "../host-common/platform.js";
import { Bus1Error } from "../host-common/errors.js";
import { threadLiveness, type ChannelLike } from "../host-common/liveness.js";

/** Where the core is, relative to this module (dist/host-browser/ → build/); literal, so bundlers find it. */
function coreUrl(shared: boolean): URL {
  return shared ? new URL("../../build/bus1.threads.wasm", import.meta.url)
    : new URL("../../build/bus1.private.wasm", import.meta.url);
}


/**
 * Compiles while the bytes arrive when the server sends application/wasm;
 * any other type (a plain file server) makes compileStreaming throw, and the
 * whole body is compiled instead.
 */
async function compile(url: URL): Promise<WebAssembly.Module> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Bus1Error("ENXIO", `Bus.create: the bus1 core could not be fetched from ${url} (${(e as Error)?.message ?? e})`);
  }
  if (!response.ok) {
    throw new Bus1Error("ENXIO", `Bus.create: the bus1 core could not be fetched from ${url} (HTTP ${response.status})`);
  }
  const type = response.headers.get("Content-Type") ?? "";
  if (typeof WebAssembly.compileStreaming === "function" && /^application\/wasm\b/i.test(type)) {
    return WebAssembly.compileStreaming(response);
  }
  return WebAssembly.compile(await response.arrayBuffer());
}

const loadModule = compileOnce((shared) => compile(coreUrl(shared)));

/** Shared memory is usable only where the page (and so its workers) is cross-origin isolated. */
const sharedAvailable = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true
  && typeof SharedArrayBuffer === "function";

/**
 * Whether this thread may block: tried once, as Atomics.wait on a word that
 * does not hold the value given returns at once where waiting is allowed
 * and throws where it is not (a window's main thread). Without shared
 * memory there is nothing to wait on, so no thread may block.
 */
function probeBlocking(): boolean {
  if (!sharedAvailable) return false;
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}
const blocking = probeBlocking();

// A Worker is recognised by a getter of its own class, which throws for anything else.
const WorkerClass = (globalThis as { Worker?: { prototype: object } }).Worker;
const workerOnError = WorkerClass
  ? Object.getOwnPropertyDescriptor(WorkerClass.prototype, "onerror")?.get ?? null : null;

function checkWorker(worker: unknown): void {
  try {
    if (!workerOnError) throw new TypeError("no Worker here");
    workerOnError.call(worker);
  } catch {
    throw Bus1Error.of("EINVAL", "watch", "worker must be a Worker");
  }
}

// Every thread, the main one too, holds its lock from load (see the DOC block, "Exits").
const liveness = threadLiveness({
  ids: "hold",
  channel: (name) => new BroadcastChannel(name) as ChannelLike,
  checkWorker,
});
const thread = liveness.hold();

const platform: Platform = {
  name: "browser",
  module: loadModule,
  sharedAvailable: () => sharedAvailable,
  canBlock: () => blocking,
  threadId: () => thread,
  watcher: liveness.watcher,
  cpus: Math.max(1, Number(globalThis.navigator?.hardwareConcurrency) || 2),
};
installPlatform(platform);

export * from "../host-common/index.js";
