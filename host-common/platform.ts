/**
 * The platform: what differs between hosts (Node, browsers, Deno) behind one
 * interface. Each host's entry point installs its platform once; the shared
 * layer asks it for the compiled core, for what the thread may do, and for
 * the host-specific parts (watching a worker, cloning objects across threads).
 */
import { Bus1Error } from "./errors.js";
import type { Cloner } from "./objects.js";

/** How a host loads the core; installed by each host entry point. */
export interface Platform {
  /** The compiled core for shared or private memory. */
  module(shared: boolean): Promise<WebAssembly.Module>;
  /** Whether SharedArrayBuffer can be used here. */
  sharedAvailable(): boolean;
  /** Whether this thread may block (Atomics.wait); a browser's main thread may not. */
  canBlock(): boolean;
  /** The host's id for this thread (Node: worker_threads.threadId). */
  threadId(): number;
  /**
   * Calls `onExit(id)` with the host's id of a worker's thread once that
   * thread has really ended; throws a Bus1Error EINVAL for anything that is
   * not a worker of this host. Absent where a host cannot tell.
   */
  watch?(worker: unknown, onExit: (thread: number) => void): void;
  /** Copies objects between threads of a shared bus (none: same thread only). */
  cloner?: Cloner;
  /** Processors this process may run on (a wait spins only when there is more than one). */
  cpus?: number;
  name: string;
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
