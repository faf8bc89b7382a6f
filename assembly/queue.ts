/**
 * DOC: queue — a peer's message queue and the global order
 *
 * Every event that reaches a peer (a message, a node-destroy, a node-release)
 * is an Entry on the receiver's queue, kept sorted by its order key
 * (ts, sender, seq):
 *
 *   ts      Lamport timestamp. Odd while the entry is staged (its transaction
 *           has not committed), even once committed.
 *   sender  serial of the peer whose operation made the entry; breaks ties
 *           between transactions that commit with the same ts.
 *   seq     the sender's transaction counter; entries of one transaction
 *           share all three, which is how `continue` is computed.
 *
 * Each queue keeps a clock (always even). A transaction stages its entries at
 * clock + 1 on each destination, then commits them all at one even ts above
 * every staging ts (tx.ts). Receiving raises the receiver's clock to the
 * entry's ts, and a sender's clock rises to every commit it makes, so
 * whatever a peer does next is ordered after what it has seen and done.
 *
 * Why this gives SPEC §5 under concurrency. The kernel version stages one
 * destination at a time and lets receivers skip past staged entries, so it
 * needs the odd/even rule to keep receivers from overtaking. Here a
 * transaction holds the locks of all the peers it queues on (lockset.ts)
 * from staging to commit, so:
 *   1. two transactions that share a queue are serialised by its lock, and
 *      each commits above that queue's clock: on every queue they share they
 *      appear in the same order (agreement, §5.3);
 *   2. an operation that completed before another started (by any side
 *      channel) released its locks first; the later one sees the raised
 *      clocks and commits above them (causality, §5.2);
 *   3. a peer's own operations raise its clock, so they are ordered as they
 *      happened (§5.1), and notifications are entries like any other (§5.4).
 * No receiver ever sees a staged entry (it would need the lock the sender
 * holds), so `queue_front` returning 0 for one is only a safeguard; and no
 * global lock is involved: transactions on disjoint peers run in parallel.
 * Ties (equal ts on one queue) cannot happen between transactions; entries
 * of one transaction share the key and stay in insertion order.
 *
 * Entries are embedded in their objects: a data message's entry heads its
 * slice (pool.ts), a node-destroy entry lives in each handle, a node-release
 * entry in each node; so queuing a notification never allocates.
 *
 * Entry layout (40 bytes):
 *   +0 prev u32  +4 next u32  +8 ts u64  +16 sender u32  +20 seq u32
 *   +24 kind u16  +26 state u16  +28 txNext u32  +32 queue u32 (peer)
 *
 * Guarded by the receiving peer's data lock.
 */

import { Peer } from "./peer";

export const KIND_DATA: u16 = 1;
export const KIND_DESTROY: u16 = 2;
export const KIND_RELEASE: u16 = 3;

/** Entry.state bits: on a queue; a message in a lane's arena (lane.ts); a lane record given back. */
export const ENTRY_QUEUED: u16 = 1;
export const ENTRY_LANE: u16 = 2;
export const ENTRY_FREED: u16 = 4;

@unmanaged export class Entry {
  prev: u32;
  next: u32;
  ts: u64;
  sender: u32;
  seq: u32;
  kind: u16;
  state: u16;
  txNext: u32;
  queue: u32;
  _pad: u32;
}

// @ts-ignore: decorator
@inline export const ENTRY_SIZE: u32 = 40;

// @ts-ignore: decorator
@inline export function entry(p: usize): Entry {
  return changetype<Entry>(p);
}

// @ts-ignore: decorator
@inline export function entry_queued(e: Entry): bool {
  return (e.state & ENTRY_QUEUED) != 0;
}

// @ts-ignore: decorator
@inline export function entry_staged(e: Entry): bool {
  return (e.ts & 1) != 0;
}

/** True if `a` is ordered before the key (ts, sender, seq). */
export function key_before(ats: u64, asender: u32, aseq: u32, bts: u64, bsender: u32, bseq: u32): bool {
  if (ats != bts) return ats < bts;
  if (asender != bsender) return asender < bsender;
  return aseq < bseq;
}

// @ts-ignore: decorator
@inline function entry_before(a: Entry, b: Entry): bool {
  return key_before(a.ts, a.sender, a.seq, b.ts, b.sender, b.seq);
}

/** Links `e` into `q` at its place by key; equal keys keep insertion order. */
export function queue_link(q: Peer, e: Entry): void {
  assert(!entry_queued(e), "entry queued twice");
  let at = q.qTail;
  while (at && entry_before(e, entry(at))) at = entry(at).prev;
  let p = changetype<usize>(e);
  e.prev = at;
  if (at) {
    e.next = entry(at).next;
    entry(at).next = <u32>p;
  } else {
    e.next = q.qHead;
    q.qHead = <u32>p;
  }
  if (e.next) entry(e.next).prev = <u32>p;
  else q.qTail = <u32>p;
  e.queue = <u32>changetype<usize>(q);
  e.state |= ENTRY_QUEUED;
}

export function queue_unlink(q: Peer, e: Entry): void {
  assert(e.queue == <u32>changetype<usize>(q), "entry on another queue");
  if (e.prev) entry(e.prev).next = e.next;
  else q.qHead = e.next;
  if (e.next) entry(e.next).prev = e.prev;
  else q.qTail = e.prev;
  e.prev = 0;
  e.next = 0;
  e.queue = 0;
  e.state &= ~ENTRY_QUEUED;
}

/** The front entry if it is committed, else 0. */
export function queue_front(q: Peer): usize {
  let h = q.qHead;
  if (!h || entry_staged(entry(h))) return 0;
  return h;
}

/** Raises a clock to `ts` (rounded up to even). */
// @ts-ignore: decorator
@inline export function clock_sync(clock: u64, ts: u64): u64 {
  let t = (ts + 1) & ~(<u64>1);
  return t > clock ? t : clock;
}
