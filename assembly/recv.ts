/**
 * DOC: recv — settling the queue, receiving, dropping messages
 *
 * What a receiver gets is decided at its queue's front, when it looks:
 * "no handle, no news". queue_settle drops from the front every committed
 * entry that would not be delivered now (entry_deliverable):
 *   - a message whose destination handle is no longer live, or whose node
 *     was destroyed by a transaction ordered before the message;
 *   - a node-destroy entry whose handle is no longer live;
 *   - a node-release entry whose owner handle is gone or no longer live.
 * Dropping a message (message_drop) gives back everything it held: the
 * in-flight references on the receiver's handles, its host objects (to the
 * host, objects_drop), its count on its destination, its charge on the
 * receiver and the sender's share, its slice. A flush or a disconnect drops
 * entries the same way (entry_drop, peer.ts).
 *
 * Receiving (peer_recv) takes the settled front. A data message is
 * installed (message_deliver): each carried handle becomes a user reference
 * of the receiver with an ID (assigned now if it had none), written into the
 * slice's handle array; one whose node was destroyed before the message in
 * the global order is written as HANDLE_INVALID and its reference dropped.
 * The message's cost leaves the sender's share; the slice, its bytes and its
 * objects stay charged to the receiver until peer_slice_release, and its
 * host object records are noted in ctx.taking for the host to count off
 * (record.ts, records_taken). A notification is only reported. Either way
 * the receiver's clock rises to the entry's ts, and MSG_FLAG_CONTINUE says
 * that the next settled entry belongs to the same transaction, while
 * MSG_FLAG_DRAINED says that nothing else is ready. A host may then answer
 * recv with "nothing" until the peer's wake word moves: everything that
 * makes an entry ready moves it afterwards (a commit or a post under the
 * queue's lock, a lane push after the push, a disconnect; peer_wake), and a
 * staged entry, the one thing settling stops at, is not seen by another
 * call while the call that staged it holds the queue's lock (the host
 * answers from the word only while that lock is free, and asks the core for
 * the last look before it sleeps: ABI.md §5.5). RECV_SEED reports the seed
 * (send.ts) and changes nothing.
 *
 * Invariants: a received slice is in the slice map (keyed by its payload
 * address) until it is released, and the seed's slice never is (EPERM);
 * the slice map has room for every slice charged to the peer (send.ts
 * reserves it), so installing cannot fail; a message whose handles would
 * take the peer's IDs past ID_SEQ_MAX stays queued (ERANGE).
 *
 * Receive record (ctx.out; docs/ABI.md, recv): +0 type u32 (MSG_*),
 * +4 flags u32, +8 destination ID f64 (−1 for the seed), +16 payload
 * address u32 (0xFFFFFFFF for a notification), +20 size u32, +24 nHandles
 * u32, +28 nObjects u32.
 *
 * Locking: the receiver's lock, and, before an entry is looked at, the
 * owners of the nodes it refers to (need_entry); peer_recv also takes those
 * of the rest of the front entry's transaction, so that `continue` is exact.
 */

import { map_insert, map_remove } from "./map";
import { Entry, entry, queue_unlink, queue_front, clock_sync, key_before, KIND_DATA, KIND_DESTROY, ENTRY_LANE } from "./queue";
import { lane_keep_charge, lane_pending, lane_settle } from "./lane";
import { Handle, node_of, node_live, handle_live, node_of_release_entry, handle_of_destroy_entry } from "./handle";
import { Message, message_payload, message_cost, message_handles, message_objects, pool_free } from "./pool";
import { quota_uncharge, quota_adjust, quota_unshare, RES_HANDLES } from "./user";
import { records_taking_room } from "./record";
import { Ctx, ctx_out } from "./tx";
import {
  Peer, RECV_SEED, HANDLE_INVALID, ID_NONE, ID_SEQ_MAX, ARG_FLAGS, ARG_OFFSET,
  MSG_DATA, MSG_NODE_DESTROY, MSG_NODE_RELEASE, MSG_FLAG_CONTINUE, MSG_FLAG_DRAINED,
  MAX_OBJECTS, slice_map, peer_usage, peer_user, fail, need_owner,
} from "./peer";
import { node_ref, handle_maybe_free, handle_assign_id } from "./node";
import { EPERM, ENXIO, EAGAIN, ENOMEM, EINVAL, ERANGE } from "./errno";

// ---- settling the queue --------------------------------------------------------------

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
  slice_free(q, m);
}

/** Gives back a slice's charge and its memory (a lane record's charge may stay with its lane, lane.ts). */
export function slice_free(q: Peer, m: Message): void {
  if (!(m.state & ENTRY_LANE) || !lane_keep_charge(m)) quota_uncharge(peer_usage(q), peer_user(q), message_cost(m));
  pool_free(q, m);
}

/** True if a queued entry would be delivered now (else it is dropped). */
export function entry_deliverable(e: Entry): bool {
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
export function entry_drop(c: Ctx, q: Peer, e: Entry): void {
  queue_unlink(q, e);
  if (e.kind == KIND_DATA) message_drop(c, q, q, changetype<Message>(e));
  else if (e.kind == KIND_DESTROY) handle_maybe_free(handle_of_destroy_entry(e));
}

/**
 * Drops undeliverable entries from the front; returns the front (committed),
 * 0 if none, or −ERETRY / −ESHUTDOWN if it needs a lock it could not take.
 * The front it returns has its locks taken (need_entry).
 */
export function queue_settle(c: Ctx, q: Peer): i32 {
  while (true) {
    let f = queue_front(q);
    // lane messages wait in the inbox until the queue runs dry: all of them
    // come after everything queued (lane.ts)
    if (!f && !q.qHead && lane_pending(q)) {
      lane_settle(q);
      f = queue_front(q);
    }
    if (!f) return 0;
    let rc = need_entry(c, entry(f));
    if (rc) return rc;
    if (entry_deliverable(entry(f))) return <i32>f;
    entry_drop(c, q, entry(f));
  }
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
      assert(c.nTaking == 0 && m.nObjects <= MAX_OBJECTS, "records of an earlier message not taken");
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
  } else if (next == 0) {
    // whatever makes a message ready later moves the wake word after it (peer_wake)
    store<u32>(ctx_out(c), MSG_FLAG_DRAINED, 4);
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
  slice_free(p, changetype<Message>(mp));
  return 0;
}

// ---- host objects ---------------------------------------------------------------------

// @ts-ignore: decorator
@external("env", "objects_drop")
declare function host_objects_drop(slots: usize, count: u32): void;

// The WASI build (asconfig.wasi.json: the wasi-shim defines ASC_WASI) imports
// the host's drop of object records as bus1.objects_drop, its one import that
// is neither the memory nor WASI (docs/ABI.md, "Hosting the core without
// JavaScript"); the JS builds import it as env.objects_drop.
// @ts-ignore: decorator
@external("bus1", "objects_drop")
declare function bus1_objects_drop(slots: usize, count: u32): void;

/** Tells the host that `count` object records at `slots` are dropped (chosen at compile time). */
// @ts-ignore: decorator
@inline export function objects_drop(slots: usize, count: u32): void {
  if (isDefined(ASC_WASI)) bus1_objects_drop(slots, count);
  else host_objects_drop(slots, count);
}
