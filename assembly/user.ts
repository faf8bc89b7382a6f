/**
 * DOC: user — accounting principals and the quota rules (SPEC §6)
 *
 * A User is created when the first peer of that user id connects and freed
 * when its last peer is freed (`peers` counts them; by then nothing is
 * charged to it: a freed peer has given everything back). It carries the
 * per-user limits (the bus option `limits`), what is charged to it as a
 * receiver, and one Share record per other user that has messages in flight
 * to it: what that sender has charged to it and not yet had received. A
 * Share is made by the first charge and freed when its counts are back to
 * zero, both under the user's lock, so it exists exactly while some message
 * in flight points at it (Message.share). Users are found through the root's
 * user map (id → User).
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
 * User (68 bytes): id, next (unused), limits[4], usage[4], shares, holders,
 * lock (2), peers, lanes, laneBytes (lane.ts). A user's usage and shares change under its lock (a leaf
 * lock: taken after peer locks, before the heap lock); a peer's usage under
 * the peer's lock; `peers` and the user map under the misc lock.
 * Share (32 bytes): user id, next, share[4], owner (the receiving User).
 * Resources are indexed RES_SLICES, RES_HANDLES, RES_BYTES, RES_OBJECTS.
 */

import { root, heap_calloc, heap_free, thread_tid, Root } from "./bus";
import { lock_take, lock_drop } from "./lock";
import { map_get, map_insert, map_remove, map_reserve, map_count } from "./map";
import { EDQUOT, ENOMEM } from "./errno";
import { Peer } from "./peer";
import { lanes_revoke, lane_fold } from "./lane";

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
  peers: u32;
  /** Lanes into this user's peers (lane.ts), under the lock. */
  lanes: u32;
  /** Bytes of the arenas of the lanes into its peers, open or closed and not yet freed (lane.ts), under the lock. */
  laneBytes: u32;
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

// @ts-ignore: decorator
@inline function user_map(): usize {
  return changetype<usize>(root()) + offsetof<Root>("userMap");
}

/** Takes a reference to the User record of `id`, made if needed; 0 when out of memory. Under the misc lock. */
export function user_get(id: u32): usize {
  let m = user_map();
  let p = <usize>map_get(m, id);
  if (!p) {
    if (!map_reserve(m, map_count(m) + 1)) return 0;
    p = heap_calloc(<u32>offsetof<User>());
    if (!p) return 0;
    let r = root();
    let u = changetype<User>(p);
    u.id = id;
    u.lim0 = r.limSlices;
    u.lim1 = r.limHandles;
    u.lim2 = r.limBytes;
    u.lim3 = r.limObjects;
    map_insert(m, id, <u32>p);
  }
  changetype<User>(p).peers++;
  return p;
}

/** Drops a reference taken by user_get; the last one frees the record. Under the misc lock. */
export function user_put(u: User): void {
  if (--u.peers) return;
  assert((u.use0 | u.use1 | u.use2 | u.use3) == 0 && !u.shares, "a user without peers is still charged");
  map_remove(user_map(), u.id);
  heap_free(changetype<usize>(u));
}

/** Users with a record (for statistics). */
export function user_count(): u32 {
  return map_count(user_map());
}

// @ts-ignore: decorator
@inline export function user_lock(u: User): void {
  // a broken bus goes on without the lock: every call fails from here on
  lock_take(changetype<usize>(u) + offsetof<User>("lock"), thread_tid);
}

// @ts-ignore: decorator
@inline export function user_unlock(u: User): void {
  lock_drop(changetype<usize>(u) + offsetof<User>("lock"));
}

/** The share record of sender user `sid` in receiver `u`, made if needed (0: out of memory). Under u's lock. */
function share_find(u: User, sid: u32): usize {
  let p = <usize>u.shares;
  while (p) {
    if (changetype<Share>(p).user == sid) return p;
    p = <usize>changetype<Share>(p).next;
  }
  p = heap_calloc(<u32>offsetof<Share>());
  if (!p) return 0;
  let s = changetype<Share>(p);
  s.user = sid;
  s.owner = <u32>changetype<usize>(u);
  s.next = u.shares;
  u.shares = <u32>p;
  return p;
}

/** Unlinks and frees an empty share. Under its user's lock. */
function share_free(u: User, s: Share): void {
  let at = changetype<usize>(u) + offsetof<User>("shares");
  while (load<u32>(at) != <u32>changetype<usize>(s)) at = <usize>load<u32>(at) + offsetof<Share>("next");
  store<u32>(at, s.next);
  heap_free(changetype<usize>(s));
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

/**
 * quota_check on the peer's usage with taken-back lane credit folded in, and
 * if it fails while lanes hold unspent credit of `u`, again once that credit
 * is taken back (lane.ts): credit never makes a charge fail.
 * `puse` is the usage of a peer the caller has locked. Under u's lock.
 */
function quota_fits(plim: usize, puse: usize, u: User, share: usize, cost: usize): i32 {
  let p = changetype<Peer>(puse - offsetof<Peer>("use0"));
  lane_fold(p);
  let rc = quota_check(plim, puse, u, share, cost);
  if (rc == -EDQUOT && u.lanes && lanes_revoke(u)) {
    lane_fold(p);
    rc = quota_check(plim, puse, u, share, cost);
  }
  return rc;
}

/** Charges `cost` if the quota rules allow it (no sender share): 0 or −EDQUOT (nothing charged). */
export function quota_try_charge(plim: usize, puse: usize, u: User, cost: usize): i32 {
  user_lock(u);
  let rc = quota_fits(plim, puse, u, 0, cost);
  if (!rc) quota_charge(puse, u, 0, cost);
  user_unlock(u);
  return rc;
}

/**
 * Charges a message of sender user `sid` to a receiving peer and its user
 * `u`: the share record it was charged to (0 when `sid` is `u`'s own id), or
 * −EDQUOT / −ENOMEM with nothing charged. The share stays as long as the
 * charge does (quota_unshare takes it off).
 */
export function quota_charge_send(plim: usize, puse: usize, u: User, sid: u32, cost: usize): i32 {
  user_lock(u);
  let share: usize = 0;
  let rc: i32 = 0;
  if (sid != u.id) {
    share = share_find(u, sid);
    if (!share) rc = -ENOMEM;
  }
  if (!rc) rc = quota_fits(plim, puse, u, share, cost);
  if (!rc) quota_charge(puse, u, share, cost);
  else if (share && share_empty(changetype<Share>(share))) share_free(u, changetype<Share>(share));
  user_unlock(u);
  return rc ? rc : <i32>share;
}

/**
 * Replaces a charge of `old` by one of `cost` (a seed replacing a seed), or
 * leaves the old one: 0 or −EDQUOT.
 */
export function quota_replace(plim: usize, puse: usize, u: User, old: usize, cost: usize): i32 {
  user_lock(u);
  if (old) uncharge(puse, u, old);
  let rc = quota_fits(plim, puse, u, 0, cost);
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
  else if (!was && now) {
    u.holders--;
    share_free(u, s);
  }
}
