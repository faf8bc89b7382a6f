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
 *   +20 (zero)
 *
 * Which thread. Every peer keeps the serial of the thread that last
 * connected, adopted, received from or waited on it (Peer.receiver, a
 * hint). Between send_begin and send_commit, with the receivers locked and
 * no user code running, the sender reads it for each staged copy
 * (send_receiver) and applies one rule per message: if any copy's receiver
 * is the sending thread, nothing moves (the value is shared in this thread);
 * otherwise every movable value of the message moves, in one post, to the
 * receiving thread of the first destination (in the order given) that this
 * thread has a link to. The ticket is written before the post and put back
 * to the owner if the post throws, all before the commit: no receiver ever
 * sees a ticket that changes. A receiver in the holder thread gets the value
 * (every receiver there the same one); any other receiver gets a Bus1Error
 * EOPNOTSUPP in its place, saying where it went. Seeds never move.
 *
 * Links. Each attached thread keeps one channel (a MessagePort pair) to
 * every other thread attached to the same bus; `join` makes them when a
 * thread attaches: one channel per thread already there, its far end handed
 * over by the Courier (Node: worker_threads.postMessageToThread), which the
 * far thread acknowledges on the channel. Bus.attach waits for the
 * acknowledgements up to LINK_WAIT_MS; a thread busy or blocked that long
 * gets its end when it next runs its event loop, and until then what it
 * sends to the new thread stays with it. Messages on a channel are
 * dequeued synchronously (Courier.take) when a receiver needs one, and also
 * whenever the thread is idle; either way they are "parked" here by
 * (owner, nonce) until taken. A channel's end closes with its thread.
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
 * sweep). When the owner lets go of the bus, or dies and is found by
 * `bus.watch`, the core turns its records into orphans, and whoever takes
 * the last message frees them.
 *
 * No user code runs inside a core call here: movability is decided when the
 * arguments are read (brand checks), the post moves only values that passed
 * them, in a message made of plain arrays, through builtins captured at load.
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

/** The moving values of one send, made ready (arrays and all) before the core is entered. */
export interface MovePlan {
  readonly records: readonly number[];
  readonly message: { readonly t: "obj"; readonly items: readonly (readonly [number, number, unknown])[] };
  readonly transfer: unknown[];
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
const atomicCas = Atomics.compareExchange;
const later = queueMicrotask;
const every = setInterval, stopEvery = clearInterval, after = setTimeout;

/** A dictionary with no prototype: writing a key never reaches a setter someone put on a prototype. */
function dict<T>(): Record<string | number, T> {
  return Object.create(null) as Record<string | number, T>;
}

/** This thread's tables that take part in links, by `${bus id}:${serial}`. */
const joined = dict<ObjectTable>();
let receiving = false;

/** A channel end another thread handed this one (Courier.deliver). */
function onDelivery(m: unknown): void {
  if (typeof m !== "object" || m === null) return;
  const d = m as { bus1?: unknown; bus?: unknown; to?: unknown; from?: unknown; port?: unknown };
  if (d.bus1 !== LINK || typeof d.bus !== "number" || typeof d.to !== "number" || typeof d.from !== "number") return;
  const table = joined[`${d.bus}:${d.to}`];
  if (table) table.linked(d.from, d.port);
  else requirePlatform().courier?.close(d.port);
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
  /** Values that moved here, by `${owner}:${nonce}`. */
  private parked = dict<Parked>();
  private nParked = 0;
  private sweeper: ReturnType<typeof setInterval> | null = null;
  /** Values to let go of once the current call is over. */
  private discards = dict<unknown>();
  private nDiscards = 0;
  private key = "";
  private acks = 0;
  private acked: (() => void) | null = null;
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
    const items: [number, number, unknown][] = [];
    const transfer: unknown[] = [];
    for (let i = 0; i < records.length; i++) {
      if (!moving[i]) continue;
      const v = objects.values[i];
      recs.push(records[i]);
      items.push([records[i], u32[((records[i] + HEADER) >>> 2) + 3], v]);
      let seen = false;
      for (let j = 0; j < transfer.length && !seen; j++) seen = transfer[j] === v;
      if (!seen) transfer.push(v);
    }
    return { records: recs, message: { t: "obj", items }, transfer };
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
      else if (target === 0 && this.links[r] !== undefined) target = r;
      if (r === target) copies++;
    }
    if (local === 0 && target !== 0) {
      this.stamp(plan, target, copies);
      try {
        this.courier!.post(this.links[target], plan.message, plan.transfer);
        for (let i = 0; i < plan.records.length; i++) this.values[core.u32[(plan.records[i] >>> 2) + 1]] = undefined;
        return;
      } catch {
        // it cannot move (a locked stream, a detached buffer): it stays here
      }
    }
    this.stamp(plan, me, local);
    for (let i = 0; i < plan.records.length; i++) this.held[core.u32[(plan.records[i] >>> 2) + 1]] = 0;
  }

  private stamp(plan: MovePlan, holder: number, copies: number): void {
    const u32 = this.core.views().u32;
    for (let i = 0; i < plan.records.length; i++) {
      const at = (plan.records[i] + HEADER) >>> 2;
      u32[at + 2] = holder;
      u32[at + 4] = copies;
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

  /** The value of a record for one message that was received. */
  take(rec: number): unknown {
    const value = this.value(rec, true);
    this.drop(rec);
    return value;
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
    if (length === NOT_CLONEABLE || !this.cloner) {
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
      return moved(holder === owner
        ? "an object that stayed in the thread that sent it (a port, a stream or a transferred ArrayBuffer moves only to the thread that received for its peer when it was sent, and only when no receiver was in the sending thread)"
        : "an object that moved to another thread (the one that received for its peer when it was sent)");
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

  /** One message carrying the record is gone (received or dropped). Runs inside core calls. */
  drop(rec: number): void {
    const core = this.core.views();
    const at = rec >>> 2;
    if (atomicSub(core.i32, at + 2, 1) !== 1) return;
    const owner = atomicLoad(core.u32, at);
    if (owner === core.serial) this.release(rec);
    else if (owner === ORPHAN && atomicCas(core.i32, at + 2, 0, -1) === 0) {
      core.ex.object_record_free(core.ctx, rec);
    }
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
    for (const key in this.parked) if (!this.parked[key].delivered) this.discard(this.parked[key].value);
    for (const serial in this.links) this.courier?.close(this.links[serial]);
    if (this.key) delete joined[this.key];
    if (this.sweeper !== null) stopEvery(this.sweeper);
    this.sweeper = null;
    this.key = "";
    this.links = dict<unknown>();
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
    if (atomicCas(core.i32, (rec >>> 2) + 2, 0, -1) !== 0) return;
    const slot = core.u32[(rec >>> 2) + 1];
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
    core.ex.object_record_free(core.ctx, rec);
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
   * other attached thread; resolves once they all took their end, or after
   * LINK_WAIT_MS. Nothing to do on a private bus or without a Courier.
   */
  join(busId: number, shared: boolean): Promise<void> {
    const courier = this.courier;
    if (!courier || !shared) return Promise.resolve();
    const core = this.core, me = core.serial;
    this.key = `${busId}:${me}`;
    joined[this.key] = this;
    if (!receiving) {
      receiving = true;
      courier.receive(onDelivery);
    }
    const ex = core.ex as unknown as MoveExports;
    let max = 64, n: number;
    let base: number;
    for (;;) {
      base = core.scratchFor(max * 8);
      n = ex.thread_list(core.ctx, base, max);
      if (n <= max) break;
      max = n;
    }
    if (n <= 0) return Promise.resolve();
    const threads: number[] = [];
    const u32 = core.views().u32;
    for (let i = 0; i < n; i++) threads.push(u32[(base >>> 2) + 2 * i], u32[(base >>> 2) + 2 * i + 1]);
    this.acks = 0;
    return new Promise<void>((resolve) => {
      const timer = after(() => done(), LINK_WAIT_MS);
      const done = () => {
        clearTimeout(timer);
        this.acked = null;
        resolve();
      };
      this.acked = () => {
        if (++this.acks >= n) done();
      };
      for (let i = 0; i < threads.length; i += 2) {
        const serial = threads[i], host = threads[i + 1];
        const [keep, give] = courier.channel();
        this.listen(serial, keep);
        courier.deliver(host, { bus1: LINK, bus: busId, to: serial, from: me, port: give }, [give]);
      }
    });
  }

  /** Thread `from` handed this one its end of their channel: keep it and say so. */
  linked(from: number, port: unknown): void {
    const old = this.links[from];
    if (old !== undefined) this.courier!.close(old);
    this.listen(from, port);
    try {
      this.courier!.post(port, { t: "ack" }, []);
    } catch {
      // the other end is gone already: its close is seen by listen
    }
  }

  private listen(from: number, port: unknown): void {
    this.links[from] = port;
    this.courier!.listen(port, (m) => this.onLink(from, m), () => {
      if (this.links[from] === port) delete this.links[from];
    });
  }

  /** What came on the channel from thread `from`: an acknowledgement, or values that moved here. */
  private onLink(from: number, m: unknown): void {
    if (typeof m !== "object" || m === null) return;
    const msg = m as { t?: unknown; items?: unknown };
    if (msg.t === "ack") {
      this.acked?.();
      return;
    }
    if (msg.t !== "obj" || !Array.isArray(msg.items)) return;
    for (const item of msg.items as [number, number, unknown][]) {
      const key = `${from}:${item[1]}`;
      if (this.parked[key] !== undefined) continue;
      this.parked[key] = { rec: item[0], owner: from, nonce: item[1], value: item[2], delivered: false };
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
    for (let m = this.courier!.take(port); m; m = this.courier!.take(port)) this.onLink(owner, m.message);
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
