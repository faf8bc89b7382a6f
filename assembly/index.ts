/**
 * DOC: index — the exported ABI
 *
 * Every export is one call into the bus, made by the calling thread like a
 * syscall. A peer is named by (slot, generation); `ctx` is the calling
 * thread's context block (ctx_new), where results are written. Calls return
 * 0 (or a count) on success and −errno on failure; on failure ctx.errArg and
 * ctx.errIndex say which argument was at fault. docs/ABI.md is the reference.
 */

import { sync_load, sync_sub, sync_xchg } from "./sync";
import { bus_setup, root, root_addr, Root, slot_lookup, slot_wake, heap_alloc, heap_calloc, heap_free, heap_bytes, misc_lock, misc_unlock, thread_set, array_room, array_shrink, epoch_enter, epoch_leave, limbo_drain, BUS1_MAGIC, ABI_VERSION, MAX_THREADS } from "./bus";
import { record_new, record_free, record_release, records_orphan, records_taken } from "./record";
import { user_count } from "./user";
import { Ctx, CTX_SIZE, ctx_out } from "./tx";
import { ls_need, ls_retry, ls_release, ls_free, ls_settle, ERETRY, NEED_NOMEM } from "./lockset";
import { bus_broken, bus_break, lock_set_can_block, BROKEN_THREAD_DIED, BROKEN_TRAP } from "./lock";
import {
  Peer, peer_new, peer_put, peer_check, flush_need, ARG_BROKEN, ARG_PEER, peer_reset, peer_query,
  peer_disconnect, peer_stats, peer_ready, wake_flush, peer_set_receiver,
  MAX_DESTINATIONS, MAX_HANDLES, MAX_VECS, MAX_OBJECTS, MAX_DESTROY,
} from "./peer";
import { peer_transfer, peer_release, peer_destroy } from "./node";
import { peer_send_begin, peer_send_commit, peer_send_cancel, staged_receiver } from "./send";
import { peer_recv, peer_slice_release } from "./recv";
import { EBADF, EBUSY, EINVAL, ENOMEM, ESHUTDOWN } from "./errno";
import { inspect_lock, inspect_write } from "./inspect";

/** Bounds on the counts of one call (exported as immutable globals). */
export const max_destinations: u32 = MAX_DESTINATIONS;
export const max_handles: u32 = MAX_HANDLES;
export const max_vecs: u32 = MAX_VECS;
export const max_objects: u32 = MAX_OBJECTS;
export const max_destroy: u32 = MAX_DESTROY;
/** 1 in a build with the core's assertions on: its host checks what it assumes of the core too. */
export const assertions: u32 = ASC_NO_ASSERT ? 0 : 1;

/** Lays out a new bus in this memory: 0 or −errno. */
export function bus_init(maxPages: u32, slices: u32, handles: u32, bytes: u32, objects: u32): i32 {
  if (maxPages > 32767) return -EINVAL;
  return bus_setup(maxPages, slices, handles, bytes, objects) < 0 ? -ENOMEM : 0;
}

/** The ABI version if this memory holds a bus, else 0. */
export function bus_version(): u32 {
  let r = root();
  return r.magic == BUS1_MAGIC ? r.version : 0;
}

/** Address of the root (Root.heapEnd, at +16, tells hosts when memory grew). */
export function bus_root(): usize {
  return root_addr();
}

/** Bytes the bus heap spans. */
export function bus_heap_bytes(): u32 {
  return heap_bytes();
}

// ---- threads ---------------------------------------------------------------------------

/**
 * Attaches the calling thread: a new context block, registered in the thread
 * table under the host's id for this thread, with a serial that no other
 * attachment has had. 0 when out of memory or when MAX_THREADS threads are
 * attached.
 */
export function ctx_new(canBlock: u32, hostThread: u32): usize {
  lock_set_can_block(canBlock != 0);
  if (!misc_lock()) return 0;
  let r = root();
  let tid: u32 = 0;
  while (tid < MAX_THREADS && load<u32>(r.threads + (tid << 2))) tid++;
  let c: usize = 0;
  if (tid < MAX_THREADS) c = heap_calloc(CTX_SIZE);
  if (c) {
    store<u32>(r.threads + (tid << 2), <u32>c);
    let ctx = changetype<Ctx>(c);
    ctx.tid = tid;
    ctx.hostThread = hostThread;
    // serials name record owners: never 0, never RECORD_ORPHAN
    if (++r.ctxSerial == 0xFFFFFFFF) r.ctxSerial = 1;
    ctx.serial = r.ctxSerial;
    r.nThreads++;
    if (tid >= r.threadsHigh) r.threadsHigh = tid + 1;
  }
  misc_unlock();
  if (c) thread_set(tid);
  return c;
}

/** Detaches the calling thread (its peer references were closed by the host). */
export function ctx_free(c: Ctx): void {
  if (misc_lock()) {
    ctx_unlist(c);
    misc_unlock();
  }
  ctx_release(c);
}

/** Takes a context off the thread table. Under the misc lock. */
function ctx_unlist(c: Ctx): void {
  let r = root();
  store<u32>(r.threads + (c.tid << 2), 0);
  r.nThreads--;
  // the thread no longer holds anything back
  limbo_drain();
}

/** Frees a context that is off the table: its records become orphans. */
function ctx_release(c: Ctx): void {
  // what it received and did not take yet is done with, before its own records become orphans
  records_taken(c);
  if (c.taking) heap_free(c.taking);
  records_orphan(c);
  ls_free(c);
  if (c.refs) heap_free(c.refs);
  if (c.scratch) heap_free(c.scratch);
  heap_free(changetype<usize>(c));
}

/**
 * Another thread is gone (its host saw it exit). If it died inside a bus call
 * the bus is marked broken; otherwise the peer references it held are closed
 * for it, its host object records become orphans and its context is freed.
 * Returns the number of references closed.
 */
export function thread_exit(c: Ctx, hostThread: u32): i32 {
  if (bus_broken()) return broken(c);
  // the calling thread is alive: another attachment of it is not gone either
  if (hostThread == c.hostThread) {
    c.errArg = 0;
    return -EINVAL;
  }
  let closed: i32 = 0;
  while (true) {
    // claim the dead thread's context: whoever takes it off the table owns it
    if (!misc_lock()) return broken(c);
    let r = root();
    let dead: Ctx | null = null;
    for (let tid: u32 = 0; tid < r.threadsHigh; tid++) {
      let dp = <usize>load<u32>(r.threads + (tid << 2));
      if (!dp || dp == changetype<usize>(c) || changetype<Ctx>(dp).hostThread != hostThread) continue;
      if (sync_load<u32>(dp + offsetof<Ctx>("inCall"))) {
        misc_unlock();
        bus_break(BROKEN_THREAD_DIED);
        return broken(c);
      }
      dead = changetype<Ctx>(dp);
      ctx_unlist(dead);
      break;
    }
    misc_unlock();
    if (!dead) return closed;
    // it died spinning in a wait: it no longer takes a processor
    if (sync_xchg<u32>(changetype<usize>(dead) + offsetof<Ctx>("spinning"), 0)) {
      sync_sub<u32>(changetype<usize>(r) + offsetof<Root>("spinners"), 1);
    }
    while (dead.nRefs) {
      let at = <usize>dead.refs + (<usize>(dead.nRefs - 1) << 3);
      let rc = peer_close(c, load<u32>(at), load<u32>(at, 4));
      // the bus broke under us: leave the rest where it is
      if (bus_broken()) return broken(c);
      // a reference that is already gone (EBADF) needs no closing; one that
      // could not be closed (no memory for the lock set) stays open
      dead.nRefs--;
      if (rc >= 0) closed++;
    }
    ctx_release(dead);
  }
}

/**
 * A host saw the core trap in its thread (the state it was changing may be
 * half-changed): the bus is marked broken for every thread.
 */
export function bus_fail(): void {
  bus_break(BROKEN_TRAP);
}

/** Why the bus is broken (lock.ts BROKEN_*), or 0. */
export function bus_broken_reason(): u32 {
  return sync_load<u32>(changetype<usize>(root()) + offsetof<Root>("broken"));
}

function refs_add(c: Ctx, slot: u32, gen: u32): bool {
  if (!array_room(changetype<usize>(c) + offsetof<Ctx>("refs"), 8)) return false;
  let at = <usize>c.refs + (<usize>c.nRefs << 3);
  store<u32>(at, slot);
  store<u32>(at, gen, 4);
  c.nRefs++;
  return true;
}

function refs_remove(c: Ctx, slot: u32, gen: u32): void {
  for (let i: u32 = c.nRefs; i > 0; i--) {
    let at = <usize>c.refs + (<usize>(i - 1) << 3);
    if (load<u32>(at) == slot && load<u32>(at, 4) == gen) {
      let last = <usize>c.refs + (<usize>(c.nRefs - 1) << 3);
      store<u64>(at, load<u64>(last));
      c.nRefs--;
      array_shrink(changetype<usize>(c) + offsetof<Ctx>("refs"), 8);
      return;
    }
  }
}

/**
 * The thread's scratch for call arguments, made `size` bytes (8-aligned; its
 * contents are not kept): its address, or 0 when out of memory (the old one
 * then stays). It belongs to the context and goes with it.
 */
export function ctx_scratch(c: Ctx, size: u32): usize {
  let p = heap_alloc(size);
  if (!p) return 0;
  if (c.scratch) heap_free(c.scratch);
  c.scratch = <u32>p;
  return p;
}

/** A host object record (record.ts) of `length` serialized bytes for the value in `slot`; 0 when out of memory. */
export function object_record(c: Ctx, slot: u32, length: u32): usize {
  return record_new(c, slot, length);
}

/**
 * The receiving thread's serial (Peer.receiver) of the staged message whose
 * payload address send_begin wrote to `out`: valid only between send_begin
 * and send_commit/send_cancel (the receiver is locked by this call).
 */
export function send_receiver(payload: usize): u32 {
  return staged_receiver(payload);
}

/**
 * The other threads attached to the bus, as (serial, host thread id) u32
 * pairs written to `out` (room for `max` pairs); returns how many there
 * are, which may be more than `max` (then call again with more room).
 */
export function thread_list(c: Ctx, out: usize, max: u32): i32 {
  c.errArg = 0;
  if (bus_broken()) return broken(c);
  if (!misc_lock()) return broken(c);
  let r = root();
  let n: u32 = 0;
  for (let tid: u32 = 0; tid < r.threadsHigh; tid++) {
    let dp = <usize>load<u32>(r.threads + (tid << 2));
    if (!dp || dp == changetype<usize>(c)) continue;
    if (n < max) {
      store<u32>(out + (<usize>n << 3), changetype<Ctx>(dp).serial);
      store<u32>(out + (<usize>n << 3), changetype<Ctx>(dp).hostThread, 4);
    }
    n++;
  }
  misc_unlock();
  return <i32>n;
}

/** Frees a record whose freeing the caller claimed (record.ts); only inside a call (objects_drop). */
export function object_record_free(c: Ctx, rec: usize): void {
  record_free(c, rec);
}

/**
 * Frees a record of this thread, or an orphan, that no message carries any
 * more (claims it, pending 0 → −1, and frees it in one call: record.ts); 1 if
 * it did, else 0.
 */
export function object_record_release(c: Ctx, rec: usize): i32 {
  let inCall = changetype<usize>(c) + offsetof<Ctx>("inCall");
  // also called from objects_drop, inside a call
  let outer = sync_load<u32>(inCall) != 0;
  if (!outer) epoch_enter(inCall);
  let rc = record_release(c, rec);
  if (!outer) epoch_leave(inCall);
  return rc;
}

/**
 * The host has read the records of the message it received last (recv): each
 * is counted off its `pending` (record.ts records_taken). 0, or −ESHUTDOWN
 * (broken: they stay noted, for ctx_release).
 */
export function recv_taken(c: Ctx): i32 {
  c.errArg = 0;
  if (bus_broken()) return broken(c);
  let inCall = changetype<usize>(c) + offsetof<Ctx>("inCall");
  if (sync_load<u32>(inCall)) return -EBUSY;
  epoch_enter(inCall);
  records_taken(c);
  epoch_leave(inCall);
  return 0;
}

/**
 * Counters of the whole bus, written to ctx.out as u32s: heap bytes spanned,
 * heap bytes in use, peer records, users, attached threads, host object
 * records. Records of closed peers that can already be freed are freed
 * first, so that a quiet bus shows what it really holds.
 */
export function bus_stats(c: Ctx): i32 {
  c.errArg = 0;
  if (bus_broken()) return broken(c);
  if (!misc_lock()) return broken(c);
  limbo_drain();
  let r = root();
  let o = ctx_out(c);
  store<u32>(o, heap_bytes());
  store<u32>(o, r.heapUsed, 4);
  store<u32>(o, r.peers, 8);
  store<u32>(o, user_count(), 12);
  store<u32>(o, r.nThreads, 16);
  store<u32>(o, sync_load<u32>(changetype<usize>(r) + offsetof<Root>("records")), 20);
  misc_unlock();
  return 0;
}

/**
 * A consistent snapshot of the bus (inspect.ts): the record stream goes to
 * `buf` (room for `cap` bytes, 4-aligned). Returns the stream's length in
 * bytes; more than `cap` means it did not fit and `buf` holds no stream
 * (call again with more room). −EBUSY while this thread's send is open,
 * −ESHUTDOWN (broken), −ENOMEM (lock set).
 */
export function bus_inspect(c: Ctx, buf: usize, cap: u32): i32 {
  c.errArg = 0;
  if (bus_broken()) return broken(c);
  // between send_begin and send_commit the lock set is the send's
  if (sync_load<u32>(changetype<usize>(c) + offsetof<Ctx>("inCall"))) return -EBUSY;
  epoch_enter(changetype<usize>(c) + offsetof<Ctx>("inCall"));
  let rc = inspect_lock(c);
  if (rc == 0) {
    ls_settle(c);
    rc = <i32>inspect_write(c, buf, cap);
    misc_unlock();
  } else {
    rc = rc == NEED_NOMEM ? -ENOMEM : broken(c);
  }
  return end(c, rc);
}

// ---- calls ---------------------------------------------------------------------------
//
// Every call: begin (the caller's peer locked and checked), the operation,
// `again` on −ERETRY (all locks dropped and retaken in order), end (locks
// dropped). A thread is `inCall` from begin to end; send_begin returns with
// its locks held and send_commit / send_cancel end that call.

function broken(c: Ctx): i32 {
  c.errArg = ARG_BROKEN;
  c.errIndex = 0;
  return -ESHUTDOWN;
}

/** Locks and checks the caller's peer: its pointer, or −errno. */
function begin(c: Ctx, slot: u32, gen: u32, allowDisconnected: bool = false): i32 {
  c.errArg = 0;
  if (bus_broken()) return broken(c);
  epoch_enter(changetype<usize>(c) + offsetof<Ctx>("inCall"));
  let p = slot_lookup(slot, gen);
  if (!p) {
    epoch_leave(changetype<usize>(c) + offsetof<Ctx>("inCall"));
    return -EBADF;
  }
  let need = ls_need(c, p);
  if (need != 0) return end(c, need == NEED_NOMEM ? -ENOMEM : broken(c));
  let rc = peer_check(changetype<Peer>(p), slot, gen);
  if (rc && !(allowDisconnected && rc == -ESHUTDOWN)) return end(c, rc);
  return <i32>p;
}

/** After −ERETRY: relock everything in order and re-check the caller. */
function again(c: Ctx, p: i32, slot: u32, gen: u32, allowDisconnected: bool = false): i32 {
  let r = ls_retry(c);
  if (r == NEED_NOMEM) return -ENOMEM;
  if (r != 0) return broken(c);
  let rc = peer_check(changetype<Peer>(p), slot, gen);
  if (rc && !(allowDisconnected && rc == -ESHUTDOWN)) return rc;
  return 0;
}

function end(c: Ctx, rc: i32): i32 {
  ls_release(c);
  if (c.nWake) wake_flush(c);
  epoch_leave(changetype<usize>(c) + offsetof<Ctx>("inCall"));
  if (rc == -ESHUTDOWN && bus_broken()) return broken(c);
  return rc;
}

export function peer_connect(c: Ctx, user: f64): i32 {
  c.errArg = 0;
  if (bus_broken()) return broken(c);
  let rc = peer_new(c, user);
  if (rc) return rc;
  let out = ctx_out(c);
  if (!refs_add(c, load<u32>(out), load<u32>(out, 4))) {
    peer_close(c, load<u32>(out), load<u32>(out, 4));
    return -ENOMEM;
  }
  return 0;
}

/** Adds a host reference (adopt). */
export function peer_ref(c: Ctx, slot: u32, gen: u32): i32 {
  let p = begin(c, slot, gen);
  if (p < 0) return p;
  if (!refs_add(c, slot, gen)) return end(c, -ENOMEM);
  changetype<Peer>(p).refs++;
  peer_set_receiver(c, changetype<Peer>(p));
  return end(c, 0);
}

/** Drops a host reference (close); works on disconnected peers too. */
export function peer_unref(c: Ctx, slot: u32, gen: u32): i32 {
  let rc = peer_close(c, slot, gen);
  if (rc >= 0) refs_remove(c, slot, gen);
  return rc;
}

function peer_close(c: Ctx, slot: u32, gen: u32): i32 {
  let p = begin(c, slot, gen, true);
  if (p < 0) return p;
  let rc: i32;
  while ((rc = peer_put(c, changetype<Peer>(p))) == -ERETRY) {
    rc = again(c, p, slot, gen, true);
    if (rc) return end(c, rc);
  }
  return end(c, rc);
}

export function send_begin(c: Ctx, slot: u32, gen: u32, flags: u32, dsts: usize, nDsts: u32, nVecs: u32,
                           size: u32, hs: usize, nHandles: u32, objs: usize, nObjs: u32, out: usize): i32 {
  let p = begin(c, slot, gen);
  if (p < 0) return p;
  let rc: i32;
  while ((rc = peer_send_begin(c, changetype<Peer>(p), flags, dsts, nDsts, nVecs, size, hs, nHandles, objs, nObjs, out)) == -ERETRY) {
    rc = again(c, p, slot, gen);
    if (rc) return end(c, rc);
  }
  // on success the locks stay held until send_commit or send_cancel
  if (rc < 0) return end(c, rc);
  return rc;
}

export function send_commit(c: Ctx): void {
  peer_send_commit(c);
  end(c, 0);
}

export function send_cancel(c: Ctx): void {
  peer_send_cancel(c);
  end(c, 0);
}

export function recv(c: Ctx, slot: u32, gen: u32, flags: u32): i32 {
  let p = begin(c, slot, gen);
  if (p < 0) return p;
  // the records of the message before, should its host not have said it took them
  if (c.nTaking) records_taken(c);
  peer_set_receiver(c, changetype<Peer>(p));
  let rc: i32;
  while ((rc = peer_recv(c, changetype<Peer>(p), flags)) == -ERETRY) {
    rc = again(c, p, slot, gen);
    if (rc) return end(c, rc);
  }
  return end(c, rc);
}

/** 1 if recv would return a message now, 0 if not, or −errno. */
export function ready(c: Ctx, slot: u32, gen: u32): i32 {
  let p = begin(c, slot, gen);
  if (p < 0) return p;
  peer_set_receiver(c, changetype<Peer>(p));
  let rc: i32;
  while ((rc = peer_ready(c, changetype<Peer>(p))) == -ERETRY) {
    rc = again(c, p, slot, gen);
    if (rc) return end(c, rc);
  }
  return end(c, rc);
}

export function slice_release(c: Ctx, slot: u32, gen: u32, offset: f64): i32 {
  let p = begin(c, slot, gen);
  if (p < 0) return p;
  return end(c, peer_slice_release(c, changetype<Peer>(p), offset));
}

export function transfer(c: Ctx, slot: u32, gen: u32, id: f64, toSlot: u32, toGen: u32): i32 {
  let p = begin(c, slot, gen);
  if (p < 0) return p;
  let to = slot_lookup(toSlot, toGen);
  if (!to) {
    c.errArg = ARG_PEER;
    return end(c, -EINVAL);
  }
  let rc: i32;
  while ((rc = peer_transfer(c, changetype<Peer>(p), id, changetype<Peer>(to), toSlot, toGen)) == -ERETRY) {
    rc = again(c, p, slot, gen);
    if (rc) return end(c, rc);
  }
  return end(c, rc);
}

export function release(c: Ctx, slot: u32, gen: u32, id: f64): i32 {
  let p = begin(c, slot, gen);
  if (p < 0) return p;
  let rc: i32;
  while ((rc = peer_release(c, changetype<Peer>(p), id)) == -ERETRY) {
    rc = again(c, p, slot, gen);
    if (rc) return end(c, rc);
  }
  return end(c, rc);
}

export function destroy(c: Ctx, slot: u32, gen: u32, flags: u32, ids: usize, n: u32): i32 {
  let p = begin(c, slot, gen);
  if (p < 0) return p;
  let rc: i32;
  while ((rc = peer_destroy(c, changetype<Peer>(p), flags, ids, n)) == -ERETRY) {
    rc = again(c, p, slot, gen);
    if (rc) return end(c, rc);
  }
  return end(c, rc);
}

export function reset(c: Ctx, slot: u32, gen: u32, flags: u32, lims: usize): i32 {
  let p = begin(c, slot, gen);
  if (p < 0) return p;
  let rc: i32;
  while ((rc = peer_reset(c, changetype<Peer>(p), flags, lims)) == -ERETRY) {
    rc = again(c, p, slot, gen);
    if (rc) return end(c, rc);
  }
  return end(c, rc);
}

export function query(c: Ctx, slot: u32, gen: u32): i32 {
  let p = begin(c, slot, gen);
  if (p < 0) return p;
  peer_query(c, changetype<Peer>(p));
  return end(c, 0);
}

export function disconnect(c: Ctx, slot: u32, gen: u32): i32 {
  let p = begin(c, slot, gen);
  if (p < 0) return p;
  let rc: i32;
  while ((rc = flush_need(c, changetype<Peer>(p))) == -ERETRY) {
    rc = again(c, p, slot, gen);
    if (rc) return end(c, rc);
  }
  if (rc) return end(c, rc);
  peer_disconnect(c, changetype<Peer>(p));
  return end(c, 0);
}

export function stats(c: Ctx, slot: u32, gen: u32): i32 {
  let p = begin(c, slot, gen, true);
  if (p < 0) return p;
  peer_stats(c, changetype<Peer>(p));
  return end(c, 0);
}

/**
 * Address of the peer's wake word; its sleepers word (a count, and the armed
 * bit: ABI.md §5.5) follows it. It
 * lies in the peer's slot, which is never freed (bus.ts), so a host may keep
 * waiting on it after the peer is gone.
 */
export function wake_addr(slot: u32, gen: u32): i32 {
  if (!slot_lookup(slot, gen)) return -EBADF;
  return <i32>slot_wake(slot);
}
