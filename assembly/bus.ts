/**
 * DOC: bus — the root of one bus and its heap
 *
 * Everything of a bus lives in linear memory the core manages itself,
 * reachable from one root that `bus_init` lays out once at `__heap_base`.
 * Nothing is kept in the AssemblyScript heap or in data segments (a worker
 * that attaches re-instantiates the module, which rewrites data segments),
 * and no module global holds bus state: every thread finds the root at the
 * same fixed address.
 *
 * Memory map:
 *
 *   0 .. __heap_base      static data of the module (read-only strings)
 *   root                  Root (below), aligned to 64
 *   root + ROOT_SIZE      the heap: TLSF blocks up to `heapEnd`; grows with
 *                         memory.grow, never beyond `maxPages`
 *
 * Root layout (all u32):
 *
 *   +0   magic       BUS1_MAGIC
 *   +4   version     ABI_VERSION
 *   +8   heapLock    lock (2 words, lock.ts) guarding the heap
 *   +16  heapEnd     end of the heap region
 *   +20  maxPages    bound from the `maxMemoryBytes` option
 *   +24  serial      last peer serial handed out (tie-break of the order)
 *   +28  nThreads    attached threads (entries in the thread table)
 *   +32  peerFree    first free peer slot + 1, 0 if none
 *   +36  peerSlots   number of peer slots ever made
 *   +40  limits      default per-user limits: slices, handles, bytes, objects
 *   +56  broken      0, or why the bus is broken (lock.ts BROKEN_*)
 *   +60  miscLock    lock (2 words) guarding users, peer slots, the limbo,
 *                    the thread table and the counters below
 *   +68  records     host-object records alive (record_alloc, atomic)
 *   +72  threads     thread table: MAX_THREADS context pointers
 *   +76  spinners    threads spinning in a host's wait (the hosts keep it
 *                    below the processor count; the core only takes back
 *                    the place of a thread that died spinning, thread_exit)
 *   +80  epoch       reclamation epoch (even; see "Freeing peers" below)
 *   +84  limbo       three lists of retired Peer records, by epoch / 2 % 3
 *   +96  heapUsed    bytes in use in the heap: each block's request, 8-aligned,
 *                    and its header (kept in the block's tag, so the count
 *                    does not depend on how the allocator placed it)
 *   +100 peers       peers that exist: connected, or disconnected while some
 *                    reference is open (a freed peer's record may stay a
 *                    while longer, pinned or in the limbo)
 *   +104 ctxSerial   last thread serial handed out (never 0 or 0xffffffff)
 *   +108 threadsHigh thread-table entries ever used (bounds every scan)
 *   +112 userMap     user id → User (map.ts, three words)
 *   +124 cuts        address of the cut counter (lane.ts): a word on a line of
 *                    its own, in a heap block made by bus_init
 *   +128 tlsf        the heap's TLSF control block
 *   +128+TLSF_SIZE   peer directory: PEER_DIR_SIZE page pointers
 *
 * Peer slots: a peer is named across the ABI by (slot, generation); the
 * generation changes whenever a slot is freed, so a stale reference can never
 * reach a new peer. Slots live in pages of PEER_PAGE_SLOTS entries that are
 * never moved or freed, so a reader needs no lock to find a peer. A slot
 * entry is four u32s: the peer (or the free-list link, odd), the generation,
 * and the peer's wake word and its sleepers word (a count, and bit 31 armed:
 * peer.ts peer_wake, ABI.md §5.5). The wake word lives in
 * the slot, not in the Peer, because a host sleeps on its address outside any
 * call: slot memory is never freed, so a host that still waits on the word of
 * a peer that is gone only sees a spurious wake-up.
 *
 * Freeing peers (epoch-based reclamation). Inside a call a thread follows raw
 * Peer pointers it does not hold the lock of: the slot directory, a node's
 * owner, its lock set while it relocks after a retry. So a Peer record is not
 * handed back to the heap the moment it is freed: it is retired to the limbo
 * list of the current epoch. A thread in a call announces the epoch it saw
 * at the start of the call (Ctx.inCall = epoch + 1; 0 between calls). The
 * epoch moves on by 2 once every thread in a call has announced the current
 * one; a record retired in epoch E is freed when the epoch reaches E + 4:
 * every thread then in a call started it after the record was retired, when
 * nothing led to it any more. Persistent pointers to a Peer are counted
 * instead (Peer.pins: the nodes it owns), and a peer is retired only when it
 * is freed and unpinned.
 */

import { sync_load, sync_store } from "./sync";
import { tlsf_init, tlsf_add_region, tlsf_extend_region, tlsf_alloc, tlsf_free, block_body, block_of_body, block_tag, block_set_tag, TLSF_SIZE, BLOCK_HEADER } from "./tlsf";
import { lock_take, lock_drop } from "./lock";

export const BUS1_MAGIC: u32 = 0x31737562; // "bus1"
export const ABI_VERSION: u32 = 7;

// @ts-ignore: decorator
@inline export const PAGE_SIZE: u32 = 65536;
// @ts-ignore: decorator
@inline export const PEER_PAGE_SLOTS: u32 = 512;
// @ts-ignore: decorator
@inline export const SLOT_SIZE: u32 = 16;
// @ts-ignore: decorator
@inline export const PEER_DIR_SIZE: u32 = 1024;

// @ts-ignore: decorator
@inline const ROOT_TLSF: u32 = 128;
// @ts-ignore: decorator
@inline const ROOT_PEER_DIR: u32 = ROOT_TLSF + TLSF_SIZE;
// @ts-ignore: decorator
@inline const ROOT_SIZE: u32 = (ROOT_PEER_DIR + PEER_DIR_SIZE * 4 + 63) & ~63;

@unmanaged export class Root {
  magic: u32;
  version: u32;
  heapLock: u32;
  heapWaiters: u32;
  heapEnd: u32;
  maxPages: u32;
  serial: u32;
  nThreads: u32;
  peerFree: u32;
  peerSlots: u32;
  limSlices: u32;
  limHandles: u32;
  limBytes: u32;
  limObjects: u32;
  broken: u32;
  miscLock: u32;
  miscWaiters: u32;
  records: u32;
  threads: u32;
  spinners: u32;
  epoch: u32;
  limbo0: u32; limbo1: u32; limbo2: u32;
  heapUsed: u32;
  peers: u32;
  ctxSerial: u32;
  threadsHigh: u32;
  userMap: u32; userCap: u32; userCount: u32;
  cuts: u32;
}

// @ts-ignore: decorator
@inline export const MAX_THREADS: u32 = 1024;

/** The root's address: the same in every instance of the module. */
// @ts-ignore: decorator
@inline export function root_addr(): usize {
  return (__heap_base + 63) & ~63;
}

// @ts-ignore: decorator
@inline export function root(): Root {
  return changetype<Root>(root_addr());
}

// @ts-ignore: decorator
@inline function heap_tlsf(): usize {
  return root_addr() + ROOT_TLSF;
}

/**
 * Lays out a new bus in this memory. `maxPages` bounds the memory; the caller
 * has checked the limits.
 */
export function bus_setup(maxPages: u32, slices: u32, handles: u32, bytes: u32, objects: u32): i32 {
  let base = root_addr();
  let heapStart = base + ROOT_SIZE;
  let end = (heapStart + 2 * 16 + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
  let have = <usize>memory.size() << 16;
  if (end > have && memory.grow(<i32>((end - have) >> 16)) < 0) return -1;
  memory.fill(base, 0, ROOT_SIZE);
  let r = root();
  r.magic = BUS1_MAGIC;
  r.version = ABI_VERSION;
  r.maxPages = maxPages;
  r.heapEnd = <u32>end;
  r.limSlices = slices;
  r.limHandles = handles;
  r.limBytes = bytes;
  r.limObjects = objects;
  tlsf_init(heap_tlsf());
  tlsf_add_region(heap_tlsf(), heapStart, end);
  let threads = heap_calloc(MAX_THREADS * 4);
  if (!threads) return -1;
  r.threads = <u32>threads;
  // every lane send reads it, a transaction on several queues adds to it: no other word on its line
  let cuts = heap_calloc(128);
  if (!cuts) return -1;
  r.cuts = <u32>((cuts + 63) & ~63);
  assert(<usize>r.cuts + 8 <= cuts + 128, "cut counter outside its block");
  return 0;
}

export function thread_set(tid: u32): void {
  thread_tid = tid;
}

/**
 * Grows the heap so that a block with a body of `size` bytes fits: first into
 * memory that is already there (a private bus is made at its full size, so
 * that growth never detaches the views handed out on its buffer), then with
 * memory.grow.
 */
function heap_grow(size: u32): bool {
  let r = root();
  // TLSF rounds a request up to its size class (up to 1/16 more) before it
  // searches: the new region must hold that, not just `size`
  let need = (<usize>size + (<usize>size >> 3) + 64 + PAGE_SIZE - 1) & ~(<usize>PAGE_SIZE - 1);
  // grow by at least a quarter of what we have, to keep growth rare
  let want = max(need, (<usize>r.heapEnd >> 2) & ~(<usize>PAGE_SIZE - 1));
  let oldEnd = <usize>r.heapEnd;
  let have = <usize>memory.size() << 16;
  let newEnd: usize;
  if (oldEnd + need <= have) {
    newEnd = min(oldEnd + want, have);
  } else {
    let pages = <usize>memory.size();
    let more = (oldEnd + want - have) >> 16;
    if (pages + more > <usize>r.maxPages) more = (oldEnd + need - have) >> 16;
    if (pages + more > <usize>r.maxPages || memory.grow(<i32>more) < 0) return false;
    // another instance may have grown the memory too: the heap takes all of it
    newEnd = <usize>memory.size() << 16;
  }
  tlsf_extend_region(heap_tlsf(), oldEnd, newEnd);
  r.heapEnd = <u32>newEnd;
  return true;
}

/** Allocates `size` bytes (8-aligned) from the heap; 0 when out of memory. */
export function heap_alloc(size: u32): usize {
  let t = heap_tlsf();
  let l = root_addr() + offsetof<Root>("heapLock");
  if (!lock_take(l, thread_tid)) return 0;
  let b = tlsf_alloc(t, size);
  if (!b && heap_grow(size)) b = tlsf_alloc(t, size);
  if (b) {
    // what was asked for (8-aligned) and the header, kept in the block's tag:
    // the count does not depend on where a block landed or how it was split
    let used = ((size + 7) & ~7) + BLOCK_HEADER;
    block_set_tag(b, used);
    root().heapUsed += used;
  }
  lock_drop(l);
  return b ? block_body(b) : 0;
}

/** Allocates and zeroes. */
export function heap_calloc(size: u32): usize {
  let p = heap_alloc(size);
  if (p) memory.fill(p, 0, size);
  return p;
}

export function heap_free(p: usize): void {
  let l = root_addr() + offsetof<Root>("heapLock");
  // a broken bus leaks rather than risk a heap a dead thread left half-changed
  if (!lock_take(l, thread_tid)) return;
  let b = block_of_body(p);
  root().heapUsed -= block_tag(b);
  tlsf_free(heap_tlsf(), b);
  lock_drop(l);
}

/**
 * Makes room for one more element in a growable array kept as three u32s at
 * `a`: pointer, count, capacity (doubling, from 8). False when out of memory.
 */
export function array_room(a: usize, elem: u32): bool {
  let n = load<u32>(a, 4), cap = load<u32>(a, 8);
  if (n < cap) return true;
  let ncap = cap ? cap * 2 : 8;
  let p = heap_alloc(ncap * elem);
  if (!p) return false;
  let old = <usize>load<u32>(a);
  if (old) {
    memory.copy(p, old, n * elem);
    heap_free(old);
  }
  store<u32>(a, <u32>p);
  store<u32>(a, ncap, 8);
  return true;
}

/**
 * Gives back most of a growable array (see array_room) that has emptied: at
 * a quarter full or less it moves to a table half its size (never below 8).
 * A thread that once held thousands of references does not keep their table
 * for ever. Out of memory, it stays as it is.
 */
export function array_shrink(a: usize, elem: u32): void {
  let n = load<u32>(a, 4), cap = load<u32>(a, 8);
  if (cap <= 8 || n > cap >> 2) return;
  let ncap = cap >> 1;
  let p = heap_alloc(ncap * elem);
  if (!p) return;
  let old = <usize>load<u32>(a);
  memory.copy(p, old, n * elem);
  heap_free(old);
  store<u32>(a, <u32>p);
  store<u32>(a, ncap, 8);
}

/** Takes the misc lock (users, slots, free peers, threads). */
export function misc_lock(): bool {
  return lock_take(root_addr() + offsetof<Root>("miscLock"), thread_tid);
}

export function misc_unlock(): void {
  lock_drop(root_addr() + offsetof<Root>("miscLock"));
}

/**
 * This thread's identity (its index in the thread table) and whether it may
 * block. Module globals are per instance, so per thread: this is the only
 * state the core keeps outside the bus memory, set when the thread attaches.
 */
export let thread_tid: u32 = 0;

/** Bytes of memory the heap spans (for statistics). */
export function heap_bytes(): u32 {
  return root().heapEnd - <u32>(root_addr() + ROOT_SIZE);
}

// ---- peer slots ---------------------------------------------------------------

// @ts-ignore: decorator
@inline function peer_dir(): usize {
  return root_addr() + ROOT_PEER_DIR;
}

/** Address of slot `i`'s entry (peer ptr, generation, wake, sleepers), or 0. */
export function slot_addr(i: u32): usize {
  let page = i / PEER_PAGE_SLOTS;
  if (page >= PEER_DIR_SIZE) return 0;
  let p = load<u32>(peer_dir() + page * 4);
  if (!p) return 0;
  return p + (i % PEER_PAGE_SLOTS) * SLOT_SIZE;
}

/** Takes a free slot for `peer`; returns its index, or -1 when out of memory. */
export function slot_take(peer: usize): i32 {
  let r = root();
  let i: u32;
  if (r.peerFree) {
    i = r.peerFree - 1;
    let e = slot_addr(i);
    r.peerFree = load<u32>(e) >> 1;
    store<u32>(e, <u32>peer);
    return <i32>i;
  }
  i = r.peerSlots;
  let page = i / PEER_PAGE_SLOTS;
  if (page >= PEER_DIR_SIZE) return -1;
  if (i % PEER_PAGE_SLOTS == 0) {
    let p = heap_calloc(PEER_PAGE_SLOTS * SLOT_SIZE);
    if (!p) return -1;
    store<u32>(peer_dir() + page * 4, <u32>p);
  }
  r.peerSlots = i + 1;
  let e = slot_addr(i);
  store<u32>(e, <u32>peer);
  return <i32>i;
}

/** Frees a slot: its generation moves on, so old references fail. */
export function slot_free(i: u32): void {
  let r = root();
  let e = slot_addr(i);
  store<u32>(e, (r.peerFree << 1) | 1);
  store<u32>(e, load<u32>(e, 4) + 1, 4);
  r.peerFree = i + 1;
}

/** The peer at (slot, gen), or 0 if that reference is stale or bogus. */
export function slot_lookup(i: u32, gen: u32): usize {
  let e = slot_addr(i);
  if (!e) return 0;
  let p = load<u32>(e);
  if ((p & 1) || !p || load<u32>(e, 4) != gen) return 0;
  return p;
}

export function slot_gen(i: u32): u32 {
  return load<u32>(slot_addr(i), 4);
}

/** Address of slot `i`'s wake word (its sleepers word, a count and the armed bit, follows it). */
export function slot_wake(i: u32): usize {
  return slot_addr(i) + 8;
}

// ---- reclamation ----------------------------------------------------------------

/** Announces that this thread is in a call (see "Freeing peers"). */
// @ts-ignore: decorator
@inline export function epoch_enter(inCall: usize): void {
  sync_store<u32>(inCall, sync_load<u32>(root_addr() + offsetof<Root>("epoch")) + 1);
}

// @ts-ignore: decorator
@inline export function epoch_leave(inCall: usize): void {
  sync_store<u32>(inCall, 0);
}

/** The limbo list of epoch `e` (0, 2 or 4). */
// @ts-ignore: decorator
@inline function limbo_list(e: u32): usize {
  return root_addr() + offsetof<Root>("limbo0") + (<usize>(e >> 1) << 2);
}

/**
 * Retires a freed Peer record: it goes back to the heap once no thread can
 * still be looking at it. Its third word (after the lock) links the list.
 * Under the misc lock.
 */
export function limbo_retire(p: usize): void {
  let list = limbo_list(root().epoch);
  store<u32>(p + LIMBO_LINK, load<u32>(list));
  store<u32>(list, <u32>p);
  limbo_advance();
}

/**
 * Moves the epoch on if every thread in a call has announced the current
 * one, and frees what was retired two epochs before. Under the misc lock.
 *
 * Epochs count 0, 2, 4, 0, ...: a thread in a call has announced either the
 * current epoch or the one before (the epoch cannot move past a thread that
 * has not seen it), so three values tell them apart. The list freed here is
 * the one of epoch next − 4, two moves ago; the list of `next` itself was
 * freed one move ago, so it is empty when the new epoch starts filling it.
 */
export function limbo_advance(): void {
  let r = root();
  let e = r.epoch;
  let t = <usize>r.threads;
  for (let i: u32 = 0; i < r.threadsHigh; i++) {
    let c = <usize>load<u32>(t + (i << 2));
    if (!c) continue;
    let seen = sync_load<u32>(c + CTX_IN_CALL);
    if (seen != 0 && seen != e + 1) return;
  }
  let next = e == 4 ? 0 : e + 2;
  // what was retired in epoch next − 4 (≡ next + 2): two moves ago
  let list = limbo_list(next == 0 ? 2 : next == 2 ? 4 : 0);
  let p = <usize>load<u32>(list);
  store<u32>(list, 0);
  sync_store<u32>(changetype<usize>(r) + offsetof<Root>("epoch"), next);
  while (p) {
    let after = <usize>load<u32>(p + LIMBO_LINK);
    heap_free(p);
    p = after;
  }
}

/** Frees what can be freed now (a thread that sees no other in a call frees everything). */
export function limbo_drain(): void {
  for (let i = 0; i < 3; i++) limbo_advance();
}

// @ts-ignore: decorator
@inline const LIMBO_LINK: usize = 8;

/** Ctx.inCall's offset (tx.ts); kept here so that bus.ts imports nothing above it. */
// @ts-ignore: decorator
@inline export const CTX_IN_CALL: usize = 100;
