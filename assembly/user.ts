/**
 * DOC: user — accounting principals and the quota rules (SPEC §6)
 *
 * A User is created the first time a peer of that user id connects and lives
 * as long as the bus. It carries the per-user limits (the bus option
 * `limits`), what is charged to it as a receiver, and one Share record per
 * other user that has sent to it: what that sender has charged to it and not
 * yet had received.
 *
 * Charging happens at send, to the receiving peer and its user; a charge
 * either succeeds for all four resources or changes nothing (EDQUOT):
 *   - the peer's usage must stay within the peer's limits (plain caps);
 *   - the user's usage must stay within the user's limits;
 *   - when the sender's user S differs from the receiver's user R, for each
 *     resource charged, what R has left free afterwards must be at least
 *     S's share of R (after the charge) times n, n = 1 + the number of users
 *     other than R holding a share of R. One flooding user thus gets at most
 *     about half of what is left, and never all of it.
 * On receive, the message's cost leaves the sender's share (quota_received);
 * the rest stays on the receiver until the slice is released or, for
 * handles, until the handle is gone.
 *
 * User (56 bytes): id, next, limits[4], usage[4], shares, holders, lock (2).
 * A user's usage and shares change under its lock (a leaf lock: taken after
 * peer locks, before the heap lock); a peer's usage under the peer's lock.
 * Share (32 bytes): user id, next, share[4], owner (the receiving User).
 * Resources are indexed RES_SLICES, RES_HANDLES, RES_BYTES, RES_OBJECTS.
 */

import { root, heap_calloc, thread_tid } from "./bus";
import { lock_take, lock_drop } from "./lock";
import { EDQUOT } from "./errno";

// @ts-ignore: decorator
@inline export const RES_SLICES: u32 = 0;
// @ts-ignore: decorator
@inline export const RES_HANDLES: u32 = 1;
// @ts-ignore: decorator
@inline export const RES_BYTES: u32 = 2;
// @ts-ignore: decorator
@inline export const RES_OBJECTS: u32 = 3;

@unmanaged export class User {
  id: u32;
  next: u32;
  lim0: u32; lim1: u32; lim2: u32; lim3: u32;
  use0: u32; use1: u32; use2: u32; use3: u32;
  shares: u32;
  holders: u32;
  lock: u32;
  lockWaiters: u32;
}

@unmanaged export class Share {
  user: u32;
  next: u32;
  s0: u32; s1: u32; s2: u32; s3: u32;
  owner: u32;
  _pad: u32;
}

/** A cost: four counters at consecutive u32s (slices, handles, bytes, objects). */
// @ts-ignore: decorator
@inline export function res_get(p: usize, r: u32): u32 {
  return load<u32>(p + (r << 2));
}

// @ts-ignore: decorator
@inline export function res_set(p: usize, r: u32, v: u32): void {
  store<u32>(p + (r << 2), v);
}

// @ts-ignore: decorator
@inline export function user_limits(u: User): usize {
  return changetype<usize>(u) + offsetof<User>("lim0");
}

// @ts-ignore: decorator
@inline export function user_usage(u: User): usize {
  return changetype<usize>(u) + offsetof<User>("use0");
}

// @ts-ignore: decorator
@inline function share_counts(s: Share): usize {
  return changetype<usize>(s) + offsetof<Share>("s0");
}

/** Finds or makes the User record for `id`; 0 when out of memory. */
export function user_get(id: u32): usize {
  let r = root();
  let p = r.users;
  while (p) {
    if (changetype<User>(p).id == id) return p;
    p = changetype<User>(p).next;
  }
  p = <u32>heap_calloc(<u32>offsetof<User>());
  if (!p) return 0;
  let u = changetype<User>(p);
  u.id = id;
  u.lim0 = r.limSlices;
  u.lim1 = r.limHandles;
  u.lim2 = r.limBytes;
  u.lim3 = r.limObjects;
  u.next = r.users;
  r.users = <u32>p;
  return p;
}

// @ts-ignore: decorator
@inline function user_lock(u: User): void {
  // a broken bus goes on without the lock: every call fails from here on
  lock_take(changetype<usize>(u) + offsetof<User>("lock"), thread_tid);
}

// @ts-ignore: decorator
@inline function user_unlock(u: User): void {
  lock_drop(changetype<usize>(u) + offsetof<User>("lock"));
}

/** The share record of sender user `sid` in receiver `u`; made on demand. */
export function share_get(u: User, sid: u32): usize {
  user_lock(u);
  let p = share_find(u, sid);
  user_unlock(u);
  return p;
}

function share_find(u: User, sid: u32): usize {
  let p = u.shares;
  while (p) {
    if (changetype<Share>(p).user == sid) return p;
    p = changetype<Share>(p).next;
  }
  p = <u32>heap_calloc(<u32>offsetof<Share>());
  if (!p) return 0;
  let s = changetype<Share>(p);
  s.user = sid;
  s.owner = <u32>changetype<usize>(u);
  s.next = u.shares;
  u.shares = <u32>p;
  return p;
}

function share_empty(s: Share): bool {
  return (s.s0 | s.s1 | s.s2 | s.s3) == 0;
}

/**
 * Checks whether `cost` can be charged to a peer (its limits and usage at
 * `plim`/`puse`) and its user `u`, with `share` the sender's share record
 * (0 when sender and receiver are the same user). Changes nothing.
 */
function quota_check(plim: usize, puse: usize, u: User, share: usize, cost: usize): i32 {
  let ulim = user_limits(u), uuse = user_usage(u);
  let n: u64 = 0;
  if (share) {
    n = 1 + <u64>u.holders;
    if (share_empty(changetype<Share>(share))) n += 1;
  }
  for (let r: u32 = 0; r < 4; r++) {
    let c = <u64>res_get(cost, r);
    if (!c) continue;
    if (<u64>res_get(puse, r) + c > <u64>res_get(plim, r)) return -EDQUOT;
    let used = <u64>res_get(uuse, r) + c;
    let lim = <u64>res_get(ulim, r);
    if (used > lim) return -EDQUOT;
    if (share) {
      let mine = <u64>res_get(share_counts(changetype<Share>(share)), r) + c;
      if (lim - used < mine * n) return -EDQUOT;
    }
  }
  return 0;
}

/** Charges `cost` if the quota rules allow it: 0 or −EDQUOT (nothing charged). */
export function quota_try_charge(plim: usize, puse: usize, u: User, share: usize, cost: usize): i32 {
  user_lock(u);
  let rc = quota_check(plim, puse, u, share, cost);
  if (!rc) quota_charge(puse, u, share, cost);
  user_unlock(u);
  return rc;
}

/**
 * Replaces a charge of `old` by one of `cost` (a seed replacing a seed), or
 * leaves the old one: 0 or −EDQUOT.
 */
export function quota_replace(plim: usize, puse: usize, u: User, old: usize, cost: usize): i32 {
  user_lock(u);
  if (old) uncharge(puse, u, old);
  let rc = quota_check(plim, puse, u, 0, cost);
  if (!rc) quota_charge(puse, u, 0, cost);
  if (old && rc) quota_charge(puse, u, 0, old);
  user_unlock(u);
  return rc;
}

/** Puts a charge back that was taken off moments ago (undo), without checks. */
export function quota_restore(puse: usize, u: User, cost: usize): void {
  user_lock(u);
  quota_charge(puse, u, 0, cost);
  user_unlock(u);
}

function quota_charge(puse: usize, u: User, share: usize, cost: usize): void {
  let uuse = user_usage(u);
  for (let r: u32 = 0; r < 4; r++) {
    let c = res_get(cost, r);
    res_set(puse, r, res_get(puse, r) + c);
    res_set(uuse, r, res_get(uuse, r) + c);
  }
  if (share) share_add(changetype<Share>(share), cost, 1);
}

/** Takes `cost` off peer and user usage (slice released, message dropped). */
export function quota_uncharge(puse: usize, u: User, cost: usize): void {
  user_lock(u);
  uncharge(puse, u, cost);
  user_unlock(u);
}

function uncharge(puse: usize, u: User, cost: usize): void {
  let uuse = user_usage(u);
  for (let r: u32 = 0; r < 4; r++) {
    let c = res_get(cost, r);
    res_set(puse, r, res_get(puse, r) - c);
    res_set(uuse, r, res_get(uuse, r) - c);
  }
}

/** Adjusts one resource of peer and user usage by `delta`. */
export function quota_adjust(puse: usize, u: User, r: u32, delta: i32): void {
  user_lock(u);
  let uuse = user_usage(u);
  res_set(puse, r, res_get(puse, r) + <u32>delta);
  res_set(uuse, r, res_get(uuse, r) + <u32>delta);
  user_unlock(u);
}

/** Takes `cost` off the sender's share (message received or dropped). */
export function quota_unshare(share: usize, cost: usize): void {
  if (!share) return;
  let u = changetype<User>(changetype<Share>(share).owner);
  user_lock(u);
  share_add(changetype<Share>(share), cost, -1);
  user_unlock(u);
}

function share_add(s: Share, cost: usize, sign: i32): void {
  let was = share_empty(s);
  let p = share_counts(s);
  for (let r: u32 = 0; r < 4; r++) {
    res_set(p, r, res_get(p, r) + <u32>(sign * <i32>res_get(cost, r)));
  }
  let now = share_empty(s);
  let u = changetype<User>(s.owner);
  if (was && !now) u.holders++;
  else if (!was && now) u.holders--;
}
