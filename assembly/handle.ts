/**
 * DOC: handle — nodes and the handles that name them
 *
 * A Node is owned by exactly one peer for its whole life. A Handle is one
 * peer's reference to one node; a peer has at most one Handle per node
 * (its node map finds it), and the owner's own Handle is the node's
 * `ownerHandle`. Every Handle of a node is on the node's list, so a destroy
 * reaches every holder, including peers that will only receive the handle in
 * a message still in flight (the sender made their Handle object at send
 * time, with `inflight` counting such messages).
 *
 * Counters of a Handle:
 *   uref      user references: what the holder can `release`.
 *   seedRefs  references held by the holder's seed.
 *   inflight  queued messages that carry this handle to the holder.
 *   msgs      queued messages whose destination is this (owner) handle.
 *   lanes     lanes whose messages go to this (owner) handle (lane.ts).
 * A handle also keeps its lane (lane.ts) while it is live, and counts its
 * plain unicasts until it has one (`sends`).
 * A handle is *live* while uref + seedRefs > 0: then it has an ID in the
 * holder's ID map. When it stops being live its ID is removed for good (a
 * core-assigned ID is never reused; a caller-chosen one may then name a fresh
 * node). The object itself stays while anything still points at it: a
 * message in flight or queued to it, or its queued node-destroy entry.
 *
 * Node.refs is the sum over all its handles of uref + seedRefs + inflight.
 * While the node is live the owner's handle holds one pinned reference, so
 * refs ≥ 1; when refs drops to exactly 1 the owner gets a node-release
 * notification, withdrawn again if refs rises before it is received.
 *
 * Node:   owner, ownerHandle, refs, flags, destroy key (ts, sender, seq),
 *         handle list, then its release Entry.
 * Handle: node, holder, id u64, uref, seedRefs, inflight, msgs, flags, list
 *         links, created-chain link, lane, sends, lanes, then its destroy Entry.
 * Guarded by the holder's local lock; a node's list and refs by the owner's.
 */

import { Entry } from "./queue";

export const NODE_DESTROYED: u32 = 1;

export const HANDLE_MARK: u32 = 1;      // seen twice in one call → ENOTUNIQ
export const HANDLE_CREATED: u32 = 4;   // made lazily by the current call

@unmanaged export class Node {
  owner: u32;
  ownerHandle: u32;
  refs: u32;
  flags: u32;
  destroyTs: u64;
  destroySender: u32;
  destroySeq: u32;
  handles: u32;
  _pad: u32;
}

// @ts-ignore: decorator
@inline export const NODE_SIZE: u32 = 40;

@unmanaged export class Handle {
  node: u32;
  holder: u32;
  id: u64;
  uref: u32;
  seedRefs: u32;
  inflight: u32;
  msgs: u32;
  flags: u32;
  nodePrev: u32;
  nodeNext: u32;
  _pad: u32;
  /** This handle's lane (lane.ts), or 0. */
  lane: u32;
  /** Plain unicasts sent through it before it had a lane. */
  sends: u32;
  /** Lanes whose messages go to this (owner) handle: each keeps it (lane.ts). */
  lanes: u32;
  _pad3: u32;
}

// @ts-ignore: decorator
@inline export const HANDLE_SIZE: u32 = 64;

// @ts-ignore: decorator
@inline export function node_release_entry(n: Node): Entry {
  return changetype<Entry>(changetype<usize>(n) + NODE_SIZE);
}

// @ts-ignore: decorator
@inline export function node_of_release_entry(e: Entry): Node {
  return changetype<Node>(changetype<usize>(e) - NODE_SIZE);
}

// @ts-ignore: decorator
@inline export function handle_destroy_entry(h: Handle): Entry {
  return changetype<Entry>(changetype<usize>(h) + HANDLE_SIZE);
}

// @ts-ignore: decorator
@inline export function handle_of_destroy_entry(e: Entry): Handle {
  return changetype<Handle>(changetype<usize>(e) - HANDLE_SIZE);
}

// @ts-ignore: decorator
@inline export const NODE_ALLOC: u32 = 80; // NODE_SIZE + ENTRY_SIZE
// @ts-ignore: decorator
@inline export const HANDLE_ALLOC: u32 = 104; // HANDLE_SIZE + ENTRY_SIZE

// @ts-ignore: decorator
@inline export function node_of(h: Handle): Node {
  return changetype<Node>(h.node);
}

// @ts-ignore: decorator
@inline export function node_live(n: Node): bool {
  return (n.flags & NODE_DESTROYED) == 0;
}

// @ts-ignore: decorator
@inline export function handle_live(h: Handle): bool {
  return (h.uref | h.seedRefs) != 0;
}

// @ts-ignore: decorator
@inline export function handle_is_owner(h: Handle): bool {
  return changetype<Node>(h.node).ownerHandle == <u32>changetype<usize>(h);
}

export function node_link_handle(n: Node, h: Handle): void {
  let p = <u32>changetype<usize>(h);
  h.nodePrev = 0;
  h.nodeNext = n.handles;
  if (n.handles) changetype<Handle>(n.handles).nodePrev = p;
  n.handles = p;
}

export function node_unlink_handle(n: Node, h: Handle): void {
  if (h.nodePrev) changetype<Handle>(h.nodePrev).nodeNext = h.nodeNext;
  else n.handles = h.nodeNext;
  if (h.nodeNext) changetype<Handle>(h.nodeNext).nodePrev = h.nodePrev;
  h.nodePrev = 0;
  h.nodeNext = 0;
}
