/**
 * DOC: node — a peer's nodes and handles: create, resolve, count, destroy
 *
 * handle.ts defines the Node and Handle records and the rules of their
 * counters; this file applies those rules to a peer: its ID and node maps,
 * its handle quota, its notifications. The peer-level operations on nodes
 * (transfer, release, destroy) are here too; send.ts and recv.ts use the
 * same steps for the handles a message carries.
 *
 * Nodes. A node is made the first time a peer names an unknown caller-chosen
 * ID (handle_resolve → node_create), together with its owner's handle; an
 * ID with ID_MANAGED or ID_REMOTE set is the core's and names nothing new
 * (ENXIO). Such a node is lazy until its call succeeds: it is marked
 * HANDLE_CREATED and chained on ctx.created (through Handle._pad), kept by
 * created_keep and taken back, with its charge, by created_undo when the
 * call fails, so a failing call leaves no node behind. A node pins its owner
 * (Peer.pins) until it is freed (node_free), so that a freed owner's record
 * is retired only after its last node. Destroying a node (node_destroy_stage)
 * marks it and stages a node-destroy entry for every holder whose handle is
 * live or in flight, in the caller's transaction; tx_commit stamps the
 * node's destroy key with the commit's order key.
 *
 * Handles. Besides the owner's first handle, which carries the caller's
 * ID, a peer gets a handle object for a node the first time the node
 * reaches it (handle_get_or_make: at send time for a message in flight, or
 * at transfer), without an ID; the ID comes when the handle becomes live
 * (handle_assign_id: (nextId << 3) | ID_MANAGED, plus ID_REMOTE unless the
 * holder owns the node). `nextId` stays below ID_SEQ_MAX (ERANGE), so an ID
 * is exact as a JS number. A live handle costs its holder one handle of
 * quota; handle_die removes the ID for good and returns that charge, and
 * handle_maybe_free frees the object once no counter and no queued entry
 * refers to it, and the node with its last handle.
 *
 * References. While a node is live, node_ref keeps Node.refs and the
 * node-release notification in step: the notification is queued when refs
 * falls to 1 and withdrawn (unstaged, or unlinked) when refs rises above 1
 * before it is received.
 *
 * Invariants: no handle counter and no node's refs go below zero; a handle
 * dies once; a peer has at most one handle per node (the node map).
 *
 * Locking: a node's handle list, references and release entry are guarded
 * by its owner's lock, a handle's counters and a peer's maps by its holder's
 * lock, so each operation here locks the owner of every node it touches
 * (need_owner) besides the caller; a destroy also locks every holder it
 * notifies.
 */

import { heap_calloc, heap_free, misc_lock, misc_unlock, limbo_retire } from "./bus";
import { map_get, map_insert, map_remove, map_reserve, map_count } from "./map";
import { queue_unlink, entry_queued, entry_staged, KIND_DESTROY, KIND_RELEASE } from "./queue";
import { Node, Handle, NODE_ALLOC, HANDLE_ALLOC, NODE_DESTROYED, HANDLE_MARK, HANDLE_CREATED, node_of, node_live, handle_live, handle_is_owner, node_link_handle, node_unlink_handle, node_release_entry, handle_destroy_entry } from "./handle";
import { quota_try_charge, quota_adjust, RES_HANDLES } from "./user";
import { Ctx, ctx_out, ctx_cost, tx_begin, tx_stage, tx_unstage, tx_commit, tx_queue } from "./tx";
import {
  Peer, PEER_FREED, DESTROY_RELEASE_HANDLES, MAX_DESTROY, HANDLE_INVALID, ID_NONE, ID_MANAGED, ID_REMOTE, ID_MAX, ID_SEQ_MAX,
  ARG_HANDLE, ARG_HANDLES, ARG_FLAGS, ARG_PEER, id_map, node_map, peer_limits, peer_usage, peer_user, ptr, fail, need, need_owner,
  peer_check,
} from "./peer";
import { EBADF, ENXIO, ENOMEM, EBUSY, EINVAL, ERANGE, EREMOTE, ENOTUNIQ, ESTALE } from "./errno";
import { lane_close } from "./lane";

// ---- nodes and handles -------------------------------------------------------------

/** A handle ID from the host (a JS number), or HANDLE_INVALID if not one. */
function id_from(x: f64): u64 {
  if (!(x >= 0 && x <= ID_MAX) || x != Math.floor(x)) return HANDLE_INVALID;
  return <u64>x;
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
export function created_keep(c: Ctx): void {
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
export function created_undo(c: Ctx): void {
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
export function handle_resolve(c: Ctx, p: Peer, x: f64, arg: u32, index: u32): i32 {
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
export function handle_get_or_make(q: Peer, n: Node): Handle | null {
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
export function handle_assign_id(q: Peer, h: Handle): void {
  let remote: u64 = node_of(h).owner == ptr(q) ? 0 : ID_REMOTE;
  h.id = (q.nextId++ << 3) | ID_MANAGED | remote;
  map_insert(id_map(q), h.id, ptr(h));
}

/** Frees a handle object nothing points at any more (and its node, if last). */
export function handle_maybe_free(h: Handle): void {
  assert(<i32>h.uref >= 0 && <i32>h.inflight >= 0 && <i32>h.msgs >= 0, "handle counter below zero");
  if ((h.uref | h.seedRefs | h.inflight | h.msgs | h.lanes) != 0) return;
  assert(!h.lane, "a handle freed with its lane open");
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
export function handle_die(h: Handle): void {
  assert(h.id != ID_NONE && !handle_live(h), "a handle died twice");
  if (h.lane) lane_close(h);
  let q = changetype<Peer>(h.holder);
  map_remove(id_map(q), h.id);
  h.id = ID_NONE;
  quota_adjust(peer_usage(q), peer_user(q), RES_HANDLES, -1);
  handle_maybe_free(h);
}

/** Adds `delta` to a node's references; queues or withdraws node-release. */
export function node_ref(c: Ctx, actor: Peer, n: Node, delta: i32): void {
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
export function node_destroy_stage(c: Ctx, n: Node): void {
  n.flags |= NODE_DESTROYED;
  let p = n.handles;
  while (p) {
    let h = changetype<Handle>(p);
    p = h.nodeNext;
    // no lane sends to a destroyed node (its holders are locked: they are notified)
    if (h.lane) lane_close(h);
    if (!handle_live(h) && !h.inflight) continue;
    let e = handle_destroy_entry(h);
    e.kind = KIND_DESTROY;
    tx_stage(c, changetype<Peer>(h.holder), e);
  }
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
