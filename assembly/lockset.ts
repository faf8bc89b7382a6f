/**
 * DOC: lockset — the peers one call has locked
 *
 * An operation locks every peer whose state it changes: the caller, the
 * receivers of a send, the owners of the nodes it touches (a node's list of
 * handles, its references and its release entry are guarded by its owner's
 * lock), the holders a destroy notifies. Two threads sending to disjoint
 * receivers thus take disjoint locks.
 *
 * Locks are taken in address order. A call discovers what it needs as it
 * goes (ls_need): a peer above every held one is simply locked (still in
 * order); one below is only try-locked. If that fails, the call stops before
 * changing anything (−ERETRY, with the peer in ctx.want), the thread drops
 * every lock, takes the whole set again in order, and the call starts over.
 * Sets only grow within one call, so this ends.
 *
 * The held set is a sorted array of peer addresses in the heap (ctx.held).
 * A pointer in the set may name a peer that went away while the call had
 * dropped its locks for a retry: its record is not freed while the call runs
 * (bus.ts, "Freeing peers"), so it still holds a lock, and the call
 * re-validates what it finds after relocking.
 */

import { Ctx } from "./tx";
import { heap_free, array_room, array_shrink, thread_tid } from "./bus";
import { lock_take, lock_try, lock_drop } from "./lock";
import { Peer, wake_flush } from "./peer";
import { lane_settle } from "./lane";

export const ERETRY: i32 = 1000;

/** Results of ls_need: the bus broke while waiting; no memory for the set. */
export const NEED_BROKEN: i32 = -1;
export const NEED_NOMEM: i32 = -2;

// @ts-ignore: decorator
@inline function held_at(c: Ctx, i: u32): usize {
  return load<u32>(<usize>c.held + (<usize>i << 2));
}

function held_find(c: Ctx, p: usize): i32 {
  let lo: i32 = 0, hi: i32 = <i32>c.nHeld - 1;
  while (lo <= hi) {
    let mid = (lo + hi) >> 1;
    let v = held_at(c, mid);
    if (v == p) return mid;
    if (v < p) lo = mid + 1;
    else hi = mid - 1;
  }
  return -(lo + 1);
}

/** True if this call holds peer `p`'s lock. */
export function ls_holds(c: Ctx, p: usize): bool {
  return held_find(c, p) >= 0;
}

function held_insert(c: Ctx, at: u32, p: usize): bool {
  if (!array_room(changetype<usize>(c) + offsetof<Ctx>("held"), 4)) return false;
  let base = <usize>c.held + (<usize>at << 2);
  for (let i = <usize>c.nHeld - at; i > 0; i--) store<u32>(base + (i << 2), load<u32>(base + ((i - 1) << 2)));
  store<u32>(base, <u32>p);
  c.nHeld++;
  return true;
}

/**
 * Ensures peer `p` (its lock word at `p`) is locked by this call.
 * Returns 0, −ERETRY (could not lock it in order; ctx.want = p),
 * NEED_BROKEN (the bus broke) or NEED_NOMEM (no memory for the set).
 */
export function ls_need(c: Ctx, p: usize): i32 {
  // the first lock of a call: nothing to search, nowhere else to put it
  if (c.nHeld == 0 && c.capHeld != 0) {
    if (!lock_take(p, thread_tid)) return NEED_BROKEN;
    store<u32>(<usize>c.held, <u32>p);
    c.nHeld = 1;
    return 0;
  }
  // above every held lock (the usual case: a send's receiver above its
  // sender): append, still in order
  let n = c.nHeld;
  if (n != 0 && n < c.capHeld) {
    let last = held_at(c, n - 1);
    if (p == last) return 0;
    if (p > last) {
      if (!lock_take(p, thread_tid)) return NEED_BROKEN;
      store<u32>(<usize>c.held + (<usize>n << 2), <u32>p);
      c.nHeld = n + 1;
      return 0;
    }
  }
  let i = held_find(c, p);
  if (i >= 0) return 0;
  let at = <u32>(-i - 1);
  if (at == c.nHeld) {
    if (!lock_take(p, thread_tid)) return NEED_BROKEN;
  } else if (!lock_try(p, thread_tid)) {
    c.want = <u32>p;
    return -ERETRY;
  }
  if (!held_insert(c, at, p)) {
    lock_drop(p);
    return NEED_NOMEM;
  }
  return 0;
}

/** Drops every lock of the call (a set that grew large for one call shrinks again). */
export function ls_release(c: Ctx): void {
  assert(c.nHeld <= c.capHeld, "lock set overflow");
  for (let i: u32 = c.nHeld; i > 0; i--) lock_drop(held_at(c, i - 1));
  c.nHeld = 0;
  if (c.capHeld > 64) array_shrink(changetype<usize>(c) + offsetof<Ctx>("held"), 4);
}

/**
 * After −ERETRY: drops every lock and takes the old set plus ctx.want again,
 * all in order. 0, NEED_BROKEN or NEED_NOMEM (then no lock is held).
 */
export function ls_retry(c: Ctx): i32 {
  for (let i: u32 = c.nHeld; i > 0; i--) lock_drop(held_at(c, i - 1));
  // arms this call took (peer_wake) are notified now, not after the locks are taken again (which may sleep)
  if (c.nWake) wake_flush(c);
  let want = <usize>c.want;
  c.want = 0;
  if (want) {
    let i = held_find(c, want);
    if (i < 0 && !held_insert(c, <u32>(-i - 1), want)) {
      c.nHeld = 0;
      return NEED_NOMEM;
    }
  }
  for (let i: u32 = 0; i < c.nHeld; i++) {
    if (!lock_take(held_at(c, i), thread_tid)) {
      for (let j = i; j > 0; j--) lock_drop(held_at(c, j - 1));
      c.nHeld = 0;
      return NEED_BROKEN;
    }
  }
  return 0;
}

/**
 * Moves every held peer's lane inbox to its queue (lane.ts): a push may have
 * landed after its lock was taken, while the call waited for another. For
 * a call that looks at every peer at once (bus_inspect).
 */
export function ls_settle(c: Ctx): void {
  for (let i: u32 = 0; i < c.nHeld; i++) lane_settle(changetype<Peer>(held_at(c, i)));
}

/** Frees the set's memory (thread detach). */
export function ls_free(c: Ctx): void {
  if (c.held) heap_free(c.held);
  c.held = 0;
  c.capHeld = 0;
  c.nHeld = 0;
}
