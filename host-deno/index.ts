/**
 * The Deno host: loads the wasm core from the package and installs the
 * platform. Deno resolves `import { Bus } from "bus1-wasm"` to this file
 * through the "deno" condition of the package's `exports`. It needs no
 * permission but --allow-read (to read the .wasm files); BUS1_WASM_DEBUG=1
 * (the builds with the core's assertions) is read only where --allow-env
 * grants it, and is off otherwise.
 *
 * What Deno gives, and what it does not (Deno 2.9, TOOLCHAIN.md):
 *
 * - Shared memory in Web Workers, and waits on every thread, the main one
 *   included: buses are shared by default and `peer.wait()` works anywhere.
 * - Thread ids: Deno numbers no Web Worker. The main thread is 0; every
 *   worker that loads this module claims a random 31-bit id (never 0) with
 *   the Web Lock named after it, drawing again while another thread holds
 *   it: no two live threads share an id (host-common/liveness.ts). (An id is
 *   free again once its thread has ended; a new thread draws the id of a
 *   dead thread its buses have not reclaimed yet with odds of 1 in 2³¹.)
 * - Exits: a Deno Worker has no exit event and tells nothing of its thread.
 *   A worker's lock is what says its thread has ended: Deno lets go of it
 *   only when the thread is gone (terminated or closed), never while JS can
 *   still run there. `bus.watch(worker)` checks that `worker` is a Worker
 *   and then has the bus reclaim every bus1 thread of this process whose
 *   lock comes free, until the bus is closed (liveness.ts: a look-alike can
 *   make no live thread look dead). A lock held keeps a Deno process alive,
 *   so the main thread holds none; the channels on which threads say they
 *   are there are node:worker_threads' BroadcastChannels, unreferenced, so
 *   a watch keeps no process alive. A worker's terminate() does not stop a
 *   thread that is busy without returning to its event loop (a loop, or one
 *   blocked in wait()): Deno ends it only when it gets back there, so until
 *   then it stays attached.
 * - Objects: copied across threads by node:v8's structured serialization
 *   (a Cloner). No Courier: Deno cannot hand a channel end to a given
 *   thread (node:worker_threads' postMessageToThread refuses Web Workers,
 *   and a BroadcastChannel carries no ports), so ports, streams and listed
 *   buffers reach receivers in the sending thread only; elsewhere they are
 *   a Bus1Error EOPNOTSUPP in their place.
 */
import { serialize, deserialize } from "node:v8";
import { types } from "node:util";
import { Worker as NodeWorker, BroadcastChannel as NodeChannel, isMainThread } from "node:worker_threads";
import { compileOnce, coreFile, installPlatform, serializerCloner, type Platform } from "../host-common/platform.js";
import { Bus1Error } from "../host-common/errors.js";
import { threadLiveness, type ChannelLike } from "../host-common/liveness.js";

/** The part of Deno's global this host uses (the project compiles with Node's types, not Deno's). */
declare const Deno: {
  readFile(path: URL): Promise<Uint8Array<ArrayBuffer>>;
  env: { get(key: string): string | undefined };
  permissions: { querySync(d: { name: "env"; variable: string }): { state: "granted" | "prompt" | "denied" } };
  errors: { NotCapable?: Function; PermissionDenied?: Function };
};

// ---- the core ------------------------------------------------------------------------

/** BUS1_WASM_DEBUG=1 loads the builds with the core's assertions on; read only where the env permission allows it. */
function debugBuild(): boolean {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: "BUS1_WASM_DEBUG" }).state !== "granted") return false;
    return Deno.env.get("BUS1_WASM_DEBUG") === "1";
  } catch {
    return false;
  }
}

/** Where the core is, relative to this module (dist/host-deno/ → build/). */
function coreUrl(shared: boolean): URL {
  return new URL(coreFile(shared, debugBuild()), import.meta.url);
}

function isPermissionError(e: unknown): boolean {
  const { NotCapable, PermissionDenied } = Deno.errors;
  return (typeof NotCapable === "function" && e instanceof NotCapable)
    || (typeof PermissionDenied === "function" && e instanceof PermissionDenied);
}

async function compile(url: URL): Promise<WebAssembly.Module> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await Deno.readFile(url);
  } catch (e) {
    const why = (e as Error)?.message ?? String(e);
    if (isPermissionError(e)) {
      throw new Bus1Error("EPERM", `Bus.create: the bus1 core ${url.pathname} may not be read: run deno with --allow-read (${why})`);
    }
    throw new Bus1Error("ENXIO", `Bus.create: the bus1 core could not be read from ${url.pathname} (${why})`);
  }
  return WebAssembly.compile(bytes);
}


const loadModule = compileOnce((shared) => compile(coreUrl(shared)));

// ---- threads: ids and exits -------------------------------------------------------------

// A Worker (a Web Worker, or node:worker_threads' Worker, which Deno runs as
// one) is recognised by its prototype: Deno's Worker has no member that
// checks its brand without doing something (posting, terminating). The exit
// is never taken from the object, so a look-alike can do no harm.
const workerProtos: object[] = [];
for (const c of [(globalThis as { Worker?: unknown }).Worker, NodeWorker as unknown]) {
  const proto = typeof c === "function" ? (c as { prototype?: unknown }).prototype : undefined;
  if (typeof proto === "object" && proto !== null) workerProtos.push(proto);
}
const isPrototypeOf = Function.prototype.call.bind(Object.prototype.isPrototypeOf) as (p: object, v: unknown) => boolean;
const isProxy = types.isProxy;

function checkWorker(worker: unknown): void {
  if (typeof worker !== "object" || worker === null || isProxy(worker) || !workerProtos.some((p) => isPrototypeOf(p, worker))) {
    throw Bus1Error.of("EINVAL", "watch", "worker must be a Worker (a Web Worker or a node:worker_threads Worker)");
  }
}

/** A channel that keeps no process alive: node:worker_threads' BroadcastChannel, unreferenced (Deno's own cannot be). */
function channel(name: string): ChannelLike {
  const c = new NodeChannel(name);
  c.unref();
  return c as unknown as ChannelLike;
}

const liveness = threadLiveness({ ids: "claim", channel, checkWorker });
/** A Web Worker has a WorkerGlobalScope; a node:worker_threads Worker (which Deno runs without one) is not the main thread. */
const inWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope === "function" || !isMainThread;
/** 0 for the main thread (its end is the process's, and a lock it held would keep the process alive); a claimed id in a worker. */
const thread = inWorker ? await liveness.claim() : 0;

// ---- objects -------------------------------------------------------------------------

const cloner = serializerCloner(serialize, deserialize);

const platform: Platform = {
  name: "deno",
  module: loadModule,
  sharedAvailable: () => typeof SharedArrayBuffer === "function",
  canBlock: () => true,
  threadId: () => thread,
  // the main thread can watch too: its workers hold locks even though it holds none
  watcher: liveness.watcher,
  cpus: Math.max(1, Number(globalThis.navigator?.hardwareConcurrency) || 2),
  cloner,
};
installPlatform(platform);

export * from "../host-common/index.js";
