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
 *   a random 32-bit one (the core keys its thread table by it; two threads
 *   of one origin share one with odds of about n²/2³³ for n threads).
 * - Exits: a Worker has no exit event. Each thread holds a Web Lock named
 *   after its id for as long as it lives; the browser lets go of it only
 *   when the thread is gone (ended or terminated). `bus.watch(worker)`
 *   checks that `worker` is a Worker and then has the bus reclaim every
 *   bus1 thread of this origin whose lock comes free: it cannot tell which
 *   Worker object is which thread, and it need not, since only a thread
 *   that is really gone is reclaimed. (Chromium ends a worker blocked in
 *   Atomics.wait about 2 s after terminate(); each watch keeps its bus's
 *   listener for the life of the page.) Without the Web Locks API (a page that
 *   is not a secure context) there is no watch (EOPNOTSUPP).
 * - Objects: no synchronous structured serialization and no synchronous
 *   read of a port's message, so neither a Cloner nor a Courier: objects
 *   reach receivers in the sending thread only; one received in another
 *   thread is a Bus1Error EOPNOTSUPP in its place.
 * - Chromium refuses TextDecoder.decode and TextEncoder.encodeInto on views
 *   of shared memory: nothing in the package uses them on bus memory; copy a
 *   payload (`msg.payload.slice()`) before decoding it.
 */
import { installPlatform, type Platform } from "../host-common/platform.js";
import { Bus1Error } from "../host-common/errors.js";

/** Where the core is, relative to this module (dist/host-browser/ → build/); literal, so bundlers find it. */
function coreUrl(shared: boolean): URL {
  return shared ? new URL("../../build/bus1.threads.wasm", import.meta.url)
    : new URL("../../build/bus1.private.wasm", import.meta.url);
}

const modules = new Map<boolean, Promise<WebAssembly.Module>>();

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

function randomId(): number {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return a[0];
}

/** This thread's id: random, as browsers number no threads. */
const thread = randomId();

/** The Web Lock a thread holds while it lives: how others learn it is gone. */
const LOCK_PREFIX = "bus1-wasm thread ";
/** Where a thread says it is there, for threads already watching. */
const CHANNEL = "bus1-wasm threads";

interface LockInfo { name?: string }
interface LockManagerLike {
  request(name: string, callback: () => unknown): Promise<unknown>;
  query(): Promise<{ held?: LockInfo[]; pending?: LockInfo[] }>;
}
const locks = (globalThis.navigator as { locks?: LockManagerLike } | undefined)?.locks;

/** Kept open: Chromium drops a message whose channel is closed right after it is posted. */
let announcer: BroadcastChannel | null = null;

if (locks) {
  // Held until the thread ends. The grant is what counts, not the callback:
  // a thread that blocks in wait() at once may never run it, yet holds the lock.
  locks.request(LOCK_PREFIX + thread, () => new Promise(() => {})).catch(() => {
    // no lock (a context that is going away): this thread cannot be watched
  });
  try {
    announcer = new BroadcastChannel(CHANNEL);
    announcer.postMessage(thread);
  } catch {
    // no channel: watchers still find this thread by query() when they start
  }
}

/** The exit listeners of this thread's buses; one watcher per thread serves them all. */
const listeners: ((thread: number) => void)[] = [];
const followed = new Set<number>();
/** The channel a watcher hears on (referenced, so that it lives as long as the module). */
let hearing: BroadcastChannel | null = null;

function lockedIds(list: LockInfo[] | undefined): number[] {
  const ids: number[] = [];
  for (const l of list ?? []) {
    const name = l.name;
    if (typeof name !== "string" || !name.startsWith(LOCK_PREFIX)) continue;
    const id = Number(name.slice(LOCK_PREFIX.length));
    if (id >>> 0 === id && id !== thread) ids.push(id);
  }
  return ids;
}

/**
 * Asks for the lock of `id`, which that thread holds: the browser grants it
 * once the thread has ended. Only ever for a lock seen held: a request made
 * before the thread's own would be granted first, to a live thread.
 */
function follow(id: number): void {
  if (followed.has(id)) return;
  followed.add(id);
  locks!.request(LOCK_PREFIX + id, () => {
    for (const onExit of [...listeners]) {
      try {
        onExit(id);
      } catch {
        // a listener's failure is its own
      }
    }
  }).catch(() => {});
}

/**
 * A thread said it is there: follows it once its lock shows as held (its
 * request may still be on its way), looking for about 5 s; a thread whose
 * lock never shows was gone before it could be watched.
 */
function confirm(id: number, tries = 0): void {
  if (followed.has(id) || id === thread) return;
  locks!.query().then((state) => {
    if (lockedIds(state.held).includes(id)) follow(id);
    else if (tries < 60) setTimeout(() => confirm(id, tries + 1), Math.min(100, 5 * (tries + 1)));
  }, () => {});
}

function startWatching(): void {
  if (hearing) return;
  // listen first, then look: a thread is heard of, or seen holding its lock, or both
  try {
    hearing = new BroadcastChannel(CHANNEL);
    hearing.onmessage = (e: MessageEvent) => {
      if (typeof e.data === "number" && e.data >>> 0 === e.data) confirm(e.data);
    };
  } catch {
    // no channel here: only the threads that are there now are watched
  }
  locks!.query().then((state) => {
    for (const id of lockedIds(state.held)) follow(id);
    for (const id of lockedIds(state.pending)) confirm(id);
  }, () => {});
}

// A Worker is recognised by a getter of its own class, which throws for anything else.
const WorkerClass = (globalThis as { Worker?: { prototype: object } }).Worker;
const workerOnError = WorkerClass
  ? Object.getOwnPropertyDescriptor(WorkerClass.prototype, "onerror")?.get ?? null : null;

/** platform.watch: see the DOC block ("Exits"). */
function watchWorker(worker: unknown, onExit: (thread: number) => void): void {
  try {
    if (!workerOnError) throw new TypeError("no Worker here");
    workerOnError.call(worker);
  } catch {
    throw Bus1Error.of("EINVAL", "watch", "worker must be a Worker");
  }
  listeners.push(onExit);
  startWatching();
}

const platform: Platform = {
  name: "browser",
  module: loadModule,
  sharedAvailable: () => sharedAvailable,
  canBlock: () => blocking,
  threadId: () => thread,
  cpus: Math.max(1, Number(globalThis.navigator?.hardwareConcurrency) || 2),
};
if (locks) platform.watch = watchWorker;
installPlatform(platform);

export * from "../host-common/index.js";
