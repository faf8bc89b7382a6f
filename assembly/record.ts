/**
 * DOC: record — host objects in flight (SPEC §7)
 *
 * A value that cannot live in linear memory (a JS object) travels with a
 * message as a record in the bus heap. The host of the sending thread makes
 * the record, keeps the value itself in a table of its own, and writes the
 * value's serialized form into the record for receivers in other threads;
 * the message carries the record's address. The core owns the record's
 * life: it counts records, charges their bytes to every receiver like
 * payload bytes (record_bytes), and turns the records of a thread that is
 * gone into orphans that the last receiver frees.
 *
 * Record (8-aligned, RECORD_HEADER bytes, then the serialized form):
 *
 *   +0  owner    u32  serial of the owning thread's context (Ctx.serial), or
 *                     RECORD_ORPHAN once that thread is gone. A serial is
 *                     never reused, so a thread that takes a dead thread's
 *                     table index never mistakes its records for its own.
 *   +4  slot     u32  the value's index in the owner's table
 *   +8  pending  i32  messages that still carry the record (atomic); −1 once
 *                     someone has claimed freeing it
 *   +12 length   u32  bytes of the serialized form, RECORD_NOT_CLONEABLE
 *                     when it has none
 *   +16 prev     u32  the owner's list of its records (Ctx.records),
 *   +20 next     u32  touched only by the owner, or after its death
 *   +24 bytes
 *
 * Freeing is claimed by moving `pending` from 0 to −1, so it happens once:
 * by the owner (its host sees `pending` reach 0), or, for an orphan, by
 * whoever takes the last message. Claiming and freeing, and counting a
 * received message off `pending`, happen inside core calls: a thread may be
 * terminated at any point of its host code, and one terminated inside a
 * call breaks the bus, while one stopped between a claim (or a receive) and
 * the free (or the count) in host code would leave the record for ever.
 * So a receive notes the message's records in the receiver's context
 * (Ctx.taking) and its host, once it has read them, counts them off in a
 * call (records_taken); a thread that is gone has it done by ctx_release. When a thread detaches (ctx_free) or is
 * found dead (thread_exit), its list is walked once: each record becomes an
 * orphan, and one that no message carries any more is freed at once.
 *
 * Locking: the list belongs to the owner's thread; `pending` and `owner` are
 * atomic words; the heap lock guards the memory.
 */

import { sync_add, sync_cas, sync_load, sync_store, sync_sub } from "./sync";
import { root, Root, heap_alloc, heap_free } from "./bus";
import { Ctx } from "./tx";
import { MAX_OBJECTS } from "./peer";

// @ts-ignore: decorator
@inline export const RECORD_HEADER: u32 = 24;
export const RECORD_ORPHAN: u32 = 0xFFFFFFFF;
export const RECORD_NOT_CLONEABLE: u32 = 0xFFFFFFFF;
/** Largest serialized form a record may hold. */
export const RECORD_MAX: u32 = 0x3FFFFFFF;

// @ts-ignore: decorator
@inline function records_counter(): usize {
  return changetype<usize>(root()) + offsetof<Root>("records");
}

/** A record of `length` bytes of serialized form for thread `c`, linked into its list; 0 when out of memory. */
export function record_new(c: Ctx, slot: u32, length: u32): usize {
  let bytes: u32 = length == RECORD_NOT_CLONEABLE ? 0 : length;
  if (bytes > RECORD_MAX) return 0;
  let rec = heap_alloc(RECORD_HEADER + bytes);
  if (!rec) return 0;
  store<u32>(rec, c.serial);
  store<u32>(rec, slot, 4);
  store<i32>(rec, 0, 8);
  store<u32>(rec, length, 12);
  store<u32>(rec, 0, 16);
  store<u32>(rec, c.records, 20);
  if (c.records) store<u32>(<usize>c.records, <u32>rec, 16);
  c.records = <u32>rec;
  sync_add<u32>(records_counter(), 1);
  return rec;
}

/** Frees a record whose freeing the caller claimed (pending −1); `c` is its owner unless it is an orphan. */
export function record_free(c: Ctx, rec: usize): void {
  if (sync_load<u32>(rec) != RECORD_ORPHAN) {
    let prev = <usize>load<u32>(rec, 16), next = <usize>load<u32>(rec, 20);
    if (prev) store<u32>(prev, <u32>next, 20);
    else c.records = <u32>next;
    if (next) store<u32>(next, <u32>prev, 16);
  }
  heap_free(rec);
  sync_sub<u32>(records_counter(), 1);
}

/** One message carrying `rec` is gone; an orphan nobody carries any more is freed (its owner's host frees the others). */
export function record_drop(c: Ctx, rec: usize): void {
  if (sync_sub<i32>(rec + 8, 1) != 1) return;
  if (sync_load<u32>(rec) == RECORD_ORPHAN && sync_cas<i32>(rec + 8, 0, -1) == 0) record_free(c, rec);
}

/** Frees `rec` if no message carries it (claims it: `pending` 0 → −1); 1 if freed. `c` is its owner, unless it is an orphan. */
export function record_release(c: Ctx, rec: usize): i32 {
  if (sync_cas<i32>(rec + 8, 0, -1) != 0) return 0;
  record_free(c, rec);
  return 1;
}

/** Room in `c` for the records of a received message (Ctx.taking, MAX_OBJECTS of them); false when out of memory. */
export function records_taking_room(c: Ctx): bool {
  if (c.taking) return true;
  let p = heap_alloc(MAX_OBJECTS << 2);
  if (!p) return false;
  c.taking = <u32>p;
  return true;
}

/** The host of `c` has taken the records of the message it received last (or is gone): they are counted off. */
export function records_taken(c: Ctx): void {
  let n = c.nTaking;
  c.nTaking = 0;
  for (let i: u32 = 0; i < n; i++) record_drop(c, <usize>load<u32>(<usize>c.taking + (<usize>i << 2)));
}

/** The thread of `c` is gone: its records become orphans; those nobody carries are freed. */
export function records_orphan(c: Ctx): void {
  let rec = <usize>c.records;
  c.records = 0;
  while (rec) {
    let next = <usize>load<u32>(rec, 20);
    sync_store<u32>(rec, RECORD_ORPHAN);
    if (sync_cas<i32>(rec + 8, 0, -1) == 0) {
      heap_free(rec);
      sync_sub<u32>(records_counter(), 1);
    }
    rec = next;
  }
}

/** Bytes the records at `objs` (u32 × n) take in the heap: what a message carrying them is charged. */
export function record_bytes(objs: usize, n: u32): u64 {
  let total: u64 = 0;
  for (let i: u32 = 0; i < n; i++) {
    let len = load<u32>(<usize>load<u32>(objs + (<usize>i << 2)), 12);
    total += ((<u64>RECORD_HEADER + (len == RECORD_NOT_CLONEABLE ? 0 : <u64>len)) + 7) & ~7;
  }
  return total;
}
