/**
 * DOC: RemotePeer, the plugin's side of a served peer (API.md "Sandboxed peers").
 *
 * `await RemotePeer.connect(port)` speaks the protocol of wire.ts to a
 * `serve(peer, port)` at the other end. A RemotePeer has the operations of
 * `PeerApi` (api.ts), each returning a promise: its type is derived from the
 * one list (`RemotePeerApi`), so a method added to the peer cannot be
 * forgotten here. Every failure is a rejected promise with a Bus1Error,
 * never a synchronous throw.
 *
 * Checks. Arguments are read once, with the functions of check.ts that a
 * local Peer uses (same operation names, so same codes and messages), then
 * posted as plain data: a bad argument is refused before anything is posted.
 * The serving side performs the call with the local Peer's own method, which
 * checks again and gives what only the bus knows (ENXIO, EDQUOT …).
 * An entry of an ID list that is neither a number nor a primitive (an
 * object, a function) is posted as a stand-in (`{}`, `[]` or null), so the
 * code and index of the error are the local one's, the value it describes
 * may differ.
 *
 * Posting. Calls, credit and pongs travel in batches (batch.ts): the first
 * item of a turn is posted at once (a lone call waits for nothing), what
 * follows it in the same turn goes in one post when the turn's microtasks
 * are done, so a loop of sends costs one post, not one each. A call that
 * carries host objects is posted alone, so that an object the port refuses
 * fails that call only. A send's payload is copied once, at the call.
 *
 * Receiving. The serving side pushes messages as they become ready, within a
 * window (messages, bytes, objects) this side opens at connect and credits
 * back as recv() consumes: a recv() with pushed messages waiting returns at
 * once, with no round trip. With nothing waiting it asks the serving side,
 * which pushes what is ready before it answers, so `null` means what it
 * means for a local peer: nothing is ready. Credit is given back when half a
 * window (in messages, bytes or objects) is consumed: the serving side stops
 * only with a whole window owed, so the stream never stalls.
 *
 * A received message is the plugin's own: `payload` is a Uint8Array on an
 * ArrayBuffer of its own, never a view of the bus's memory: the buffer the
 * serving side transferred when the message had it alone, a copy out of it
 * when the batch carried several payloads, or bytes made from the batch's
 * inline characters (batch.ts). Its slice was released by the serving side
 * as it was pushed.
 * So `release()` has no slice to free. It ends the payload, as it does for
 * a local peer: a buffer that was the payload's alone goes back to the
 * serving side with the plugin's next post (its next call, or the credit
 * it gives back as it reads), to carry later pushes (making a buffer costs
 * more than filling one: batch.ts "Buffers go back"); from that post on the
 * payload is empty (detached), and until it, it still reads its bytes, but
 * code must not count on either. A payload whose buffer the plugin
 * transferred elsewhere first is simply not given back. A second call does
 * nothing (no error), so code written for a local peer runs unchanged.
 * A reused buffer may be up to twice the payload's size: the rest is zeros.
 * `offset` is an alias, never a bus address: 2^32 + 8·n for the n-th data
 * message of this connection, 2^32 for the seed; `releaseSlice` of a data
 * message's alias does nothing, of the seed's is EPERM as for a local peer,
 * and any other offset is asked of the serving side (ENXIO, EINVAL).
 *
 * Bounds: at most MAX_PENDING_CALLS calls waiting for an answer; one more is
 * EAGAIN. `transfer(handle, to)` takes only this peer as `to` (or none);
 * anything else is EINVAL.
 *
 * Lifecycle. `close()` (or `[Symbol.asyncDispose]`) lets go: the serving
 * side closes its Peer reference (the peer is disconnected if it was the
 * last), calls still waiting reject with EBADF and later ones are EBADF.
 * When the serving side ends, or the port closes, waiting and later calls
 * reject with ESHUTDOWN saying why. `readable()` and the iterator end as a
 * local peer's do (ESHUTDOWN, EBADF).
 */
import { Bus1Error, ERRNO, type ErrorCode } from "./errors.js";
import {
  describe, fail, readBoolean, readIds, readLimits, readOptions, readSend, readSignal, typedArraySet, uint8Length, payloadUnchanged,
  type IdList,
} from "./check.js";
import type { Limits, PeerStats, SendResult } from "./types.js";
import type { MessageType } from "./message.js";
import type { MessageLike, RemotePeerApi } from "./api.js";
import {
  CALL_BOUNDS, MAX_BATCH, MAX_PENDING_CALLS, eventData, isPortLike, OFFSET_ALIAS_BASE, WIRE_VERSION, isTransferable, readServerMessage,
  type CallOp, type PortLike, type ServerMessage, type Window,
} from "./wire.js";
import { ClientWriter, isBatch, readServerBatch } from "./batch.js";
import { isEndpoint } from "./state.js";

export { MAX_PENDING_CALLS };
/** How long connect waits for the serving side's welcome. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** The window this side asks for (the serving side may make it smaller). */
export const DEFAULT_CLIENT_WINDOW: Readonly<Window> = Object.freeze({ messages: 256, bytes: 4 << 20, objects: 1024 });
/** Offsets of received messages are aliases from here up (wire.ts). */
const ALIAS_BASE = OFFSET_ALIAS_BASE;

/** The fields of a received message (api.ts `MessageLike`), without `release`. */
type MessageFields = Omit<MessageLike, "release">;

/** Gives a released message's buffer back (RemotePeer's own, set in its static block). */
let giveBack: (p: RemotePeer, b: ArrayBuffer) => void;
/** Makes `m` own `buffer`, to give it back to `home` on release (RemotePeer only: the constructor is public). */
let owning: (m: RemoteMessage, buffer: ArrayBuffer, home: RemotePeer) => RemoteMessage;

/** A message received by a RemotePeer: its own copy of the payload. */
export interface RemoteMessage extends MessageFields {}
export class RemoteMessage implements MessageLike {
  /** The payload's buffer, when it is the payload's alone, and where it goes back to; see the DOC block. */
  #buffer: ArrayBuffer | null = null;
  #home: RemotePeer | null = null;

  constructor(fields: MessageFields) {
    // the fields one by one (each read once), not Object.assign: a message made per push is on the hot path
    const m = this as { -readonly [K in keyof MessageFields]: MessageFields[K] };
    m.type = fields.type;
    m.destination = fields.destination;
    m.continue = fields.continue;
    m.offset = fields.offset;
    m.payload = fields.payload;
    m.handles = fields.handles;
    m.objects = fields.objects;
  }

  static {
    owning = (m, buffer, home) => {
      m.#buffer = buffer;
      m.#home = home;
      return m;
    };
  }

  /**
   * Ends the payload: a buffer that was the payload's alone goes back to the
   * serving side with the plugin's next post (then the payload is empty).
   * The slice itself was released when the message was pushed; a second
   * call does nothing. See the DOC block.
   */
  release(): void {
    const b = this.#buffer, home = this.#home;
    this.#buffer = this.#home = null;
    if (b !== null && home !== null) giveBack(home, b);
  }
}

interface PendingCall {
  readonly op: string;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: unknown) => void;
}

interface Waiter {
  resolve(): void;
  reject(e: unknown): void;
}

const MAKE = Symbol("RemotePeer");

/** A call's result as the serving side sent it. */
const identity = (_p: unknown, v: unknown): unknown => v;

function isCode(v: string): v is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERRNO, v);
}

/** A value of an ID list, as posted: numbers and primitives as they are, stand-ins for the rest. */
function wireValue(v: unknown): unknown {
  switch (typeof v) {
    case "number": case "string": case "boolean": case "undefined": case "bigint": return v;
    case "object": return v === null ? null : describe(v) === "an array" ? [] : {};
    default: return null;
  }
}

function wireIds(list: IdList): unknown[] {
  const out: unknown[] = new Array(list.values.length);
  for (let i = 0; i < out.length; i++) out[i] = wireValue(list.values[i]);
  return out;
}

export class RemotePeer implements RemotePeerApi<RemotePeer, RemoteMessage> {
  readonly #port: PortLike;
  #nextId = 1;
  readonly #calls = new Map<number, PendingCall>();
  /** Pushed messages not yet received: a queue with a head index. */
  #queue: RemoteMessage[] = [];
  #head = 0;
  readonly #waiters = new Set<Waiter>();
  /** Set once the served peer can receive no more (its error, for readable()). */
  #ended: Bus1Error | null = null;
  /** Set once the serving side or the port is gone: why. */
  #gone: string | null = null;
  #closed = false;
  #window: Window = { messages: 0, bytes: 0, objects: 0 };
  readonly #owed: Window = { messages: 0, bytes: 0, objects: 0 };
  #seq = 0;
  #welcome: ((m: Extract<ServerMessage, { t: "welcome" }>) => void) | null = null;
  /** Items waiting for the next post (calls, credit, pongs), in order (batch.ts). */
  readonly #out = new ClientWriter();
  readonly #flushSoon = () => this.#flush();
  #flushing = false;
  readonly #endTurn = () => { this.#flushing = false; };
  /** Liveness: whether the serving side was heard since the last check, and checks missed in a row. */
  #heard = true;
  #missed = 0;
  #timer: ReturnType<typeof setInterval> | null = null;
  readonly #onMessage = (e: { data: unknown }) => this.#receivePost(eventData(e));
  readonly #onClose = () => this.#lost("the port closed");

  /** @internal RemotePeers are made by RemotePeer.connect. */
  constructor(token: symbol, port: PortLike) {
    if (token !== MAKE) throw Bus1Error.of("EPERM", "RemotePeer", "remote peers are made by RemotePeer.connect()");
    this.#port = port;
  }

  /** Connects to a serving at the other end of `port`; rejects with a Bus1Error (EINVAL: another protocol version). */
  static async connect(port: PortLike): Promise<RemotePeer> {
    const op = "connect";
    if (!isPortLike(port)) throw fail("EINVAL", op, `port must be a MessagePort, got ${describe(port)}`);
    const peer = new RemotePeer(MAKE, port);
    return peer.#connect();
  }

  async #connect(): Promise<RemotePeer> {
    const port = this.#port;
    const welcome = new Promise<Extract<ServerMessage, { t: "welcome" }>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#lost("no answer");
        reject(Bus1Error.of("ESHUTDOWN", "connect", `the serving side did not answer within ${CONNECT_TIMEOUT_MS} ms`));
      }, CONNECT_TIMEOUT_MS);
      (timer as { unref?: () => void }).unref?.(); // a serving side that never answers keeps no process alive
      this.#welcome = (m) => { clearTimeout(timer); resolve(m); };
      this.#waiters.add({ resolve() {}, reject: (e) => { clearTimeout(timer); reject(e); } });
    });
    port.addEventListener("message", this.#onMessage);
    port.addEventListener("close", this.#onClose);
    port.start?.();
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: { ...DEFAULT_CLIENT_WINDOW } });
    let m: Extract<ServerMessage, { t: "welcome" }>;
    try {
      m = await welcome;
    } catch (e) {
      if (this.#gone === "no answer") throw e;
      throw new Bus1Error("ESHUTDOWN", `connect: the serving side is gone: ${this.#gone ?? "the port closed"} (ESHUTDOWN)`);
    }
    this.#waiters.clear();
    if (m.version !== WIRE_VERSION) {
      this.#lost("protocol version mismatch");
      throw fail("EINVAL", "connect", `the serving side speaks protocol version ${m.version}, this client version ${WIRE_VERSION}`);
    }
    this.#window = m.window;
    if (m.liveness > 0) this.#watchdog(m.liveness);
    return this;
  }

  /**
   * The serving side pings every `liveness` ms; one that is not heard from
   * in two checks in a row (within three times `liveness`) is taken for gone.
   */
  #watchdog(liveness: number): void {
    this.#timer = setInterval(() => {
      if (this.#heard) {
        this.#heard = false;
        this.#missed = 0;
      } else if (++this.#missed >= 2) {
        this.#lost(`the serving side answered nothing for ${2 * liveness} ms`);
      }
    }, liveness);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  // ---- the port ---------------------------------------------------------------------

  /** A port message: a batch of items (batch.ts), or one message (wire.ts). */
  #receivePost(data: unknown): void {
    if (this.#gone !== null) return;
    this.#heard = true;
    if (!isBatch(data)) {
      const r = readServerMessage(data);
      if (!r.ok) return this.#lost(`the serving side sent a malformed message (${r.reason})`);
      return this.#receive(r.message);
    }
    const b = readServerBatch(data);
    if (!b.ok) return this.#lost(`the serving side sent a malformed message (${b.reason})`);
    // a buffer whose payloads were all copied out is done with: it goes back with the next post
    if (b.spare !== null) this.#out.spare(b.spare);
    for (const m of b.messages) {
      if (this.#gone !== null) return;
      this.#receive(m);
    }
  }

  static {
    giveBack = (p, b) => { if (p.#gone === null && !p.#closed) p.#out.spare(b); };
  }

  #receive(m: ServerMessage): void {
    switch (m.t) {
      case "welcome": {
        const w = this.#welcome;
        this.#welcome = null;
        return w?.(m);
      }
      case "done": case "fail": {
        const call = this.#calls.get(m.id);
        if (!call) return;
        this.#calls.delete(m.id);
        if (m.t === "done") return call.resolve(m.value);
        return call.reject(new Bus1Error(isCode(m.code) ? m.code : "EINVAL", m.message));
      }
      case "push":
        this.#queue.push(this.#message(m, -1));
        return this.#wake(null);
      case "ended":
        this.#ended = new Bus1Error(isCode(m.code) ? m.code : "ESHUTDOWN", m.message);
        return this.#wake(this.#ended);
      case "ping":
        this.#out.pong();
        return this.#soon();
      case "close":
        return this.#lost(`the serving side closed (${m.reason})`);
    }
  }

  /** A pushed (or seed) message as the plugin sees it. */
  #message(m: Extract<ServerMessage, { t: "push" }>, offset: number): RemoteMessage {
    // the lists were made for this message (a batch's reader, or a structured clone): the plugin's own
    const objects = m.objects;
    for (const e of m.errors) {
      if (Array.isArray(e) && typeof e[0] === "number" && e[0] >= 0 && e[0] < objects.length) {
        objects[e[0]] = new Bus1Error(isCode(String(e[1])) ? e[1] as ErrorCode : "EOPNOTSUPP", String(e[2]));
      }
    }
    const data = m.type === "data";
    const payload = m.payload ?? new Uint8Array(0);
    if (data && offset < 0) offset = ALIAS_BASE + 8 * ++this.#seq;
    const message = new RemoteMessage({ type: m.type as MessageType, destination: m.destination, continue: m.continue,
      offset: data ? offset : -1, payload, handles: m.handles, objects });
    return m.own ? owning(message, payload.buffer as ArrayBuffer, this) : message;
  }

  /** The items just written go out at the end of this microtask checkpoint, with what else is queued. */
  #soon(): void {
    const n = this.#out.items;
    if (n === 1 && !this.#flushing) {
      // the first item of a turn goes at once; what follows in the same turn is batched
      this.#flushing = true;
      queueMicrotask(this.#endTurn);
      this.#flush();
    } else if (n === 1) queueMicrotask(this.#flushSoon);
    else if (n >= MAX_BATCH) this.#flush();
  }

  /** Posts what is queued, in one batch. */
  #flush(): void {
    if (this.#out.items === 0 || this.#gone !== null) return;
    const { batch, transfer } = this.#out.takeAll();
    try {
      this.#port.postMessage(batch, transfer);
    } catch (e) {
      // numbers, checked arguments that are plain data, and one fresh buffer: a refusal means the port is gone
      this.#lost(`the port refused a message (${e instanceof Error ? e.message : describe(e)})`);
    }
  }

  /** Settles readable() waiters: resolved (a message is here) or rejected with `e`. */
  #wake(e: Bus1Error | null): void {
    if (this.#waiters.size === 0) return;
    const ws = [...this.#waiters];
    this.#waiters.clear();
    for (const w of ws) e ? w.reject(e) : w.resolve();
  }

  /** The serving side or the port is gone: every waiting call and readable() rejects with ESHUTDOWN. */
  #lost(why: string): void {
    if (this.#gone !== null) return;
    this.#gone = why;
    this.#detach();
    const e = (op: string) => new Bus1Error("ESHUTDOWN", `${op}: the served peer is gone: ${why} (ESHUTDOWN)`);
    for (const c of this.#calls.values()) c.reject(e(c.op));
    this.#calls.clear();
    this.#wake(e("readable"));
  }

  #detach(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    const port = this.#port;
    try { port.removeEventListener("message", this.#onMessage); } catch { /* gone */ }
    try { port.removeEventListener("close", this.#onClose); } catch { /* gone */ }
    try { port.close(); } catch { /* gone */ }
  }

  // ---- calls ------------------------------------------------------------------------

  /** EBADF after close(), ESHUTDOWN once the serving is gone. */
  #check(op: string): void {
    if (this.#closed) throw Bus1Error.of("EBADF", op, "this peer reference is closed");
    if (this.#gone !== null) throw new Bus1Error("ESHUTDOWN", `${op}: the served peer is gone: ${this.#gone} (ESHUTDOWN)`);
  }

  /** `self` as a RemotePeer, for a method called with any `this`. */
  static #of(self: unknown, op: string): RemotePeer {
    if (typeof self !== "object" || self === null || !(#port in self)) {
      throw fail("EINVAL", op, `called on ${describe(self)}, not on a RemotePeer`);
    }
    return self as RemotePeer;
  }

  /**
   * Reads the arguments (`read`, which may run the caller's getters), checks
   * the reference again, and posts the call; the result passes through `decode`.
   */
  static #call<T>(self: unknown, op: CallOp, read: (p: RemotePeer) => Postable,
                  decode: (p: RemotePeer, v: unknown) => T = identity as (p: RemotePeer, v: unknown) => T): Promise<T> {
    let p: RemotePeer;
    let call: Postable;
    try {
      p = RemotePeer.#of(self, op);
      p.#check(op);
      call = read(p);
      p.#check(op); // a getter may have closed it
      if (p.#calls.size >= MAX_PENDING_CALLS) {
        throw new Bus1Error("EAGAIN", `${op}: ${MAX_PENDING_CALLS} calls are already waiting for the serving side (EAGAIN)`);
      }
    } catch (e) {
      return Promise.reject(e);
    }
    const id = p.#nextId++;
    const pending = new Promise<unknown>((resolve, reject) => {
      p.#calls.set(id, { op, resolve, reject });
      if (!call.objects) {
        // numbers, plain data and the payload's bytes: nothing the port can refuse
        try {
          writeCall(p.#out, id, op, call);
        } catch (e) {
          // (the payload was checked after the last getter: not expected) nothing is written, nothing waits
          p.#calls.delete(id);
          reject(fail("EINVAL", op, "the arguments could not be written", e));
          return;
        }
        p.#soon();
        return;
      }
      // objects may be refused by the port (a clone that fails deep inside, a port already moved):
      // this call goes alone, after what is queued, so that a refusal is this call's error only
      p.#flush();
      const w = new ClientWriter();
      writeCall(w, id, op, call);
      const { batch, transfer } = w.takeAll();
      try {
        p.#port.postMessage(batch, [...transfer, ...(call.transfer ?? [])]);
      } catch (e) {
        p.#calls.delete(id);
        reject(p.#gone !== null ? new Bus1Error("ESHUTDOWN", `${op}: the served peer is gone: ${p.#gone} (ESHUTDOWN)`)
          : fail("EINVAL", op, "the arguments could not be posted", e));
      }
    });
    return decode === identity ? pending as Promise<T> : pending.then((v) => decode(p, v));
  }

  send(destinations: number | ArrayLike<number>, payload?: Uint8Array | readonly Uint8Array[],
       options?: { handles?: ArrayLike<number>; objects?: unknown[]; continue?: boolean; seed?: boolean }): Promise<SendResult> {
    return RemotePeer.#call(this, "send", () => postableSend(destinations, payload, options));
  }

  recv(options?: { seed?: boolean }): Promise<RemoteMessage | null> {
    const op = "recv";
    let seed = false;
    try {
      const p = RemotePeer.#of(this, op);
      p.#check(op);
      if (options !== undefined) seed = readBoolean(op, "seed", readOptions(op, options, ["seed"]).seed);
      if (!seed && p.#head < p.#queue.length) return Promise.resolve(p.#take());
    } catch (e) {
      return Promise.reject(e);
    }
    return RemotePeer.#call(this, op, () => ({ args: seed ? [{ seed: true }] : [] }), (p, v) => {
      if (seed) {
        const r = v === null ? null : readServerMessage({ ...(v as object), t: "push" });
        if (!r || !r.ok || r.message.t !== "push") return null;
        return p.#message(r.message, ALIAS_BASE);
      }
      // the serving side pushed what was ready before it answered
      return p.#head < p.#queue.length ? p.#take() : null;
    });
  }

  /** The next pushed message; gives credit back when half a window (in any count) is consumed. */
  #take(): RemoteMessage {
    const m = this.#queue[this.#head++];
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return this.#consumed(m);
  }

  /** Counts `m` as consumed; gives credit back when half a window (in any count) is. */
  #consumed(m: RemoteMessage): RemoteMessage {
    const o = this.#owed, w = this.#window;
    o.messages += 1;
    o.bytes += m.payload.byteLength;
    o.objects += m.objects.length;
    // half a window is enough: the serving side stops only when a whole window is owed in some count,
    // and then the take that crossed the half has already given it back
    if (o.messages * 2 >= w.messages || o.bytes * 2 >= w.bytes || o.objects * 2 >= w.objects) {
      this.#out.credit(o.messages, o.bytes, o.objects);
      this.#soon();
      o.messages = o.bytes = o.objects = 0;
    }
    return m;
  }

  transfer(handle: number, to?: RemotePeer): Promise<number> {
    return RemotePeer.#call(this, "transfer", (p) => {
      if (to !== undefined && to !== p) {
        throw fail("EINVAL", "transfer", `to must be this peer (a served peer transfers only to itself), got ${describe(to)}`);
      }
      return { args: [wireValue(handle)] };
    });
  }

  release(handle: number): Promise<void> {
    return RemotePeer.#call(this, "release", () => ({ args: [wireValue(handle)] }));
  }

  destroy(nodes: number | ArrayLike<number>, options?: { releaseHandles?: boolean }): Promise<void> {
    const op = "destroy";
    return RemotePeer.#call(this, op, () => {
      const o = readOptions(op, options, ["releaseHandles"]);
      const releaseHandles = readBoolean(op, "releaseHandles", o.releaseHandles);
      const ids = readIds(op, "nodes", nodes, CALL_BOUNDS.destroy, "EINVAL", true);
      return { args: [typeof nodes === "number" ? nodes : wireIds(ids), releaseHandles ? { releaseHandles } : undefined] };
    });
  }

  releaseSlice(offset: number): Promise<void> {
    const op = "releaseSlice";
    try {
      const p = RemotePeer.#of(this, op);
      p.#check(op);
      // a data message's alias: its slice was released when it was pushed
      if (typeof offset === "number" && offset > ALIAS_BASE && offset <= ALIAS_BASE + 8 * p.#seq && offset % 8 === 0) {
        return Promise.resolve();
      }
    } catch (e) {
      return Promise.reject(e);
    }
    return RemotePeer.#call(this, op, () => ({ args: [wireValue(offset)] }));
  }

  reset(options?: { flush?: boolean; flushSeed?: boolean; limits?: Partial<Limits> }): Promise<void> {
    const op = "reset";
    return RemotePeer.#call(this, op, () => {
      const o = readOptions(op, options, ["flush", "flushSeed", "limits"]);
      const out: Record<string, unknown> = {};
      if (readBoolean(op, "flush", o.flush)) out.flush = true;
      if (readBoolean(op, "flushSeed", o.flushSeed)) out.flushSeed = true;
      if (o.limits !== undefined) out.limits = readLimits(op, o.limits);
      return { args: [out] };
    });
  }

  query(): Promise<Limits> {
    return RemotePeer.#call(this, "query", () => ({ args: [] }));
  }

  stats(): Promise<PeerStats> {
    return RemotePeer.#call(this, "stats", () => ({ args: [] }));
  }

  disconnect(): Promise<void> {
    return RemotePeer.#call(this, "disconnect", () => ({ args: [] }));
  }

  /** Lets go of the served peer (the serving side closes its reference). Idempotent. */
  close(): Promise<void> {
    let p: RemotePeer;
    try {
      p = RemotePeer.#of(this, "close");
    } catch (e) {
      return Promise.reject(e);
    }
    if (p.#closed) return Promise.resolve();
    p.#closed = true;
    if (p.#gone === null) {
      p.#flush(); // what was called before goes first
      try { p.#port.postMessage({ t: "close", reason: "the plugin closed its peer" }); } catch { /* gone */ }
      p.#detach();
      p.#gone = "closed";
    }
    // a call that was waiting "was" closed under it; readable() says what a local peer's says
    for (const c of p.#calls.values()) c.reject(Bus1Error.of("EBADF", c.op, "this peer reference was closed"));
    p.#calls.clear();
    p.#wake(Bus1Error.of("EBADF", "readable", "this peer reference is closed"));
    return Promise.resolve();
  }

  /** Resolves when recv() would return a message. */
  readable(signal?: AbortSignal): Promise<void> {
    const op = "readable";
    let p: RemotePeer, sig: AbortSignal | undefined;
    try {
      p = RemotePeer.#of(this, op);
      // the order of a local peer's checks: the reference, the signal, then the peer
      if (p.#closed) p.#check(op);
      sig = readSignal(op, signal);
      if (sig?.aborted) return Promise.reject(sig.reason);
      p.#check(op);
      if (p.#head < p.#queue.length) return Promise.resolve();
      if (p.#ended) return Promise.reject(p.#ended);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        p.#waiters.delete(w);
        reject(sig!.reason);
      };
      const w: Waiter = {
        resolve() { sig?.removeEventListener("abort", onAbort); resolve(); },
        reject(e) { sig?.removeEventListener("abort", onAbort); reject(e); },
      };
      sig?.addEventListener("abort", onAbort, { once: true });
      p.#waiters.add(w);
    });
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<RemoteMessage, void, undefined> {
    for (;;) {
      let msg: RemoteMessage | null;
      try {
        msg = await this.recv();
        if (!msg) await this.readable();
      } catch (e) {
        if (e instanceof Bus1Error && (e.code === "ESHUTDOWN" || e.code === "EBADF")) return;
        throw e;
      }
      if (msg) yield msg;
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * A call's arguments as posted: `payload`, a send's bytes (copied into the
 * batch's data when the call is written); `objects`: it carries host
 * objects (posted alone), `transfer` the ports and streams among them.
 */
interface Postable {
  args: unknown[];
  /** The payload, read once: its views and their lengths (checked after the last getter ran). */
  payload?: { vecs: readonly Uint8Array[]; lengths: readonly number[]; size: number };
  /** Or the common send's: one genuine Uint8Array, read when the call is written (no user code runs between). */
  bytes?: Uint8Array;
  transfer?: Transferable[];
  objects?: boolean;
}

/** Writes a call, its payload copied once into the batch's data. */
function writeCall(w: ClientWriter, id: number, op: CallOp, call: Postable): void {
  // `bytes` is a genuine Uint8Array (by its internal slots: not instanceof, which another realm's array fails)
  const { bytes, payload: body } = call;
  if (bytes === undefined && !body) return w.call(id, op, call.args);
  const size = bytes !== undefined ? uint8Length(bytes) : body!.size;
  if (size === 0) return w.call(id, op, call.args, 0, 0);
  const { into, at } = w.reserve(size);
  if (bytes !== undefined) typedArraySet(into, bytes, at);
  else {
    for (let v = 0, to = at; v < body!.vecs.length; v++) {
      typedArraySet(into, body!.vecs[v], to);
      to += body!.lengths[v];
    }
  }
  w.call(id, op, call.args, at, size);
}

/** send's arguments read once (check.ts, as a local Peer reads them) and made postable. */
function postableSend(destinations: unknown, payload: unknown, options: unknown): Postable {
  const op = "send";
  // the common case, as a local Peer's send takes it: one destination by number, a genuine Uint8Array (or
  // none), no options. The number is checked where a local Peer checks it, by the serving side's send
  if (typeof destinations === "number" && options === undefined && (payload === undefined || uint8Length(payload) >= 0)) {
    return { args: [destinations], bytes: payload as Uint8Array | undefined };
  }
  const a = readSend(op, destinations, payload, options, CALL_BOUNDS);
  // the snapshot ran the caller's getters (options after the payload), as a local Peer's send checks
  payloadUnchanged(op, a.payload);
  const opts: Record<string, unknown> = {};
  if (a.continue) opts.continue = true;
  if (a.seed) opts.seed = true;
  if (a.handles) opts.handles = wireIds(a.handles);
  const transfer: Transferable[] = [];
  if (a.objects) {
    const values = a.objects;
    const copies: unknown[] = new Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v instanceof RemotePeer || isEndpoint(v)) throw fail("EOPNOTSUPP", op, `objects[${i}] (${describe(v)}) is a bus endpoint`);
      if (isTransferable(v)) {
        if (!transfer.includes(v)) transfer.push(v);
        copies[i] = v;
        continue;
      }
      // cloned here, once (the value's getters run here and only here); the copy is plain data,
      // which the port takes as it is
      try {
        copies[i] = structuredClone(v);
      } catch {
        throw fail("EOPNOTSUPP", op, `objects[${i}] (${describe(v)}) cannot be cloned to the serving side`);
      }
    }
    opts.objects = copies;
  }
  const dst = typeof destinations === "number" ? destinations : wireIds(a.destinations);
  // the payload (args[1]) travels in the batch's data
  const args = Object.keys(opts).length ? [dst, undefined, opts] : [dst];
  return { args, payload: payload === undefined ? undefined : a.payload, transfer, objects: a.objects !== null };
}
