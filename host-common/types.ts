/**
 * The public types and constants of the API (API.md), shared by every kind of
 * peer and every host.
 */
import { MAX_PAGES } from "./core.js";
import type { ErrorCode } from "./errors.js";
import type { MessageType } from "./message.js";

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

/** The result of a send to one destination with no error (shared, frozen: it never varies). */
export const SENT_ONE: SendResult = Object.freeze({ errors: Object.freeze([null]) as (ErrorCode | null)[] });

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

// ---- bus.inspect() (API.md; docs/SPEC.md "Inspecting the bus") ----

/** Four counters in the order of the quotas (SPEC §6): what is charged, or a share of it. */
export interface Usage {
  slices: number;
  handles: number;
  bytes: number;
  objects: number;
}

/**
 * A peer's state in a snapshot: "connected"; "disconnected" while some
 * reference to it is still open; "closed" once every reference is closed,
 * shown only while nodes it owned still exist (holders have not released
 * their handles to them yet).
 */
export type PeerState = "connected" | "disconnected" | "closed";

/** The seed a peer holds (SPEC §5.6). */
export interface SeedSnapshot {
  /** Payload bytes. */
  size: number;
  handles: number;
  objects: number;
}

/** One peer's handle record: which node it names, under which ID, and what keeps it. */
export interface HandleSnapshot {
  /** The holder's ID for it; HANDLE_INVALID while it has none (only in flight to it, or its node-destroy is queued). */
  id: number;
  /** The node (NodeSnapshot.id). */
  node: number;
  /** True for the owner's own handle of the node. */
  owner: boolean;
  /** User references: what the holder can release. */
  references: number;
  /** References held by the holder's seed. */
  seedReferences: number;
  /** Queued messages to the holder that carry this handle. */
  inflight: number;
  /** Queued messages whose destination is this (owner) handle. */
  queued: number;
}

/** One entry of a peer's queue: a message or a notification not yet received. */
export interface QueuedSnapshot {
  type: MessageType;
  /** The transaction: the acting peer's id, its transaction number, the commit timestamp (SPEC §7). */
  sender: number;
  seq: number;
  ts: number;
  /** The node it is about: a message's destination, the destroyed or released node. */
  node: number;
  /** The receiver's ID of that node, or HANDLE_INVALID if it has none. */
  destination: number;
  /** Payload bytes (0 for notifications). */
  size: number;
  /** Bytes charged to the receiver (the slice and its object records). */
  bytes: number;
  /** The nodes of the handles it carries (NodeSnapshot.id). */
  handles: number[];
  /** Host objects it carries. */
  objects: number;
}

/** A peer as the core sees it. */
export interface PeerSnapshot {
  /** Unique for the bus's life (the peer's serial, which also breaks ties of the global order). */
  id: number;
  /** `peer.ref.slot` of its references; null once closed (a later peer may take the slot). */
  slot: number | null;
  state: PeerState;
  /** Open references (connect, adopt) in all threads. */
  references: number;
  /** Its accounting principal; null once closed. */
  user: number | null;
  /** Its Lamport clock (SPEC §7). */
  clock: number;
  limits: Limits;
  /** What is charged to it now. */
  usage: Usage;
  /** Bytes of memory its pool holds. */
  poolBytes: number;
  /** Received slices not yet released. */
  slices: number;
  seed: SeedSnapshot | null;
  /** Its handle records, by ID (handles without an ID last). */
  handles: HandleSnapshot[];
  /** Its queue, in the order it will be received. */
  queue: QueuedSnapshot[];
}

/** A node and who holds it. */
export interface NodeSnapshot {
  /** Unique among the nodes of one snapshot and the same for the node's whole life; a later node may reuse it. */
  id: number;
  /** The owning peer (PeerSnapshot.id). */
  owner: number;
  destroyed: boolean;
  /** Sum over its handles of references, seed references and messages in flight. */
  references: number;
  /** Peers with a handle record for it (owner included while it has one), by id. */
  holders: number[];
}

/** A user (accounting principal) and what it is charged. */
export interface UserSnapshot {
  id: number;
  /** Peers of this user (not yet closed). */
  peers: number;
  limits: Limits;
  /** Charged to its peers, in all. */
  usage: Usage;
  /** What messages of other users in flight to it are charged (the fair-share rule, SPEC §8), by sender user. */
  shares: ({ user: number } & Usage)[];
}

/** Entries queued by one transaction (a multicast, a destroy), with the peers they are queued on. */
export interface TransactionSnapshot {
  sender: number;
  seq: number;
  ts: number;
  receivers: number[];
}

/**
 * What `bus.inspect()` returns: the whole bus at one instant, read under the
 * core's locks (no operation is half-visible). Plain data: JSON-serialisable.
 */
export interface BusSnapshot {
  /** Threads attached to the bus. */
  threads: number;
  /** Bytes the bus heap spans, and bytes of it in use. */
  heapBytes: number;
  usedBytes: number;
  /** By id. */
  users: UserSnapshot[];
  /** By id. */
  peers: PeerSnapshot[];
  /** By id. */
  nodes: NodeSnapshot[];
  /** Queued entries grouped by transaction, in the global order (ts, sender, seq). */
  transactions: TransactionSnapshot[];
}
