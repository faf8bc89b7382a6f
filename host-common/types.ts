/**
 * The public types and constants of the API (API.md), shared by every kind of
 * peer and every host.
 */
import { MAX_PAGES } from "./core.js";
import type { ErrorCode } from "./errors.js";

export interface Limits {
  maxSlices: number;
  maxHandles: number;
  maxInflightBytes: number;
  maxInflightObjects: number;
}

export interface BusOptions {
  /** Shared memory usable by several threads; default: where SharedArrayBuffer can be used. */
  shared?: boolean;
  /** Per-user limits (SPEC §6). */
  limits?: Partial<Limits>;
  /** Bound on the bus's memory; default DEFAULT_MAX_MEMORY_BYTES, at most MAX_MEMORY_BYTES. */
  maxMemoryBytes?: number;
}

export interface ConnectOptions {
  /** Accounting principal, 0 … 2^31 − 1; default 0. */
  user?: number;
}

export interface SendOptions {
  handles?: ArrayLike<number>;
  objects?: unknown[];
  /**
   * ArrayBuffers among `objects` to move rather than copy to a receiver in
   * another thread (detached here once moved), like postMessage's transfer
   * list. Ports and streams always move (SPEC §9).
   */
  transfer?: unknown[];
  continue?: boolean;
  seed?: boolean;
}

export interface SendResult {
  errors: (ErrorCode | null)[];
}

export interface ResetOptions {
  flush?: boolean;
  flushSeed?: boolean;
  limits?: Partial<Limits>;
}

/** Counters of one peer, for tests and monitoring (an addition to API.md). */
export interface PeerStats {
  /** Charged to this peer now: slices, handles, bytes, objects. */
  slices: number;
  handles: number;
  bytes: number;
  objects: number;
  /** Bytes of memory its pool holds. */
  poolBytes: number;
  /** Live handle IDs, handle records, received unreleased slices. */
  handleIds: number;
  handleRecords: number;
  liveSlices: number;
}

/** Structured-cloneable description of a bus, for Bus.attach in a worker. */
export interface BusHandle {
  readonly id: number;
  readonly module: WebAssembly.Module;
  readonly memory: WebAssembly.Memory;
}

/** Structured-cloneable reference to one peer, for bus.adopt. */
export interface PeerRef {
  readonly bus: number;
  readonly slot: number;
  readonly gen: number;
}

export const HANDLE_INVALID = -1;
export const HANDLE_FLAG_MANAGED = 1;
export const HANDLE_FLAG_REMOTE = 2;

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxSlices: 16384,
  maxHandles: 65536,
  maxInflightBytes: 16 * 1024 * 1024,
  maxInflightObjects: 4096,
});

/** Default bound of a bus's memory: 1 GiB. */
export const DEFAULT_MAX_MEMORY_BYTES = 1 << 30;
/** Largest bound: the core keeps every address below 2 GiB. */
export const MAX_MEMORY_BYTES = MAX_PAGES * 65536;

/** Counters of the whole bus (an addition to API.md: monitoring, tests of leaks). */
export interface BusStats {
  /** Bytes the bus heap spans (it grows, and never shrinks). */
  heapBytes: number;
  /** Bytes of the heap in use: every peer, node, handle, pool, record and table, headers included. */
  usedBytes: number;
  /** Peers that exist: connected, or disconnected while a reference to them is still open. */
  peers: number;
  /** User records (one per user ID that has a peer). */
  users: number;
  /** Threads attached to the bus. */
  threads: number;
  /** Host object records in flight. */
  records: number;
}
