/**
 * DOC: tx — transactions: how an operation orders its entries
 *
 * An operation that queues entries on several peers (a multicast send, a
 * destroy of nodes held by many peers, a flush) is one transaction: every
 * entry it queues gets the same order key, so every receiver sees it at the
 * same place in the global order (queue.ts). The two steps:
 *
 *   stage   link the entry at (clock + 1) on its queue (odd: not yet
 *           receivable, and holding back what is behind it); remember the
 *           highest staging ts.
 *   commit  re-link every staged entry at the one even ts above them all and
 *           raise each queue's clock (and the actor's) to it.
 *
 * A single entry (a unicast, a lone release notification) is posted in one
 * step at max(queue clock, actor clock) + 2.
 *
 * The Tx record lives in the calling thread's context block (ctx), since a
 * send spans two ABI calls (send_begin stages, the host copies the payload,
 * send_commit commits). Staged entries are chained through Entry.txNext.
 *
 * Ctx (per thread, CTX_SIZE bytes):
 *   +0 actor u32  +4 head u32  +8 maxTs u64  +16 seq u32  +20 open u32
 *   +24 created u32 (handles made lazily by the current call)
 *   +28 errArg u32  +32 errIndex u32
 *   +40 cost u32 × 4 (scratch for a quota charge)
 *   +64 out: the call's result record (see docs/ABI.md), 32 bytes
 *   +96 tid u32   +100 inCall u32: 0 between calls; inside a call (and
 *       between send_begin and send_commit) the reclamation epoch the
 *       thread saw when the call began, plus one (bus.ts, "Freeing peers")
 *   +104 held, nHeld, capHeld: the peers this thread has locked (lockset.ts)
 *   +116 want: the peer a call needs that could not be locked in order
 *   +120 refs, nRefs, capRefs: the peer references this thread holds, as
 *        (slot, gen) pairs, closed for it if it exits
 *   +132 hostThread: the host's id of this thread (Node: threadId)
 *   +136 nWake, +140 u32 × 8: wake words to notify after the locks are
 *        dropped, so a woken receiver does not run into the sender's lock
 *   +172 spinning: 1 while the host spins in a wait and is counted in
 *        Root.spinners (written by the host; thread_exit takes a dead
 *        thread's count back)
 *   +176 serial: this attachment's serial, never reused (owner of its host
 *        object records, record.ts)
 *   +180 records: the host object records this thread owns (record.ts)
 *   +184 scratch: the thread's scratch for call arguments (ctx_scratch)
 *   +188 taking, +192 nTaking: the host object records of the message this
 *        thread received last that its host has not taken yet (record.ts
 *        records_taken): a message's `pending` is counted down in a call,
 *        never in host code a terminated thread may stop in
 *   +196 laneMsg, +200 laneUndo: the lane record send_begin placed and its
 *        lane's head before it (lane.ts), until send_commit / send_cancel
 *   +208 cut u64: the open transaction's cut of lane inboxes (lane.ts)
 */

import { Entry, entry, queue_link, queue_unlink, clock_sync, KIND_DESTROY } from "./queue";
import { Peer, peer_wake } from "./peer";
import { handle_of_destroy_entry, Node } from "./handle";
import { lane_cut, lane_settle, CUT_NONE } from "./lane";

@unmanaged export class Ctx {
  actor: u32;
  head: u32;
  maxTs: u64;
  seq: u32;
  open: u32;
  created: u32;
  errArg: u32;
  errIndex: u32;
  _pad0: u32;
  cost0: u32; cost1: u32; cost2: u32; cost3: u32;
  _pad1: u32; _pad2: u32;
  out0: u32; out1: u32; out2: u32; out3: u32; out4: u32; out5: u32; out6: u32; out7: u32;
  tid: u32;
  inCall: u32;
  held: u32;
  nHeld: u32;
  capHeld: u32;
  want: u32;
  refs: u32;
  nRefs: u32;
  capRefs: u32;
  hostThread: u32;
  /** Wake words to notify once the call has dropped its locks (peer_wake). */
  nWake: u32;
  wake0: u32; wake1: u32; wake2: u32; wake3: u32; wake4: u32; wake5: u32; wake6: u32; wake7: u32;
  /** 1 while the host spins in a wait, counted in Root.spinners. */
  spinning: u32;
  serial: u32;
  records: u32;
  scratch: u32;
  taking: u32;
  nTaking: u32;
  /** The lane record send_begin placed (lane.ts), until send_commit or send_cancel. */
  laneMsg: u32;
  /** Its lane's head before it was placed. */
  laneUndo: u32;
  _pad3: u32;
  /** The open transaction's cut of lane inboxes (lane.ts): 0 none yet, CUT_NONE for a transaction on one queue. */
  cut: u64;
}

// @ts-ignore: decorator
@inline export const CTX_WAKES: u32 = 8;

// @ts-ignore: decorator
@inline export const CTX_OUT: u32 = 64;
// @ts-ignore: decorator
@inline export const CTX_SIZE: u32 = 216;

/** The quota cost scratch of a context. */
// @ts-ignore: decorator
@inline export function ctx_cost(c: Ctx): usize {
  return changetype<usize>(c) + 40;
}

// @ts-ignore: decorator
@inline export function ctx_out(c: Ctx): usize {
  return changetype<usize>(c) + CTX_OUT;
}

export function tx_begin(c: Ctx, actor: Peer): void {
  c.actor = <u32>changetype<usize>(actor);
  c.head = 0;
  c.maxTs = 0;
  c.seq = ++actor.seq;
  c.open = 1;
  c.cut = 0;
}

export function tx_stage(c: Ctx, q: Peer, e: Entry): void {
  // lane messages pushed before the transaction's cut go before it on every
  // queue; one on a single queue has its moment now (lane.ts)
  if (c.cut != CUT_NONE) lane_cut(c, q);
  else lane_settle(q);
  let actor = changetype<Peer>(c.actor);
  let base = q.clock > actor.clock ? q.clock : actor.clock;
  e.ts = base + 1;
  e.sender = actor.serial;
  e.seq = c.seq;
  queue_link(q, e);
  e.txNext = c.head;
  c.head = <u32>changetype<usize>(e);
  if (e.ts > c.maxTs) c.maxTs = e.ts;
}

/** Takes one staged entry back out (its queue and the tx list). */
export function tx_unstage(c: Ctx, e: Entry): void {
  let at = changetype<usize>(c) + offsetof<Ctx>("head");
  let p = changetype<usize>(e);
  while (load<u32>(at) != <u32>p) at = load<u32>(at) + offsetof<Entry>("txNext");
  store<u32>(at, e.txNext);
  e.txNext = 0;
  queue_unlink(changetype<Peer>(e.queue), e);
}

/** Commits every staged entry at one ts; returns it (0 if nothing staged). */
export function tx_commit(c: Ctx): u64 {
  c.open = 0;
  if (!c.head) return 0;
  let actor = changetype<Peer>(c.actor);
  let ts = c.maxTs + 1;
  let p = c.head;
  c.head = 0;
  // The transaction holds the locks of every queue it staged on, so its
  // entries are the last ones there (staged above each clock): raising their
  // ts to the commit ts keeps every queue sorted without moving them.
  while (p) {
    let e = entry(p);
    let next = e.txNext;
    e.txNext = 0;
    let q = changetype<Peer>(e.queue);
    e.ts = ts;
    q.clock = clock_sync(q.clock, ts);
    if (e.kind == KIND_DESTROY) {
      let n = changetype<Node>(handle_of_destroy_entry(e).node);
      n.destroyTs = ts;
      n.destroySender = e.sender;
      n.destroySeq = e.seq;
    }
    peer_wake(c, q);
    p = next;
  }
  actor.clock = clock_sync(actor.clock, ts);
  return ts;
}

/** Queues one entry on its own, as a transaction of one. */
export function tx_post(c: Ctx, actor: Peer, q: Peer, e: Entry): void {
  // its moment is now: lane messages pushed since the call locked q come first
  // (a call may post on several queues, locked at other moments: lane.ts)
  lane_settle(q);
  let base = q.clock > actor.clock ? q.clock : actor.clock;
  let ts = base + 2;
  e.ts = ts;
  e.sender = actor.serial;
  e.seq = ++actor.seq;
  queue_link(q, e);
  q.clock = ts;
  actor.clock = ts;
  peer_wake(c, q);
}

/** Queues `e` within the open transaction if there is one, else alone. */
export function tx_queue(c: Ctx, actor: Peer, q: Peer, e: Entry): void {
  if (c.open) tx_stage(c, q, e);
  else tx_post(c, actor, q, e);
}
