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
 *   worker that loads this module draws a random 31-bit id (never 0) and
 *   claims it by taking the Web Lock named after it, drawing again while
 *   another thread holds that lock: no two live threads share an id. (An id
 *   is free again once its thread has ended; a new thread draws the id of a
 *   dead thread its buses have not reclaimed yet with odds of 1 in 2³¹.)
 * - Exits: a Deno Worker has no exit event and tells nothing of its thread.
 *   A worker's lock is what says its thread has ended: Deno lets go of it
 *   only when the thread is gone (terminated or closed), never while JS can
 *   still run there. `bus.watch(worker)` checks that `worker` is a Worker
 *   and then has the bus reclaim every bus1 thread of this process whose
 *   lock comes free. It cannot tell which thread is that Worker's, and it
 *   need not: a look-alike object can make no live thread look dead. It
 *   finds threads by the message each one posts on a BroadcastChannel when
 *   it takes its lock, and by the locks held when it starts and every
 *   SCAN_MS. An open BroadcastChannel keeps a Deno process alive, so a
 *   watching thread listens only while another bus1 thread holds its lock or
 *   a watch began less than LISTEN_GRACE_MS ago (a worker that is still
 *   loading); outside that, a thread is found by the scan alone.
 *   A worker's terminate() does not stop a thread that is busy without
 *   returning to its event loop (a loop, or one blocked in wait()): Deno
 *   ends it only when it gets back there, so until then it stays attached.
 * - Objects: copied across threads by node:v8's structured serialization
 *   (a Cloner). No Courier: Deno cannot hand a channel end to a given
 *   thread (node:worker_threads' postMessageToThread refuses Web Workers,
 *   and a BroadcastChannel carries no ports), so ports, streams and listed
 *   buffers reach receivers in the sending thread only; elsewhere they are
 *   a Bus1Error EOPNOTSUPP in their place.
 */
import { serialize, deserialize } from "node:v8";
import { types } from "node:util";
import { Worker as NodeWorker, isMainThread } from "node:worker_threads";
import { installPlatform, type Platform } from "../host-common/platform.js";
import { Bus1Error } from "../host-common/errors.js";

/** The part of Deno's global this host uses (the project compiles with Node's types, not Deno's). */
declare const Deno: {
  readFile(path: URL): Promise<Uint8Array<ArrayBuffer>>;
  env: { get(key: string): string | undefined };
  permissions: { querySync(d: { name: "env"; variable: string }): { state: "granted" | "prompt" | "denied" } };
  unrefTimer(id: number): void;
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
  const build = debugBuild() ? (shared ? "debug" : "debug-private") : (shared ? "threads" : "private");
  return new URL(`../../build/bus1.${build}.wasm`, import.meta.url);
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

const modules = new Map<boolean, Promise<WebAssembly.Module>>();

function loadModule(shared: boolean): Promise<WebAssembly.Module> {
  let m = modules.get(shared);
  if (!m) {
    m = compile(coreUrl(shared));
    // a failed load is not kept: the next Bus.create tries again
    m.catch(() => modules.delete(shared));
    modules.set(shared, m);
  }
  return m;
}

// ---- threads: ids and exits -------------------------------------------------------------

/** How often a watching thread looks for bus1 threads by their locks. */
const SCAN_MS = 200;
/** How long after a watch began a thread listens for new threads even when none is alive. */
const LISTEN_GRACE_MS = 1_000;
/** The Web Lock a worker holds while it lives. */
const LOCK_PREFIX = "bus1-wasm thread ";
/** Where a worker says it holds its lock, for threads already watching. */
const CHANNEL = "bus1-wasm threads";

interface LockInfo { name?: string; clientId?: string }
interface LockManagerLike {
  request(name: string, options: { ifAvailable: boolean }, callback: (lock: unknown) => unknown): Promise<unknown>;
  request(name: string, callback: (lock: unknown) => unknown): Promise<unknown>;
  query(): Promise<{ held?: LockInfo[] }>;
}
const locks = (globalThis.navigator as { locks?: LockManagerLike } | undefined)?.locks;
/** A Web Worker has a WorkerGlobalScope; a node:worker_threads Worker (which Deno runs without one) is not the main thread. */
const inWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope === "function" || !isMainThread;

function randomId(): number {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return (a[0] & 0x7fffffff) || 1;
}

/** Takes `id`'s lock for good if no thread holds it; says whether it did. */
function claim(id: number): Promise<boolean> {
  return new Promise((resolve) => {
    locks!.request(LOCK_PREFIX + id, { ifAvailable: true }, (lock) => {
      resolve(lock !== null);
      return lock === null ? undefined : new Promise(() => {});
    }).catch(() => resolve(false));
  });
}

/**
 * This thread's id: 0 for the main thread (its end is the process's), a
 * claimed random one in a worker. The lock is said on the channel once held,
 * never before: a watcher that asks for it after hearing of it queues behind it.
 */
async function threadOf(): Promise<number> {
  if (!inWorker) return 0;
  if (!locks) return randomId();
  for (let tries = 0; tries < 64; tries++) {
    const id = randomId();
    if (!(await claim(id))) continue;
    try {
      const c = new BroadcastChannel(CHANNEL);
      c.postMessage(id);
      c.close();
    } catch {
      // no channel: watchers find this thread by its lock
    }
    return id;
  }
  // 64 draws all taken: not a lock manager that works; this thread cannot be watched
  return randomId();
}

const thread = await threadOf();

/** The exit listeners of this thread's buses; one watcher per thread serves them all. */
const listeners: ((thread: number) => void)[] = [];
const followed = new Set<number>();
let scanner: number | null = null;
let channel: BroadcastChannel | null = null;
let lastWatch = 0;
/** Other threads' locks seen held by the last scan. */
let othersAlive = 0;

/** Asks for `id`'s lock: Deno grants it once that thread has ended; the buses then reclaim it. */
function follow(id: number): void {
  if (id === thread || followed.has(id)) return;
  followed.add(id);
  locks!.request(LOCK_PREFIX + id, () => {
    followed.delete(id);
    // the lock is held while the listeners run: no new thread can take this id meanwhile
    for (const onExit of [...listeners]) {
      try {
        onExit(id);
      } catch {
        // a listener's failure is its own
      }
    }
  }).catch(() => followed.delete(id));
}

function idOf(name: unknown): number | null {
  if (typeof name !== "string" || !name.startsWith(LOCK_PREFIX)) return null;
  const id = Number(name.slice(LOCK_PREFIX.length));
  return id >>> 0 === id ? id : null;
}

/** Follows every thread that holds its lock now; keeps the channel open only while it may be needed. */
function scan(): void {
  locks!.query().then((state) => {
    let others = 0;
    for (const l of state.held ?? []) {
      const id = idOf(l.name);
      if (id === null || id === thread) continue;
      others++;
      follow(id);
    }
    othersAlive = others;
    listen();
  }, () => {});
}

/** Opens or closes the channel on which new threads say they hold their locks. */
function listen(): void {
  const wanted = othersAlive > 0 || performance.now() - lastWatch < LISTEN_GRACE_MS;
  if (wanted && !channel) {
    try {
      const c = new BroadcastChannel(CHANNEL);
      c.onmessage = (e: MessageEvent) => {
        const id = e.data;
        if (typeof id === "number" && id >>> 0 === id) follow(id);
      };
      channel = c;
    } catch {
      // no channel here: threads are found by the scan alone
    }
  } else if (!wanted && channel) {
    channel.close();
    channel = null;
  }
}

function startWatching(): void {
  lastWatch = performance.now();
  // listen first, then look: a thread is heard of, or seen holding its lock, or both
  listen();
  scan();
  if (scanner === null) {
    scanner = setInterval(scan, SCAN_MS) as unknown as number;
    // the scan keeps no process alive: a lock asked for does, but only while its thread lives
    Deno.unrefTimer(scanner);
  }
}

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

/** platform.watch: see the DOC block ("Exits"). */
function watchWorker(worker: unknown, onExit: (thread: number) => void): void {
  if (typeof worker !== "object" || worker === null || isProxy(worker) || !workerProtos.some((p) => isPrototypeOf(p, worker))) {
    throw Bus1Error.of("EINVAL", "watch", "worker must be a Worker (a Web Worker or a node:worker_threads Worker)");
  }
  listeners.push(onExit);
  startWatching();
}

// ---- objects -------------------------------------------------------------------------

const cloner = {
  serialize(value: unknown): Uint8Array | null {
    try {
      const b = serialize(value);
      return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    } catch {
      return null; // not cloneable: only the sending thread can receive it
    }
  },
  deserialize: (bytes: Uint8Array) => deserialize(bytes),
};

const platform: Platform = {
  name: "deno",
  module: loadModule,
  sharedAvailable: () => typeof SharedArrayBuffer === "function",
  canBlock: () => true,
  threadId: () => thread,
  cpus: Math.max(1, Number(globalThis.navigator?.hardwareConcurrency) || 2),
  cloner,
};
// the main thread can watch too: its workers hold locks even though it holds none
if (locks) platform.watch = watchWorker;
installPlatform(platform);

export * from "../host-common/index.js";
