/**
 * DOC: objects — host objects in flight (SPEC §9)
 *
 * Values that cannot live in linear memory travel with a message as records
 * in the bus memory (assembly/record.ts has the record's layout and its
 * rules). The value itself stays in the sending thread's table; the record
 * names it (owner serial, slot) and carries either its serialized form or,
 * for a value that moves, a ticket.
 *
 * Copies. A receiver in the sending thread gets the value itself (same
 * identity); one in another thread gets a structured clone made from the
 * serialized bytes in the record. A value that cannot be cloned, or whose
 * clone cannot be rebuilt, arrives as a Bus1Error EOPNOTSUPP in its place:
 * the message is delivered either way.
 *
 * Moves. Ports, streams and the ArrayBuffers a send lists in `transfer` are
 * "movable" where the platform has a Courier: they go by transfer, the way
 * a file descriptor is passed. The record then carries a ticket
 * (TICKET_BYTES at rec + 24, u32 each):
 *
 *   +0 magic   TICKET_MAGIC (a serialized form never starts so: v8's starts 0xff)
 *   +4 owner   serial of the sending thread
 *   +8 holder  serial of the thread that holds the value
 *   +12 nonce  the owner's number for this record (never reused by it)
 *   +16 copies staged copies of the message whose receiver was the holder
 *   +20 why   why a value that stayed with its owner did not move (STAYED_*; 0 otherwise)
 *
 * Which thread. Every peer keeps the serial of the thread that last
 * connected, adopted, received from or waited on it (Peer.receiver, a
 * hint). Between send_begin and send_commit, with the receivers locked and
 * no user code running, the sender reads it for each staged copy
 * (send_receiver) and applies one rule per message: if any copy's receiver
 * is the sending thread, nothing moves (the value is shared in this thread);
 * otherwise every movable value of the message moves to the receiving
 * thread of the first destination (in the order given) that this thread
 * has a ready link to, unless one of them cannot be posted now (a locked
 * stream, a detached buffer: Courier.postable, checked in plan()), when
 * none moves. Each value goes in its own post (with the records that name
 * it); its ticket is written before the post and put back to the owner if
 * the post throws (that value stays, the others go on), all before the
 * commit: no receiver ever sees a ticket that changes. A ticket that stays
 * with its owner says why (+20), for the receivers' EOPNOTSUPP. A receiver in the holder thread gets the value
 * (every receiver there the same one); any other receiver gets a Bus1Error
 * EOPNOTSUPP in its place, saying where it went. Seeds never move.
 *
 * Links. Each attached thread keeps one channel (a MessagePort pair) to
 * every other thread attached to the same bus; `join` makes them when a
 * thread attaches: one channel per thread already there, its far end handed
 * over by the Courier (Node: worker_threads.postMessageToThread), which the
 * far thread acknowledges on the channel ("ack"). A link is *ready* (values
 * may move on it) in the thread that received its end at once, and in the
 * thread that made it once the ack is in: a thread blocked in wait() or
 * busy cannot take a new end (that needs its event loop), and a value posted
 * to it then would be one it cannot take at recv. Until the ack, values
 * stay with their sender. Bus.attach waits for the acks up to LINK_WAIT_MS
 * (it returns as soon as all are in; correctness does not depend on the
 * wait, only how soon the new thread's first moves can go). Two threads
 * that attach at once each make a channel to the other: both keep the one
 * made by the lower serial (`linked`). Before a send that moves (prepare,
 * outside any core call), `refresh` takes what came on every channel
 * (acks, a "bye" a thread posts when it lets go of the bus, values) and
 * drops links to threads the core no longer lists. Messages on a channel
 * are dequeued synchronously (Courier.take) when a receiver needs one, and
 * also whenever the thread is idle; either way values are "parked" here by
 * (owner, nonce) until taken. Every message's shape is checked with
 * builtins captured at load, without throwing; a value that cannot be
 * parked is let go of. A channel's end closes with its thread.
 *
 * Release. A movable value nobody received is let go (a port closed, a
 * stream cancelled, Courier.discard), outside any core call (a microtask):
 * by its owner when the owner frees the record and no receiver in the
 * owner thread took it; by the holder when it finds the record gone (its
 * ticket no longer there, or no message carrying it) while the value is
 * parked and undelivered — on the holder's next bus call, or its idle
 * sweep every PARK_SWEEP_MS while anything is parked. A thread that lets go
 * of the bus discards what it holds undelivered and closes its channels.
 *
 * Owners. A record names its owner by the serial of the owning thread's
 * attachment, never by a reused index. Every message that is received or
 * dropped takes one from the record's `pending`; at zero the owner frees
 * it (at once when it is the one that saw zero, otherwise on its next
 * sweep). Both happen inside core calls, never in host code that a
 * terminated thread may stop in: a received message is counted off once
 * its records are read (taken(): recv_taken), or by the core for a thread
 * that is gone; a record is claimed and freed in one call
 * (object_record_release). When the owner lets go of the bus, or dies and is found by
 * `bus.watch`, the core turns its records into orphans, and whoever takes
 * the last message frees them.
 *
 * No user code runs inside a core call here: movability is decided when the
 * arguments are read (Courier.movable: brand checks, and for a stream that
 * neither it nor the intrinsic prototypes carry anyone's transfer steps),
 * the post moves only values that passed them, in messages made of plain
 * arrays, through builtins captured at load. Should someone's code run all
 * the same, a bus call it makes is EBUSY (state.ts checkOpen).
 */
import { Bus1Error } from "./errors.js";
import type { Core } from "./core.js";
import { requirePlatform, type Courier } from "./platform.js";

/** Record.length of a value that has no serialized form. */
export const NOT_CLONEABLE = 0xffffffff;
/** Record.owner of a record whose thread is gone. */
const ORPHAN = 0xffffffff;
/** Bytes of a record's header (assembly/record.ts RECORD_HEADER). */
const HEADER = 24;
/** A moving value's ticket (see DOC): its length, and the first word, which no serialized form has. */
const TICKET_BYTES = 24;
const TICKET_MAGIC = 0x54314253;
/** How long Bus.attach waits for the threads already attached to take their channel ends. */
export const LINK_WAIT_MS = 100;
/** How often a thread that holds parked values looks for those whose message is gone. */
const PARK_SWEEP_MS = 20;
/** What a delivery of a channel end says it is. */
const LINK = "bus1-link";
const NONE: number[] = [];
const NO_TICKET = new Uint8Array(TICKET_BYTES);

/** How a host copies values between threads; null where it cannot. */
export interface Cloner {
  serialize(value: unknown): Uint8Array | null;
  deserialize(bytes: Uint8Array): unknown;
}

/** Values of one send, serialized (this runs user code) before the core is entered. */
export interface PreparedObjects {
  readonly values: readonly unknown[];
  readonly forms: readonly (Uint8Array | null)[];
  /** Which values move rather than copy (null: none does). */
  readonly moving: readonly boolean[] | null;
}

export const NO_OBJECTS: PreparedObjects = Object.freeze({
  values: Object.freeze([]), forms: Object.freeze([]), moving: null,
});

/** One post of a move: one value (with every record of the send that names it), as a message of plain arrays. */
interface MovePost {
  readonly records: readonly number[];
  readonly message: { readonly t: "obj"; readonly items: readonly (readonly [number, number, unknown])[] };
  readonly transfer: unknown[];
}

/** The moving values of one send, made ready (arrays and all) before the core is entered. */
export interface MovePlan {
  readonly records: readonly number[];
  /** One post per distinct value: a post that fails affects that value only. */
  readonly posts: readonly MovePost[];
  /** False when some value cannot be posted now (a locked stream, a detached buffer): then none moves. */
  readonly postable: boolean;
}

/** Exports of the core for moves (docs/ABI.md §5.1, §5.4), beyond core.ts's list. */
interface MoveExports {
  send_receiver(payload: number): number;
  thread_list(ctx: number, out: number, max: number): number;
}

/** A value that moved here, until a receiver takes it or its record is gone. */
interface Parked {
  readonly rec: number;
  readonly owner: number;
  readonly nonce: number;
  readonly value: unknown;
  delivered: boolean;
}

// Atomics as captured at load: drop() and release() run inside core calls
// (objects_drop), hold() and move() between send_begin and send_commit.
const atomicLoad = Atomics.load, atomicStore = Atomics.store, atomicSub = Atomics.sub;
const later = queueMicrotask;
const every = setInterval, stopEvery = clearInterval, after = setTimeout, stopAfter = clearTimeout;
// onLink validates what comes on a channel with these, captured at load (it runs in recv, in user code's realm)
const isArray = Array.isArray;
const isInteger = Number.isInteger;
/** What a thread posts on a channel: its end is taken (ack), it lets go of the bus (bye). */
const ACK = Object.freeze({ t: "ack" }), BYE = Object.freeze({ t: "bye" });
const NO_TRANSFER: unknown[] = [];
/** Ticket +20: why a value stayed with its owner. */
const STAYED_SHARED = 0, STAYED_NO_LINK = 1, STAYED_CANNOT_POST = 2;

/** A dictionary with no prototype: writing a key never reaches a setter someone put on a prototype. */
function dict<T>(): Record<string | number, T> {
  return Object.create(null) as Record<string | number, T>;
}

/** This thread's tables that take part in links, by `${bus id}:${serial}`. */
const joined = dict<ObjectTable>();
let nJoined = 0;

/** A channel end another thread handed this one (Courier.deliver); never throws. */
function onDelivery(m: unknown): void {
  try {
    if (typeof m !== "object" || m === null) return;
    const d = m as { bus1?: unknown; bus?: unknown; to?: unknown; from?: unknown; port?: unknown };
    if (d.bus1 !== LINK) return;
    const courier = requirePlatform().courier;
    if (!courier || !courier.isPort(d.port)) return;
    const table = typeof d.bus === "number" && typeof d.to === "number" ? joined[`${d.bus}:${d.to}`] : undefined;
    if (table && typeof d.from === "number" && isInteger(d.from)) table.linked(d.from, d.port);
    else courier.close(d.port);
  } catch {
    // not a delivery of ours
  }
}

function moved(what: string): Bus1Error {
  return Bus1Error.of("EOPNOTSUPP", "recv", what);
}

export class ObjectTable {
  /** Values by slot; a slot that is free holds undefined (and so does one whose value moved away). */
  private values: unknown[] = [];
  /** Free slots, as a stack of `nFree`. */
  private free = dict<number>();
  private nFree = 0;
  /** Records this thread made that are still carried by some message (address → 1). */
  private outstanding = dict<number>();
  private nOutstanding = 0;
  /** Slots of movable values that stayed here: 0 until a receiver here takes one (see DOC, Release). */
  private held = dict<number>();
  /** This thread's number for its next moving record. */
  private nonce = 0;
  /** Channels to the other threads of the bus, by their serial. */
  private links = dict<unknown>();
  /** 1 for a link made here (its far end handed over), 0 for one another thread made (see linked). */
  private made = dict<number>();
  /**
   * 1 for a link values may move on: the far thread has its end (it
   * acknowledged, or it made the channel and handed this end over).
   */
  private ready = dict<number>();
  /** Values that moved here, by `${owner}:${nonce}`. */
  private parked = dict<Parked>();
  private nParked = 0;
  private sweeper: ReturnType<typeof setInterval> | null = null;
  /** Values to let go of once the current call is over. */
  private discards = dict<unknown>();
  private nDiscards = 0;
  private key = "";
  /** Threads whose link join() waits for, and what it calls when none is left. */
  private awaiting = dict<number>();
  private nAwaiting = 0;
  private joinDone: (() => void) | null = null;
  private readonly courier: Courier | null;

  constructor(private readonly core: Core, private readonly cloner: Cloner | null) {
    this.courier = requirePlatform().courier ?? null;
  }

  /** Live values (for tests of leaks). */
  get size(): number {
    return this.values.length - this.nFree;
  }

  /** Values parked here, movable values kept here, channels to other threads (for tests of leaks). */
  inTransit(): { parked: number; held: number; links: number } {
    let links = 0, held = 0;
    for (const _ in this.links) links++;
    for (const _ in this.held) held++;
    return { parked: this.nParked, held, links };
  }

  // ---- sending ----------------------------------------------------------------------

  /**
   * Serializes the values of one send and picks those that move; getters of
   * the values run here, and only here. `transfer` lists ArrayBuffers among
   * `values` to move; a seed's values never move.
   */
  prepare(values: readonly unknown[], transfer: readonly unknown[] | null, seed: boolean): PreparedObjects {
    const listed = transfer ?? NONE;
    for (let j = 0; j < listed.length; j++) {
      let found = false;
      for (let i = 0; i < values.length && !found; i++) found = values[i] === listed[j];
      if (!found) throw Bus1Error.of("EINVAL", "send", `transfer[${j}] is not one of the objects`);
      if (this.courier && !this.courier.movable(listed[j], true)) {
        throw Bus1Error.of("EINVAL", "send", `transfer[${j}] is not an ArrayBuffer, a port or a stream`);
      }
    }
    if (values.length === 0) return NO_OBJECTS;
    const forms: (Uint8Array | null)[] = new Array(values.length);
    let moving: boolean[] | null = null;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (!seed && this.courier) {
        let isListed = false;
        for (let j = 0; j < listed.length && !isListed; j++) isListed = listed[j] === v;
        if (this.courier.movable(v, isListed)) {
          if (!moving) moving = new Array(values.length).fill(false);
          moving[i] = true;
          forms[i] = NO_TICKET;
          continue;
        }
      }
      forms[i] = this.cloner ? this.cloner.serialize(v) : null;
    }
    // after the caller's code (serializers) and before the core is entered: what the links say now
    if (moving) this.refresh();
    return { values, forms, moving };
  }

  /** Records for prepared values; runs no user code. */
  put(objects: PreparedObjects): number[] {
    const n = objects.values.length;
    if (n === 0) return NONE;
    this.sweep();
    const core = this.core;
    const records: number[] = new Array(n);
    let made = 0;
    try {
      for (let i = 0; i < n; i++) {
        const form = objects.forms[i];
        const slot = this.nFree ? this.free[--this.nFree] : this.values.length;
        const rec = core.ex.object_record(core.ctx, slot, form ? form.length : NOT_CLONEABLE);
        if (!rec) {
          this.free[this.nFree++] = slot;
          throw Bus1Error.of("ENOMEM", "send", "no memory for the objects' records");
        }
        if (slot === this.values.length) this.values.push(objects.values[i]);
        else this.values[slot] = objects.values[i];
        if (form) core.views().u8.set(form, rec + HEADER);
        if (form === NO_TICKET) this.ticket(rec, ++this.nonce);
        records[made++] = rec;
      }
    } catch (e) {
      records.length = made;
      this.hold(records, 0);
      throw e;
    }
    return records;
  }

  /** A ticket that says the value stays with its owner (move() may change that before the commit). */
  private ticket(rec: number, nonce: number): void {
    const core = this.core.views(), at = (rec + HEADER) >>> 2;
    core.u32[at] = TICKET_MAGIC;
    core.u32[at + 1] = core.serial;
    core.u32[at + 2] = core.serial;
    core.u32[at + 3] = nonce;
    core.u32[at + 4] = 0;
    core.u32[at + 5] = 0;
  }

  /** The moving values of a send, made ready before the core is entered; null if none moves. */
  plan(objects: PreparedObjects, records: readonly number[]): MovePlan | null {
    const moving = objects.moving;
    if (!moving) return null;
    const u32 = this.core.views().u32;
    const recs: number[] = [];
    const posts: { records: number[]; message: { t: "obj"; items: [number, number, unknown][] }; transfer: unknown[] }[] = [];
    let postable = true;
    for (let i = 0; i < records.length; i++) {
      if (!moving[i]) continue;
      const v = objects.values[i];
      const rec = records[i];
      recs[recs.length] = rec;
      let post = null;
      for (let j = 0; j < posts.length && !post; j++) if (posts[j].transfer[0] === v) post = posts[j];
      if (!post) {
        post = { records: [] as number[], message: { t: "obj" as const, items: [] as [number, number, unknown][] }, transfer: [v] };
        posts[posts.length] = post;
        if (postable && !this.courier!.postable(v)) postable = false;
      }
      post.records[post.records.length] = rec;
      post.message.items[post.message.items.length] = [rec, u32[((rec + HEADER) >>> 2) + 3], v];
    }
    return { records: recs, posts, postable };
  }

  /**
   * Between send_begin and send_commit (receivers locked, no user code):
   * applies the rule of the DOC to the `staged` copies whose results are at
   * `out` (ABI §5.4) and moves the plan's values, or keeps them here.
   */
  move(plan: MovePlan | null, out: number, results: number): void {
    if (!plan) return;
    const core = this.core.views(), me = core.serial;
    const ex = this.core.ex as unknown as MoveExports;
    const at = out >>> 2;
    let local = 0, target = 0, copies = 0;
    for (let i = 0; i < results; i++) {
      const addr = core.u32[at + 2 * i + 1];
      if (core.i32[at + 2 * i] !== 0 || addr === 0) continue;
      const r = ex.send_receiver(addr);
      if (r === me) local++;
      else if (target === 0 && this.ready[r] === 1 && this.links[r] !== undefined) target = r;
      if (r === target) copies++;
    }
    const posts = plan.posts;
    if (local === 0 && target !== 0 && plan.postable) {
      // one post per value: one that throws (it cannot go after all) stays here, and only that one
      const port = this.links[target];
      for (let p = 0; p < posts.length; p++) {
        const recs = posts[p].records;
        this.stamp(recs, target, copies, 0);
        try {
          this.courier!.post(port, posts[p].message, posts[p].transfer);
        } catch {
          this.keep(recs, me, 0, STAYED_CANNOT_POST);
          continue;
        }
        for (let i = 0; i < recs.length; i++) this.values[core.u32[(recs[i] >>> 2) + 1]] = undefined;
      }
      return;
    }
    // why they stay: a receiver here, no ready link to the receiving thread, or one cannot be posted
    const why = local !== 0 ? STAYED_SHARED : target === 0 ? STAYED_NO_LINK : STAYED_CANNOT_POST;
    for (let p = 0; p < posts.length; p++) this.keep(posts[p].records, me, local, why);
  }

  /** Values that stay with this thread: their tickets say so (and why), and they are held until received or freed. */
  private keep(records: readonly number[], me: number, copies: number, why: number): void {
    this.stamp(records, me, copies, why);
    const u32 = this.core.views().u32;
    for (let i = 0; i < records.length; i++) this.held[u32[(records[i] >>> 2) + 1]] = 0;
  }

  private stamp(records: readonly number[], holder: number, copies: number, why: number): void {
    const u32 = this.core.views().u32;
    for (let i = 0; i < records.length; i++) {
      const at = (records[i] + HEADER) >>> 2;
      u32[at + 2] = holder;
      u32[at + 4] = copies;
      u32[at + 5] = why;
    }
  }

  /** `count` messages carry each record (a multicast); 0 frees them. */
  hold(records: readonly number[], count: number): void {
    if (records.length === 0) return;
    const i32 = this.core.views().i32;
    for (let i = 0; i < records.length; i++) {
      const rec = records[i];
      if (count === 0) {
        atomicStore(i32, (rec >>> 2) + 2, 0);
        this.release(rec);
      } else {
        atomicStore(i32, (rec >>> 2) + 2, count);
        if (this.outstanding[rec] === undefined) {
          this.outstanding[rec] = 1;
          this.nOutstanding++;
        }
      }
    }
  }

  // ---- receiving --------------------------------------------------------------------

  /** The value of a record, for a receiver that keeps the message (a seed); never throws. */
  peek(rec: number): unknown {
    return this.value(rec, false);
  }

  /** The value of a record for one message that was received; taken() counts the message off once every record is read. */
  take(rec: number): unknown {
    return this.value(rec, true);
  }

  /**
   * The records of the message just received are read: the core counts the
   * message off each (in a call: a thread terminated in host code after recv
   * leaves them to the core, record.ts), and this thread's own that no
   * message carries any more are freed.
   */
  taken(records: readonly number[]): void {
    const core = this.core.views();
    // this thread's own, read before: another thread's may be freed by the call
    let mine: number[] | null = null;
    for (let i = 0; i < records.length; i++) {
      if (atomicLoad(core.u32, records[i] >>> 2) === core.serial) (mine ??= []).push(records[i]);
    }
    core.ex.recv_taken(core.ctx);
    if (mine) for (let i = 0; i < mine.length; i++) this.release(mine[i]);
  }

  /**
   * Whether the receiver of a message carrying `rec` may move the value out
   * of this thread (serve.ts hands it to a plugin): a value that moves
   * (a port, a stream, a listed ArrayBuffer), held by this thread, and
   * delivered to one receiver here only. Call before take().
   */
  exclusive(rec: number): boolean {
    const core = this.core.views(), at = rec >>> 2;
    if (!this.isTicket(core.u32, at)) return false;
    return core.u32[at + 8] === core.serial && core.u32[at + 10] === 1;
  }

  private isTicket(u32: Uint32Array, at: number): boolean {
    return u32[at + 3] === TICKET_BYTES && u32[at + 6] === TICKET_MAGIC;
  }

  private value(rec: number, taking: boolean): unknown {
    const core = this.core.views();
    const at = rec >>> 2;
    if (this.isTicket(core.u32, at)) return this.ticketValue(at, taking);
    if (atomicLoad(core.u32, at) === core.serial) return this.values[core.u32[at + 1]];
    const length = core.u32[at + 3];
    if (!this.cloner) {
      // a browser: no synchronous structured serialization, so objects stay in the sending thread
      return Bus1Error.of("EOPNOTSUPP", "recv", `an object sent by another thread (the ${requirePlatform().name} host copies no objects between threads)`);
    }
    if (length === NOT_CLONEABLE) {
      return Bus1Error.of("EOPNOTSUPP", "recv", "an object sent by another thread that cannot be cloned");
    }
    try {
      return this.cloner.deserialize(core.u8.slice(rec + HEADER, rec + HEADER + length));
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      return Bus1Error.of("EOPNOTSUPP", "recv", `an object sent by another thread could not be rebuilt here (${why})`);
    }
  }

  private ticketValue(at: number, taking: boolean): unknown {
    const core = this.core.views(), u32 = core.u32, me = core.serial;
    const owner = u32[at + 7], holder = u32[at + 8], nonce = u32[at + 9];
    if (holder !== me) {
      if (holder !== owner) return moved("an object that moved to another thread (the one that received for its peer when it was sent)");
      const why = u32[at + 11];
      return moved(why === STAYED_NO_LINK
        ? "an object that stayed in the thread that sent it: that thread had no channel ready to the thread that received for its peer (one takes its end of a new thread's channel when it next runs its event loop)"
        : why === STAYED_CANNOT_POST
          ? "an object that stayed in the thread that sent it: it, or another object of the message, could not be posted (a locked stream, a detached buffer)"
          : "an object that stayed in the thread that sent it (a port, a stream or a transferred ArrayBuffer moves only to the thread that received for its peer when it was sent, and only when no receiver was in the sending thread)");
    }
    if (owner === me) {
      const slot = u32[at + 1];
      if (taking && this.held[slot] !== undefined) this.held[slot] = 1;
      return this.values[slot];
    }
    this.drain(owner);
    const p = this.parked[`${owner}:${nonce}`];
    if (!p) return moved("an object that was moved to this thread but did not arrive (its channel closed first)");
    if (taking) p.delivered = true;
    return p.value;
  }

  /** One message carrying the record is dropped. Runs inside core calls (objects_drop). */
  drop(rec: number): void {
    const core = this.core.views();
    const at = rec >>> 2;
    if (atomicSub(core.i32, at + 2, 1) !== 1) return;
    const owner = atomicLoad(core.u32, at);
    if (owner === core.serial) this.release(rec);
    else if (owner === ORPHAN) core.ex.object_record_release(core.ctx, rec);
  }

  /** Frees the records of this thread that no message carries any more; lets go of parked values whose message is gone. */
  sweep(): void {
    if (this.nParked) this.sweepParked();
    if (this.nOutstanding === 0) return;
    const i32 = this.core.views().i32;
    for (const key in this.outstanding) {
      const rec = +key;
      if (atomicLoad(i32, (rec >>> 2) + 2) === 0) this.release(rec);
    }
  }

  /** This thread lets go: the core makes its records in flight orphans (ctx_free); the values go. */
  forget(): void {
    for (const slot in this.held) if (this.held[slot] === 0) this.discard(this.values[+slot]);
    // what came on the channels is taken (and let go of) before they close; the far threads are told
    for (const serial in this.links) this.drain(+serial);
    for (const key in this.parked) if (!this.parked[key].delivered) this.discard(this.parked[key].value);
    for (const serial in this.links) {
      const port = this.links[serial];
      try {
        this.courier!.post(port, BYE, NO_TRANSFER);
      } catch {
        // its other end is gone already
      }
      this.courier!.close(port);
    }
    if (this.key) {
      delete joined[this.key];
      // the last table of this thread with links: no listener stays on the process
      if (--nJoined === 0) this.courier?.unreceive();
    }
    if (this.sweeper !== null) stopEvery(this.sweeper);
    this.sweeper = null;
    this.key = "";
    this.joinDone?.();
    this.links = dict<unknown>();
    this.made = dict<number>();
    this.ready = dict<number>();
    this.parked = dict<Parked>();
    this.nParked = 0;
    this.held = dict<number>();
    this.outstanding = dict<number>();
    this.nOutstanding = 0;
    this.values = [];
    this.free = dict<number>();
    this.nFree = 0;
  }

  private release(rec: number): void {
    const core = this.core.views();
    if (atomicLoad(core.i32, (rec >>> 2) + 2) !== 0) return;
    const slot = core.u32[(rec >>> 2) + 1];
    // claimed and freed in one core call: a thread terminated between a claim and the free would leave it for ever
    if (!core.ex.object_record_release(core.ctx, rec)) return;
    // a movable value no receiver took is let go of, once this call is over
    if (this.held[slot] !== undefined) {
      if (this.held[slot] === 0) this.discard(this.values[slot]);
      delete this.held[slot];
    }
    this.values[slot] = undefined;
    this.free[this.nFree++] = slot;
    if (this.outstanding[rec] !== undefined) {
      delete this.outstanding[rec];
      this.nOutstanding--;
    }
  }

  /** Lets go of `v` after the current call (a stream's own cancel code may run): never inside a core call. */
  private discard(v: unknown): void {
    if (v === undefined || !this.courier) return;
    this.discards[this.nDiscards++] = v;
    if (this.nDiscards === 1) later(() => this.flushDiscards());
  }

  private flushDiscards(): void {
    const list = this.discards, n = this.nDiscards;
    this.discards = dict<unknown>();
    this.nDiscards = 0;
    for (let i = 0; i < n; i++) {
      try {
        this.courier!.discard(list[i]);
      } catch {
        // already closed, or a stream that is locked elsewhere: nothing more to do
      }
    }
  }

  // ---- links between threads ----------------------------------------------------------

  /**
   * Joins the links of bus `busId` (see DOC, Links): a channel to every
   * other attached thread; resolves once each is ready (acknowledged, or
   * replaced by one the other thread made), or after LINK_WAIT_MS. Nothing
   * to do on a private bus or without a Courier.
   */
  join(busId: number, shared: boolean): Promise<void> {
    const courier = this.courier;
    if (!courier || !shared) return Promise.resolve();
    const me = this.core.serial;
    this.key = `${busId}:${me}`;
    joined[this.key] = this;
    if (nJoined++ === 0) courier.receive(onDelivery);
    const threads = this.threads();
    if (!threads || threads.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = after(() => done(), LINK_WAIT_MS);
      const done = () => {
        stopAfter(timer);
        this.joinDone = null;
        this.awaiting = dict<number>();
        this.nAwaiting = 0;
        resolve();
      };
      for (let i = 0; i < threads.length; i += 2) {
        const serial = threads[i], host = threads[i + 1];
        const [keep, give] = courier.channel();
        this.listen(serial, keep);
        this.made[serial] = 1;
        if (this.awaiting[serial] === undefined) {
          this.awaiting[serial] = 1;
          this.nAwaiting++;
        }
        courier.deliver(host, { bus1: LINK, bus: busId, to: serial, from: me, port: give }, [give]);
      }
      this.joinDone = done;
    });
  }

  /** The other threads attached now, as (serial, host thread) pairs; null if the core cannot say. */
  private threads(): number[] | null {
    const core = this.core;
    const ex = core.ex as unknown as MoveExports;
    let max = 64, n: number, base: number;
    for (;;) {
      base = core.scratchFor(max * 8);
      n = ex.thread_list(core.ctx, base, max);
      if (n <= max) break;
      max = n;
    }
    if (n < 0) return null;
    const out: number[] = new Array(2 * n);
    const u32 = core.views().u32, at = base >>> 2;
    for (let i = 0; i < 2 * n; i++) out[i] = u32[at + i];
    return out;
  }

  /**
   * Thread `from` handed this one its end of their channel: keep it and say
   * so. If both made a channel to each other (they attached at the same
   * moment), the one made by the thread with the lower serial is kept, by
   * both: the other is closed.
   */
  linked(from: number, port: unknown): void {
    const courier = this.courier!, me = this.core.serial;
    if (from === me || (from >>> 0) !== from) {
      courier.close(port);
      return;
    }
    const old = this.links[from];
    if (old !== undefined) {
      if (this.made[from] === 1 && me < from) {
        // ours stays; the other thread, seeing ours, drops its own
        courier.close(port);
        return;
      }
      this.unlink(from);
      courier.close(old);
    }
    this.listen(from, port);
    this.made[from] = 0;
    try {
      courier.post(port, ACK, NO_TRANSFER);
    } catch {
      // the other end is gone already: its close is seen by listen
    }
    this.markReady(from);
  }

  private listen(from: number, port: unknown): void {
    this.links[from] = port;
    this.courier!.listen(port, (m) => this.onLink(from, port, m), () => {
      if (this.links[from] === port) this.unlink(from);
    });
  }

  private unlink(serial: number): void {
    delete this.links[serial];
    delete this.made[serial];
    delete this.ready[serial];
  }

  /** The link to `serial` is ready: values may move on it. */
  private markReady(serial: number): void {
    this.ready[serial] = 1;
    if (this.awaiting[serial] !== undefined) {
      delete this.awaiting[serial];
      if (--this.nAwaiting === 0) this.joinDone?.();
    }
  }

  /** What came on the channel from thread `from` (on `port`); never throws (it runs in a port's listener, or in recv). */
  private onLink(from: number, port: unknown, m: unknown): void {
    try {
      this.linkMessage(from, port, m);
    } catch {
      // a malformed message of a hostile thread: ignored
    }
  }

  /**
   * An acknowledgement, a goodbye, or values that moved here (one value a
   * message, with the records that name it). Shapes are checked with
   * builtins captured at load; a value taken off the channel that cannot be
   * parked (malformed, or parked already) is let go of, never dropped.
   */
  private linkMessage(from: number, port: unknown, m: unknown): void {
    if (typeof m !== "object" || m === null) return;
    const msg = m as { t?: unknown; items?: unknown };
    const t = msg.t;
    if (t === "ack" || t === "bye") {
      if (this.links[from] !== port) return;
      if (t === "ack") this.markReady(from);
      else {
        // that thread let go of the bus: nothing more moves to it
        this.unlink(from);
        this.courier!.close(port);
      }
      return;
    }
    if (t !== "obj") return;
    const items = msg.items;
    if (!isArray(items)) return;
    for (let i = 0; i < items.length; i++) {
      const item: unknown = items[i];
      if (!isArray(item)) continue;
      const rec: unknown = item[0], nonce: unknown = item[1], value: unknown = item[2];
      if (item.length !== 3 || typeof rec !== "number" || typeof nonce !== "number" || (rec >>> 0) !== rec
        || (nonce >>> 0) !== nonce || (rec & 3) !== 0) {
        this.discard(value);
        continue;
      }
      const key = `${from}:${nonce}`;
      if (this.parked[key] !== undefined) {
        if (this.parked[key].value !== value) this.discard(value);
        continue;
      }
      this.parked[key] = { rec, owner: from, nonce, value, delivered: false };
      this.nParked++;
    }
    if (this.sweeper === null && this.nParked) {
      const t = every(() => this.sweepParked(), PARK_SWEEP_MS);
      (t as { unref?: () => void }).unref?.();
      this.sweeper = t;
    }
  }

  /** Takes what has come on the channel from `owner` so far, at once. */
  private drain(owner: number): void {
    const port = this.links[owner];
    if (port === undefined) return;
    for (let m = this.courier!.take(port); m; m = this.links[owner] === port ? this.courier!.take(port) : undefined) {
      this.onLink(owner, port, m.message);
    }
  }

  /**
   * Before a send that moves (outside any core call): takes what came on
   * every channel (acknowledgements, goodbyes, values), and closes the links
   * to threads that are no longer attached, so that nothing is posted to a
   * thread that has let go of the bus. Never throws.
   */
  private refresh(): void {
    try {
      for (const serial in this.links) this.drain(+serial);
      const threads = this.threads();
      if (!threads) return;
      const attached = dict<number>();
      for (let i = 0; i < threads.length; i += 2) attached[threads[i]] = 1;
      for (const serial in this.links) {
        if (attached[serial] !== undefined) continue;
        const port = this.links[serial];
        this.unlink(+serial);
        this.courier!.close(port);
      }
    } catch {
      // a link that cannot be read is not used
    }
  }

  /** Parked values whose message is gone: let go of those no receiver took. */
  private sweepParked(): void {
    if (this.core.ctx === 0) return;
    const core = this.core.views(), u32 = core.u32, i32 = core.i32;
    for (const key in this.parked) {
      const p = this.parked[key];
      const at = p.rec >>> 2;
      const alive = p.rec + HEADER + TICKET_BYTES <= core.u8.length && this.isTicket(u32, at) && u32[at + 7] === p.owner
        && u32[at + 9] === p.nonce && atomicLoad(i32, at + 2) > 0;
      if (alive) continue;
      delete this.parked[key];
      this.nParked--;
      if (!p.delivered) this.discard(p.value);
    }
    if (this.nParked === 0 && this.sweeper !== null) {
      stopEvery(this.sweeper);
      this.sweeper = null;
    }
  }
}
