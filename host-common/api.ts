/**
 * DOC: the peer's method set, declared once.
 *
 * `PEER_METHODS` lists the operations every kind of peer has (API.md "Peer",
 * without `wait`, which only a thread on the bus's memory can do). `PeerApi`
 * types them once; a local `Peer` implements it as it is, and the remote twin
 * a served peer's plugin sees is derived from it as a type (`Remote<T>`, the
 * way Comlink derives its proxies): every method returns a promise of what
 * the local one returns.
 *
 * The compile-time checks at the bottom make the list and the types agree:
 * a method added to `Peer` that is not in `PEER_METHODS` (or in
 * `LOCAL_ONLY`) fails to compile, and so does a `RemotePeer` that lacks one
 * of the methods (remote.ts: `implements RemotePeerApi`).
 */
import type { Peer } from "./peer.js";
import type { Limits, PeerStats, SendResult } from "./types.js";
import type { MessageType } from "./message.js";

/** Operations of every kind of peer, by name: what the wire protocol forwards. */
export const PEER_METHODS = Object.freeze([
  "send", "recv", "transfer", "release", "destroy", "releaseSlice", "reset", "query", "stats", "disconnect", "close",
] as const);

export type PeerMethod = (typeof PEER_METHODS)[number];

/** Members of the local `Peer` that a served peer does not have (they need the bus's memory or thread). */
export type LocalOnly = "wait" | "ready" | "ref" | "closed" | "readable";

/** What every received message has (a local `Message`, a remote one). */
export interface MessageLike {
  readonly type: MessageType;
  readonly destination: number;
  readonly continue: boolean;
  readonly offset: number;
  readonly payload: Uint8Array;
  readonly handles: number[];
  readonly objects: unknown[];
  /**
   * Ends the payload: a local message's slice goes back to the pool (a
   * second call is ENXIO); a remote one's buffer goes back to the serving
   * side with the plugin's next post (a second call does nothing). Read or
   * copy what you keep first.
   */
  release(): void;
}

/**
 * The operations of a peer. `Self` is the kind of peer `transfer` may name
 * as `to`; `M` the kind of message `recv` returns.
 */
export interface PeerApi<Self = unknown, M extends MessageLike = MessageLike> {
  send(destinations: number | ArrayLike<number>, payload?: Uint8Array | readonly Uint8Array[],
       options?: { handles?: ArrayLike<number>; objects?: unknown[]; continue?: boolean; seed?: boolean }): SendResult;
  recv(options?: { seed?: boolean }): M | null;
  transfer(handle: number, to?: Self): number;
  release(handle: number): void;
  destroy(nodes: number | ArrayLike<number>, options?: { releaseHandles?: boolean }): void;
  releaseSlice(offset: number): void;
  reset(options?: { flush?: boolean; flushSeed?: boolean; limits?: Partial<Limits> }): void;
  query(): Limits;
  stats(): PeerStats;
  disconnect(): void;
  close(): void;
}

/** `T` with every method made asynchronous (Comlink's `Remote<T>`, for plain methods). */
export type Remote<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
};

/** What a plugin's peer has: every method of `PeerApi`, returning a promise. */
export type RemotePeerApi<Self = unknown, M extends MessageLike = MessageLike> = Remote<PeerApi<Self, M>>;

// ---- compile-time agreement of the list, the interface and Peer ---------------------

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** Every name of PEER_METHODS is a method of PeerApi, and the other way round. */
const methodsListed: Same<PeerMethod, keyof PeerApi> = true;
/** Every string-named member of Peer is in PEER_METHODS or LOCAL_ONLY: a new one must be placed. */
const peerCovered: Same<Exclude<Extract<keyof Peer, string>, PeerMethod | LocalOnly>, never> = true;
/** The local Peer implements PeerApi as it is. */
const peerImplements = (p: Peer): PeerApi<Peer> => p;
void methodsListed; void peerCovered; void peerImplements;
