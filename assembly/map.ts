/**
 * DOC: map — an open-addressing hash map from u64 keys to non-zero u32 values
 *
 * Each peer keeps three: handle ID → handle, node → handle (coalescing), and
 * slice offset → slice. A map is three u32 words embedded in its owner:
 *
 *   +0  table   heap block of `cap` entries, 0 while empty
 *   +4  cap     a power of two, 0 while empty
 *   +8  count   live entries
 *
 * Entry: key u64, value u32, pad u32 (value 0 = empty slot). Linear probing
 * with backward-shift deletion, so there are no tombstones and a lookup stops
 * at the first empty slot. The load factor stays at or below 3/4.
 *
 * Inserts never allocate: the owner calls `map_reserve` first, at a point
 * where running out of memory can still be reported (ENOMEM) without undoing
 * anything. The map is guarded by the lock of the peer that embeds it.
 */

import { heap_calloc, heap_free } from "./bus";

// @ts-ignore: decorator
@inline const ENTRY: u32 = 16;
// @ts-ignore: decorator
@inline const MIN_CAP: u32 = 8;

// @ts-ignore: decorator
@inline function m_table(m: usize): usize { return load<u32>(m); }
// @ts-ignore: decorator
@inline function m_cap(m: usize): u32 { return load<u32>(m, 4); }
// @ts-ignore: decorator
@inline export function map_count(m: usize): u32 { return load<u32>(m, 8); }

// @ts-ignore: decorator
@inline function hash(key: u64, cap: u32): u32 {
  return <u32>((key * 0x9E3779B97F4A7C15) >> 32) & (cap - 1);
}

/** Ensures room for `n` entries in all, growing the table if needed. */
export function map_reserve(m: usize, n: u32): bool {
  let cap = m_cap(m);
  if (n * 4 <= cap * 3) return true;
  let ncap = cap ? cap : MIN_CAP;
  while (n * 4 > ncap * 3) ncap <<= 1;
  let nt = heap_calloc(ncap * ENTRY);
  if (!nt) return false;
  let ot = m_table(m);
  store<u32>(m, <u32>nt);
  store<u32>(m, ncap, 4);
  store<u32>(m, 0, 8);
  for (let i: u32 = 0; i < cap; i++) {
    let e = ot + i * ENTRY;
    let v = load<u32>(e, 8);
    if (v) map_insert(m, load<u64>(e), v);
  }
  if (ot) heap_free(ot);
  return true;
}

/** Returns the value for `key`, or 0. */
export function map_get(m: usize, key: u64): u32 {
  let cap = m_cap(m);
  if (!cap) return 0;
  let t = m_table(m);
  let i = hash(key, cap);
  while (true) {
    let e = t + i * ENTRY;
    let v = load<u32>(e, 8);
    if (!v) return 0;
    if (load<u64>(e) == key) return v;
    i = (i + 1) & (cap - 1);
  }
}

/** Inserts a key that is not present; room must have been reserved. */
export function map_insert(m: usize, key: u64, value: u32): void {
  let cap = m_cap(m);
  assert(value != 0 && (map_count(m) + 1) * 4 <= cap * 3, "map insert without room");
  let t = m_table(m);
  let i = hash(key, cap);
  while (load<u32>(t + i * ENTRY, 8)) i = (i + 1) & (cap - 1);
  let e = t + i * ENTRY;
  store<u64>(e, key);
  store<u32>(e, value, 8);
  store<u32>(m, map_count(m) + 1, 8);
}

/** Removes `key` if present; returns its value or 0. */
export function map_remove(m: usize, key: u64): u32 {
  let cap = m_cap(m);
  if (!cap) return 0;
  let t = m_table(m);
  let mask = cap - 1;
  let i = hash(key, cap);
  let v: u32;
  while (true) {
    let e = t + i * ENTRY;
    v = load<u32>(e, 8);
    if (!v) return 0;
    if (load<u64>(e) == key) break;
    i = (i + 1) & mask;
  }
  // backward shift: move later members of the cluster into the hole
  let hole = i;
  let j = (i + 1) & mask;
  while (true) {
    let e = t + j * ENTRY;
    let ev = load<u32>(e, 8);
    if (!ev) break;
    let home = hash(load<u64>(e), cap);
    // the entry at j may move to the hole if its home is not in (hole, j]
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      let h = t + hole * ENTRY;
      store<u64>(h, load<u64>(e));
      store<u32>(h, ev, 8);
      hole = j;
    }
    j = (j + 1) & mask;
  }
  store<u32>(t + hole * ENTRY, 0, 8);
  store<u32>(m, map_count(m) - 1, 8);
  return v;
}

/** Value at table index `i` (0 if empty), for iteration over `map_capacity`. */
export function map_value_at(m: usize, i: u32): u32 {
  return load<u32>(m_table(m) + i * ENTRY, 8);
}

export function map_key_at(m: usize, i: u32): u64 {
  return load<u64>(m_table(m) + i * ENTRY);
}

export function map_capacity(m: usize): u32 {
  return m_cap(m);
}

/** Frees the table; the map is empty afterwards. */
export function map_clear(m: usize): void {
  let t = m_table(m);
  if (t) heap_free(t);
  store<u32>(m, 0);
  store<u32>(m, 0, 4);
  store<u32>(m, 0, 8);
}
