/**
 * DOC: index — the exported ABI
 *
 * Every export is one call into the bus, made by the calling thread like a
 * syscall. A peer is named by (slot, generation); `ctx` is the calling
 * thread's context block (ctx_new), where results are written. Calls return
 * 0 (or a count) on success and −errno on failure; on failure ctx.errArg and
 * ctx.errIndex say which argument was at fault. docs/ABI.md is the reference.
 */

import { bus_setup, root, slot_lookup, heap_alloc, heap_calloc, heap_free, heap_bytes, BUS1_MAGIC, ABI_VERSION } from "./bus";
import { Ctx, CTX_SIZE, ctx_out } from "./tx";
import {
  Peer, PEER_DISCONNECTED, peer_new, peer_put, peer_send_begin, peer_send_commit, peer_send_cancel,
  peer_recv, peer_slice_release, peer_transfer, peer_release, peer_destroy, peer_reset, peer_query,
  peer_disconnect, peer_stats, peer_ready,
  MAX_DESTINATIONS, MAX_HANDLES, MAX_VECS, MAX_OBJECTS, MAX_DESTROY,
} from "./peer";
import { EBADF, EINVAL, ENOMEM, ESHUTDOWN } from "./errno";

/** Bounds on the counts of one call (exported as immutable globals). */
export const max_destinations: u32 = MAX_DESTINATIONS;
export const max_handles: u32 = MAX_HANDLES;
export const max_vecs: u32 = MAX_VECS;
export const max_objects: u32 = MAX_OBJECTS;
export const max_destroy: u32 = MAX_DESTROY;

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

/** Bytes the bus heap spans. */
export function bus_heap_bytes(): u32 {
  return heap_bytes();
}

/** A new thread context block; 0 when out of memory. */
export function ctx_new(): usize {
  return heap_calloc(CTX_SIZE);
}

export function ctx_free(c: usize): void {
  heap_free(c);
}

/** Scratch memory for call arguments; 0 when out of memory. */
export function scratch_alloc(size: u32): usize {
  return heap_alloc(size);
}

export function scratch_free(p: usize): void {
  heap_free(p);
}

/** The peer for (slot, gen): a pointer, or −errno. */
function lookup(slot: u32, gen: u32): i32 {
  let p = slot_lookup(slot, gen);
  if (!p) return -EBADF;
  if (changetype<Peer>(p).flags & PEER_DISCONNECTED) return -ESHUTDOWN;
  return <i32>p;
}

export function peer_connect(c: Ctx, user: f64): i32 {
  return peer_new(c, user);
}

/** Adds a host reference (adopt). */
export function peer_ref(c: Ctx, slot: u32, gen: u32): i32 {
  let p = lookup(slot, gen);
  if (p < 0) return p;
  changetype<Peer>(p).refs++;
  return 0;
}

/** Drops a host reference (close); works on disconnected peers too. */
export function peer_unref(c: Ctx, slot: u32, gen: u32): i32 {
  let p = slot_lookup(slot, gen);
  if (!p) return -EBADF;
  peer_put(c, changetype<Peer>(p));
  return 0;
}

export function send_begin(c: Ctx, slot: u32, gen: u32, flags: u32, dsts: usize, nDsts: u32, nVecs: u32,
                           size: u32, hs: usize, nHandles: u32, objs: usize, nObjs: u32, out: usize): i32 {
  let p = lookup(slot, gen);
  if (p < 0) return p;
  return peer_send_begin(c, changetype<Peer>(p), flags, dsts, nDsts, nVecs, size, hs, nHandles, objs, nObjs, out);
}

export function send_commit(c: Ctx): void {
  peer_send_commit(c);
}

export function send_cancel(c: Ctx): void {
  peer_send_cancel(c);
}

export function recv(c: Ctx, slot: u32, gen: u32, flags: u32): i32 {
  let p = lookup(slot, gen);
  if (p < 0) return p;
  return peer_recv(c, changetype<Peer>(p), flags);
}

export function slice_release(c: Ctx, slot: u32, gen: u32, offset: f64): i32 {
  let p = lookup(slot, gen);
  if (p < 0) return p;
  return peer_slice_release(c, changetype<Peer>(p), offset);
}

export function transfer(c: Ctx, slot: u32, gen: u32, id: f64, toSlot: u32, toGen: u32): i32 {
  let p = lookup(slot, gen);
  if (p < 0) return p;
  let to = lookup(toSlot, toGen);
  if (to < 0) return to == -EBADF ? -EINVAL : to;
  return peer_transfer(c, changetype<Peer>(p), id, changetype<Peer>(to));
}

export function release(c: Ctx, slot: u32, gen: u32, id: f64): i32 {
  let p = lookup(slot, gen);
  if (p < 0) return p;
  return peer_release(c, changetype<Peer>(p), id);
}

export function destroy(c: Ctx, slot: u32, gen: u32, flags: u32, ids: usize, n: u32): i32 {
  let p = lookup(slot, gen);
  if (p < 0) return p;
  return peer_destroy(c, changetype<Peer>(p), flags, ids, n);
}

export function reset(c: Ctx, slot: u32, gen: u32, flags: u32, lims: usize): i32 {
  let p = lookup(slot, gen);
  if (p < 0) return p;
  return peer_reset(c, changetype<Peer>(p), flags, lims);
}

export function query(c: Ctx, slot: u32, gen: u32): i32 {
  let p = lookup(slot, gen);
  if (p < 0) return p;
  peer_query(c, changetype<Peer>(p));
  return 0;
}

export function disconnect(c: Ctx, slot: u32, gen: u32): i32 {
  let p = lookup(slot, gen);
  if (p < 0) return p;
  peer_disconnect(c, changetype<Peer>(p));
  return 0;
}

export function stats(c: Ctx, slot: u32, gen: u32): i32 {
  let p = slot_lookup(slot, gen);
  if (!p) return -EBADF;
  peer_stats(c, changetype<Peer>(p));
  return 0;
}

/** 1 if recv would return a message now, 0 if not, or −errno. */
export function ready(c: Ctx, slot: u32, gen: u32): i32 {
  let p = lookup(slot, gen);
  if (p < 0) return p;
  return peer_ready(c, changetype<Peer>(p));
}

/** Address of the peer's wake word (bumped when its queue may have become ready). */
export function wake_addr(slot: u32, gen: u32): i32 {
  let p = slot_lookup(slot, gen);
  if (!p) return -EBADF;
  return <i32>(p + offsetof<Peer>("wake"));
}
