/**
 * DOC: inspect — a consistent snapshot of the whole bus
 *
 * `bus_inspect` writes what the core holds — users and their shares, peers
 * with their limits, usage, seed and queue, every handle record and every
 * node — as a stream of records into a buffer the caller provides. It is the
 * trusted application's view (a debugger, a picture of the bus): it shows
 * structure and counters, never payload bytes or host objects.
 *
 * How it reads consistently. Every change to a peer, its handles, the nodes
 * it owns or its queue is made under that peer's lock, and an operation
 * holds the locks of every peer it changes from its first change to its last
 * (a send from send_begin to send_commit; lockset.ts). So inspect takes the
 * locks of all peers, then the misc lock (which peer_connect needs to publish
 * a new peer in a slot), and writes the stream while it holds them all:
 *
 *   1. need   ls_need every peer found in a slot and the owner of every node
 *             those peers hold a handle to (an owner whose references are
 *             all closed has no slot, but its record stays while it owns a
 *             node: bus.ts "Freeing peers"). Lock order and retries are the
 *             lock set's: a peer above every held one is locked, one below
 *             is try-locked, and on failure every lock is dropped and the
 *             set retaken in address order (ls_retry), then the pass starts
 *             over. The set only grows, so this ends.
 *   2. check  take the misc lock and look at the slots again: a peer that
 *             connected meanwhile is not in the set yet; drop the misc lock
 *             and go back to 1. Otherwise the set is complete and no peer
 *             can be made until the misc lock is dropped.
 *   3. write  users (each under its own lock), the heap counters (under the
 *             heap lock), then every peer of the set with its handles, the
 *             nodes and its queue.
 *
 * The snapshot is the state at step 2's instant: every operation that
 * touches any peer either finished before it (its locks were dropped) or
 * starts after the write (it waits for a lock inspect holds). So no message
 * is half-sent (a snapshot never shows a staged entry: asserted), no handle
 * is half-transferred, and the counters of peers, users, handles and nodes
 * agree with each other the way the core's invariants say (handle.ts,
 * user.ts): a reader can check them, and tests/inspect*.test.ts do.
 *
 * Why it cannot deadlock: it takes locks in the bus's one order (lock.ts):
 * peers by address (out-of-order ones only try-locked, as in every call),
 * then misc, then a user, then the heap, and never takes a peer lock while it
 * holds the misc lock (step 2 drops it before going back). A thread that may
 * not block (ctx_new with canBlock = 0: a browser's main thread) spins in
 * lock_take like in any other call; nothing here waits otherwise.
 *
 * What it costs: every other bus call waits while inspect holds the locks,
 * for about one pass over the slots, the handle records and the queues
 * (O(slots + handles · log peers + queued entries)); the hot paths pay
 * nothing, which is why this is a lock-all snapshot and not a sequence-count
 * (seqlock) scheme that every send would have to bump. A bus of dozens of
 * peers and thousands of handles is held for a fraction of a millisecond.
 *
 * The stream (little-endian u32 words; docs/ABI.md "Inspecting the bus" is
 * the reference). Every record starts with a head word, `kind | words << 8`,
 * `words` counting the head, so a reader skips kinds it does not know. u64
 * values are two words, low first; ID_NONE is all ones. HANDLE and ENTRY
 * records belong to the PEER record before them; NODE records stand alone
 * (written after the handle that heads the node's list). Order: BUS, USER
 * (each followed by its SHARE records), then the peers in address order.
 *
 *   BUS    (5)  format, threads, heap bytes spanned, heap bytes in use
 *   USER   (11) id, peers, limits × 4, usage × 4
 *   SHARE  (6)  sender user id, charged × 4 (slices, handles, bytes, objects)
 *   PEER   (24) serial, slot (NONE: every reference closed), flags, refs,
 *                user id (NONE once closed), clock u64, limits × 4,
 *                usage × 4, pool bytes, handle records, handle IDs,
 *                received slices, queued entries, seed size (NONE: no
 *                seed), seed handles, seed objects
 *   HANDLE (9)  node, id u64, uref, seedRefs, inflight, msgs, flags (bit 0:
 *                the node's owner handle)
 *   NODE   (8)  node, owner serial, refs, flags (bit 0: destroyed), handle
 *                records on its list, destroy ts u64 (0 while live)
 *   ENTRY  (13 + n) kind, ts u64, sender serial, seq, node, id u64 (the
 *                receiver's ID of the node), size, bytes charged, n handles,
 *                objects, then n node addresses (the handles it carries)
 *
 * A node is named by its address: unique among the nodes of one snapshot and
 * the same for the node's whole life, but a later node may get it again.
 */

import { sync_load } from "./sync";
import { root, root_addr, Root, slot_addr, misc_lock, misc_unlock, heap_bytes, thread_tid } from "./bus";
import { lock_take, lock_drop } from "./lock";
import { ls_need, ls_retry, ls_holds, ERETRY, NEED_BROKEN } from "./lockset";
import { Ctx } from "./tx";
import { Peer, PEER_FREED, PEER_DISCONNECTED, peer_limits, peer_usage } from "./peer";
import { Node, Handle, node_of, handle_is_owner, handle_of_destroy_entry, node_of_release_entry, node_live } from "./handle";
import { entry, entry_staged, KIND_DATA, KIND_DESTROY } from "./queue";
import { Message, message_handles, message_cost } from "./pool";
import { map_capacity, map_value_at, map_count } from "./map";
import { User, Share, user_limits, user_usage } from "./user";
import { usage_of_messages } from "./lane";

/** Version of the stream's format (BUS record, word 1). */
export const INSPECT_FORMAT: u32 = 1;

export const REC_BUS: u32 = 1;
export const REC_USER: u32 = 2;
export const REC_SHARE: u32 = 3;
export const REC_PEER: u32 = 4;
export const REC_HANDLE: u32 = 5;
export const REC_NODE: u32 = 6;
export const REC_ENTRY: u32 = 7;

// @ts-ignore: decorator
@inline const BUS_WORDS: u32 = 5;
// @ts-ignore: decorator
@inline const USER_WORDS: u32 = 11;
// @ts-ignore: decorator
@inline const SHARE_WORDS: u32 = 6;
// @ts-ignore: decorator
@inline const PEER_WORDS: u32 = 24;
// @ts-ignore: decorator
@inline const HANDLE_WORDS: u32 = 9;
// @ts-ignore: decorator
@inline const NODE_WORDS: u32 = 8;
// @ts-ignore: decorator
@inline const ENTRY_WORDS: u32 = 13;

/** A u32 field with no value (no slot, no user, no seed). */
const NONE: u32 = 0xFFFFFFFF;

// ---- taking the locks ------------------------------------------------------------

/** Locks the owner of every node `p` holds a handle to (p is locked). */
function need_owners(c: Ctx, p: Peer): i32 {
  let m = changetype<usize>(p) + offsetof<Peer>("nodeMap");
  let cap = map_capacity(m);
  for (let i: u32 = 0; i < cap; i++) {
    let h = map_value_at(m, i);
    if (!h) continue;
    let rc = ls_need(c, <usize>node_of(changetype<Handle>(h)).owner);
    if (rc) return rc;
  }
  return 0;
}

/**
 * Step 1: locks every peer in a slot and the owners of their nodes. Slots are
 * read without the misc lock: a slot page is never freed, and a Peer record
 * found there stays while this call is in its epoch (bus.ts).
 * 0, −ERETRY, NEED_BROKEN or NEED_NOMEM.
 */
function inspect_need(c: Ctx): i32 {
  let n = sync_load<u32>(root_addr() + offsetof<Root>("peerSlots"));
  for (let i: u32 = 0; i < n; i++) {
    let e = slot_addr(i);
    if (!e) continue;
    let p = <usize>sync_load<u32>(e);
    if (!p || (p & 1)) continue;
    let rc = ls_need(c, p);
    if (!rc) rc = need_owners(c, changetype<Peer>(p));
    if (rc) return rc;
  }
  return 0;
}

/** Step 2, under the misc lock: true if every peer in a slot is locked by this call. */
function inspect_complete(c: Ctx): bool {
  let n = root().peerSlots;
  for (let i: u32 = 0; i < n; i++) {
    let p = <usize>load<u32>(slot_addr(i));
    if (p && !(p & 1) && !ls_holds(c, p)) return false;
  }
  return true;
}

/**
 * Takes the lock of every peer and then the misc lock (steps 1 and 2).
 * 0 (all held), NEED_BROKEN or NEED_NOMEM; on failure the locks the set
 * holds are the caller's to drop (ls_release).
 */
export function inspect_lock(c: Ctx): i32 {
  while (true) {
    let rc = inspect_need(c);
    if (rc == -ERETRY) {
      rc = ls_retry(c);
      if (rc) return rc;
      continue;
    }
    if (rc) return rc;
    if (!misc_lock()) return NEED_BROKEN;
    if (inspect_complete(c)) return 0;
    // a peer connected since step 1: lock it too (never a peer lock under misc)
    misc_unlock();
  }
}

// ---- writing the stream ----------------------------------------------------------

// @ts-ignore: decorator
@inline function head(kind: u32, words: u32): u32 {
  return kind | (words << 8);
}

// @ts-ignore: decorator
@inline function put(at: usize, i: u32, v: u32): void {
  store<u32>(at + (<usize>i << 2), v);
}

// @ts-ignore: decorator
@inline function put64(at: usize, i: u32, v: u64): void {
  store<u32>(at + (<usize>i << 2), <u32>v);
  store<u32>(at + (<usize>i << 2), <u32>(v >> 32), 4);
}

/** Copies four u32 counters (limits, usage, a share) into words i … i + 3. */
// @ts-ignore: decorator
@inline function put4(at: usize, i: u32, from: usize): void {
  memory.copy(at + (<usize>i << 2), from, 16);
}

/** Where a record of `words` goes if it fits below `cap`, else 0 (the size is still counted). */
// @ts-ignore: decorator
@inline function room(buf: usize, cap: u32, at: u32, words: u32): usize {
  return <u64>at + (<u64>words << 2) <= <u64>cap ? buf + at : 0;
}

function write_bus(buf: usize, cap: u32, at: u32): u32 {
  let r = room(buf, cap, at, BUS_WORDS);
  if (r) {
    put(r, 0, head(REC_BUS, BUS_WORDS));
    put(r, 1, INSPECT_FORMAT);
    put(r, 2, root().nThreads);
    // the heap counters are the heap lock's (the last lock of the order)
    let l = root_addr() + offsetof<Root>("heapLock");
    lock_take(l, thread_tid);
    put(r, 3, heap_bytes());
    put(r, 4, root().heapUsed);
    lock_drop(l);
  }
  return at + (BUS_WORDS << 2);
}

function write_user(buf: usize, cap: u32, at: u32, u: User): u32 {
  let l = changetype<usize>(u) + offsetof<User>("lock");
  lock_take(l, thread_tid);
  let r = room(buf, cap, at, USER_WORDS);
  if (r) {
    put(r, 0, head(REC_USER, USER_WORDS));
    put(r, 1, u.id);
    put(r, 2, u.peers);
    put4(r, 3, user_limits(u));
    // lane credit is charged in advance but to no message (lane.ts)
    usage_of_messages(r + (7 << 2), user_usage(u), u, 0);
  }
  at += USER_WORDS << 2;
  let s = <usize>u.shares;
  while (s) {
    let sh = changetype<Share>(s);
    r = room(buf, cap, at, SHARE_WORDS);
    if (r) {
      put(r, 0, head(REC_SHARE, SHARE_WORDS));
      put(r, 1, sh.user);
      put4(r, 2, s + offsetof<Share>("s0"));
    }
    at += SHARE_WORDS << 2;
    s = <usize>sh.next;
  }
  lock_drop(l);
  return at;
}

function write_peer(buf: usize, cap: u32, at: u32, p: Peer): u32 {
  let freed = (p.flags & PEER_FREED) != 0;
  let r = room(buf, cap, at, PEER_WORDS);
  if (r) {
    let pp = changetype<usize>(p);
    put(r, 0, head(REC_PEER, PEER_WORDS));
    put(r, 1, p.serial);
    put(r, 2, freed ? NONE : p.slot);
    put(r, 3, p.flags & (PEER_DISCONNECTED | PEER_FREED));
    put(r, 4, p.refs);
    // a closed peer gave its User record back: it may be gone
    put(r, 5, freed ? NONE : changetype<User>(p.user).id);
    put64(r, 6, p.clock);
    put4(r, 8, peer_limits(p));
    // a closed peer gave its User record back (and has no lanes)
    if (freed) put4(r, 12, peer_usage(p));
    else usage_of_messages(r + (12 << 2), peer_usage(p), changetype<User>(p.user), pp);
    put(r, 16, p.poolBytes);
    put(r, 17, map_count(pp + offsetof<Peer>("nodeMap")));
    put(r, 18, map_count(pp + offsetof<Peer>("idMap")));
    put(r, 19, map_count(pp + offsetof<Peer>("sliceMap")));
    let n: u32 = 0;
    let e = p.qHead;
    while (e) { n++; e = entry(e).next; }
    put(r, 20, n);
    let s = p.seed ? changetype<Message>(p.seed) : null;
    put(r, 21, s ? s.size : NONE);
    put(r, 22, s ? s.nHandles : 0);
    put(r, 23, s ? s.nObjects : 0);
  }
  return at + (PEER_WORDS << 2);
}

function write_node(buf: usize, cap: u32, at: u32, n: Node): u32 {
  let r = room(buf, cap, at, NODE_WORDS);
  if (r) {
    let count: u32 = 0;
    let h = n.handles;
    while (h) { count++; h = changetype<Handle>(h).nodeNext; }
    put(r, 0, head(REC_NODE, NODE_WORDS));
    put(r, 1, <u32>changetype<usize>(n));
    put(r, 2, changetype<Peer>(n.owner).serial);
    put(r, 3, n.refs);
    put(r, 4, n.flags);
    put(r, 5, count);
    put64(r, 6, node_live(n) ? 0 : n.destroyTs);
  }
  return at + (NODE_WORDS << 2);
}

/** A handle record, and its node's if the handle heads the node's list (so each node is written once). */
function write_handle(buf: usize, cap: u32, at: u32, h: Handle): u32 {
  let r = room(buf, cap, at, HANDLE_WORDS);
  if (r) {
    put(r, 0, head(REC_HANDLE, HANDLE_WORDS));
    put(r, 1, h.node);
    put64(r, 2, h.id);
    put(r, 4, h.uref);
    put(r, 5, h.seedRefs);
    put(r, 6, h.inflight);
    put(r, 7, h.msgs);
    put(r, 8, handle_is_owner(h) ? 1 : 0);
  }
  at += HANDLE_WORDS << 2;
  let n = node_of(h);
  if (n.handles == <u32>changetype<usize>(h)) at = write_node(buf, cap, at, n);
  return at;
}

function write_entry(buf: usize, cap: u32, at: u32, ep: usize): u32 {
  let e = entry(ep);
  // a transaction holds its queues' locks until it commits: none is staged now
  assert(!entry_staged(e), "inspect saw a staged entry");
  let nh: u32 = 0;
  if (e.kind == KIND_DATA) nh = changetype<Message>(ep).nHandles;
  let words = ENTRY_WORDS + nh;
  let r = room(buf, cap, at, words);
  if (r) {
    put(r, 0, head(REC_ENTRY, words));
    put(r, 1, e.kind);
    put64(r, 2, e.ts);
    put(r, 4, e.sender);
    put(r, 5, e.seq);
    let node: u32 = 0, id: u64 = u64.MAX_VALUE, size: u32 = 0, bytes: u32 = 0, objects: u32 = 0;
    if (e.kind == KIND_DATA) {
      let m = changetype<Message>(ep);
      let d = changetype<Handle>(m.dest);
      node = d.node;
      id = d.id;
      size = m.size;
      bytes = load<u32>(message_cost(m), 8);
      objects = m.nObjects;
      // before it is received a slice holds the receiver's handle records (pool.ts)
      let hs = message_handles(m);
      for (let j: u32 = 0; j < nh; j++) {
        put(r, ENTRY_WORDS + j, changetype<Handle>(<usize>load<u64>(hs + (<usize>j << 3))).node);
      }
    } else if (e.kind == KIND_DESTROY) {
      let h = handle_of_destroy_entry(e);
      node = h.node;
      id = h.id;
    } else {
      let n = node_of_release_entry(e);
      node = <u32>changetype<usize>(n);
      if (n.ownerHandle) id = changetype<Handle>(n.ownerHandle).id;
    }
    put(r, 6, node);
    put64(r, 7, id);
    put(r, 9, size);
    put(r, 10, bytes);
    put(r, 11, nh);
    put(r, 12, objects);
  }
  return at + (words << 2);
}

/**
 * Step 3: writes the stream to buf (room for `cap` bytes) and returns its
 * length in bytes, which is more than `cap` when it did not fit (then what
 * lies in buf is not a stream). Under every peer lock and the misc lock.
 */
export function inspect_write(c: Ctx, buf: usize, cap: u32): u32 {
  let at = write_bus(buf, cap, 0);
  let users = changetype<usize>(root()) + offsetof<Root>("userMap");
  let ucap = map_capacity(users);
  for (let i: u32 = 0; i < ucap; i++) {
    let u = map_value_at(users, i);
    if (u) at = write_user(buf, cap, at, changetype<User>(u));
  }
  for (let i: u32 = 0; i < c.nHeld; i++) {
    let p = changetype<Peer>(load<u32>(<usize>c.held + (<usize>i << 2)));
    // a closed peer is shown while it owns nodes (it has no handles, no queue:
    // its disconnect flushed them); one that owns none is only a stale pointer
    // of a retry, on its way back to the heap
    if ((p.flags & PEER_FREED) && !p.pins) continue;
    at = write_peer(buf, cap, at, p);
    let m = changetype<usize>(p) + offsetof<Peer>("nodeMap");
    let hcap = map_capacity(m);
    for (let j: u32 = 0; j < hcap; j++) {
      let h = map_value_at(m, j);
      if (h) at = write_handle(buf, cap, at, changetype<Handle>(h));
    }
    let e = p.qHead;
    while (e) {
      at = write_entry(buf, cap, at, e);
      e = entry(e).next;
    }
  }
  return at;
}
