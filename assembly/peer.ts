/**
 * DOC: peer — endpoints: the record, its life and its limits
 *
 * A Peer is an endpoint: a queue (queue.ts), a pool (pool.ts), a table of
 * handles (handle.ts) keyed two ways, limits and usage (user.ts), an optional
 * seed. It is named across the ABI by a slot (bus.ts); `refs` counts the
 * host references (connect, adopt) and the peer is freed when the last one is
 * closed, disconnecting it first if that has not happened.
 *
 * The operations on peers follow the kernel's seams. This file sequences a
 * peer's life: connect (peer_new), check, flush, disconnect, free
 * (peer_put), and its limits (reset, query, stats); it also holds the ABI's
 * flags, bounds and argument codes, and the helpers every operation shares:
 * `fail` (an errno and the argument at fault), `need` and `need_owner`
 * (locks), the accessors of the record's embedded maps and counters, and the
 * wake of a receiver. Nodes and handles are made, resolved, transferred,
 * released and destroyed in node.ts; messages and the seed are built in
 * send.ts, received and dropped in recv.ts; tx.ts orders what an operation
 * queues.
 *
 * Every operation validates all of its input before it changes anything, so
 * a failing call leaves the bus as it was; where a step can fail late
 * (quota, memory) the steps before it are undone. Lazily created nodes
 * (caller-chosen IDs) are undone too (node.ts, created_undo).
 *
 * Life: connected, then disconnected (PEER_DISCONNECTED: every later call
 * fails with ESHUTDOWN), then freed (PEER_FREED, its slot given back) when
 * the last host reference goes. A flush destroys the peer's nodes, releases
 * its handles, drops its queue and frees its received slices, all that it
 * notifies being one transaction; a disconnect is a flush, then the seed,
 * the rest of the queue and the pool go. A disconnected peer holds no handle,
 * slice or seed and is charged nothing. A freed peer's record is retired
 * (bus.ts, "Freeing peers") only once no node points at it (`pins` = 0).
 *
 * Peer layout: see the class below; maps are three u32s each (map.ts):
 * idMap (handle ID → Handle), nodeMap (Node → Handle), sliceMap (payload
 * address → Message of a received slice); limits and usage are four u32s
 * each in the order slices, handles, bytes, objects (user.ts).
 *
 * Locking: one lock per peer (`lock`, lock.ts) guards all of the peer's
 * state: queue, clock, pool, slice map, usage, limits, ID and node maps,
 * seed, and its handle records' counters. A node's handle list, references
 * and release entry are guarded by its owner's lock. Each operation locks
 * every peer it changes through a lock set (lockset.ts) before it changes
 * anything, and re-validates after a retry; a send keeps its locks across
 * its two calls (send.ts). A new record is locked before it is published in
 * its slot. A flush locks, before it starts, every peer it will touch
 * (flush_need).
 */

import { sync_add, sync_and, sync_load, sync_notify, sync_store } from "./sync";
import { root, heap_calloc, heap_free, slot_take, slot_free, slot_gen, slot_wake, misc_lock, misc_unlock, thread_tid, limbo_retire } from "./bus";
import { ls_need, NEED_BROKEN, NEED_NOMEM } from "./lockset";
import { lock_take, lock_drop } from "./lock";
import { map_count, map_capacity, map_value_at, map_clear } from "./map";
import { entry, entry_staged, KIND_DATA } from "./queue";
import { Node, Handle, node_of, node_live, handle_live, handle_is_owner } from "./handle";
import { Message, pool_destroy } from "./pool";
import { User, user_get, user_put, user_lock, user_unlock } from "./user";
import { lane_settle, lane_fold, lanes_revoke, usage_of_messages } from "./lane";
import { Ctx, CTX_WAKES, ctx_out, tx_begin, tx_commit } from "./tx";
import { node_ref, handle_die, node_destroy_stage } from "./node";
import { seed_drop } from "./send";
import { entry_deliverable, entry_drop, queue_settle, slice_free } from "./recv";
import { EBADF, EINVAL, ENOMEM, ESHUTDOWN } from "./errno";

// ---- flags of the ABI -----------------------------------------------------------

export const SEND_CONTINUE: u32 = 1;
export const SEND_SEED: u32 = 2;
export const RECV_SEED: u32 = 1;
export const DESTROY_RELEASE_HANDLES: u32 = 1;
export const RESET_FLUSH: u32 = 1;
export const RESET_FLUSH_SEED: u32 = 2;
export const RESET_LIMIT_SLICES: u32 = 0x100;
export const RESET_LIMIT_HANDLES: u32 = 0x200;
export const RESET_LIMIT_BYTES: u32 = 0x400;
export const RESET_LIMIT_OBJECTS: u32 = 0x800;

export const PEER_DISCONNECTED: u32 = 1;
export const PEER_FREED: u32 = 2;
/** The pool grew past one chunk since it was last empty (pool.ts: its last chunk may then go back too). */
export const PEER_POOL_GREW: u32 = 4;

export const MAX_VECS: u32 = 1024;
export const MAX_OBJECTS: u32 = 256;
export const MAX_HANDLES: u32 = 1 << 20;
export const MAX_DESTINATIONS: u32 = 1 << 16;
export const MAX_DESTROY: u32 = 1 << 20;

export const HANDLE_INVALID: u64 = 0xFFFFFFFFFFFFFFFF;
/** Handle.id of a handle that has no ID (not live): never a valid ID, so 0 is an ID like any other. */
export const ID_NONE: u64 = HANDLE_INVALID;
export const ID_MANAGED: u64 = 1;
export const ID_REMOTE: u64 = 2;
export const ID_MAX: f64 = 9007199254740991; // 2^53 − 1
export const ID_SEQ_MAX: u64 = <u64>1 << 50;

/** Which argument an EINVAL/ENXIO/... refers to (ctx.errArg). */
export const ARG_NONE: u32 = 0;
export const ARG_DESTINATIONS: u32 = 1;
export const ARG_HANDLES: u32 = 2;
export const ARG_HANDLE: u32 = 3;
export const ARG_FLAGS: u32 = 4;
export const ARG_OFFSET: u32 = 5;
export const ARG_LIMITS: u32 = 6;
export const ARG_VECS: u32 = 7;
export const ARG_OBJECTS: u32 = 8;
export const ARG_PAYLOAD: u32 = 9;
export const ARG_USER: u32 = 10;
export const ARG_PEER: u32 = 11;
export const ARG_BROKEN: u32 = 12;

/** Message types in the receive record. */
export const MSG_DATA: u32 = 1;
export const MSG_NODE_DESTROY: u32 = 2;
export const MSG_NODE_RELEASE: u32 = 3;
export const MSG_FLAG_CONTINUE: u32 = 1;
/** Nothing else is ready after this message: until the wake word moves, recv finds nothing (ABI.md §5.5). */
export const MSG_FLAG_DRAINED: u32 = 2;

@unmanaged export class Peer {
  lock: u32;
  lockWaiters: u32;
  /** Link in the limbo list once retired (bus.ts, "Freeing peers"). */
  limbo: u32;
  /** Nodes this peer owns: they point at it, so it is retired only at 0. */
  pins: u32;
  /** Address of the wake word in the peer's slot (bus.ts). */
  wake: u32;
  slot: u32;
  serial: u32;
  flags: u32;
  refs: u32;
  user: u32;
  qHead: u32;
  qTail: u32;
  clock: u64;
  nextId: u64;
  seq: u32;
  seed: u32;
  idMap: u32; idCap: u32; idCount: u32;
  nodeMap: u32; nodeCap: u32; nodeCount: u32;
  sliceMap: u32; sliceCap: u32; sliceCount: u32;
  poolTlsf: u32;
  poolChunks: u32;
  poolBytes: u32;
  poolCache: u32;
  lim0: u32; lim1: u32; lim2: u32; lim3: u32;
  use0: u32; use1: u32; use2: u32; use3: u32;
  /**
   * Serial of the thread that last connected, adopted, received from or
   * waited on this peer (atomic; a hint, read by senders of host objects
   * that move between threads: record.ts).
   */
  receiver: u32;
  /** Lanes this peer sends on, and lanes into it (lane.ts). */
  nLanes: u32;
  nLanesIn: u32;
  /** Lane records taken off the inbox but left for after a transaction's cut, oldest first (lane.ts). */
  deferHead: u32;
  deferTail: u32;
  _l1: u64; _l2: u64;
  /**
   * Lane records pushed for this peer and not yet queued (lane.ts: a stack,
   * newest first; atomic). On a line of its own with `revoked`: senders
   * write it, and it is not the line of the lock.
   */
  inbox: u32;
  _l3: u32;
  /** Lane credit taken back and not yet taken off `use0`/`use2`, slices << 32 | bytes (atomic; lane_fold folds it in). */
  revoked: u64;
}

/** This thread (`c`) receives for `p` from now on: where a sender moves its host objects. */
// @ts-ignore: decorator
@inline export function peer_set_receiver(c: Ctx, p: Peer): void {
  // written only when it changes: a store on every recv would take the line from the senders that read it
  let at = changetype<usize>(p) + offsetof<Peer>("receiver");
  if (sync_load<u32>(at) != c.serial) sync_store<u32>(at, c.serial);
}

// @ts-ignore: decorator
@inline export function id_map(p: Peer): usize { return changetype<usize>(p) + offsetof<Peer>("idMap"); }
// @ts-ignore: decorator
@inline export function node_map(p: Peer): usize { return changetype<usize>(p) + offsetof<Peer>("nodeMap"); }
// @ts-ignore: decorator
@inline export function slice_map(p: Peer): usize { return changetype<usize>(p) + offsetof<Peer>("sliceMap"); }
// @ts-ignore: decorator
@inline export function peer_limits(p: Peer): usize { return changetype<usize>(p) + offsetof<Peer>("lim0"); }
// @ts-ignore: decorator
@inline export function peer_usage(p: Peer): usize { return changetype<usize>(p) + offsetof<Peer>("use0"); }
// @ts-ignore: decorator
@inline export function peer_user(p: Peer): User { return changetype<User>(p.user); }
// @ts-ignore: decorator
@inline export function ptr<T>(x: T): u32 { return <u32>changetype<usize>(x); }

/** The sleepers word (slot entry + 12): the count of sleepers, and WAKE_ARMED. */
export const WAKE_SLEEPERS: u32 = 0x7fff_ffff;
/**
 * Set by each sleeper before it looks a last time and sleeps; the first
 * sender to find it set takes it and notifies. So a burst of sends to a
 * sleeping peer notifies it once, not once per send until it has woken
 * (which on a busy machine takes many sends).
 */
export const WAKE_ARMED: u32 = 0x8000_0000;

/**
 * Bumps the wake word: the queue front may have become receivable. Sleepers
 * are notified when the call has dropped its locks (wake_flush), so that a
 * woken receiver does not at once sleep again on the lock the sender holds;
 * and only if one armed the word since the last notify (WAKE_ARMED).
 *
 * No wake-up is lost. A sleeper (1) reads the wake word, (2) counts itself
 * and arms, (3) looks a last time (ready), (4) sleeps only while the word
 * still holds what it read in (1). A send takes the arm before it bumps the
 * word. If it took an arm set in (2), its bump comes after (2), so after
 * (1): that sleeper does not sleep, or is notified. If it found the word
 * unarmed, any sleeper arming later reads the word in (1) either before the
 * bump (then (4) returns at once) or after it, and then sees the message
 * in (3), which was queued before the bump. That last step rests on the
 * peer's lock: this runs under the receiving peer's lock, after the entry
 * is linked, and ready() takes that lock (a look without it would need the
 * entry published before the load of the sleepers word). A lane send
 * (lane.ts) is that other case: it publishes its record with a
 * sequentially consistent compare-and-swap on the inbox before it loads the
 * sleepers word, and ready() takes the lock, whose holder loads the inbox
 * after the sleeper armed: one of the two sees the other's store.
 * tests/wake-model.mjs checks every interleaving.
 *
 * A later send from another thread finds the arm taken and does not notify:
 * the wake-up waits for this call to drop its locks (wake_flush): the end
 * of the call, or a lock retry (ls_retry flushes before it takes the locks
 * again), so at most a send's payload copy (made with the locks held).
 */
// @ts-ignore: decorator
@inline export function peer_wake(c: Ctx, p: Peer): void {
  wake_bump(c, <usize>p.wake);
}

/** peer_wake of the peer whose wake word is at `w` (a lane keeps it: its sends read no line of the receiver's record). */
export function wake_bump(c: Ctx, w: usize): void {
  let s = sync_load<u32>(w + 4);
  let notify = (s & WAKE_SLEEPERS) != 0 && (s & WAKE_ARMED) != 0 &&
    (sync_and<u32>(w + 4, ~WAKE_ARMED) & WAKE_ARMED) != 0;
  sync_add<u32>(w, 1);
  if (!notify) return;
  let n = c.nWake;
  let list = changetype<usize>(c) + offsetof<Ctx>("wake0");
  for (let i: u32 = 0; i < n; i++) if (load<u32>(list + (i << 2)) == <u32>w) return;
  if (n == CTX_WAKES) {
    sync_notify(w, u32.MAX_VALUE);
    return;
  }
  store<u32>(list + (n << 2), <u32>w);
  c.nWake = n + 1;
}

/** Notifies the sleepers peer_wake recorded; call with no lock held. */
export function wake_flush(c: Ctx): void {
  let list = changetype<usize>(c) + offsetof<Ctx>("wake0");
  for (let i: u32 = 0; i < c.nWake; i++) sync_notify(<usize>load<u32>(list + (i << 2)), u32.MAX_VALUE);
  c.nWake = 0;
}

// ---- errors and locks, for every operation -----------------------------------------

export function fail(c: Ctx, err: i32, arg: u32, index: u32): i32 {
  c.errArg = arg;
  c.errIndex = index;
  return -err;
}

/** Locks the owner of `n` for this call: 0, −ERETRY or −ESHUTDOWN (bus broken). */
export function need_owner(c: Ctx, n: Node): i32 {
  return need(c, changetype<Peer>(n.owner));
}

export function need(c: Ctx, p: Peer): i32 {
  let rc = ls_need(c, changetype<usize>(p));
  if (rc == NEED_BROKEN) return fail(c, ESHUTDOWN, ARG_BROKEN, 0);
  if (rc == NEED_NOMEM) return -ENOMEM;
  return rc;
}

// ---- peers --------------------------------------------------------------------------

/**
 * A new peer of `user`. The record is locked before it is published in its
 * slot, so a thread that finds it there (by guessing the reference) waits
 * until it is set up, and then sees a peer like any other.
 */
export function peer_new(c: Ctx, user: f64): i32 {
  if (!(user >= 0 && user <= 2147483647) || user != Math.floor(user)) return fail(c, EINVAL, ARG_USER, 0);
  let p = heap_calloc(<u32>offsetof<Peer>());
  if (!p) return -ENOMEM;
  lock_take(p, thread_tid);
  if (!misc_lock()) {
    heap_free(p);
    return fail(c, ESHUTDOWN, ARG_BROKEN, 0);
  }
  let r = root();
  let u = user_get(<u32>user);
  let slot: i32 = -1;
  if (u) {
    slot = slot_take(p);
    if (slot < 0) user_put(changetype<User>(u));
  }
  let serial = ++r.serial;
  if (slot >= 0) r.peers++;
  misc_unlock();
  if (slot < 0) {
    heap_free(p);
    return -ENOMEM;
  }
  let peer = changetype<Peer>(p);
  let uu = changetype<User>(u);
  peer.slot = <u32>slot;
  peer.wake = <u32>slot_wake(<u32>slot);
  peer.serial = serial;
  peer.refs = 1;
  peer.user = <u32>u;
  peer.nextId = 1;
  peer.lim0 = uu.lim0;
  peer.lim1 = uu.lim1;
  peer.lim2 = uu.lim2;
  peer.lim3 = uu.lim3;
  peer.receiver = c.serial;
  let gen = slot_gen(<u32>slot);
  lock_drop(p);
  let out = ctx_out(c);
  store<u32>(out, <u32>slot);
  store<u32>(out, gen, 4);
  return 0;
}

/** 0 if `p` is the peer (slot, gen) and connected; −EBADF, −ESHUTDOWN. Under p's lock. */
export function peer_check(p: Peer, slot: u32, gen: u32): i32 {
  if ((p.flags & PEER_FREED) || p.slot != slot || slot_gen(slot) != gen) return -EBADF;
  if (p.flags & PEER_DISCONNECTED) return -ESHUTDOWN;
  return 0;
}

/**
 * Drops one host reference; the last one disconnects and frees the peer.
 * 0 or −ERETRY (locks needed; nothing changed).
 */
export function peer_put(c: Ctx, p: Peer): i32 {
  let last = p.refs == 1;
  if (last && !(p.flags & PEER_DISCONNECTED)) {
    let rc = flush_need(c, p);
    if (rc) return rc;
  }
  p.refs--;
  if (!last) return 0;
  if (!(p.flags & PEER_DISCONNECTED)) peer_disconnect(c, p);
  p.flags |= PEER_FREED;
  // on a broken bus the record is left where it is rather than risk the lists
  if (misc_lock()) {
    slot_free(p.slot);
    root().peers--;
    user_put(peer_user(p));
    if (!p.pins) limbo_retire(changetype<usize>(p));
    misc_unlock();
  }
  return 0;
}

// ---- reset, query, disconnect -------------------------------------------------------

/** Sets limits (lims: f64 × 4, selected by flags) and flushes; 0 or -errno. */
export function peer_reset(c: Ctx, p: Peer, flags: u32, lims: usize): i32 {
  if (flags & ~(RESET_FLUSH | RESET_FLUSH_SEED | 0xF00)) return fail(c, EINVAL, ARG_FLAGS, 0);
  for (let r: u32 = 0; r < 4; r++) {
    if (!(flags & (RESET_LIMIT_SLICES << r))) continue;
    let v = load<f64>(lims + (<usize>r << 3));
    if (!(v >= 0 && v <= 4294967295) || v != Math.floor(v)) return fail(c, EINVAL, ARG_LIMITS, r);
  }
  if (flags & (RESET_FLUSH | RESET_FLUSH_SEED)) {
    let rc = flush_need(c, p);
    if (rc) return rc;
  }
  for (let r: u32 = 0; r < 4; r++) {
    if (flags & (RESET_LIMIT_SLICES << r)) store<u32>(peer_limits(p) + (r << 2), <u32>load<f64>(lims + (<usize>r << 3)));
  }
  // credit taken under the old limits goes back (lane.ts)
  let u = peer_user(p);
  if ((flags & 0xF00) && u.lanes) {
    user_lock(u);
    lanes_revoke(u);
    user_unlock(u);
  }
  if (flags & RESET_FLUSH) peer_flush(c, p);
  if (flags & RESET_FLUSH_SEED) seed_drop(c, p);
  return 0;
}

export function peer_query(c: Ctx, p: Peer): void {
  memory.copy(ctx_out(c), peer_limits(p), 16);
}

/**
 * Locks everything a flush touches: the owner of every node `p` has a handle
 * to (references, release notifications), and every holder of a node `p`
 * owns (destroy notifications).
 */
export function flush_need(c: Ctx, p: Peer): i32 {
  let m = node_map(p);
  let cap = map_capacity(m);
  for (let i: u32 = 0; i < cap; i++) {
    let hp = map_value_at(m, i);
    if (!hp) continue;
    let n = node_of(changetype<Handle>(hp));
    let rc = need_owner(c, n);
    if (rc) return rc;
    if (n.owner != ptr(p) || !node_live(n)) continue;
    let at = n.handles;
    while (at) {
      rc = need(c, changetype<Peer>(changetype<Handle>(at).holder));
      if (rc) return rc;
      at = changetype<Handle>(at).nodeNext;
    }
  }
  return 0;
}

/**
 * Destroys all nodes, releases all handles, drops the queue and frees every
 * received slice (the seed stays). Notifications it causes are one tx.
 * The caller has taken flush_need's locks.
 */
function peer_flush(c: Ctx, p: Peer): void {
  // the queue first: what it held in flight is dropped (and what lanes pushed, lane.ts)
  lane_settle(p);
  while (p.qHead) entry_drop(c, p, entry(p.qHead));
  tx_begin(c, p);
  let m = id_map(p);
  let cap = map_capacity(m);
  for (let i: u32 = 0; i < cap; i++) {
    let hp = map_value_at(m, i);
    if (!hp) continue;
    let h = changetype<Handle>(hp);
    if (handle_is_owner(h) && node_live(node_of(h))) node_destroy_stage(c, node_of(h));
  }
  // every user reference goes; seed references stay with the seed
  for (let i: u32 = 0; i < cap; ) {
    let hp = map_value_at(m, i);
    if (!hp || !changetype<Handle>(hp).uref) { i++; continue; }
    let h = changetype<Handle>(hp);
    let k = h.uref;
    h.uref = 0;
    node_ref(c, p, node_of(h), -<i32>k);
    if (!handle_live(h)) handle_die(h);
    // the map may have shifted an entry into slot i: look at it again
  }
  tx_commit(c);
  // notifications for handles that just went are news for nobody
  let e = p.qHead;
  while (e) {
    let next = entry(e).next;
    if (!entry_staged(entry(e)) && !entry_deliverable(entry(e))) entry_drop(c, p, entry(e));
    e = next;
  }
  // received slices (the queue holds none now: a queued message would be
  // received into a map that has just been cleared)
  assert(!p.qHead || entry_staged(entry(p.qHead)) || entry(p.qHead).kind != KIND_DATA, "flush left data queued");
  let sm = slice_map(p);
  let scap = map_capacity(sm);
  for (let i: u32 = 0; i < scap; i++) {
    let mp = map_value_at(sm, i);
    if (!mp) continue;
    slice_free(p, changetype<Message>(mp));
  }
  map_clear(sm);
}

/** Full flush and seed drop; every later call fails with ESHUTDOWN. */
export function peer_disconnect(c: Ctx, p: Peer): void {
  peer_flush(c, p);
  seed_drop(c, p);
  p.flags |= PEER_DISCONNECTED;
  // nothing can reach this peer any more: give its memory back
  let e = p.qHead;
  while (e) {
    let next = entry(e).next;
    entry_drop(c, p, entry(e));
    e = next;
  }
  lane_fold(p);
  assert(map_count(node_map(p)) == 0 && map_count(slice_map(p)) == 0 && !p.seed, "a disconnected peer keeps handles or slices");
  assert((p.use0 | p.use1 | p.use2 | p.use3) == 0, "a disconnected peer is still charged");
  map_clear(id_map(p));
  map_clear(node_map(p));
  pool_destroy(p);
  peer_wake(c, p);
}

/** Statistics for tests and benchmarks: writes counters to ctx.out. */
export function peer_stats(c: Ctx, p: Peer): void {
  let o = ctx_out(c);
  // credit lanes took in advance is charged, but to no message; what a call
  // took back while this one held the lock is still in `revoked` (lane.ts)
  // (the usage and the credit read together: taking credit back needs the user's lock)
  let u = peer_user(p);
  let locked = u.lanes != 0;
  if (locked) user_lock(u);
  lane_fold(p);
  usage_of_messages(o, peer_usage(p), u, changetype<usize>(p));
  if (locked) user_unlock(u);
  store<u32>(o, p.poolBytes, 16);
  store<u32>(o, map_count(id_map(p)), 20);
  store<u32>(o, map_count(node_map(p)), 24);
  store<u32>(o, map_count(slice_map(p)), 28);
}

/** 1 if recv would return a message now, else 0. */
export function peer_ready(c: Ctx, p: Peer): i32 {
  let f = queue_settle(c, p);
  return f < 0 ? f : f ? 1 : 0;
}
