/**
 * DOC: lane — a unicast that does not lock its receiver
 *
 * The common message between threads is a plain unicast: one destination,
 * bytes and nothing attached, between two peers of one user. Through the
 * locked path (send.ts) its sender takes the receiver's lock, its user's
 * lock and the receiver's allocator for every message, and holds them while
 * the host copies the payload; the receiver takes the same lock to receive
 * and to release. About a dozen cache lines then change cores per message
 * (docs/PERFORMANCE.md). A lane is what such a message takes instead once a
 * handle has carried a few of them (LANE_AFTER): per message the sender
 * writes only lines of its own and the record, the receiver only lines of
 * its own, and the two share the push on the receiver's inbox and its wake
 * word.
 *
 * A Lane belongs to one handle of the sender (Handle.lane) to a node of
 * another peer of the same user (the fair share between users is not
 * involved, SPEC §6). It holds:
 *   - an arena inside the lane's record, the "sender-owned
 *     region of the receiver's pool": slices are records (a Message, then the
 *     payload) placed one after the other; `head` counts the bytes ever placed
 *     (the sender's, under its lock), `tail` those ever given back (the
 *     receiver's, under its lock). A record never wraps: the bytes left at the
 *     end are skipped (a filler record marks them when a Message fits there).
 *     The receiver frees records in any order (ENTRY_FREED) and moves `tail`
 *     over the freed ones from the oldest; the sender reads `tail` only when
 *     its last look says the arena is full. A new lane's arena is
 *     LANE_BYTES; a sender that finds it full has run a whole arena ahead of
 *     its receiver, and its next locked send replaces the lane with one four
 *     times as large, or the largest power of two its bounds allow if that
 *     is larger (lane_refill), the bounds tied to the receiver's and
 *     its user's byte limits and to the bus's memory (lane_make), so that a
 *     flood whose receiver falls behind keeps to its lane instead of taking
 *     the locked path for all but an arena's worth of its messages
 *     (docs/PERFORMANCE.md counted 1–3% on the lane with 16 KiB arenas). The
 *     old lane closes and goes when its records do.
 *   - credit: quota taken from the receiver and its user in advance, a chunk
 *     at a time, by the locked path (lane_refill: at most a quarter of what is
 *     free, LANE_CREDIT messages per LANE_BYTES of arena, and what the arena
 *     holds). A send spends one slice and its bytes from it. A freed
 *     record's charge stays with an open lane (`returned`), and a send that
 *     finds the credit short takes it back into the credit first, under the
 *     user's lock but not the receiver's, while the receiver and its user
 *     are within their limits (lane_within, lane_reuse); when the credit or
 *     the arena is still short the message takes the locked path, which
 *     tops the credit up. So a steady lane changes neither the receiver's
 *     usage nor its user's record per message, and a lane whose receiver
 *     caught up goes on without the receiver's lock.
 *
 * Order. A lane send publishes its record on the receiver's inbox (a stack
 * pushed with compare-and-swap), so the inbox holds records in the order
 * their pushes happened: real time. Under the receiver's lock, lane_settle
 * moves the inbox to the queue, oldest first, each record at an even ts
 * above the queue's clock, as a transaction of one. It runs before anything
 * else is queued there on its own (tx_post, and tx_stage of a send to one
 * destination), and when the receiver finds its queue empty (queue_settle):
 * everything queued was pushed or queued before anything still in the
 * inbox, so the receiver may take the queue's front without looking at the
 * inbox, and a steady flood moves the inbox's line once per batch. Hence:
 *   - a lane message whose send completed before an operation queued an
 *     entry on the receiver is queued before that entry (causality, SPEC
 *     §5.2, through the bus or any side channel), and one pushed after it,
 *     after it;
 *   - two lane messages to one receiver are queued in the order of their
 *     pushes, which is the order of their sends when one completed before the
 *     other started (§5.1, §5.2).
 * That is enough for an entry queued on one peer: its place there is one
 * moment, when it is queued. A call that posts on several queues one after
 * the other (a dropped message's node-release notifications) posts them in
 * that order in time, too. One that queues on several (a multicast, a destroy and its
 * notifications, a flush) holds their locks over a stretch of time, and a
 * lane message pushed in that stretch would come after it on a queue it had
 * locked but before it on one it locks later, while the sender's next
 * message went the other way round: no one order (§5.3, §5.4). So such a
 * transaction cuts all its inboxes at one moment (lane_cut): it takes a
 * number from the bus's cut counter when it first stages, and on every queue
 * it stages on queues first the records stamped below it (a lane send stamps
 * its record with the counter as it pushes) and defers the rest until it is
 * over. Whatever started after the cut comes after the transaction
 * everywhere; whatever was pushed before comes before it wherever it had
 * been pushed by then, and is concurrent with it otherwise.
 * The clock of the sender does not learn a lane message's ts: nothing later
 * needs it, since anything the sender does next that reaches the receiver is
 * queued after the inbox is moved. A lane message whose send overlaps the
 * destruction of its node (the sender checked the node before the destroy
 * took the receiver's lock and pushed after its cut) is ordered after the
 * destruction and not delivered: the send and the destroy were concurrent.
 *
 * The inbox is moved only when the queue holds no staged entry (staged
 * entries are the last ones, and must stay so until their commit, tx.ts): a
 * call takes the receiver's lock before it stages there, and a push that
 * lands after that is concurrent with the call.
 *
 * Quota. Unspent credit (`credit` and `returned`) is charged to the receiver and its user but is no
 * message: whatever looks at the charges takes it off first. The receiver's
 * stats and the inspection subtract it (usage_of_messages); a charge that
 * fails, a new limit and the end of a lane take it back (lanes_revoke,
 * lane_close). Taking back credit leaves the receiver's part in its
 * `revoked` word (the receiver may not be locked), folded in
 * (lane_fold) by whatever reads that usage under the receiver's lock: a
 * charge, a refill, stats, an inspection, a disconnect, a move of the inbox.
 * So EDQUOT comes exactly where it would without
 * lanes, and the usage anyone reads is that of the messages.
 *
 * Life. A lane is made by the locked path (lane_refill) and closed, with the
 * sender and the receiver locked, when its handle dies or its node is
 * destroyed (a flush or a disconnect destroys them all): its credit goes
 * back and no send takes it any more. It is freed when, besides, every
 * record in it has been freed. While it exists it counts in the `lanes` of
 * the node's owner handle (its records' destination), which keeps that
 * handle, its node, and so the receiver's record (Peer.pins) in place.
 *
 * Layout: the sender's words on the first line, the receiver's at +128, the
 * arena at LANE_HEADER. Arena record: a Message (pool.ts; ENTRY_LANE, its
 * `_pad2` the lane) and the payload padded to 8. A filler: a Message with
 * ENTRY_FREED whose c2 says how many bytes follow it.
 *
 * Locking: credit is an atomic word (the sender spends with cmpxchg, taking
 * back is an exchange); head and the user list links are the sender's and
 * the user lock's; tail and end are the receiver's, tail published with an
 * atomic store; the inbox and `revoked` are atomic words of the receiver.
 */

import { sync_add, sync_cas, sync_load, sync_store, sync_xchg } from "./sync";
import { Peer, wake_bump, peer_usage, peer_limits, slice_map, peer_user } from "./peer";
import { Message, MESSAGE_SIZE, message_payload, slice_pad } from "./pool";
import { Entry, entry, entry_staged, queue_link, KIND_DATA, ENTRY_LANE, ENTRY_FREED } from "./queue";
import { Handle, Node, node_of } from "./handle";
import { User, user_lock, user_unlock } from "./user";
import { Ctx } from "./tx";
import { heap_calloc, heap_free, root } from "./bus";
import { map_reserve } from "./map";
import { handle_maybe_free } from "./node";

/** Bytes of a new lane's arena (a power of two). */
// @ts-ignore: decorator
@inline export const LANE_BYTES: u32 = 16384;
/** Bytes a lane's arena grows to at most (a power of two; the limits bound it first: lane_make). */
// @ts-ignore: decorator
@inline const LANE_BYTES_MAX: u32 = 4 << 20;
/** The largest record a lane takes (a larger message takes the locked path). */
// @ts-ignore: decorator
@inline const LANE_RECORD_MAX: u32 = LANE_BYTES / 4;
/** Messages of credit a refill asks for at most, per LANE_BYTES of arena. */
// @ts-ignore: decorator
@inline const LANE_CREDIT: u32 = 64;
/** Locked sends through a handle before it gets a lane. */
// @ts-ignore: decorator
@inline const LANE_AFTER: u32 = 8;
/** Lanes one peer sends on at most, and receives from at most (their arenas into a peer: at most its byte limit, see lane_refill). */
// @ts-ignore: decorator
@inline const LANES_PER_PEER: u32 = 8;
// @ts-ignore: decorator
@inline const LANE_HEADER: u32 = 192;
// @ts-ignore: decorator
@inline const LANE_CLOSED: u32 = 1;
/** Ctx.cut of a transaction on one queue: it needs no cut. */
export const CUT_NONE: u64 = u64.MAX_VALUE;
/** Credit and revoked words: slices in the high half, bytes in the low. */
// @ts-ignore: decorator
@inline const ONE_SLICE: u64 = <u64>1 << 32;

@unmanaged export class Lane {
  // the sender's line
  credit: u64;
  head: u32;
  tailSeen: u32;
  sender: u32;
  handle: u32;
  receiver: u32;
  dest: u32;
  user: u32;
  prev: u32;
  next: u32;
  flags: u32;
  /** Bytes of the arena (a power of two, set when the lane is made). */
  size: u32;
  /** 1 once a send found the arena full: the next refill makes a larger lane. */
  full: u32;
  /** The receiver's wake word (Peer.wake, fixed): a commit bumps it without reading the receiver's record. */
  wake: u32;
  _s1: u32; _s2: u64; _s3: u64; _s4: u64;
  _s5: u64; _s6: u64; _s7: u64; _s8: u64; _s9: u64;
  // the receiver's line (+128)
  tail: u32;
  end: u32;
  /** Charges of freed records, kept for the lane: credit the next refill takes (atomic). */
  returned: u64;
}

// @ts-ignore: decorator
@inline function lane_arena(l: Lane): usize {
  // the receiver's words start a line pair of their own (the sender's end at +48)
  assert(offsetof<Lane>("tail") == 128 && offsetof<Lane>() <= LANE_HEADER, "lane layout");
  return changetype<usize>(l) + LANE_HEADER;
}

// @ts-ignore: decorator
@inline function lane_of(m: Message): Lane {
  return changetype<Lane>(m._pad2);
}

// @ts-ignore: decorator
@inline function credit_at(l: Lane): usize {
  return changetype<usize>(l) + offsetof<Lane>("credit");
}

// @ts-ignore: decorator
@inline function returned_at(l: Lane): usize {
  return changetype<usize>(l) + offsetof<Lane>("returned");
}

// ---- the sender ---------------------------------------------------------------------

/**
 * Places a record of `len` bytes in the arena: its address, or 0 if the
 * arena has no room for it now. Under the sender's lock.
 */
function lane_place(l: Lane, len: u32): usize {
  let h = l.head, size = l.size;
  let pos = h & (size - 1);
  let skip: u32 = pos + len > size ? size - pos : 0;
  let need = skip + len;
  if (h + need - l.tailSeen > size) {
    l.tailSeen = sync_load<u32>(changetype<usize>(l) + offsetof<Lane>("tail"));
    if (h + need - l.tailSeen > size) {
      l.full = 1;
      return 0;
    }
  }
  let base = lane_arena(l);
  if (skip >= MESSAGE_SIZE) {
    let f = changetype<Message>(base + pos);
    f.state = ENTRY_LANE | ENTRY_FREED;
    f.c2 = skip - MESSAGE_SIZE;
  }
  l.head = h + need;
  return base + (skip ? 0 : pos);
}

/**
 * The unlocked send: a message of `size` payload bytes (`bytes` with its
 * padding) through `dh`'s lane, if its credit and arena have room. Writes
 * the payload address to `out` and notes the record in ctx for
 * lane_commit / lane_cancel. Under the sender's lock only.
 */
export function lane_send(c: Ctx, p: Peer, dh: Handle, size: u32, bytes: u32, out: usize): bool {
  let l = changetype<Lane>(dh.lane);
  let len = MESSAGE_SIZE + bytes;
  if (len > LANE_RECORD_MAX) return false;
  let at = credit_at(l);
  let cost = ONE_SLICE | <u64>bytes;
  while (true) {
    let v = sync_load<u64>(at);
    if ((v >> 32) == 0 || (v & 0xFFFF_FFFF) < <u64>bytes) {
      // what the receiver freed is credit too: taken here, so that a lane
      // whose receiver caught up does not need its lock to go on
      if (!lane_reuse(l)) return false;
      continue;
    }
    if (sync_cas<u64>(at, v, v - cost) == v) break;
  }
  let before = l.head;
  let r = lane_place(l, len);
  if (!r) {
    sync_add<u64>(at, cost);
    return false;
  }
  let m = changetype<Message>(r);
  m.prev = 0;
  m.next = 0;
  m.ts = 0;
  m.sender = p.serial;
  m.seq = ++p.seq;
  m.kind = KIND_DATA;
  m.state = ENTRY_LANE;
  m.txNext = 0;
  m.queue = 0;
  m.dest = l.dest;
  m.size = size;
  m.nHandles = 0;
  m.nObjects = 0;
  m.share = 0;
  m.c0 = 1;
  m.c1 = 0;
  m.c2 = bytes;
  m.c3 = 0;
  m._pad2 = <u32>changetype<usize>(l);
  let payload = message_payload(m);
  slice_pad(payload, size);
  c.laneMsg = <u32>r;
  c.laneUndo = before;
  store<u32>(out, 0);
  store<u32>(out, <u32>payload, 4);
  return true;
}

/** Publishes the record lane_send placed (the host has copied its payload) and wakes the receiver. */
export function lane_commit(c: Ctx): void {
  let m = changetype<Message>(c.laneMsg);
  c.laneMsg = 0;
  let l = lane_of(m);
  // the receiver's inbox and wake word: its record's lock line is not read (the receiver writes it)
  let at = <usize>l.receiver + offsetof<Peer>("inbox");
  // the stamp: a transaction that cut before this push counts it before (lane_cut)
  m.ts = sync_load<u64>(root().cuts);
  while (true) {
    let top = sync_load<u32>(at);
    m.txNext = top;
    if (sync_cas<u32>(at, top, <u32>changetype<usize>(m)) == top) break;
  }
  wake_bump(c, <usize>l.wake);
}

/** Takes back the record lane_send placed (its payload could not be copied). */
export function lane_cancel(c: Ctx): void {
  let m = changetype<Message>(c.laneMsg);
  c.laneMsg = 0;
  let l = lane_of(m);
  l.head = c.laneUndo;
  sync_add<u64>(credit_at(l), ONE_SLICE | <u64>m.c2);
}

// ---- the receiver -------------------------------------------------------------------

/** Queues one lane record on `q`, at an even ts above its clock. Under `q`'s lock, with no staged entry. */
function lane_queue(q: Peer, m: Message): void {
  m.txNext = 0;
  let ts = q.clock + 2;
  m.ts = ts;
  q.clock = ts;
  queue_link(q, m);
  changetype<Handle>(m.dest).msgs++;
  // the receiver's bound on its walk of freed records: the end of this one
  let l = lane_of(m);
  let pos = <u32>(changetype<usize>(m) - lane_arena(l));
  let endPos = l.end & (l.size - 1);
  if (pos != endPos) l.end += l.size - endPos;
  l.end += MESSAGE_SIZE + m.c2;
}

/**
 * Folds credit taken back by calls that did not hold `q`'s lock into its
 * usage: whatever reads `q`'s usage under its lock calls it first (it may
 * have been taken back while this call held the lock). Under `q`'s lock.
 */
export function lane_fold(q: Peer): void {
  let rv = changetype<usize>(q) + offsetof<Peer>("revoked");
  if (!sync_load<u64>(rv)) return;
  let v = sync_xchg<u64>(rv, 0);
  q.use0 -= <u32>(v >> 32);
  q.use2 -= <u32>v;
}

/** True if lane records wait for `q` (deferred, or in its inbox). */
export function lane_pending(q: Peer): bool {
  return q.deferHead != 0 || sync_load<u32>(changetype<usize>(q) + offsetof<Peer>("inbox")) != 0;
}

/** Takes `q`'s inbox, oldest first, and puts it after the records deferred before: the list's first record. */
function lane_take(q: Peer): u32 {
  let top = sync_xchg<u32>(changetype<usize>(q) + offsetof<Peer>("inbox"), 0);
  // the stack holds the newest first
  let oldest: u32 = 0;
  while (top) {
    let next = entry(top).txNext;
    entry(top).txNext = oldest;
    oldest = top;
    top = next;
  }
  if (!q.deferHead) return oldest;
  let first = q.deferHead;
  entry(q.deferTail).txNext = oldest;
  q.deferHead = 0;
  q.deferTail = 0;
  return first;
}

/**
 * Queues the lane records waiting for `q` (deferred ones first, then the
 * inbox, oldest first) that are stamped below `cut`, and defers the others,
 * unless the queue ends with a staged entry. Under `q`'s lock.
 */
function lane_move(q: Peer, cut: u64): void {
  if (!lane_pending(q) || (q.qTail && entry_staged(entry(q.qTail)))) return;
  let m = lane_take(q);
  while (m) {
    let next = entry(m).txNext;
    if (entry(m).ts < cut) {
      lane_queue(q, changetype<Message>(m));
    } else {
      entry(m).txNext = 0;
      if (q.deferTail) entry(q.deferTail).txNext = m;
      else q.deferHead = m;
      q.deferTail = m;
    }
    m = next;
  }
}

/**
 * Folds credit taken back by calls that did not hold `q`'s lock into its
 * usage, and queues what lane sends pushed on its inbox, oldest first,
 * unless the queue holds a staged entry. Under `q`'s lock: before anything
 * is queued on `q` on its own (tx_post, a send to one destination), when
 * its queue has run dry (queue_settle), and before a flush or an inspection.
 */
export function lane_settle(q: Peer): void {
  lane_fold(q);
  // no stamp reaches CUT_NONE: everything is queued
  lane_move(q, CUT_NONE);
}

/**
 * A transaction that may queue on several peers stages on `q`: the lane
 * records pushed before its cut are queued first, those pushed after it
 * wait until it is over (deferHead). The cut is one moment for all the
 * transaction's queues: it adds one to the bus's cut counter when it first
 * stages, and a lane send stamps its record with the counter as it pushes
 * it. Without it, a lane message pushed after the transaction took one
 * receiver's lock would come after it there, while a later message of the
 * same sender to a receiver the transaction locked later could come before
 * it there: no one order. With it, whatever starts after the cut is
 * stamped at or above it and comes after the transaction everywhere;
 * whatever was pushed before it comes before it where it was already
 * pushed, and after it where it was pushed later (concurrent with the
 * transaction: either way). Under `q`'s lock; once per queue (then the
 * queue holds the transaction's staged entry).
 */
export function lane_cut(c: Ctx, q: Peer): void {
  if (q.qTail && entry_staged(entry(q.qTail))) return;
  if (!c.cut) c.cut = sync_add<u64>(root().cuts, 1) + 1;
  lane_move(q, c.cut);
}

/**
 * The receiver is done with lane record `m`: if its lane is open, its charge
 * stays, as credit the lane takes back at its next refill (no lock of the
 * user, no change of usage per message). False if the lane is closed: then
 * the caller gives the charge back. Under the receiver's lock.
 */
export function lane_keep_charge(m: Message): bool {
  let l = lane_of(m);
  if (l.flags & LANE_CLOSED) return false;
  sync_add<u64>(returned_at(l), ONE_SLICE | <u64>m.c2);
  return true;
}

/** Frees a lane record the receiver `q` is done with (pool_free's part for lanes). Under `q`'s lock. */
export function lane_free(m: Message): void {
  let l = lane_of(m);
  m.state |= ENTRY_FREED;
  let base = lane_arena(l);
  let t = l.tail;
  let end = l.end;
  let size = l.size;
  while (t != end) {
    let pos = t & (size - 1);
    if (size - pos < MESSAGE_SIZE) {
      t += size - pos;
      continue;
    }
    let r = changetype<Message>(base + pos);
    if (!(r.state & ENTRY_FREED)) break;
    t += MESSAGE_SIZE + r.c2;
  }
  if (t == l.tail) return;
  sync_store<u32>(changetype<usize>(l) + offsetof<Lane>("tail"), t);
  if ((l.flags & LANE_CLOSED) && t == l.head) lane_destroy(l);
}

// ---- life ---------------------------------------------------------------------------

/**
 * After a locked send of a plain unicast of `bytes` slice bytes through
 * `dh` to `q` (a peer of the sender's user): counts it if a lane would take
 * it, makes the handle's lane once it has carried LANE_AFTER of them, and
 * tops its credit up. Under the sender's and `q`'s
 * locks; nothing here can fail a send (no memory or no quota only means no
 * lane, or no credit, for now).
 */
export function lane_refill(p: Peer, dh: Handle, q: Peer, bytes: u32): void {
  if (MESSAGE_SIZE + bytes > LANE_RECORD_MAX) return;
  let l = changetype<Lane>(dh.lane);
  if (!l) {
    if (++dh.sends < LANE_AFTER || p.nLanes >= LANES_PER_PEER || q.nLanesIn >= LANES_PER_PEER) return;
    let lp = lane_make(p, dh, q, LANE_BYTES, 0);
    if (!lp) return;
    l = changetype<Lane>(lp);
  } else if (l.full) {
    // the sender ran a whole arena ahead of its receiver, and the locked path
    // took its messages since: a lane four times as large takes its place, or
    // as large as the bounds let it be if that is still larger (lane_make),
    // and the old one closes and goes once its records are freed
    l.full = 0;
    let g = lane_make(p, dh, q, l.size << 2, l.size);
    if (g) {
      lane_shut(l);
      l = changetype<Lane>(g);
    }
  }
  let at = credit_at(l);
  // what the receiver freed comes back first: it is still charged
  lane_reuse(l);
  let v = sync_load<u64>(at);
  let haveS = <u32>(v >> 32), haveB = <u32>v;
  // credit for as many messages and bytes as the arena holds: LANE_CREDIT per LANE_BYTES
  let wantS = LANE_CREDIT * (l.size / LANE_BYTES), wantB = l.size;
  if (haveS >= wantS / 2 && haveB >= wantB / 2) return;
  lane_fold(q);
  let u = peer_user(q);
  user_lock(u);
  // up to that, and at most a quarter of what the peer and the user have
  // free, so credit seldom stands in anyone's way (and when it does, it is
  // taken back)
  let slices = haveS < wantS ? wantS - haveS : 0;
  slices = min(slices, min(quarter_free(q.lim0, q.use0), quarter_free(u.lim0, u.use0)));
  let add = haveB < wantB ? wantB - haveB : 0;
  add = min(add, min(quarter_free(q.lim2, q.use2), quarter_free(u.lim2, u.use2)));
  if ((slices || add) && map_reserve(slice_map(q), q.use0 + slices)) {
    q.use0 += slices;
    q.use2 += add;
    u.use0 += slices;
    u.use2 += add;
    sync_add<u64>(at, (<u64>slices << 32) | <u64>add);
  }
  user_unlock(u);
}

/**
 * Makes `dh`'s lane to `q` with an arena of `size` bytes, a power of two (its
 * old lane, if any, is the caller's to shut); 0 without memory. A lane that
 * replaces one of `above` bytes (grows) gets at most `size` bytes, and only
 * as many as every bound on arenas lets it have, rounded down to a power of
 * two; 0 if that is not more than `above`. The bounds: LANE_BYTES_MAX; an
 * eighth of `q`'s byte limit (the arenas of the at most LANES_PER_PEER
 * lanes into it hold no more than its limit lets it hold); a 64th of what
 * the bus's memory may grow to; and, with it, the arenas of every lane into
 * `q`'s user, open or not yet freed, within a quarter of that user's byte
 * limit (what lanes hold in memory stays of the order of what the user may
 * hold in messages). Under the sender's and `q`'s locks.
 */
function lane_make(p: Peer, dh: Handle, q: Peer, size: u32, above: u32): usize {
  let u = peer_user(q);
  user_lock(u);
  if (above) {
    let room = min<u64>(<u64>min(LANE_BYTES_MAX, q.lim2 >> 3), (<u64>root().maxPages << 16) >> 6);
    let userRoom = <u64>(u.lim2 >> 2);
    room = min(room, userRoom > <u64>u.laneBytes ? userRoom - <u64>u.laneBytes : 0);
    if (<u64>size > room) size = room ? <u32>(1 << (63 - <u32>clz(room))) : 0;
  }
  let lp: usize = 0;
  if (size > above) lp = heap_calloc(LANE_HEADER + size);
  if (!lp) {
    user_unlock(u);
    return 0;
  }
  let l = changetype<Lane>(lp);
  l.size = size;
  l.sender = <u32>changetype<usize>(p);
  l.handle = <u32>changetype<usize>(dh);
  l.receiver = <u32>changetype<usize>(q);
  l.wake = q.wake;
  l.user = <u32>changetype<usize>(u);
  l.next = u.lanes;
  if (u.lanes) changetype<Lane>(u.lanes).prev = <u32>lp;
  u.lanes = <u32>lp;
  u.laneBytes += size;
  user_unlock(u);
  let d = changetype<Handle>(node_of(dh).ownerHandle);
  d.lanes++;
  l.dest = <u32>changetype<usize>(d);
  dh.lane = <u32>lp;
  p.nLanes++;
  q.nLanesIn++;
  return lp;
}

/** A quarter of what a limit leaves free. */
// @ts-ignore: decorator
@inline function quarter_free(lim: u32, use: u32): u32 {
  return lim > use ? (lim - use) >> 2 : 0;
}

/**
 * True if the receiver `q` and its user `u` hold no more than their limits,
 * credit included: then a freed record's charge may go to a new message, as
 * a release and a send would (after a limit was lowered below what they
 * hold, only the locked path, which checks, may send until they are under
 * it again). `q`'s usage is read without its lock: a charge taken back and
 * not yet folded (`revoked`) only makes it look higher. Under `u`'s lock.
 */
function lane_within(q: Peer, u: User): bool {
  return q.use0 <= q.lim0 && q.use2 <= q.lim2 && u.use0 <= u.lim0 && u.use2 <= u.lim2;
}

/**
 * Moves the charges of the records the receiver freed (`returned`) into the
 * credit, if the receiver and its user are within their limits
 * (lane_within; a locked send that passed its check does not show that: a
 * message without bytes is not checked against the byte limit); true if it
 * moved any. Under the lane's user's lock, which it takes: a revoke
 * (lane_take_credit) then finds every unspent charge in one word or the
 * other, never in neither while it moves.
 */
function lane_reuse(l: Lane): bool {
  if (!sync_load<u64>(returned_at(l))) return false;
  let u = changetype<User>(l.user);
  user_lock(u);
  let r: u64 = 0;
  if (lane_within(changetype<Peer>(l.receiver), u)) {
    r = sync_xchg<u64>(returned_at(l), 0);
    if (r) sync_add<u64>(credit_at(l), r);
  }
  user_unlock(u);
  return r != 0;
}

/**
 * Takes a lane's unspent credit off its user, and leaves the receiver's part
 * in its `revoked` word (the receiver may not be locked by this call:
 * whatever reads its usage folds it in first, lane_fold). Under the user's
 * lock.
 */
function lane_take_credit(l: Lane, u: User): bool {
  let v = sync_xchg<u64>(credit_at(l), 0) + sync_xchg<u64>(returned_at(l), 0);
  if (!v) return false;
  u.use0 -= <u32>(v >> 32);
  u.use2 -= <u32>v;
  sync_add<u64>(changetype<usize>(l.receiver) + offsetof<Peer>("revoked"), v);
  return true;
}

/**
 * Takes back the unspent credit of every lane into a peer of `u` (a charge
 * failed, or a limit changed). True if there was any. Under `u`'s lock.
 */
export function lanes_revoke(u: User): bool {
  let any = false;
  let l = u.lanes;
  while (l) {
    if (lane_take_credit(changetype<Lane>(l), u)) any = true;
    l = changetype<Lane>(l).next;
  }
  return any;
}

/**
 * Unspent credit of the lanes into `q` (every lane of `u` if `q` is null), as
 * slices << 32 | bytes: charged, but not to any message. Under `u`'s lock,
 * or with every peer locked.
 */
export function lanes_unspent(u: User, q: usize): u64 {
  let s: u64 = 0, b: u64 = 0;
  let l = u.lanes;
  while (l) {
    let lane = changetype<Lane>(l);
    if (!q || lane.receiver == <u32>q) {
      let v = sync_load<u64>(credit_at(lane)) + sync_load<u64>(returned_at(lane));
      s += v >> 32;
      b += v & 0xFFFF_FFFF;
    }
    l = lane.next;
  }
  return (s << 32) | b;
}

/**
 * Writes the four usage counters at `usage` to `out`, less the unspent credit
 * of the lanes into `q` (every lane of `u` if `q` is 0): what the messages
 * are charged. For stats and the inspection; under `u`'s lock, or with every
 * peer locked.
 */
export function usage_of_messages(out: usize, usage: usize, u: User, q: usize): void {
  memory.copy(out, usage, 16);
  if (!u.lanes) return;
  let v = lanes_unspent(u, q);
  store<u32>(out, load<u32>(out) - <u32>(v >> 32));
  store<u32>(out, load<u32>(out, 8) - <u32>v, 8);
}

/**
 * Closes a handle's lane: no send takes it any more, its credit goes back,
 * and it is freed now if no record of it is left (else by the last
 * lane_free). Under the sender's and the receiver's locks.
 */
export function lane_close(dh: Handle): void {
  let l = changetype<Lane>(dh.lane);
  dh.lane = 0;
  lane_shut(l);
}

/** lane_close's part for the lane itself (its handle has let go of it, or holds a larger one). */
function lane_shut(l: Lane): void {
  let p = changetype<Peer>(l.sender);
  let q = changetype<Peer>(l.receiver);
  p.nLanes--;
  q.nLanesIn--;
  let u = changetype<User>(l.user);
  user_lock(u);
  lane_take_credit(l, u);
  if (l.prev) changetype<Lane>(l.prev).next = l.next;
  else u.lanes = l.next;
  if (l.next) changetype<Lane>(l.next).prev = l.prev;
  user_unlock(u);
  l.flags |= LANE_CLOSED;
  if (l.tail == l.head) lane_destroy(l);
}

/** Frees a closed lane with nothing left in it, and lets go of its destination. Under the receiver's lock. */
function lane_destroy(l: Lane): void {
  let d = changetype<Handle>(l.dest);
  let u = changetype<User>(l.user);
  user_lock(u);
  u.laneBytes -= l.size;
  user_unlock(u);
  heap_free(changetype<usize>(l));
  d.lanes--;
  handle_maybe_free(d);
}
