/**
 * The platform: what differs between hosts (Node, browsers, Deno) behind one
 * interface. Each host's entry point installs its platform once; the shared
 * layer asks it for the compiled core, for what the thread may do, and for
 * the host-specific parts (watching a worker, cloning objects across threads).
 */
import { Bus1Error } from "./errors.js";
import type { Cloner } from "./objects.js";

/**
 * How a host moves objects between threads by transfer (SPEC §9): the
 * channels between attached threads, and what moves. Absent where a host
 * cannot take a port's message synchronously (then ports and streams reach
 * only receivers in the sending thread, EOPNOTSUPP elsewhere, as before).
 */
export interface Courier {
  /**
   * Whether `v` moves rather than copies: a port or a stream always, an
   * ArrayBuffer when `listed` (the send's `transfer`). A brand check that
   * runs no user code: it says false for a Proxy, whatever it claims to be,
   * and for anything whose transfer could run code that is not the host's
   * (Node: a stream with own members a genuine one lacks, another
   * prototype, or an intrinsic prototype changed since load).
   */
  movable(v: unknown, listed: boolean): boolean;
  /**
   * Whether a movable value can be posted now (a stream not locked, a
   * buffer not detached); runs no user code. A send checks every value
   * before it posts any, so that one that cannot go keeps all of them.
   */
  postable(v: unknown): boolean;
  /** Whether `v` is a channel end this host made (a delivery is checked with it). */
  isPort(v: unknown): boolean;
  /** A new channel: [the end kept here, the end handed to another thread]. */
  channel(): [unknown, unknown];
  /** Posts `message` on `port`, moving `transfer`; throws what the host throws (a locked stream, a detached buffer). */
  post(port: unknown, message: unknown, transfer: unknown[]): void;
  /** The next message queued on `port`, taken at once ({ message }), or undefined when none is. */
  take(port: unknown): { message: unknown } | undefined;
  /**
   * Calls `onMessage` for messages on `port` when the thread is idle and
   * `onClose` once its other end is gone; the port keeps no thread alive.
   */
  listen(port: unknown, onMessage: (m: unknown) => void, onClose: () => void): void;
  close(port: unknown): void;
  /** Hands `message` (with `transfer`) to the host thread `thread`'s receiver (see `receive`); never throws. */
  deliver(thread: number, message: unknown, transfer: unknown[]): void;
  /** Installs this thread's receiver of what `deliver` hands it. */
  receive(onDelivery: (message: unknown) => void): void;
  /** Removes it (the last bus of the thread with links let go): no listener stays on the process. */
  unreceive(): void;
  /** Lets go of a moved value nobody received: closes a port, cancels a stream (outside core calls: a stream's own code may run). */
  discard(v: unknown): void;
}

/**
 * One bus's watch of worker exits in this thread: made by its first
 * bus.watch, closed by its close. It registers nothing until a worker is
 * added, and once closed holds nothing (no listener, timer or channel keeps
 * the bus or the process alive).
 */
export interface Watcher {
  /** Watches `worker` too (again: nothing more); throws a Bus1Error EINVAL for anything that is not a worker of this host. */
  add(worker: unknown): void;
  /** Stops watching: every listener of this watch goes. */
  close(): void;
}

/** How a host loads the core; installed by each host entry point. */
export interface Platform {
  /** The compiled core for shared or private memory. */
  module(shared: boolean): Promise<WebAssembly.Module>;
  /** Whether SharedArrayBuffer can be used here. */
  sharedAvailable(): boolean;
  /**
   * Whether this thread may block (Atomics.wait): a browser's main thread may
   * not, nor any thread without shared memory to wait on. Where it may not,
   * the core's contended locks spin instead of sleeping, and `peer.wait`
   * with a timeout is EOPNOTSUPP.
   */
  canBlock(): boolean;
  /**
   * The host's id for this thread, unique among the threads of the process
   * (Node: worker_threads.threadId; browsers and Deno: drawn at random,
   * liveness.ts). The core keys its thread table by it; a watcher reports
   * exits by it.
   */
  threadId(): number;
  /**
   * A bus's watch of its workers (bus.watch): `onExit(id)` with the host's
   * id of a watched worker's thread once that thread has really ended.
   * Absent where a host cannot tell. A host may report more threads than the
   * watched workers' (a browser cannot tell which thread a Worker is): each
   * reported thread must really have ended.
   */
  watcher?(onExit: (thread: number) => void): Watcher;
  /** Copies objects between threads of a shared bus (none: same thread only). */
  cloner?: Cloner;
  /** Moves ports, streams and listed ArrayBuffers between threads (none: they stay in the sending thread). */
  courier?: Courier;
  /** Processors this process may run on (a wait spins only when there is more than one). */
  cpus?: number;
  name: string;
}

/**
 * The file of the core a host loads from build/, relative to a host's
 * dist/<host>/ module: the release builds, or with `debug` the builds with
 * the core's assertions on (BUS1_WASM_DEBUG=1, npm run test:debug). Browsers
 * name their two files literally, for bundlers.
 */
export function coreFile(shared: boolean, debug: boolean): string {
  const build = debug ? (shared ? "debug" : "debug-private") : (shared ? "threads" : "private");
  return `../../build/bus1.${build}.wasm`;
}

/**
 * A host's `module`: compiles each build (shared or private) once, on first
 * use; a load that fails is not kept, so the next Bus.create tries again.
 */
export function compileOnce(load: (shared: boolean) => Promise<WebAssembly.Module>): (shared: boolean) => Promise<WebAssembly.Module> {
  const modules = new Map<boolean, Promise<WebAssembly.Module>>();
  return (shared) => {
    let m = modules.get(shared);
    if (!m) {
      m = load(shared);
      m.catch(() => modules.delete(shared));
      modules.set(shared, m);
    }
    return m;
  };
}

/**
 * A cloner from a structured serializer (node:v8's serialize and
 * deserialize, which Node and Deno both have). A value it cannot serialize
 * reaches only receivers in the sending thread.
 */
export function serializerCloner(serialize: (v: unknown) => Uint8Array, deserialize: (b: Uint8Array) => unknown): Cloner {
  return {
    serialize(value: unknown): Uint8Array | null {
      try {
        const b = serialize(value);
        return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
      } catch {
        return null;
      }
    },
    deserialize: (bytes: Uint8Array) => deserialize(bytes),
  };
}

let platform: Platform | null = null;

export function installPlatform(p: Platform): void {
  platform = p;
}

export function requirePlatform(): Platform {
  if (!platform) throw new Bus1Error("EINVAL", "bus1: no host installed (import bus1-wasm/node, /browser or /deno)");
  return platform;
}

/** Processors this process may run on, as the platform says (2 when it cannot tell). */
export function platformCpus(): number {
  return platform?.cpus ?? 2;
}
