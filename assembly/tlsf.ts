/**
 * DOC: tlsf — a two-level segregated-fit allocator over raw regions
 *
 * One allocator, two uses: the bus heap (peers, nodes, handles, hash tables,
 * pool chunks) and each peer's pool (slices). Both need O(1) allocation and
 * free, immediate coalescing, and no state outside the memory they manage, so
 * that any thread attached to the bus can run them (under the lock of their
 * owner: the heap lock or the peer's data lock).
 *
 * Free blocks are kept on 25 × 16 segregated lists. A request is rounded up to
 * the next list boundary, so any block on the chosen list fits ("good fit"):
 * no list walk, and internal waste is below 1/16 of the size.
 *
 * Control block (one per allocator instance, `Tlsf`):
 *
 *   +0    flMap   u32                bit f set: some slMap[f] is non-zero
 *   +4    slMap   u32 × FL_COUNT     bit s set: heads[f][s] non-empty
 *   +104  heads   u32 × FL_COUNT × SL_COUNT
 *
 * Block (8-byte aligned; `ptr` is the header, the body follows it):
 *
 *   +0   info   u32   body size (multiple of 8) | FREE | PREV_FREE | FIRST
 *   +4   tag    u32   free for the user of a used block
 *   +8   body   ...   if free: prev u32, next u32, ..., and in its last
 *                     4 bytes a pointer back to the header
 *
 * A region is [first block ... ][sentinel: size 0, used]. FIRST marks the
 * block at the start of a region, so a caller can tell when a free block
 * spans its whole region (the pool returns such chunks to the heap).
 */

// @ts-ignore: decorator
@inline export const BLOCK_HEADER: u32 = 8;
// @ts-ignore: decorator
@inline export const BLOCK_MIN: u32 = 16;
// @ts-ignore: decorator
@inline export const BLOCK_MAX: u32 = 0x40000000;

// @ts-ignore: decorator
@inline const FREE: u32 = 1;
// @ts-ignore: decorator
@inline const PREV_FREE: u32 = 2;
// @ts-ignore: decorator
@inline const FIRST: u32 = 4;
// @ts-ignore: decorator
@inline const TAGS: u32 = 7;

// @ts-ignore: decorator
@inline const SL_BITS: u32 = 4;
// @ts-ignore: decorator
@inline const SL_COUNT: u32 = 1 << SL_BITS;
// @ts-ignore: decorator
@inline const SB_BITS: u32 = SL_BITS + 3;
// @ts-ignore: decorator
@inline const SB_SIZE: u32 = 1 << SB_BITS;
// @ts-ignore: decorator
@inline const FL_COUNT: u32 = 31 - SB_BITS + 1;

// @ts-ignore: decorator
@inline const SLMAP_OFFSET: u32 = 4;
// @ts-ignore: decorator
@inline const HEADS_OFFSET: u32 = SLMAP_OFFSET + FL_COUNT * 4;
// @ts-ignore: decorator
@inline export const TLSF_SIZE: u32 = HEADS_OFFSET + FL_COUNT * SL_COUNT * 4;

// ---- block accessors --------------------------------------------------------

// @ts-ignore: decorator
@inline export function block_size(b: usize): u32 {
  return load<u32>(b) & ~TAGS;
}

// @ts-ignore: decorator
@inline function block_info(b: usize): u32 {
  return load<u32>(b);
}

// @ts-ignore: decorator
@inline function block_set_info(b: usize, v: u32): void {
  store<u32>(b, v);
}

// @ts-ignore: decorator
@inline export function block_tag(b: usize): u32 {
  return load<u32>(b, 4);
}

// @ts-ignore: decorator
@inline export function block_set_tag(b: usize, v: u32): void {
  store<u32>(b, v, 4);
}

// @ts-ignore: decorator
@inline export function block_body(b: usize): usize {
  return b + BLOCK_HEADER;
}

// @ts-ignore: decorator
@inline export function block_of_body(p: usize): usize {
  return p - BLOCK_HEADER;
}

// @ts-ignore: decorator
@inline function block_next_phys(b: usize): usize {
  return b + BLOCK_HEADER + block_size(b);
}

// @ts-ignore: decorator
@inline function block_prev_phys(b: usize): usize {
  return load<u32>(b - 4);
}

// @ts-ignore: decorator
@inline function free_prev(b: usize): usize {
  return load<u32>(b, 8);
}

// @ts-ignore: decorator
@inline function free_next(b: usize): usize {
  return load<u32>(b, 12);
}

/** True if `b` is free and spans its whole region. */
export function block_spans_region(b: usize): bool {
  let info = block_info(b);
  return (info & (FREE | FIRST)) == (FREE | FIRST) && block_size(block_next_phys(b)) == 0;
}

// ---- list mapping -----------------------------------------------------------

// @ts-ignore: decorator
@inline function fls(x: u32): u32 {
  return 31 - clz<u32>(x);
}

/** Rounds a request up to a size every block on its list can serve. */
function size_round_up(size: u32): u32 {
  if (size < SB_SIZE) return size;
  let round = (1 << (fls(size) - SL_BITS)) - 1;
  return (size + round) & ~round;
}

// @ts-ignore: decorator
@inline function map_fl(size: u32): u32 {
  return size < SB_SIZE ? 0 : fls(size) - SB_BITS + 1;
}

// @ts-ignore: decorator
@inline function map_sl(size: u32): u32 {
  return size < SB_SIZE ? size >> 3 : (size >> (fls(size) - SL_BITS)) ^ SL_COUNT;
}

// @ts-ignore: decorator
@inline function head_addr(t: usize, fl: u32, sl: u32): usize {
  return t + HEADS_OFFSET + ((fl << SL_BITS) + sl) * 4;
}

// @ts-ignore: decorator
@inline function slmap_addr(t: usize, fl: u32): usize {
  return t + SLMAP_OFFSET + fl * 4;
}

// ---- free lists -------------------------------------------------------------

function list_insert(t: usize, b: usize): void {
  let size = block_size(b);
  let fl = map_fl(size), sl = map_sl(size);
  let h = head_addr(t, fl, sl);
  let head = load<u32>(h);
  store<u32>(b, 0, 8);
  store<u32>(b, head, 12);
  if (head) store<u32>(head, <u32>b, 8);
  store<u32>(h, <u32>b);
  store<u32>(t, load<u32>(t) | (1 << fl));
  let sm = slmap_addr(t, fl);
  store<u32>(sm, load<u32>(sm) | (1 << sl));
  // back pointer in the last word of the body, for the next block's merge
  store<u32>(block_next_phys(b) - 4, <u32>b);
}

function list_remove(t: usize, b: usize): void {
  let size = block_size(b);
  let fl = map_fl(size), sl = map_sl(size);
  let prev = free_prev(b), next = free_next(b);
  if (prev) store<u32>(prev, next, 12);
  if (next) store<u32>(next, prev, 8);
  let h = head_addr(t, fl, sl);
  if (load<u32>(h) == <u32>b) {
    store<u32>(h, next);
    if (!next) {
      let sm = slmap_addr(t, fl);
      let m = load<u32>(sm) & ~(1 << sl);
      store<u32>(sm, m);
      if (!m) store<u32>(t, load<u32>(t) & ~(1 << fl));
    }
  }
}

function list_search(t: usize, size: u32): usize {
  let fl = map_fl(size), sl = map_sl(size);
  let m = load<u32>(slmap_addr(t, fl)) & (<u32>0xFFFFFFFF << sl);
  if (!m) {
    let fm = fl + 1 < 32 ? load<u32>(t) & (<u32>0xFFFFFFFF << (fl + 1)) : 0;
    if (!fm) return 0;
    fl = ctz<u32>(fm);
    m = load<u32>(slmap_addr(t, fl));
  }
  return load<u32>(head_addr(t, fl, ctz<u32>(m)));
}

// ---- public operations ------------------------------------------------------

/** Clears a control block of TLSF_SIZE bytes. */
export function tlsf_init(t: usize): void {
  memory.fill(t, 0, TLSF_SIZE);
}

/**
 * Adds [start, end) as a new region: one free block and a sentinel. Both ends
 * must be 8-byte aligned and the region at least 32 bytes long.
 */
export function tlsf_add_region(t: usize, start: usize, end: usize): void {
  let size = <u32>(end - start) - 2 * BLOCK_HEADER;
  block_set_info(start, size | FREE | FIRST);
  let sentinel = start + BLOCK_HEADER + size;
  block_set_info(sentinel, 0 | PREV_FREE);
  block_set_tag(sentinel, 0);
  list_insert(t, start);
}

/**
 * Extends the region that ends at `oldEnd` (its sentinel is at oldEnd − 8) to
 * `newEnd`, merging with a free block before the sentinel.
 */
export function tlsf_extend_region(t: usize, oldEnd: usize, newEnd: usize): void {
  let b = oldEnd - BLOCK_HEADER;
  let info = block_info(b);
  let size = <u32>(newEnd - oldEnd) - BLOCK_HEADER;
  let flags: u32 = 0;
  if (info & PREV_FREE) {
    let prev = block_prev_phys(b);
    list_remove(t, prev);
    flags = block_info(prev) & FIRST;
    size += block_size(prev) + BLOCK_HEADER;
    b = prev;
  }
  // old sentinel header becomes the new free block's header
  block_set_info(b, size | FREE | flags);
  let sentinel = newEnd - BLOCK_HEADER;
  block_set_info(sentinel, 0 | PREV_FREE);
  block_set_tag(sentinel, 0);
  list_insert(t, b);
}

/** The body size a request of `size` bytes occupies. */
// @ts-ignore: decorator
@inline export function tlsf_body_size(size: u32): u32 {
  let s = (size + 7) & ~7;
  return s < BLOCK_MIN ? BLOCK_MIN : s;
}

/**
 * Allocates a block whose body holds `size` bytes; returns the block header,
 * or 0 if no free block fits (the caller may add a region and retry).
 */
export function tlsf_alloc(t: usize, size: u32): usize {
  if (size > BLOCK_MAX) return 0;
  let body = tlsf_body_size(size);
  let b = list_search(t, size_round_up(body));
  if (!b) return 0;
  list_remove(t, b);
  let have = block_size(b);
  let info = block_info(b);
  let rest = have - body;
  if (rest >= BLOCK_HEADER + BLOCK_MIN) {
    // split: the tail becomes a new free block
    block_set_info(b, body | (info & (PREV_FREE | FIRST)));
    let tail = b + BLOCK_HEADER + body;
    block_set_info(tail, (rest - BLOCK_HEADER) | FREE);
    list_insert(t, tail);
  } else {
    block_set_info(b, info & ~FREE);
    let next = block_next_phys(b);
    block_set_info(next, block_info(next) & ~PREV_FREE);
  }
  block_set_tag(b, 0);
  return b;
}

/** Frees a block, merging it with free neighbours. Returns the merged block. */
export function tlsf_free(t: usize, b: usize): usize {
  let info = block_info(b);
  assert(!(info & FREE), "block freed twice");
  let size = block_size(b);
  let flags = info & (FIRST | PREV_FREE);
  if (flags & PREV_FREE) {
    let prev = block_prev_phys(b);
    list_remove(t, prev);
    size += block_size(prev) + BLOCK_HEADER;
    flags = block_info(prev) & FIRST;
    b = prev;
  }
  let next = b + BLOCK_HEADER + size;
  let ninfo = block_info(next);
  if (ninfo & FREE) {
    list_remove(t, next);
    size += (ninfo & ~TAGS) + BLOCK_HEADER;
  }
  block_set_info(b, size | FREE | flags);
  next = b + BLOCK_HEADER + size;
  block_set_info(next, block_info(next) | PREV_FREE);
  list_insert(t, b);
  return b;
}

/** Takes a free block out of the lists (to hand its region back). */
export function tlsf_take(t: usize, b: usize): void {
  list_remove(t, b);
}
