/**
 * DOC: send — building messages and the seed
 *
 * A send is two ABI calls with the host's copy between them. send_begin
 * checks every argument, resolves the destinations and the attached handles
 * (making lazy nodes, node.ts), locks what it will change, charges each
 * receiver, allocates one slice per destination in the receiver's pool and
 * stages its entry in a transaction (tx.ts). The host copies the payload to
 * the slice addresses written to `out`; send_commit commits the transaction
 * and keeps the lazy nodes, send_cancel takes every step back. A send keeps
 * its locks from send_begin until send_commit, so its entries are never seen
 * half-made and a multicast commits on all its receivers at once. The common
 * case (one destination, nothing attached, no flags) takes the same steps
 * without the loops (send_unicast), and between two peers of one user,
 * once its handle has a lane, without the receiver's lock (lane.ts).
 *
 * What a staged message holds, per destination: a charge on the receiver
 * and its user (one slice, its handles, its bytes with the records of its
 * host objects, its objects; quota_charge_send, which also records the
 * sender's share), one count on its destination handle (`msgs`), and for
 * each attached node a handle of the receiver (made without an ID if it had
 * none) counted in `inflight`. Once every destination is staged, each
 * attached node gains one reference per message. The slice is laid out as
 * pool.ts shows; its handle array holds pointers to the receiver's handles
 * until receive turns them into IDs (recv.ts).
 *
 * Errors. A bad argument, or a message larger than a live receiver could
 * ever hold (EMSGSIZE), fails the call with nothing staged. A destination
 * that fails on its own (a destroyed node: EHOSTUNREACH; quota: EDQUOT) gets
 * its errno in its `out` record; without SEND_CONTINUE the first one fails
 * the call, with it the other destinations still go. ENOMEM always fails the
 * whole call: each destination's steps are undone (send_nomem), then every
 * staged message (send_abort).
 *
 * The seed (SEND_SEED) is a message a peer keeps for itself: at most one,
 * in its own pool, charged to the peer (its handles cost no quota: they are
 * the peer's own live handles), holding a seed reference (`seedRefs`) on
 * each attached handle; its handle array holds the peer's IDs from the
 * start. A new seed replaces the old one in one step, and the old one's
 * charge does not count against the new. It is read with RECV_SEED (recv.ts)
 * as often as asked, and dropped by a reset with RESET_FLUSH_SEED and by a
 * disconnect (seed_drop).
 *
 * Arguments (docs/ABI.md, send_begin): dsts f64 × nDsts; hs f64 × nHandles
 * (the IDs, kept for a retry) followed by u32 × nHandles, where the core
 * puts the resolved handles; out (i32 errno, u32 payload address) × nDsts,
 * whose second word holds the resolved destination handle until its message
 * is staged.
 *
 * Locking: send_begin locks the caller, every receiver (the owner of each
 * destination node) and the owner of each attached node; a seed locks the
 * owners of the nodes the new seed and the old one refer to (seed_need).
 * staged_receiver reads a receiver's `receiver` hint between the two calls,
 * while the send still holds the receiver's lock.
 */

import { sync_load } from "./sync";
import { map_get, map_reserve } from "./map";
import { entry, KIND_DATA } from "./queue";
import { Handle, HANDLE_MARK, node_of, node_live, handle_live } from "./handle";
import { Message, MESSAGE_SIZE, message_payload, message_of_payload, message_cost, message_handles, message_objects, slice_bytes, slice_pad, SLICE_MAX, pool_alloc, pool_free } from "./pool";
import { quota_charge_send, quota_replace, quota_restore, quota_uncharge, quota_unshare } from "./user";
import { record_bytes } from "./record";
import { Ctx, ctx_cost, tx_begin, tx_stage, tx_unstage, tx_commit } from "./tx";
import {
  Peer, SEND_CONTINUE, SEND_SEED, MAX_VECS, MAX_OBJECTS, MAX_HANDLES, MAX_DESTINATIONS,
  ARG_DESTINATIONS, ARG_HANDLES, ARG_FLAGS, ARG_VECS, ARG_OBJECTS, ARG_PAYLOAD,
  id_map, node_map, slice_map, peer_limits, peer_usage, peer_user, ptr, fail, need_owner,
} from "./peer";
import { created_keep, created_undo, handle_resolve, handle_get_or_make, handle_maybe_free, handle_die, node_ref } from "./node";
import { objects_drop } from "./recv";
import { lane_send, lane_commit, lane_cancel, lane_refill, CUT_NONE } from "./lane";
import { ENOMEM, EINVAL, ENOTUNIQ, EMSGSIZE, EHOSTUNREACH } from "./errno";

// ---- send ----------------------------------------------------------------------------

/**
 * Stages a send: validates everything, charges every receiver, allocates one
 * slice per delivered destination and stages its entry. The host then copies
 * the payload to the slice addresses written to `out` and calls send_commit.
 *
 * dsts: f64 × nDsts, handles: f64 × nHandles (followed by room for as
 * many u32 handle pointers: see the DOC block), objs: u32 × nObjs, out:
 * (i32 error, u32 payload address) × nDsts. Returns the number of slices,
 * or -errno (nothing staged).
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
 * send, measured with the exports called directly). Through a handle with a
 * lane it takes no lock but the sender's (lane.ts); to a peer of the
 * sender's user it counts towards a lane and tops its credit up.
 */
function send_unicast(c: Ctx, p: Peer, x: f64, size: u32, bytes: u32, out: usize): i32 {
  let rc = handle_resolve(c, p, x, ARG_DESTINATIONS, 0);
  if (rc < 0) return rc;
  let dh = changetype<Handle>(<usize>rc);
  let n = node_of(dh);
  // a lane takes it without the receiver's lock while it has credit and room (lane.ts)
  if (dh.lane && node_live(n) && lane_send(c, p, dh, size, bytes, out)) return 1;
  rc = need_owner(c, n);
  if (rc == 0 && node_live(n) && <u64>bytes > <u64>changetype<Peer>(n.owner).lim2) rc = fail(c, EMSGSIZE, ARG_PAYLOAD, 0);
  if (rc < 0) {
    created_undo(c);
    return rc;
  }
  tx_begin(c, p);
  // one queue: what lane sends land there from now on comes after it, with no cut needed (lane.ts)
  c.cut = CUT_NONE;
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
  let q = changetype<Peer>(n.owner);
  if (q !== p && q.user == p.user) lane_refill(p, dh, q, bytes);
  return 1;
}

/** Writes a slice's object record addresses after its `nHandles` handle slots, and zeroes the pad word. */
// @ts-ignore: decorator
@inline function slice_put_objects(slots: usize, nHandles: u32, objs: usize, nObjs: u32): void {
  if (!nObjs) return;
  let os = slots + (<usize>nHandles << 3);
  memory.copy(os, objs, <usize>nObjs << 2);
  if (nObjs & 1) store<u32>(os + (<usize>nObjs << 2), 0);
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
  let slots = slice_pad(payload, size);
  for (let j: u32 = 0; j < nHandles; j++) {
    let h = changetype<Handle>(load<u32>(hr + (<usize>j << 2)));
    let rh = changetype<Handle>(map_get(node_map(q), <u64>h.node));
    rh.inflight++;
    store<u64>(slots + (<usize>j << 3), <u64>ptr(rh));
  }
  slice_put_objects(slots, nHandles, objs, nObjs);
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
  return sync_load<u32>(changetype<usize>(q) + offsetof<Peer>("receiver"));
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
  if (c.laneMsg) lane_commit(c);
  if (c.open) tx_commit(c);
  created_keep(c);
}

/** Takes back a staged send whose payload could not be copied. */
export function peer_send_cancel(c: Ctx): void {
  if (c.laneMsg) lane_cancel(c);
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
  let slots = slice_pad(payload, size);
  for (let j: u32 = 0; j < nHandles; j++) {
    let h = changetype<Handle>(load<u32>(hr + (<usize>j << 2)));
    h.seedRefs++;
    node_ref(c, p, node_of(h), 1);
    store<u64>(slots + (<usize>j << 3), h.id);
  }
  slice_put_objects(slots, nHandles, objs, nObjs);
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
export function seed_drop(c: Ctx, p: Peer, uncharge: bool = true): void {
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
