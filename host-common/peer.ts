/**
 * The Peer (API.md): one reference to a peer, like a file descriptor.
 *
 * Every operation has three steps: the arguments are read once into a
 * snapshot (check.ts; the caller's getters and proxies run here, if at all),
 * the reference and the bus are checked again (a getter may have closed
 * them), and only then is the core entered, with no user code until the
 * operation is over. The core, the memory and the raw slot are in private
 * fields.
 */
import { Bus1Error, codeOf, type ErrorCode } from "./errors.js";
import { CoreAssertion, CTX_SPINNING, ROOT_BROKEN, ROOT_SPINNERS, WAKE_ARMED } from "./core.js";
import { Message, type MessageType } from "./message.js";
import type { MovePlan, PreparedObjects } from "./objects.js";
import {
  describe, fail, reading, readOptions, readBoolean, readLimits, readTimeout, readSignal, readIds,
  readSend, uint8Length, typedArraySet, viewOf, bufferOf, offsetOf, payloadUnchanged, LIMIT_KEYS, NO_ID_LIST, type IdList, type Payload,
} from "./check.js";
import { platformCpus, requirePlatform } from "./platform.js";
import { BusState, MAKE, isEndpoint, markEndpoint, reentered } from "./state.js";
import {
  SENT_ONE,
  HANDLE_INVALID, type Limits, type PeerRef, type PeerStats, type ResetOptions, type SendOptions, type SendResult,
} from "./types.js";

const U32_MAX = 0xffffffff;
// ABI flags (docs/ABI.md)
const SEND_CONTINUE = 1, SEND_SEED = 2, RECV_SEED = 1, DESTROY_RELEASE_HANDLES = 1;
const MSG_FLAG_CONTINUE = 1, MSG_FLAG_DRAINED = 2;
// offsets in the Peer record (ABI.md §7.5)
const PEER_LOCK = 0, PEER_RECEIVER = 156;
const RESET_FLUSH = 1, RESET_FLUSH_SEED = 2, RESET_LIMIT = 0x100;
const EAGAIN = 11;
const TYPES: MessageType[] = ["data", "data", "node-destroy", "node-release"];
/**
 * On a single-thread bus nothing can arrive while the thread blocks, so a
 * wait that could only end by a message is refused (EAGAIN). A timeout this
 * long (about 24.8 days, the longest a host timer takes) counts as forever.
 */
const FOREVER_MS = 0x7fffffff;

/**
 * How long `wait` watches the wake word before it sleeps, in milliseconds. A
 * sender on another core usually answers within a few microseconds, while a
 * sleep costs the futex round trip of the kernel (about 8 µs each way on the
 * machine the benchmarks ran on; docs/PERFORMANCE.md). Fewer threads spin at
 * once than there are processors (a count in the bus's root), so spinners
 * never take the core a sender needs: on one processor nobody spins, and of
 * eight workers waiting on two cores one spins and seven sleep.
 */
const WAIT_SPIN_MS = 0.05;
/** How long a waiter that finds every spinner's place taken watches for one to come free (see #spin). */
const SPIN_HANDOFF_MS = 0.005;

/**
 * A wait that could block, on a thread that may not (a browser's window
 * thread, where Atomics.wait throws, or a page without shared memory).
 */
function cannotBlock(op: string): Bus1Error {
  return new Bus1Error("EOPNOTSUPP", `${op}: this thread may not block (a browser's main thread, or a page that is ` +
    "not cross-origin isolated): use await peer.readable(), or wait(0) to look (EOPNOTSUPP)");
}

/**
 * Step 2 of the wake-word protocol (ABI.md §5.5), after the waiter read the
 * wake word at `word` and before its last look: counts it among the
 * sleepers and arms the word, so that the next send notifies.
 */
function countAndArm(i32: Int32Array, word: number): void {
  Atomics.add(i32, word + 1, 1);
  Atomics.or(i32, word + 1, WAKE_ARMED);
}

/** A pending readable(): settled by poke() or by a wake from another thread. */
export class Reader {
  constructor(readonly peer: Peer, readonly bus: BusState, readonly resolve: () => void,
              readonly reject: (e: unknown) => void, readonly signal: AbortSignal | undefined,
              readonly onAbort: () => void) {}

  /** Settles the reader if a message is ready; `armed`: the last look of the wake-word protocol (see Peer[READY]). */
  check(armed = false): void {
    let ready: boolean;
    try {
      ready = this.peer[READY]("readable", armed);
    } catch (e) {
      this.fail(e);
      return;
    }
    if (ready) this.done();
  }

  /** Ends the pending Atomics.waitAsync at once (set while one is pending). */
  wake: (() => void) | null = null;

  done(): void {
    this.end();
    this.resolve();
  }

  fail(e: unknown): void {
    this.end();
    this.reject(e);
  }

  private end(): void {
    this.bus.readers.delete(this);
    const wake = this.wake;
    this.wake = null;
    wake?.();
    if (this.signal) removeListener(this.signal, "abort", this.onAbort);
  }
}

// the signal is a genuine AbortSignal (check.ts): its own EventTarget methods, as captured at load
const addListener = Function.prototype.call.bind(EventTarget.prototype.addEventListener) as
  (target: EventTarget, type: string, listener: () => void, options?: AddEventListenerOptions) => void;
const removeListener = Function.prototype.call.bind(EventTarget.prototype.removeEventListener) as
  (target: EventTarget, type: string, listener: () => void) => void;

/** A count for a u32 parameter: anything larger becomes the largest u32 (refused by the core). */
function u32Clamp(n: number): number {
  return n > U32_MAX ? U32_MAX : n;
}


/** Handles and objects of a message that has none (shared, frozen). */
const NO_HANDLES = Object.freeze([]) as unknown as number[];
const NO_OBJECTS = Object.freeze([]) as unknown as unknown[];

function toId(v: unknown): number {
  return typeof v === "number" ? v : NaN;
}

/**
 * Internal: `peer[TAKE_OVER](onClose)` hands this reference to a serving
 * (serve.ts): false if it is closed or already served; otherwise `onClose`
 * runs once when the reference is closed, by anyone (bus.close() included).
 */
export const TAKE_OVER = Symbol("take over");

/** Peer's internal ready(op). */
const READY = Symbol("ready");

/** What throws for a message released a second time (Message.release). */
export const RELEASED_AGAIN = Symbol("released again");
/** Internal (message.ts): `peer[PAYLOAD_VIEW](offset, size)`, a view of a slice on the memory as it is now. */
export const PAYLOAD_VIEW = Symbol("payload view");

/** The arguments of one send, read once (check.ts), before the core is entered. */
interface SendArgs {
  flags: number;
  destinations: IdList;
  payload: Payload;
  handles: IdList;
  objects: PreparedObjects;
  /** The memory's buffer and the vecs' offsets before send_begin, which may grow it (sourceOf). */
  old?: ArrayBufferLike;
  offsets?: number[];
}

/**
 * What to copy `src` (of `size` bytes, at `offset` when it was read) from
 * now: a payload on the bus's own memory (a received m.payload) is detached
 * when a call grows a private memory, and is made again at its offset on
 * the new buffer. Its buffer is read only when the memory grew: reading that
 * of a small typed array made on its own makes one (check.ts IN_OBJECT_BYTES).
 */
function sourceOf(src: Uint8Array, offset: number, size: number, old: ArrayBufferLike, buffer: ArrayBufferLike): Uint8Array {
  return buffer !== old && bufferOf(src) === old ? viewOf(buffer, offset, size) : src;
}

/** The bus state a Peer belongs to, or null for anything that is not a Peer (bus.ts: serve). */
export let stateOf: (v: unknown) => BusState | null;

export class Peer {
  readonly #s: BusState;

  static {
    stateOf = (v) => (typeof v === "object" && v !== null && #s in v ? (v as Peer).#s : null);
  }
  readonly #slot: number;
  readonly #gen: number;
  #closed = false;
  #ref: PeerRef | null = null;
  /** Set while a serving holds this reference: told when it is closed. */
  #servedBy: (() => void) | null = null;
  /** Index (in 32-bit words) of the peer's wake word, once asked of the core; slot memory never moves. */
  #wake = -1;
  /** Indexes of the Peer record's lock word and receiver hint (ABI.md §7.5): the record stays while a reference is open. */
  #lockWord = -1;
  #receiverWord = -1;
  /**
   * The core found nothing ready here (recv or ready), and #drainedAt is the
   * wake word as read before that call. Whatever makes a message ready moves
   * the word afterwards (ABI.md §5.5), so until it moves, recv() and ready()
   * may answer "nothing" without a call (#quiet).
   */
  #drained = false;
  #drainedAt = 0;

  /** @internal Peers are made by bus.connect and bus.adopt. */
  constructor(token: symbol, state: BusState, slot: number, gen: number) {
    if (token !== MAKE) throw Bus1Error.of("EPERM", "Peer", "peers are made by bus.connect() and bus.adopt()");
    this.#s = state;
    this.#slot = slot;
    this.#gen = gen;
    markEndpoint(this);
  }

  /** Structured-cloneable reference to this peer, for bus.adopt in any attached thread. */
  get ref(): PeerRef {
    if (!this.#ref) {
      this.#ref = Object.freeze({ bus: this.#s.id, slot: this.#slot, gen: this.#gen });
      markEndpoint(this.#ref);
    }
    return this.#ref;
  }

  get closed(): boolean {
    return this.#closed;
  }

  #check(op: string): void {
    if (this.#closed) throw Bus1Error.of("EBADF", op, "this peer reference is closed");
    this.#s.checkOpen(op);
  }

  /** `self` as a Peer that is open, for a method called with any `this` (a method taken off its object, say). */
  static #checked(self: unknown, op: string): Peer {
    if (typeof self !== "object" || self === null || !(#s in self)) {
      throw fail("EINVAL", op, `called on ${describe(self)}, not on a Peer`);
    }
    (self as Peer).#check(op);
    return self as Peer;
  }

  /** @internal A view of a held slice on the memory as it is now (Message.payload, after private memory grew). */
  [PAYLOAD_VIEW](offset: number, size: number): Uint8Array {
    return new Uint8Array(this.#s.core.views().buffer, offset, size);
  }

  /** @internal What a second release of one of its messages throws: what any call would, else ENXIO. */
  [RELEASED_AGAIN](offset: number): Bus1Error {
    const op = "release";
    try {
      this.#check(op);
      const s = this.#s, core = s.core;
      const rc = s.call(op, () => core.ex.query(core.ctx, this.#slot, this.#gen));
      if (rc < 0) return s.error(op, rc);
    } catch (e) {
      return e as Bus1Error;
    }
    return Bus1Error.of("ENXIO", op, `the slice at offset ${offset} is already released`);
  }

  /** Sends one message to the owners of `destinations` (one transaction). */
  send(destinations: number | ArrayLike<number>, payload?: Uint8Array | readonly Uint8Array[], options?: SendOptions): SendResult {
    const op = "send";
    Peer.#checked(this, op);
    if (typeof destinations === "number" && options === undefined) {
      const size = payload === undefined ? 0 : uint8Length(payload);
      if (size >= 0) return this.#sendOne(destinations, payload as Uint8Array | undefined, size);
    }
    const args = this.#readSend(op, destinations, payload, options);
    // the snapshot ran the caller's getters: they may have closed this reference or the bus,
    // or shrunk or detached a buffer under a view read before them
    this.#check(op);
    payloadUnchanged(op, args.payload);
    return this.#sendMany(op, args);
  }

  #readSend(op: string, destinations: unknown, payload: unknown, options: unknown): SendArgs {
    const a = readSend(op, destinations, payload, options, this.#s.core.bounds);
    const values = a.objects ?? [];
    for (let i = 0; i < values.length; i++) {
      if (isEndpoint(values[i])) throw fail("EOPNOTSUPP", op, `objects[${i}] (${describe(values[i])}) is a bus endpoint`);
    }
    const objects = reading(op, "objects", () => this.#s.core.objects.prepare(values, a.transfer, a.seed));
    const flags = (a.continue ? SEND_CONTINUE : 0) | (a.seed ? SEND_SEED : 0);
    return { flags, destinations: a.destinations, payload: a.payload, handles: a.handles ?? NO_ID_LIST, objects };
  }

  /** The common case, kept short: one destination, one genuine Uint8Array of `size` bytes, no options. */
  #sendOne(destination: number, payload: Uint8Array | undefined, size: number): SendResult {
    const op = "send";
    const s = this.#s, core = s.core;
    const base = core.scratchFor(16);
    // read before send_begin, which may grow the memory (sourceOf)
    const old = core.views().buffer, at = size > 0 ? offsetOf(payload) : 0;
    let rc: number;
    try {
      core.f64[base >>> 3] = destination;
      rc = core.ex.send_begin(core.ctx, this.#slot, this.#gen, 0, base, 1, 1, size, base + 8, 0, base + 8, 0, base + 8);
      if (rc > 0 && size > 0) {
        core.views();
        // a view of exactly `size` bytes: the copy can never run past the slice
        typedArraySet(viewOf(core.buffer, core.u32[(base + 12) >>> 2], size), sourceOf(payload!, at, size, old, core.buffer));
      }
    } catch (e) {
      throw this.#cancel(op, e);
    }
    if (rc < 0) throw s.error(op, rc, { destinations: [destination] });
    try {
      core.ex.send_commit(core.ctx);
    } catch (e) {
      throw s.trap(op, e);
    }
    if (s.readers.size) s.poke();
    return SENT_ONE;
  }

  /** A send whose copy failed: the staged send is taken back (a trap of the core breaks the bus). */
  #cancel(op: string, e: unknown): unknown {
    const s = this.#s, core = s.core;
    if (e instanceof WebAssembly.RuntimeError || core.broken) return s.trap(op, e);
    try {
      core.ex.send_cancel(core.ctx);
    } catch (trap) {
      return s.trap(op, trap);
    }
    return fail("EINVAL", op, `payload could not be copied (${(e as Error)?.message ?? e})`, e);
  }

  #sendMany(op: string, a: SendArgs): SendResult {
    const s = this.#s, core = s.core;
    const { flags, destinations, payload, handles, objects } = a;
    const nd = destinations.values.length, nh = handles.values.length;
    // IDs as f64, then room for the core's resolved handles (u32 each)
    const dstOff = 0, hOff = dstOff + nd * 8, oOff = hOff + nh * 8 + ((nh * 4 + 7) & ~7);
    const no = objects.values.length;
    const outOff = oOff + ((no * 4 + 7) & ~7);
    const values = { destinations: destinations.values, handles: handles.values, objects: objects.values };
    const table = core.objects;
    let slots: number[] = [];
    let rc: number;
    try {
      const base = core.scratchFor(outOff + nd * 8 + 8);
      slots = table.put(objects);
      const plan = table.plan(objects, slots);
      // read before send_begin, which may grow the memory (sourceOf)
      a.old = core.views().buffer;
      const offsets: number[] = a.offsets = new Array(payload.vecs.length);
      for (let v = 0; v < offsets.length; v++) offsets[v] = offsetOf(payload.vecs[v]);
      core.f64.set(destinations.ids, (base + dstOff) >>> 3);
      core.f64.set(handles.ids, (base + hOff) >>> 3);
      for (let i = 0, at = (base + oOff) >>> 2; i < slots.length; i++) core.u32[at + i] = slots[i];
      rc = core.ex.send_begin(core.ctx, this.#slot, this.#gen, flags, base + dstOff, nd, payload.vecs.length,
        u32Clamp(payload.size), base + hOff, nh, base + oOff, no, base + outOff);
      if (rc < 0) {
        table.hold(slots, 0);
        throw s.error(op, rc, values);
      }
      table.hold(slots, rc);
      return this.#copyAndCommit(op, a, nd, base + outOff, rc, slots, plan);
    } catch (e) {
      throw s.trap(op, e);
    }
  }

  /** Copies the payload into every staged slice (send_begin holds the receivers' locks) and commits. */
  #copyAndCommit(op: string, a: SendArgs, nd: number, out: number, staged: number, records: readonly number[],
                 plan: MovePlan | null): SendResult {
    const s = this.#s, core = s.core;
    const { flags, payload } = a;
    core.views();
    const outAt = out >>> 2;
    const results = flags & SEND_SEED ? 1 : nd;
    try {
      if (payload.size > 0 && staged > 0) {
        const buffer = core.buffer, i32 = core.i32, u32 = core.u32;
        for (let i = 0; i < results; i++) {
          const addr = u32[outAt + 2 * i + 1];
          if (i32[outAt + 2 * i] !== 0 || addr === 0) continue;
          // a view of exactly the slice: the copy can never run past it
          const slice = viewOf(buffer, addr, payload.size);
          const vecs = payload.vecs;
          for (let v = 0, at = 0; v < vecs.length; v++) {
            if (payload.lengths[v] === 0) continue; // (a view of an old, detached buffer cannot be copied from)
            typedArraySet(slice, sourceOf(vecs[v], a.offsets![v], payload.lengths[v], a.old!, buffer), at);
            at += payload.lengths[v];
          }
        }
      }
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) throw e;
      if (flags & SEND_SEED) {
        // a seed is set by send_begin: drop it rather than keep a torn payload
        core.ex.send_commit(core.ctx);
        this.reset({ flushSeed: true });
      } else {
        // the messages go without dropping their objects: no message carries the records now
        core.ex.send_cancel(core.ctx);
        core.objects.hold(records, 0);
      }
      throw fail("EINVAL", op, `payload could not be copied (${(e as Error)?.message ?? e})`, e);
    }
    // ports, streams and listed buffers go to the thread that receives them, or stay (objects.ts)
    if (staged > 0 && !(flags & SEND_SEED)) core.objects.move(plan, out, results);
    core.ex.send_commit(core.ctx);
    const errors: (ErrorCode | null)[] = new Array(nd);
    const i32 = core.views().i32;
    for (let i = 0; i < nd; i++) {
      const e = flags & SEND_SEED ? 0 : i32[outAt + 2 * i];
      errors[i] = e ? codeOf(e) ?? "EINVAL" : null;
    }
    s.poke();
    return { errors };
  }

  /** Takes the next message, or null when none is ready. */
  recv(options?: { seed?: boolean }): Message | null {
    const op = "recv";
    Peer.#checked(this, op);
    let seed = false;
    if (options !== undefined) {
      seed = readBoolean(op, "seed", readOptions(op, options, ["seed"]).seed);
      this.#check(op);
    }
    const s = this.#s, core = s.core;
    // records this thread sent that every receiver is done with go back now
    core.objects.sweep();
    if (!seed && this.#quiet(op)) return null;
    const seq = seed ? -1 : this.#wakeNow();
    const rc = s.call(op, () => core.ex.recv(core.ctx, this.#slot, this.#gen, seed ? RECV_SEED : 0));
    if (rc < 0) {
      if (rc === -EAGAIN) {
        this.#drainedSince(seq); // (a seed's look read no word: seq −1)
        return null;
      }
      throw s.error(op, rc);
    }
    // the message is taken: from here nothing may throw, or it would be lost
    core.views();
    const u32 = core.u32, out = core.out >>> 2;
    const type = TYPES[u32[out]];
    const flags = u32[out + 1];
    const cont = (flags & MSG_FLAG_CONTINUE) !== 0;
    if (flags & MSG_FLAG_DRAINED) this.#drainedSince(seq);
    else this.#drained = false;
    const destination = core.f64[(core.out + 8) >>> 3];
    if (type !== "data") {
      s.poke();
      return new Message(this, type, destination, cont, -1, new Uint8Array(0), NO_HANDLES, NO_OBJECTS);
    }
    const offset = u32[out + 4], size = u32[out + 5], nh = u32[out + 6], no = u32[out + 7];
    const payload = new Uint8Array(core.buffer, offset, size);
    let handles = NO_HANDLES, objects = NO_OBJECTS;
    let at = (offset + ((size + 7) & ~7)) >>> 2;
    if (nh) {
      handles = new Array(nh);
      for (let i = 0; i < nh; i++, at += 2) {
        const lo = u32[at], hi = u32[at + 1];
        handles[i] = lo === U32_MAX && hi === U32_MAX ? HANDLE_INVALID : hi * 0x100000000 + lo;
      }
    }
    let exclusive: boolean[] | null = null;
    if (no) {
      objects = new Array(no);
      const table = core.objects;
      const recs: number[] = new Array(no);
      for (let i = 0; i < no; i++) recs[i] = u32[at + i];
      for (let i = 0; i < no; i++) {
        const rec = recs[i];
        if (!seed && table.exclusive(rec)) (exclusive ??= new Array(no).fill(false))[i] = true;
        objects[i] = seed ? table.peek(rec) : table.take(rec);
      }
      // every record is read: the message is counted off them (in a core call)
      if (!seed) table.taken(recs);
    }
    // after every read of the result: poke() calls into the core (ready), which may grow the memory
    if (nh) s.poke();
    return new Message(this, "data", seed ? HANDLE_INVALID : destination, cont, offset, payload, handles, objects,
      exclusive);
  }

  /** Gives `to` (default: this peer) a handle to the node of `handle`; returns its ID there. */
  transfer(handle: number, to?: Peer): number {
    const op = "transfer";
    Peer.#checked(this, op);
    let slot = this.#slot, gen = this.#gen;
    if (to !== undefined) {
      if (typeof to !== "object" || to === null || !(#slot in to) || to.#s.core.memory !== this.#s.core.memory) {
        throw fail("EINVAL", op, `to must be a Peer of the same bus, got ${describe(to)}`);
      }
      if (to.#closed) throw fail("EBADF", op, "to: that peer reference is closed");
      slot = to.#slot;
      gen = to.#gen;
    }
    const s = this.#s, core = s.core;
    const rc = s.call(op, () => core.ex.transfer(core.ctx, this.#slot, this.#gen, toId(handle), slot, gen));
    if (rc < 0) throw s.error(op, rc, { handle });
    const id = core.views().f64[core.out >>> 3];
    s.poke();
    return id;
  }

  /** Drops one reference of `handle`. */
  release(handle: number): void {
    const op = "release";
    Peer.#checked(this, op);
    const s = this.#s, core = s.core;
    const rc = s.call(op, () => core.ex.release(core.ctx, this.#slot, this.#gen, toId(handle)));
    if (rc < 0) throw s.error(op, rc, { handle });
    s.poke();
  }

  /** Destroys owned nodes, as one transaction. */
  destroy(nodes: number | ArrayLike<number>, options?: { releaseHandles?: boolean }): void {
    const op = "destroy";
    Peer.#checked(this, op);
    const s = this.#s, core = s.core;
    const o = readOptions(op, options, ["releaseHandles"]);
    const flags = readBoolean(op, "releaseHandles", o.releaseHandles) ? DESTROY_RELEASE_HANDLES : 0;
    const ids = readIds(op, "nodes", nodes, core.bounds.destroy, "EINVAL", true);
    this.#check(op);
    const n = ids.ids.length;
    const rc = s.call(op, () => {
      const base = core.scratchFor(n * 12 + 8);
      core.views().f64.set(ids.ids, base >>> 3);
      return core.ex.destroy(core.ctx, this.#slot, this.#gen, flags, base, n);
    });
    if (rc < 0) throw s.error(op, rc, { nodes: ids.values }, { handles: "nodes" });
    s.poke();
  }

  /** Frees a received slice. */
  releaseSlice(offset: number): void {
    const op = "releaseSlice";
    Peer.#checked(this, op);
    const s = this.#s, core = s.core;
    const rc = s.call(op, () => core.ex.slice_release(core.ctx, this.#slot, this.#gen, toId(offset)));
    if (rc < 0) throw s.error(op, rc, { offset });
  }

  /** Sets limits; flushes the peer and/or its seed. */
  reset(options?: ResetOptions): void {
    const op = "reset";
    Peer.#checked(this, op);
    const o = readOptions(op, options, ["flush", "flushSeed", "limits"]);
    let flags = 0;
    if (readBoolean(op, "flush", o.flush)) flags |= RESET_FLUSH;
    if (readBoolean(op, "flushSeed", o.flushSeed)) flags |= RESET_FLUSH_SEED;
    const limits = readLimits(op, o.limits);
    this.#check(op);
    const s = this.#s, core = s.core;
    const rc = s.call(op, () => {
      const base = core.scratchFor(32);
      const f64 = core.views().f64;
      LIMIT_KEYS.forEach((k, r) => {
        if (limits[k] !== undefined) {
          flags |= RESET_LIMIT << r;
          f64[(base >>> 3) + r] = limits[k]!;
        }
      });
      return core.ex.reset(core.ctx, this.#slot, this.#gen, flags, base);
    });
    if (rc < 0) throw s.error(op, rc, { limits });
    s.poke();
  }

  /** The peer's limits. */
  query(): Limits {
    const op = "query";
    Peer.#checked(this, op);
    const s = this.#s, core = s.core;
    const rc = s.call(op, () => core.ex.query(core.ctx, this.#slot, this.#gen));
    if (rc < 0) throw s.error(op, rc);
    const u32 = core.views().u32, at = core.out >>> 2;
    return { maxSlices: u32[at], maxHandles: u32[at + 1], maxInflightBytes: u32[at + 2], maxInflightObjects: u32[at + 3] };
  }

  /** Counters of this peer (an addition to the API: tests, monitoring). */
  stats(): PeerStats {
    const op = "stats";
    Peer.#checked(this, op);
    const s = this.#s, core = s.core;
    const rc = s.call(op, () => core.ex.stats(core.ctx, this.#slot, this.#gen));
    if (rc < 0) throw s.error(op, rc);
    const u32 = core.views().u32, at = core.out >>> 2;
    return {
      slices: u32[at], handles: u32[at + 1], bytes: u32[at + 2], objects: u32[at + 3], poolBytes: u32[at + 4],
      handleIds: u32[at + 5], handleRecords: u32[at + 6], liveSlices: u32[at + 7],
    };
  }

  /** Ends the peer for every holder: a full flush, then ESHUTDOWN. */
  disconnect(): void {
    const op = "disconnect";
    Peer.#checked(this, op);
    const s = this.#s, core = s.core;
    const rc = s.call(op, () => core.ex.disconnect(core.ctx, this.#slot, this.#gen));
    if (rc < 0) throw s.error(op, rc);
    s.poke();
  }

  /** Drops this reference; the last one disconnects the peer. */
  close(): void {
    if (typeof this !== "object" || this === null || !(#s in this)) {
      throw fail("EINVAL", "close", `called on ${describe(this)}, not on a Peer`);
    }
    if (this.#closed) return;
    const s = this.#s, core = s.core;
    if (!core.broken && core.inCall()) throw reentered("close");
    this.#closed = true;
    s.peers.delete(this);
    const served = this.#servedBy;
    this.#servedBy = null;
    if (served) {
      try {
        served();
      } catch {
        // the serving ends on its own terms; the reference is closed all the same
      }
    }
    if (!core.broken && core.ctx) s.call("close", () => core.ex.peer_unref(core.ctx, this.#slot, this.#gen));
    s.poke();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal See TAKE_OVER. */
  [TAKE_OVER](onClose: () => void): boolean {
    if (this.#closed || this.#servedBy) return false;
    this.#servedBy = onClose;
    return true;
  }

  /** @internal True if recv() would return a message now. */
  ready(): boolean {
    return this[READY]("ready");
  }

  /**
   * @internal ready() for operation `op` (its errors name `op`): whether
   * recv() would return a message. `armed`: this is the last look of
   * the wake-word protocol, after the waiter armed (ABI.md §5.5); it always
   * asks the core, whose lock orders it against a send that read the
   * sleepers word before the arm. A lane send pushes without that lock, so
   * an answer from the word there could miss one whose bump is still to come
   * (tests/wake-model.test.ts).
   */
  [READY](op: string, armed = false): boolean {
    Peer.#checked(this, op);
    if (!armed && this.#quiet(op)) return false;
    const s = this.#s, core = s.core;
    const seq = this.#wakeNow();
    const rc = s.call(op, () => core.ex.ready(core.ctx, this.#slot, this.#gen));
    if (rc < 0) throw s.error(op, rc);
    // something ready ends the drained state, also when the word has not moved yet (a lane
    // send's record lands before its bump: the last look of a wait may find it first)
    if (rc === 0) this.#drainedSince(seq);
    else this.#drained = false;
    return rc > 0;
  }

  /** The wake word's index, asked of the core the first time (−1 if the core does not know the peer). */
  #wakeWord(): number {
    if (this.#wake < 0) {
      const core = this.#s.core;
      const addr = core.ex.wake_addr(this.#slot, this.#gen);
      if (addr > 0) {
        // the word is at slot entry + 8; the entry's first word is the Peer record (ABI.md §7.4)
        const rec = core.views().u32[(addr - 8) >>> 2];
        this.#lockWord = (rec + PEER_LOCK) >>> 2;
        this.#receiverWord = (rec + PEER_RECEIVER) >>> 2;
        this.#wake = addr >>> 2;
      }
    }
    return this.#wake;
  }

  /** The wake word now, read before a core call that may find nothing ready (−1: unknown). */
  #wakeNow(): number {
    const word = this.#wakeWord();
    return word < 0 ? -1 : Atomics.load(this.#s.core.views().i32, word) >>> 0;
  }

  /** The core found nothing ready in a call made after the wake word read `seq`. */
  #drainedSince(seq: number): void {
    if (seq < 0) return;
    this.#drained = true;
    this.#drainedAt = seq;
  }

  /**
   * True if the answer is "nothing" without a call: the core said so, and
   * since then the wake word has not moved and the bus has not broken. Two
   * more things send the look to the core: the peer's lock is held (a call
   * in the middle of changing it; should its thread have died there, the
   * core is what notices, after LOCK_STALE_MS), and another thread took
   * over receiving for the peer (recv and ready tell the core which thread
   * receives: where senders move host objects, SPEC "Which thread"). A build
   * with the core's assertions asks the core as well (#confirmQuiet).
   */
  #quiet(op: string): boolean {
    if (!this.#drained) return false;
    const core = this.#s.core, i32 = core.views().i32;
    // the lock and the hint are read plainly (an Atomics.load costs about 5 ns here): they only
    // send a look to the core, and come after the atomic loads, which no read moves above
    if ((Atomics.load(i32, this.#wake) >>> 0) !== this.#drainedAt || Atomics.load(i32, (core.root + ROOT_BROKEN) >>> 2) !== 0 ||
        i32[this.#lockWord] !== 0 || (i32[this.#receiverWord] >>> 0) !== core.serial ||
        (core.checked && !this.#confirmQuiet(op))) {
      this.#drained = false;
      return false;
    }
    return true;
  }

  /**
   * Checks the shortcut against the core: ready() finds nothing, or what it
   * finds moved the wake word (a lane push moves it just after its record
   * lands, so the word gets a moment). A message made ready without moving
   * it is a broken promise of the core: the bus is marked broken.
   */
  #confirmQuiet(op: string): boolean {
    const s = this.#s, core = s.core;
    const rc = s.call(op, () => core.ex.ready(core.ctx, this.#slot, this.#gen));
    if (rc === 0) return true;
    if (rc < 0) return false;
    const until = performance.now() + 1000;
    while ((Atomics.load(core.views().i32, this.#wake) >>> 0) === this.#drainedAt) {
      if (performance.now() > until) {
        throw s.trap(op, new CoreAssertion(`${op}: a message became ready without moving the peer's wake word`));
      }
    }
    return false;
  }

  /** Blocks until recv() would return a message; false on timeout. */
  wait(timeoutMs?: number): boolean {
    const op = "wait";
    Peer.#checked(this, op);
    const timeout = readTimeout(op, timeoutMs);
    // a wait of 0 only looks, which every thread may do
    if (timeout > 0 && !requirePlatform().canBlock()) throw cannotBlock(op);
    const s = this.#s, core = s.core;
    // records this thread sent that every receiver is done with go back before it blocks
    core.objects.sweep();
    if (this[READY](op)) return true;
    if (timeout === 0) return false;
    if (!s.shared) {
      // one thread, private memory: nothing can arrive while we block
      if (timeout >= FOREVER_MS) {
        throw fail("EAGAIN", op, "nothing is queued and nothing can arrive on a single-thread bus");
      }
      if (timeout > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, timeout);
      return this[READY](op);
    }
    const word = this.#wakeWord();
    const start = performance.now();
    const end = start + timeout;
    if (this.#spin(word, Math.min(end, start + WAIT_SPIN_MS))) return true;
    for (;;) {
      const i32 = core.views().i32;
      const seq = Atomics.load(i32, word);
      countAndArm(i32, word);
      try {
        if (this[READY](op, true)) return true;
        const left = end - performance.now();
        if (left <= 0) return false;
        Atomics.wait(i32, word, seq, left === Infinity ? undefined : left);
      } finally {
        Atomics.sub(core.views().i32, word + 1, 1);
      }
    }
  }

  /**
   * Watches the wake word until `until` (a performance.now() time) without
   * registering as a sleeper (senders bump it on every send and notify only
   * sleepers that armed it): true if a message became ready meanwhile. At
   * most as many threads spin as there are processors but one; a waiter that
   * finds them all spinning watches SPIN_HANDOFF_MS for a place to come
   * free, then sleeps. On one processor nobody spins.
   */
  #spin(word: number, until: number): boolean {
    const core = this.#s.core;
    const i32 = core.views().i32;
    const spinners = (core.root + ROOT_SPINNERS) >>> 2;
    const limit = platformCpus() - 1;
    if (limit <= 0) return false;
    const seq = Atomics.load(i32, word);
    // every place taken: watch a moment longer for one to come free. In a ping-pong the other
    // side spins until this side's send reaches it, and lets go of its place at once: without
    // this hand-off, this side would find it still taken and sleep, and pay a wake-up per trip
    const handoff = Math.min(until, performance.now() + SPIN_HANDOFF_MS);
    for (let k = 1; ; k++) {
      const n = Atomics.load(i32, spinners);
      if (n < limit) {
        if (Atomics.compareExchange(i32, spinners, n, n + 1) === n) break;
        continue;
      }
      if (Atomics.load(i32, word) !== seq) return this[READY]("wait");
      if ((k & 15) === 0 && performance.now() >= handoff) return false;
    }
    // if this thread dies spinning, thread_exit takes its count back
    const flag = (core.ctx + CTX_SPINNING) >>> 2;
    Atomics.store(i32, flag, 1);
    let moved = false;
    try {
      for (let n = 1; ; n++) {
        if (Atomics.load(i32, word) !== seq) {
          moved = true;
          break;
        }
        if ((n & 63) === 0 && performance.now() >= until) break;
      }
    } finally {
      // the place goes back before the message is looked at: another waiter may take it now
      if (Atomics.exchange(i32, flag, 0)) Atomics.sub(i32, spinners, 1);
    }
    return moved && this[READY]("wait");
  }

  /** Resolves when recv() would return a message. */
  readable(signal?: AbortSignal): Promise<void> {
    const op = "readable";
    let sig: AbortSignal | undefined;
    try {
      Peer.#checked(this, op);
      sig = readSignal(op, signal);
      if (sig?.aborted) return Promise.reject(sig.reason);
      if (this[READY](op)) return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
    const s = this.#s;
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => reader.fail(sig!.reason);
      const reader = new Reader(this, s, resolve, reject, sig, onAbort);
      if (sig) addListener(sig, "abort", onAbort, { once: true });
      s.readers.add(reader);
      if (s.shared) this.#watch(reader);
    });
  }

  /** Waits on the wake word for senders in other threads. */
  #watch(reader: Reader): void {
    const s = this.#s, core = s.core;
    const waitAsync = (Atomics as unknown as { waitAsync?: Function }).waitAsync;
    if (!waitAsync) {
      // no Atomics.waitAsync here: look again every few milliseconds (not a busy loop)
      const tick = () => {
        if (!s.readers.has(reader)) return;
        reader.check();
        if (s.readers.has(reader)) setTimeout(tick, 4);
      };
      setTimeout(tick, 4);
      return;
    }
    const word = this.#wakeWord();
    const loop = () => {
      if (!s.readers.has(reader)) return;
      const i32 = core.views().i32;
      // the wake-word protocol (ABI.md §5.5): read the word, count this waiter and arm, look, sleep
      const seq = Atomics.load(i32, word);
      countAndArm(i32, word);
      reader.check(true);
      if (!s.readers.has(reader)) {
        Atomics.sub(i32, word + 1, 1);
        return;
      }
      const r = waitAsync(i32, word, seq, 1000) as { async: boolean; value: Promise<string> | string };
      reader.wake = () => Atomics.notify(core.views().i32, word);
      const next = () => {
        Atomics.sub(core.views().i32, word + 1, 1);
        loop();
      };
      if (r.async) (r.value as Promise<string>).then(next);
      else queueMicrotask(next);
    };
    loop();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Message, void, undefined> {
    for (;;) {
      let msg: Message | null;
      try {
        msg = this.recv();
        if (!msg) await this.readable();
      } catch (e) {
        if (e instanceof Bus1Error && (e.code === "ESHUTDOWN" || e.code === "EBADF")) return;
        throw e;
      }
      if (msg) yield msg;
    }
  }
}
