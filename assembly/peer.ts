/**
 * DOC: peer — endpoints and the operations on them
 *
 * A Peer is an endpoint: a queue (queue.ts), a pool (pool.ts), a table of
 * handles (handle.ts) keyed two ways, limits and usage (user.ts), an optional
 * seed. It is named across the ABI by a slot (bus.ts); `refs` counts the
 * host references (connect, adopt) and the peer is freed when the last one is
 * closed, disconnecting it first if that has not happened.
 *
 * Every operation validates all of its input before it changes anything, so
 * a failing call leaves the bus as it was; where a step can fail late
 * (quota, memory) the steps before it are undone. Lazily created nodes
 * (caller-chosen IDs) are undone too.
 *
 * Peer layout: see the class below; maps are three u32s each (map.ts);
 * limits and usage are four u32s each in the order slices, handles, bytes,
 * objects (user.ts).
 *
 * Locking: one lock per peer (`lock`, lock.ts) guards all of the peer's
 * state: queue, clock, pool, slice map, usage, limits, ID and node maps,
 * seed, and its handle records' counters. A node's handle list, references
 * and release entry are guarded by its owner's lock. Each operation locks
 * every peer it changes through a lock set (lockset.ts) before it changes
 * anything, and re-validates after a retry; a send keeps its locks from
 * send_begin until send_commit, so its entries are never seen half-made and
 * a multicast commits on all its receivers at once.
 */

import { root, heap_calloc, heap_free, slot_take, slot_free, slot_gen, slot_wake, misc_lock, misc_unlock, thread_tid, limbo_retire } from "./bus";
import { ls_need, ERETRY, NEED_BROKEN, NEED_NOMEM } from "./lockset";
import { lock_take, lock_drop } from "./lock";
import { map_get, map_insert, map_remove, map_reserve, map_count, map_capacity, map_value_at, map_clear } from "./map";
import { Entry, entry, queue_unlink, queue_front, clock_sync, entry_queued, entry_staged, key_before, KIND_DATA, KIND_DESTROY, KIND_RELEASE } from "./queue";
import { Node, Handle, NODE_ALLOC, HANDLE_ALLOC, NODE_DESTROYED, HANDLE_MARK, HANDLE_CREATED, node_of, node_live, handle_live, handle_is_owner, node_link_handle, node_unlink_handle, node_release_entry, node_of_release_entry, handle_destroy_entry, handle_of_destroy_entry } from "./handle";
import { Message, MESSAGE_SIZE, message_payload, message_of_payload, message_cost, message_handles, message_objects, slice_bytes, SLICE_MAX, pool_alloc, pool_free, pool_destroy } from "./pool";
import { User, user_get, user_put, quota_try_charge, quota_charge_send, quota_replace, quota_restore, quota_uncharge, quota_adjust, quota_unshare, RES_HANDLES } from "./user";
import { record_bytes, records_taking_room, MAX_TAKING } from "./record";
import { Ctx, CTX_WAKES, ctx_out, ctx_cost, tx_begin, tx_stage, tx_unstage, tx_commit, tx_queue } from "./tx";
import { EPERM, EBADF, ENXIO, EAGAIN, ENOMEM, EBUSY, EINVAL, ERANGE, EREMOTE, ENOTUNIQ, EMSGSIZE, ESHUTDOWN, EHOSTUNREACH, ESTALE, EDQUOT } from "./errno";

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
const ID_MAX: f64 = 9007199254740991; // 2^53 − 1
const ID_SEQ_MAX: u64 = <u64>1 << 50;

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

// @ts-ignore: decorator
@external("env", "objects_drop")
declare function host_objects_drop(slots: usize, count: u32): void;

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
}

/** This thread (`c`) receives for `p` from now on: where a sender moves its host objects. */
// @ts-ignore: decorator
@inline export function peer_set_receiver(c: Ctx, p: Peer): void {
  // written only when it changes: a store on every recv would take the line from the senders that read it
  let at = changetype<usize>(p) + offsetof<Peer>("receiver");
  if (atomic.load<u32>(at) != c.serial) atomic.store<u32>(at, c.serial);
}

// @ts-ignore: decorator
@inline function id_map(p: Peer): usize { return changetype<usize>(p) + offsetof<Peer>("idMap"); }
// @ts-ignore: decorator
@inline function node_map(p: Peer): usize { return changetype<usize>(p) + offsetof<Peer>("nodeMap"); }
// @ts-ignore: decorator
@inline function slice_map(p: Peer): usize { return changetype<usize>(p) + offsetof<Peer>("sliceMap"); }
// @ts-ignore: decorator
@inline export function peer_limits(p: Peer): usize { return changetype<usize>(p) + offsetof<Peer>("lim0"); }
// @ts-ignore: decorator
@inline export function peer_usage(p: Peer): usize { return changetype<usize>(p) + offsetof<Peer>("use0"); }
// @ts-ignore: decorator
@inline function peer_user(p: Peer): User { return changetype<User>(p.user); }
// @ts-ignore: decorator
@inline function ptr<T>(x: T): u32 { return <u32>changetype<usize>(x); }

/**
 * Bumps the wake word: the queue front may have become receivable. Sleepers
 * are notified when the call has dropped its locks (wake_flush), so that a
 * woken receiver does not at once sleep again on the lock the sender holds.
 */
export function peer_wake(c: Ctx, p: Peer): void {
  let w = <usize>p.wake;
  atomic.add<u32>(w, 1);
  if (!atomic.load<u32>(w + 4)) return;
  let n = c.nWake;
  let list = changetype<usize>(c) + offsetof<Ctx>("wake0");
  for (let i: u32 = 0; i < n; i++) if (load<u32>(list + (i << 2)) == <u32>w) return;
  if (n == CTX_WAKES) {
    atomic.notify(w, u32.MAX_VALUE);
    return;
  }
  store<u32>(list + (n << 2), <u32>w);
  c.nWake = n + 1;
}

/** Notifies the sleepers peer_wake recorded; call with no lock held. */
export function wake_flush(c: Ctx): void {
  let list = changetype<usize>(c) + offsetof<Ctx>("wake0");
  for (let i: u32 = 0; i < c.nWake; i++) atomic.notify(<usize>load<u32>(list + (i << 2)), u32.MAX_VALUE);
  c.nWake = 0;
}

function fail(c: Ctx, err: i32, arg: u32, index: u32): i32 {
  c.errArg = arg;
  c.errIndex = index;
  return -err;
}

/** A handle ID from the host (a JS number), or HANDLE_INVALID if not one. */
function id_from(x: f64): u64 {
  if (!(x >= 0 && x <= ID_MAX) || x != Math.floor(x)) return HANDLE_INVALID;
  return <u64>x;
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

/** Frees a node nothing refers to any more; its owner may go once no node points at it. Under the owner's lock. */
function node_free(n: Node): void {
  let o = changetype<Peer>(n.owner);
  heap_free(changetype<usize>(n));
  if (--o.pins || !(o.flags & PEER_FREED)) return;
  if (misc_lock()) {
    limbo_retire(changetype<usize>(o));
    misc_unlock();
  }
}

// ---- nodes and handles -------------------------------------------------------------

/** The quota cost of one handle (slices 0, handles 1, bytes 0, objects 0), in ctx scratch. */
function cost_one_handle(c: Ctx): usize {
  let one = ctx_cost(c);
  store<u64>(one, <u64>1 << 32);
  store<u64>(one, 0, 8);
  return one;
}

/** Creates a node for caller-chosen `id`; returns its owner handle or -errno. */
function node_create(c: Ctx, p: Peer, id: u64): i32 {
  let rc = quota_try_charge(peer_limits(p), peer_usage(p), peer_user(p), cost_one_handle(c));
  if (rc) return rc;
  let np: usize = 0, hp: usize = 0;
  if (map_reserve(node_map(p), map_count(node_map(p)) + 1) && map_reserve(id_map(p), map_count(node_map(p)) + 1)) {
    np = heap_calloc(NODE_ALLOC);
    hp = heap_calloc(HANDLE_ALLOC);
  }
  if (!np || !hp) {
    if (np) heap_free(np);
    if (hp) heap_free(hp);
    quota_adjust(peer_usage(p), peer_user(p), RES_HANDLES, -1);
    return -ENOMEM;
  }
  let n = changetype<Node>(np);
  let h = changetype<Handle>(hp);
  n.owner = ptr(p);
  p.pins++;
  n.ownerHandle = <u32>hp;
  n.refs = 1;
  h.node = <u32>np;
  h.holder = ptr(p);
  h.id = id;
  h.uref = 1;
  h.flags = HANDLE_CREATED;
  node_link_handle(n, h);
  map_insert(node_map(p), np, <u32>hp);
  map_insert(id_map(p), id, <u32>hp);
  h._pad = c.created;
  c.created = <u32>hp;
  return <i32>hp;
}

/** Keeps the nodes the current call created. */
function created_keep(c: Ctx): void {
  let p = c.created;
  while (p) {
    let h = changetype<Handle>(p);
    h.flags &= ~HANDLE_CREATED;
    p = h._pad;
    h._pad = 0;
  }
  c.created = 0;
}

/** Undoes the nodes the current call created (the call failed). */
function created_undo(c: Ctx): void {
  let p = c.created;
  c.created = 0;
  while (p) {
    let h = changetype<Handle>(p);
    let next = h._pad;
    let q = changetype<Peer>(h.holder);
    let n = node_of(h);
    let re = node_release_entry(n);
    if (entry_queued(re)) queue_unlink(q, re);
    map_remove(id_map(q), h.id);
    map_remove(node_map(q), <u64>h.node);
    quota_adjust(peer_usage(q), peer_user(q), RES_HANDLES, -1);
    node_free(n);
    heap_free(p);
    p = next;
  }
}

/**
 * Resolves an ID of the caller to its handle, creating a node for an unknown
 * caller-chosen ID. Returns the handle or -errno.
 */
function handle_resolve(c: Ctx, p: Peer, x: f64, arg: u32, index: u32): i32 {
  let id = id_from(x);
  if (id == HANDLE_INVALID) return fail(c, EINVAL, arg, index);
  let h = map_get(id_map(p), id);
  if (h) return <i32>h;
  if (id & (ID_MANAGED | ID_REMOTE)) return fail(c, ENXIO, arg, index);
  let rc = node_create(c, p, id);
  if (rc < 0) return fail(c, -rc, arg, index);
  return rc;
}

/** The handle of `q` for node `n`, made (without an ID) if it has none; 0 = ENOMEM. */
function handle_get_or_make(q: Peer, n: Node): Handle | null {
  let h = map_get(node_map(q), changetype<usize>(n));
  if (h) return changetype<Handle>(h);
  let count = map_count(node_map(q)) + 1;
  if (!map_reserve(node_map(q), count) || !map_reserve(id_map(q), count)) return null;
  let hp = heap_calloc(HANDLE_ALLOC);
  if (!hp) return null;
  let nh = changetype<Handle>(hp);
  nh.node = ptr(n);
  nh.holder = ptr(q);
  nh.id = ID_NONE;
  node_link_handle(n, nh);
  map_insert(node_map(q), changetype<usize>(n), <u32>hp);
  return nh;
}

/** Gives a handle without an ID its next core-assigned ID. */
function handle_assign_id(q: Peer, h: Handle): void {
  let remote: u64 = node_of(h).owner == ptr(q) ? 0 : ID_REMOTE;
  h.id = (q.nextId++ << 3) | ID_MANAGED | remote;
  map_insert(id_map(q), h.id, ptr(h));
}

/** Frees a handle object nothing points at any more (and its node, if last). */
function handle_maybe_free(h: Handle): void {
  assert(<i32>h.uref >= 0 && <i32>h.inflight >= 0 && <i32>h.msgs >= 0, "handle counter below zero");
  if ((h.uref | h.seedRefs | h.inflight | h.msgs) != 0) return;
  if (entry_queued(handle_destroy_entry(h))) return;
  let n = node_of(h);
  let q = changetype<Peer>(h.holder);
  node_unlink_handle(n, h);
  map_remove(node_map(q), <u64>h.node);
  if (n.ownerHandle == ptr(h)) {
    n.ownerHandle = 0;
    let re = node_release_entry(n);
    if (entry_queued(re)) queue_unlink(changetype<Peer>(re.queue), re);
  }
  heap_free(changetype<usize>(h));
  if (!n.handles) node_free(n);
}

/** A handle stopped being live: its ID goes, its quota charge is returned. */
function handle_die(h: Handle): void {
  assert(h.id != ID_NONE && !handle_live(h), "a handle died twice");
  let q = changetype<Peer>(h.holder);
  map_remove(id_map(q), h.id);
  h.id = ID_NONE;
  quota_adjust(peer_usage(q), peer_user(q), RES_HANDLES, -1);
  handle_maybe_free(h);
}

/** Adds `delta` to a node's references; queues or withdraws node-release. */
function node_ref(c: Ctx, actor: Peer, n: Node, delta: i32): void {
  let old = n.refs;
  assert(delta >= 0 || old >= <u32>(-delta), "node references below zero");
  n.refs = old + <u32>delta;
  if (!node_live(n)) return;
  let e = node_release_entry(n);
  if (old > 1 && n.refs == 1) {
    if (!entry_queued(e)) {
      e.kind = KIND_RELEASE;
      tx_queue(c, actor, changetype<Peer>(n.owner), e);
    }
  } else if (old == 1 && n.refs > 1 && entry_queued(e)) {
    if (c.open && entry_staged(e)) tx_unstage(c, e);
    else queue_unlink(changetype<Peer>(e.queue), e);
  }
}

/** Drops one user reference (the caller checked uref > 0). */
function handle_unref(c: Ctx, actor: Peer, h: Handle): void {
  h.uref--;
  let n = node_of(h);
  node_ref(c, actor, n, -1);
  if (!handle_live(h)) handle_die(h);
}

/** Stages node-destroy for every holder of `n` (owner included) in c's tx. */
function node_destroy_stage(c: Ctx, n: Node): void {
  n.flags |= NODE_DESTROYED;
  let p = n.handles;
  while (p) {
    let h = changetype<Handle>(p);
    p = h.nodeNext;
    if (!handle_live(h) && !h.inflight) continue;
    let e = handle_destroy_entry(h);
    e.kind = KIND_DESTROY;
    tx_stage(c, changetype<Peer>(h.holder), e);
  }
}

// ---- messages -----------------------------------------------------------------------

/** Drops a message that will never be received: everything it held goes. */
function message_drop(c: Ctx, actor: Peer, q: Peer, m: Message): void {
  let hs = message_handles(m);
  for (let i: u32 = 0; i < m.nHandles; i++) {
    let h = changetype<Handle>(load<u32>(hs + (<usize>i << 3)));
    h.inflight--;
    node_ref(c, actor, node_of(h), -1);
    handle_maybe_free(h);
  }
  if (m.nObjects) objects_drop(message_objects(m), m.nObjects);
  let d = changetype<Handle>(m.dest);
  d.msgs--;
  handle_maybe_free(d);
  quota_unshare(m.share, message_cost(m));
  quota_uncharge(peer_usage(q), peer_user(q), message_cost(m));
  pool_free(q, m);
}

/** True if a queued entry would be delivered now (else it is dropped). */
function entry_deliverable(e: Entry): bool {
  if (e.kind == KIND_DATA) {
    let m = changetype<Message>(e);
    let d = changetype<Handle>(m.dest);
    if (!handle_live(d)) return false;
    let n = node_of(d);
    return node_live(n) || !key_before(n.destroyTs, n.destroySender, n.destroySeq, m.ts, m.sender, m.seq);
  }
  if (e.kind == KIND_DESTROY) return handle_live(handle_of_destroy_entry(e));
  let n = node_of_release_entry(e);
  return n.ownerHandle != 0 && handle_live(changetype<Handle>(n.ownerHandle));
}

/** Unlinks and disposes of an entry that is not delivered. */
function entry_drop(c: Ctx, q: Peer, e: Entry): void {
  queue_unlink(q, e);
  if (e.kind == KIND_DATA) message_drop(c, q, q, changetype<Message>(e));
  else if (e.kind == KIND_DESTROY) handle_maybe_free(handle_of_destroy_entry(e));
}

/**
 * Drops undeliverable entries from the front; returns the front (committed),
 * 0 if none, or −ERETRY / −ESHUTDOWN if it needs a lock it could not take.
 * The front it returns has its locks taken (need_entry).
 */
function queue_settle(c: Ctx, q: Peer): i32 {
  while (true) {
    let f = queue_front(q);
    if (!f) return 0;
    let rc = need_entry(c, entry(f));
    if (rc) return rc;
    if (entry_deliverable(entry(f))) return <i32>f;
    entry_drop(c, q, entry(f));
  }
}

// ---- send ----------------------------------------------------------------------------

/**
 * Stages a send: validates everything, charges every receiver, allocates one
 * slice per delivered destination and stages its entry. The host then copies
 * the payload to the slice addresses written to `out` and calls send_commit.
 *
 * dsts: f64 × nDsts, handles: f64 × nHandles (overwritten with handle
 * pointers), objs: u32 × nObjs, out: (i32 error, u32 payload address) ×
 * nDsts. Returns the number of slices, or -errno (nothing staged).
 */
export function peer_send_begin(c: Ctx, p: Peer, flags: u32, dsts: usize, nDsts: u32, nVecs: u32, size: u32,
                                hs: usize, nHandles: u32, objs: usize, nObjs: u32, out: usize): i32 {
  c.created = 0;
  // the resolved handles go to the u32 array after the IDs (the IDs stay, for a retry)
  let hr = hs + (<usize>nHandles << 3);
  if (flags & ~(SEND_CONTINUE | SEND_SEED)) return fail(c, EINVAL, ARG_FLAGS, 0);
  if (nDsts > MAX_DESTINATIONS) return fail(c, EMSGSIZE, ARG_DESTINATIONS, 0);
  if (nVecs > MAX_VECS) return fail(c, EMSGSIZE, ARG_VECS, 0);
  if (nObjs > MAX_OBJECTS) return fail(c, EMSGSIZE, ARG_OBJECTS, 0);
  if (nHandles > MAX_HANDLES) return fail(c, EMSGSIZE, ARG_HANDLES, 0);
  let bytes64 = slice_bytes(size, nHandles, nObjs);
  if (bytes64 > SLICE_MAX) return fail(c, EMSGSIZE, ARG_PAYLOAD, 0);
  let bytes = <u32>bytes64;
  // what each receiver is charged: the slice and the objects' records
  let charged64 = bytes64 + record_bytes(objs, nObjs);
  if (charged64 > <u64>u32.MAX_VALUE) return fail(c, EMSGSIZE, ARG_OBJECTS, 0);
  let charged = <u32>charged64;
  if (flags & SEND_SEED) {
    if (nDsts || (flags & SEND_CONTINUE)) return fail(c, EINVAL, ARG_FLAGS, 0);
    return seed_set(c, p, size, bytes, charged, hs, hr, nHandles, objs, nObjs, out);
  }
  if (nDsts == 1 && nHandles == 0 && nObjs == 0 && flags == 0) return send_unicast(c, p, load<f64>(dsts), size, bytes, out);
  // resolve destinations and attached handles (creating lazy nodes)
  let rc: i32 = 0;
  let i: u32 = 0;
  for (; i < nDsts; i++) {
    rc = handle_resolve(c, p, load<f64>(dsts + (<usize>i << 3)), ARG_DESTINATIONS, i);
    if (rc < 0) break;
    let h = changetype<Handle>(<usize>rc);
    if (h.flags & HANDLE_MARK) { rc = fail(c, ENOTUNIQ, ARG_DESTINATIONS, i); break; }
    h.flags |= HANDLE_MARK;
    store<u32>(out + (<usize>i << 3), 0);
    store<u32>(out + (<usize>i << 3), <u32>rc, 4);
  }
  let marked = i;
  if (rc >= 0) {
    for (let j: u32 = 0; j < nHandles; j++) {
      rc = handle_resolve(c, p, load<f64>(hs + (<usize>j << 3)), ARG_HANDLES, j);
      if (rc < 0) break;
      store<u32>(hr + (<usize>j << 2), <u32>rc);
    }
  }
  // lock every receiver and the owner of every attached handle's node
  if (rc >= 0) {
    for (i = 0; i < nDsts && rc >= 0; i++) {
      rc = need_owner(c, node_of(changetype<Handle>(load<u32>(out + (<usize>i << 3), 4))));
    }
    for (let j: u32 = 0; j < nHandles && rc >= 0; j++) {
      rc = need_owner(c, node_of(changetype<Handle>(load<u32>(hr + (<usize>j << 2)))));
    }
  }
  // a message no receiver could ever hold fails the whole call
  if (rc >= 0) {
    for (i = 0; i < nDsts; i++) {
      let n = node_of(changetype<Handle>(load<u32>(out + (<usize>i << 3), 4)));
      if (node_live(n) && charged > changetype<Peer>(n.owner).lim2) {
        rc = fail(c, EMSGSIZE, ARG_PAYLOAD, i);
        break;
      }
    }
  }
  for (i = 0; i < marked; i++) {
    changetype<Handle>(load<u32>(out + (<usize>i << 3), 4)).flags &= ~HANDLE_MARK;
  }
  if (rc < 0) {
    created_undo(c);
    return rc;
  }
  tx_begin(c, p);
  let sent: i32 = 0;
  let first: i32 = 0;
  for (i = 0; i < nDsts; i++) {
    let o = out + (<usize>i << 3);
    let err = send_stage(c, p, changetype<Handle>(load<u32>(o, 4)), size, bytes, charged, hr, nHandles, objs, nObjs, o);
    if (err == -ENOMEM) { first = err; sent = 0; break; }
    store<i32>(o, -err);
    if (err) {
      store<u32>(o, 0, 4);
      if (!first) { first = err; c.errArg = ARG_DESTINATIONS; c.errIndex = i; }
      if (!(flags & SEND_CONTINUE)) break;
    } else {
      sent++;
    }
  }
  if (first && (first == -ENOMEM || !(flags & SEND_CONTINUE))) {
    send_abort(c);
    created_undo(c);
    return first;
  }
  // the message now holds its handles: count them as references
  for (let j: u32 = 0; j < nHandles; j++) {
    let h = changetype<Handle>(load<u32>(hr + (<usize>j << 2)));
    if (sent) node_ref(c, p, node_of(h), sent);
  }
  // lazily created nodes are kept by send_commit, undone by send_cancel
  return sent;
}

/**
 * peer_send_begin's common case, the same steps without the loops: one
 * destination, no attached handles or objects, no flags (about 10% of a
 * send, measured with the exports called directly).
 */
function send_unicast(c: Ctx, p: Peer, x: f64, size: u32, bytes: u32, out: usize): i32 {
  let rc = handle_resolve(c, p, x, ARG_DESTINATIONS, 0);
  if (rc < 0) return rc;
  let dh = changetype<Handle>(<usize>rc);
  let n = node_of(dh);
  rc = need_owner(c, n);
  if (rc == 0 && node_live(n) && <u64>bytes > <u64>changetype<Peer>(n.owner).lim2) rc = fail(c, EMSGSIZE, ARG_PAYLOAD, 0);
  if (rc < 0) {
    created_undo(c);
    return rc;
  }
  tx_begin(c, p);
  let err = send_stage(c, p, dh, size, bytes, bytes, 0, 0, 0, 0, out);
  if (err) {
    if (err != -ENOMEM) {
      store<i32>(out, -err);
      store<u32>(out, 0, 4);
      c.errArg = ARG_DESTINATIONS;
      c.errIndex = 0;
    }
    send_abort(c);
    created_undo(c);
    return err;
  }
  store<u32>(out, 0);
  return 1;
}

/** Stages the message for one destination; 0 or -errno (undone on error). */
function send_stage(c: Ctx, p: Peer, dh: Handle, size: u32, bytes: u32, charged: u32, hr: usize, nHandles: u32,
                    objs: usize, nObjs: u32, o: usize): i32 {
  let n = node_of(dh);
  if (!node_live(n)) return -EHOSTUNREACH;
  let q = changetype<Peer>(n.owner);
  let cost = ctx_cost(c);
  store<u32>(cost, 1);
  store<u32>(cost, nHandles, 4);
  store<u32>(cost, charged, 8);
  store<u32>(cost, nObjs, 12);
  let share = quota_charge_send(peer_limits(q), peer_usage(q), peer_user(q), peer_user(p).id, cost);
  if (share < 0) return share;
  if (!map_reserve(slice_map(q), q.use0)) return send_nomem(q, <usize>share, cost, hr, 0);
  for (let j: u32 = 0; j < nHandles; j++) {
    let h = changetype<Handle>(load<u32>(hr + (<usize>j << 2)));
    if (!handle_get_or_make(q, node_of(h))) return send_nomem(q, <usize>share, cost, hr, j);
  }
  let m = pool_alloc(q, bytes);
  if (!m) return send_nomem(q, <usize>share, cost, hr, nHandles);
  let mp = changetype<usize>(m);
  m.state = 0;
  m.txNext = 0;
  m.kind = KIND_DATA;
  m.dest = n.ownerHandle;
  m.size = size;
  m.nHandles = nHandles;
  m.nObjects = nObjs;
  m.share = <u32>share;
  memory.copy(message_cost(m), cost, 16);
  let payload = message_payload(m);
  let padded = (<usize>size + 7) & ~7;
  if (padded != <usize>size) memory.fill(payload + size, 0, padded - size);
  let slots = payload + padded;
  for (let j: u32 = 0; j < nHandles; j++) {
    let h = changetype<Handle>(load<u32>(hr + (<usize>j << 2)));
    let rh = changetype<Handle>(map_get(node_map(q), <u64>h.node));
    rh.inflight++;
    store<u64>(slots + (<usize>j << 3), <u64>ptr(rh));
  }
  let os = slots + (<usize>nHandles << 3);
  if (nObjs) {
    memory.copy(os, objs, <usize>nObjs << 2);
    if (nObjs & 1) store<u32>(os + (<usize>nObjs << 2), 0);
  }
  changetype<Handle>(m.dest).msgs++;
  tx_stage(c, q, m);
  store<u32>(o, <u32>payload, 4);
  return 0;
}

/**
 * The receiving thread (Peer.receiver) of the staged message whose payload
 * is at `payload` (an address send_begin wrote to `out`). Only between
 * send_begin and send_commit/send_cancel, while the receiver is locked.
 */
export function staged_receiver(payload: usize): u32 {
  let m = message_of_payload(payload);
  let q = changetype<Peer>(node_of(changetype<Handle>(m.dest)).owner);
  return atomic.load<u32>(changetype<usize>(q) + offsetof<Peer>("receiver"));
}

/** Undoes a destination's charge and the receiver handles made for it. */
function send_nomem(q: Peer, share: usize, cost: usize, hr: usize, count: u32): i32 {
  for (let j: u32 = 0; j < count; j++) {
    let h = changetype<Handle>(load<u32>(hr + (<usize>j << 2)));
    let rh = map_get(node_map(q), <u64>h.node);
    if (rh) handle_maybe_free(changetype<Handle>(rh));
  }
  quota_unshare(share, cost);
  quota_uncharge(peer_usage(q), peer_user(q), cost);
  return -ENOMEM;
}

/** Locks the owner of `n` for this call: 0, −ERETRY or −ESHUTDOWN (bus broken). */
function need_owner(c: Ctx, n: Node): i32 {
  return need(c, changetype<Peer>(n.owner));
}

function need(c: Ctx, p: Peer): i32 {
  let rc = ls_need(c, changetype<usize>(p));
  if (rc == NEED_BROKEN) return fail(c, ESHUTDOWN, ARG_BROKEN, 0);
  if (rc == NEED_NOMEM) return -ENOMEM;
  return rc;
}

/** Locks the owners of the nodes a queued entry refers to. */
function need_entry(c: Ctx, e: Entry): i32 {
  if (e.kind == KIND_DATA) {
    let m = changetype<Message>(e);
    let hs = message_handles(m);
    for (let j: u32 = 0; j < m.nHandles; j++) {
      let rc = need_owner(c, node_of(changetype<Handle>(load<u32>(hs + (<usize>j << 3)))));
      if (rc) return rc;
    }
    return 0;
  }
  if (e.kind == KIND_DESTROY) return need_owner(c, node_of(handle_of_destroy_entry(e)));
  return 0;
}

/** Takes back every staged message of the current send. */
function send_abort(c: Ctx): void {
  while (c.head) {
    let m = changetype<Message>(c.head);
    tx_unstage(c, m);
    let q = changetype<Peer>(changetype<Handle>(m.dest).holder);
    let hs = message_handles(m);
    for (let j: u32 = 0; j < m.nHandles; j++) {
      let rh = changetype<Handle>(load<u32>(hs + (<usize>j << 3)));
      rh.inflight--;
      handle_maybe_free(rh);
    }
    changetype<Handle>(m.dest).msgs--;
    quota_unshare(m.share, message_cost(m));
    quota_uncharge(peer_usage(q), peer_user(q), message_cost(m));
    pool_free(q, m);
  }
  c.open = 0;
}

/** Commits the staged send: every slice now holds its payload. */
export function peer_send_commit(c: Ctx): void {
  if (c.open) tx_commit(c);
  created_keep(c);
}

/** Takes back a staged send whose payload could not be copied. */
export function peer_send_cancel(c: Ctx): void {
  if (!c.open) return;
  let head = c.head;
  // release the references the message took on its handles
  if (head) {
    let m = changetype<Message>(head);
    let hs = message_handles(m);
    let actor = changetype<Peer>(c.actor);
    let count: u32 = 0;
    let p = head;
    while (p) { count++; p = entry(p).txNext; }
    c.open = 0;
    for (let j: u32 = 0; j < m.nHandles; j++) {
      let rh = changetype<Handle>(load<u32>(hs + (<usize>j << 3)));
      node_ref(c, actor, node_of(rh), -<i32>count);
    }
    c.open = 1;
  }
  send_abort(c);
  created_undo(c);
}

// ---- seed -----------------------------------------------------------------------------

function seed_set(c: Ctx, p: Peer, size: u32, bytes: u32, charged: u32, hs: usize, hr: usize, nHandles: u32,
                  objs: usize, nObjs: u32, out: usize): i32 {
  let rc: i32 = 0;
  for (let j: u32 = 0; j < nHandles; j++) {
    rc = handle_resolve(c, p, load<f64>(hs + (<usize>j << 3)), ARG_HANDLES, j);
    if (rc < 0) { created_undo(c); return rc; }
    store<u32>(hr + (<usize>j << 2), <u32>rc);
  }
  if (charged > p.lim2) { created_undo(c); return fail(c, EMSGSIZE, ARG_PAYLOAD, 0); }
  // the references the new seed takes and the old one drops: lock their owners
  for (let j: u32 = 0; j < nHandles && rc >= 0; j++) {
    rc = need_owner(c, node_of(changetype<Handle>(load<u32>(hr + (<usize>j << 2)))));
  }
  if (rc >= 0) rc = seed_need(c, p);
  if (rc < 0) { created_undo(c); return rc; }
  let old = p.seed ? changetype<Message>(p.seed) : null;
  let cost = ctx_cost(c);
  store<u32>(cost, 1);
  store<u32>(cost, 0, 4);
  store<u32>(cost, charged, 8);
  store<u32>(cost, nObjs, 12);
  // the new seed replaces the old: the old one's charge does not count against it
  rc = quota_replace(peer_limits(p), peer_usage(p), peer_user(p), old ? message_cost(old) : 0, cost);
  if (rc) { created_undo(c); return fail(c, -rc, ARG_PAYLOAD, 0); }
  let m = pool_alloc(p, bytes);
  if (!m) {
    quota_uncharge(peer_usage(p), peer_user(p), cost);
    if (old) quota_restore(peer_usage(p), peer_user(p), message_cost(old));
    created_undo(c);
    return fail(c, ENOMEM, ARG_PAYLOAD, 0);
  }
  let s = changetype<Message>(changetype<usize>(m));
  let mp = changetype<usize>(s);
  memory.fill(mp, 0, MESSAGE_SIZE);
  s.kind = KIND_DATA;
  s.size = size;
  s.nHandles = nHandles;
  s.nObjects = nObjs;
  memory.copy(message_cost(s), cost, 16);
  let payload = message_payload(s);
  let padded = (<usize>size + 7) & ~7;
  if (padded != <usize>size) memory.fill(payload + size, 0, padded - size);
  let slots = payload + padded;
  for (let j: u32 = 0; j < nHandles; j++) {
    let h = changetype<Handle>(load<u32>(hr + (<usize>j << 2)));
    h.seedRefs++;
    node_ref(c, p, node_of(h), 1);
    store<u64>(slots + (<usize>j << 3), h.id);
  }
  let os = slots + (<usize>nHandles << 3);
  if (nObjs) {
    memory.copy(os, objs, <usize>nObjs << 2);
    if (nObjs & 1) store<u32>(os + (<usize>nObjs << 2), 0);
  }
  created_keep(c);
  seed_drop(c, p, false);
  p.seed = <u32>mp;
  store<i32>(out, 0);
  store<u32>(out, <u32>payload, 4);
  return 1;
}

/** Locks the owners of the nodes the seed holds references to. */
function seed_need(c: Ctx, p: Peer): i32 {
  if (!p.seed) return 0;
  let s = changetype<Message>(p.seed);
  let slots = message_handles(s);
  for (let j: u32 = 0; j < s.nHandles; j++) {
    let h = changetype<Handle>(map_get(id_map(p), load<u64>(slots + (<usize>j << 3))));
    let rc = need_owner(c, node_of(h));
    if (rc) return rc;
  }
  return 0;
}

/** Drops the seed; `uncharge` false when its charge was already taken off. */
function seed_drop(c: Ctx, p: Peer, uncharge: bool = true): void {
  if (!p.seed) return;
  let s = changetype<Message>(p.seed);
  p.seed = 0;
  let slots = message_handles(s);
  for (let j: u32 = 0; j < s.nHandles; j++) {
    let h = changetype<Handle>(map_get(id_map(p), load<u64>(slots + (<usize>j << 3))));
    h.seedRefs--;
    node_ref(c, p, node_of(h), -1);
    if (!handle_live(h)) handle_die(h);
  }
  if (s.nObjects) objects_drop(message_objects(s), s.nObjects);
  if (uncharge) quota_uncharge(peer_usage(p), peer_user(p), message_cost(s));
  pool_free(p, s);
}

// ---- receive ------------------------------------------------------------------------

/** Writes the receive record for a message or notification. */
function recv_record(c: Ctx, type: u32, flags: u32, dest: f64, offset: u32, size: u32, nh: u32, no: u32): void {
  let o = ctx_out(c);
  store<u32>(o, type);
  store<u32>(o, flags, 4);
  store<f64>(o, dest, 8);
  store<u32>(o, offset, 16);
  store<u32>(o, size, 20);
  store<u32>(o, nh, 24);
  store<u32>(o, no, 28);
}

/** Receives the next settled message into ctx.out; 0 or -errno. */
export function peer_recv(c: Ctx, p: Peer, flags: u32): i32 {
  if (flags & ~RECV_SEED) return fail(c, EINVAL, ARG_FLAGS, 0);
  if (flags & RECV_SEED) {
    if (!p.seed) return -EAGAIN;
    let s = changetype<Message>(p.seed);
    recv_record(c, MSG_DATA, 0, -1, <u32>message_payload(s), s.size, s.nHandles, s.nObjects);
    return 0;
  }
  let f = queue_settle(c, p);
  if (f < 0) return f;
  if (!f) return -EAGAIN;
  let e = entry(<usize>f);
  // the rest of its transaction decides `continue`: lock what it needs now
  let n = e.next;
  while (n && entry(n).ts == e.ts && entry(n).sender == e.sender && entry(n).seq == e.seq) {
    let rc = need_entry(c, entry(n));
    if (rc) return rc;
    n = entry(n).next;
  }
  if (e.kind == KIND_DATA) {
    let m = changetype<Message>(e);
    if (p.nextId + <u64>m.nHandles >= ID_SEQ_MAX) return -ERANGE;
    // its records are counted off when the host has read them (record.ts records_taken)
    if (m.nObjects && !records_taking_room(c)) return -ENOMEM;
    queue_unlink(p, e);
    message_deliver(c, p, m);
    recv_record(c, MSG_DATA, 0, <f64>changetype<Handle>(m.dest).id, <u32>message_payload(m), m.size, m.nHandles, m.nObjects);
    if (m.nObjects) {
      assert(c.nTaking == 0 && m.nObjects <= MAX_TAKING, "records of an earlier message not taken");
      memory.copy(<usize>c.taking, message_objects(m), <usize>m.nObjects << 2);
      c.nTaking = m.nObjects;
    }
    let d = changetype<Handle>(m.dest);
    d.msgs--;
  } else if (e.kind == KIND_DESTROY) {
    queue_unlink(p, e);
    let h = handle_of_destroy_entry(e);
    recv_record(c, MSG_NODE_DESTROY, 0, <f64>h.id, 0xFFFFFFFF, 0, 0, 0);
  } else {
    queue_unlink(p, e);
    let n = node_of_release_entry(e);
    recv_record(c, MSG_NODE_RELEASE, 0, <f64>changetype<Handle>(n.ownerHandle).id, 0xFFFFFFFF, 0, 0, 0);
  }
  p.clock = clock_sync(p.clock, e.ts);
  // `continue`: the next settled entry belongs to the same transaction (one
  // of another transaction that needs more locks is left for the next call)
  let next = queue_settle(c, p);
  if (next > 0) {
    let ne = entry(<usize>next);
    if (ne.ts == e.ts && ne.sender == e.sender && ne.seq == e.seq) {
      store<u32>(ctx_out(c), MSG_FLAG_CONTINUE, 4);
    }
  }
  return 0;
}

/** Installs a received message's handles and moves its cost off the sender. */
function message_deliver(c: Ctx, p: Peer, m: Message): void {
  quota_unshare(m.share, message_cost(m));
  let hs = message_handles(m);
  for (let j: u32 = 0; j < m.nHandles; j++) {
    let at = hs + (<usize>j << 3);
    let h = changetype<Handle>(load<u32>(at));
    let n = node_of(h);
    h.inflight--;
    let gone = !node_live(n) && key_before(n.destroyTs, n.destroySender, n.destroySeq, m.ts, m.sender, m.seq);
    if (gone) {
      store<u64>(at, HANDLE_INVALID);
      quota_adjust(peer_usage(p), peer_user(p), RES_HANDLES, -1);
      node_ref(c, p, n, -1);
      handle_maybe_free(h);
      continue;
    }
    if (handle_live(h)) quota_adjust(peer_usage(p), peer_user(p), RES_HANDLES, -1);
    if (h.id == ID_NONE) handle_assign_id(p, h);
    h.uref++;
    store<u64>(at, h.id);
  }
  // what stays charged until release: the slice, its bytes, its objects
  m.c1 = 0;
  map_insert(slice_map(p), message_payload(m), <u32>changetype<usize>(m));
}

/** Frees a received slice; 0 or -errno. */
export function peer_slice_release(c: Ctx, p: Peer, x: f64): i32 {
  if (!(x >= 0 && x <= 4294967295) || x != Math.floor(x)) return fail(c, EINVAL, ARG_OFFSET, 0);
  let off = <u32>x;
  if (p.seed && off == <u32>message_payload(changetype<Message>(p.seed))) return fail(c, EPERM, ARG_OFFSET, 0);
  let mp = map_remove(slice_map(p), <u64>off);
  if (!mp) return fail(c, ENXIO, ARG_OFFSET, 0);
  let m = changetype<Message>(mp);
  quota_uncharge(peer_usage(p), peer_user(p), message_cost(m));
  pool_free(p, m);
  return 0;
}

// ---- transfer, release, destroy ----------------------------------------------------

/** Gives `to` a handle to the node of `x`; writes the ID (f64, -1 = invalid) to out. */
export function peer_transfer(c: Ctx, p: Peer, x: f64, to: Peer, toSlot: u32, toGen: u32): i32 {
  c.created = 0;
  let rc = need(c, to);
  if (rc) return rc;
  rc = peer_check(to, toSlot, toGen);
  if (rc) return rc == -EBADF ? fail(c, EINVAL, ARG_PEER, 0) : fail(c, -rc, ARG_PEER, 0);
  rc = handle_resolve(c, p, x, ARG_HANDLE, 0);
  if (rc < 0) return rc;
  let h = changetype<Handle>(<usize>rc);
  let n = node_of(h);
  rc = need_owner(c, n);
  if (rc) { created_undo(c); return rc; }
  let out = ctx_out(c);
  if (!node_live(n)) {
    store<f64>(out, -1);
    return 0;
  }
  let th = handle_get_or_make(to, n);
  if (!th) { created_undo(c); return -ENOMEM; }
  if (!handle_live(th)) {
    if (to.nextId >= ID_SEQ_MAX) { handle_maybe_free(th); created_undo(c); return -ERANGE; }
    rc = quota_try_charge(peer_limits(to), peer_usage(to), peer_user(to), cost_one_handle(c));
    if (rc) {
      handle_maybe_free(th);
      created_undo(c);
      return fail(c, -rc, ARG_HANDLE, 0);
    }
    if (th.id == ID_NONE) handle_assign_id(to, th);
  }
  th.uref++;
  node_ref(c, p, n, 1);
  created_keep(c);
  store<f64>(out, <f64>th.id);
  return 0;
}

/** Drops one user reference of `x`; 0 or -errno. */
export function peer_release(c: Ctx, p: Peer, x: f64): i32 {
  let id = id_from(x);
  if (id == HANDLE_INVALID) return fail(c, EINVAL, ARG_HANDLE, 0);
  let hp = map_get(id_map(p), id);
  if (!hp) return fail(c, ENXIO, ARG_HANDLE, 0);
  let h = changetype<Handle>(hp);
  let rc = need_owner(c, node_of(h));
  if (rc) return rc;
  if (!h.uref) return fail(c, ENXIO, ARG_HANDLE, 0);
  if (h.uref == 1 && handle_is_owner(h) && node_live(node_of(h))) return fail(c, EBUSY, ARG_HANDLE, 0);
  handle_unref(c, p, h);
  return 0;
}

/** Destroys the owned nodes named by ids (f64 × n) as one transaction. */
export function peer_destroy(c: Ctx, p: Peer, flags: u32, ids: usize, n: u32): i32 {
  c.created = 0;
  // the resolved handles go to the u32 array after the IDs (the IDs stay, for a retry)
  let ir = ids + (<usize>n << 3);
  if (flags & ~DESTROY_RELEASE_HANDLES) return fail(c, EINVAL, ARG_FLAGS, 0);
  if (n > MAX_DESTROY) return fail(c, EINVAL, ARG_HANDLES, 0);
  let rc: i32 = 0;
  let i: u32 = 0;
  for (; i < n; i++) {
    let at = ids + (<usize>i << 3);
    rc = handle_resolve(c, p, load<f64>(at), ARG_HANDLES, i);
    if (rc < 0) break;
    let h = changetype<Handle>(<usize>rc);
    if (!handle_is_owner(h)) { rc = fail(c, EREMOTE, ARG_HANDLES, i); break; }
    if (!node_live(node_of(h))) { rc = fail(c, ESTALE, ARG_HANDLES, i); break; }
    if (h.flags & HANDLE_MARK) { rc = fail(c, ENOTUNIQ, ARG_HANDLES, i); break; }
    h.flags |= HANDLE_MARK;
    store<u32>(ir + (<usize>i << 2), <u32>rc);
  }
  if (rc < 0) {
    for (let j: u32 = 0; j < i; j++) changetype<Handle>(load<u32>(ir + (<usize>j << 2))).flags &= ~HANDLE_MARK;
    created_undo(c);
    return rc;
  }
  // lock every holder the destruction notifies
  for (i = 0; i < n && rc >= 0; i++) {
    let node = node_of(changetype<Handle>(load<u32>(ir + (<usize>i << 2))));
    let hp = node.handles;
    while (hp && rc >= 0) {
      rc = need(c, changetype<Peer>(changetype<Handle>(hp).holder));
      hp = changetype<Handle>(hp).nodeNext;
    }
  }
  if (rc < 0) {
    for (let j: u32 = 0; j < n; j++) changetype<Handle>(load<u32>(ir + (<usize>j << 2))).flags &= ~HANDLE_MARK;
    created_undo(c);
    return rc;
  }
  created_keep(c);
  if (!n) return 0;
  tx_begin(c, p);
  for (i = 0; i < n; i++) {
    let h = changetype<Handle>(load<u32>(ir + (<usize>i << 2)));
    h.flags &= ~HANDLE_MARK;
    node_destroy_stage(c, node_of(h));
  }
  tx_commit(c);
  if (flags & DESTROY_RELEASE_HANDLES) {
    for (i = 0; i < n; i++) {
      let h = changetype<Handle>(load<u32>(ir + (<usize>i << 2)));
      if (h.uref) handle_unref(c, p, h);
    }
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
  // the queue first: what it held in flight is dropped
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
    let s = changetype<Message>(mp);
    quota_uncharge(peer_usage(p), peer_user(p), message_cost(s));
    pool_free(p, s);
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
  memory.copy(o, peer_usage(p), 16);
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

// The WASI build (asconfig.wasi.json: the wasi-shim defines ASC_WASI) imports
// the host's drop of object records as bus1.objects_drop, its one import that
// is neither the memory nor WASI (docs/ABI.md, "Hosting the core without
// JavaScript"); the JS builds import it as env.objects_drop.
// @ts-ignore: decorator
@external("bus1", "objects_drop")
declare function bus1_objects_drop(slots: usize, count: u32): void;

/** Tells the host that `count` object records at `slots` are dropped (chosen at compile time). */
// @ts-ignore: decorator
@inline function objects_drop(slots: usize, count: u32): void {
  if (isDefined(ASC_WASI)) bus1_objects_drop(slots, count);
  else host_objects_drop(slots, count);
}
