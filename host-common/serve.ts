/**
 * DOC: serving a peer to a plugin over a MessagePort (API.md "Sandboxed peers").
 *
 * `serve(peer, port)` runs on the trusted side. It takes over that one Peer
 * reference and performs, on it, the calls a plugin makes through the port
 * (wire.ts has the protocol; remote.ts is the plugin's side). The plugin gets
 * results, copies of payloads and the messages' host objects, never the
 * bus's memory, module, instance, a SharedArrayBuffer of the bus, a peer.ref
 * or anything of another peer: it can do exactly what the peer's handles
 * allow.
 *
 * Calls. Each port message is validated (wire.ts `readClientMessage`), then
 * performed with the local Peer's own method, so the checks, codes and
 * messages are those of a local peer. A Bus1Error goes back as
 * `{ code, message }`. `transfer` names no `to`: a served peer transfers only
 * to itself. A message that is not a call of the protocol gets an EINVAL
 * reply when its id can be read, and otherwise ends the serving with a
 * reason (`closed`). Nothing a plugin sends makes this side throw or hang.
 *
 * Received messages are pushed, in the peer's order, as soon as they are
 * ready and the window allows (no round trip per recv). What is ready goes
 * in one post (wire.ts "Batches"): each payload is copied once out of the
 * pool, small ones into one ArrayBuffer for the whole post, large ones
 * (OWN_BYTES or more) each into an ArrayBuffer of its own (one the plugin
 * gave back when one fits), which are transferred, and
 * each slice is released here at once; a plugin that never calls release(),
 * or dies, leaks nothing. A post holds small payloads up to BATCH_BYTES,
 * payloads up to POST_BYTES in all, and at most MAX_OWN large ones and
 * MAX_PUSHES messages (each bound may be passed by the message that reaches
 * it); the rest follows in the next task. Answers to calls wait for the next post (the pushes that
 * a call makes ready, say, or the end of this task), so a ping-pong costs
 * one post each way, as on a bare port.
 * Notifications are pushed too.
 * Objects of a message go with it (MessagePorts and streams transferred,
 * the rest cloned); a SharedArrayBuffer, a view on one, a WebAssembly memory,
 * module or instance never crosses: it arrives as a Bus1Error EOPNOTSUPP in
 * its place, as does a value the port cannot clone or transfer (a port
 * that has left this thread).
 *
 * Bounds (what one plugin can make this side spend):
 * - calls: each is performed to its end when its port message is read, so
 *   the only queue is the port's own. What this side does is bounded per
 *   turn (a turn ends when the event loop gets to the deferred post of
 *   answers, so other work, other plugins' included, runs between turns):
 *   at most TURN_ITEMS items (2 × MAX_PENDING_CALLS; a RemotePeer never has
 *   more than MAX_PENDING_CALLS calls waiting), and calls whose lists hold at
 *   most TURN_WORK entries together (one call of the largest size goes
 *   through in any turn). Calls past either bound are answered EAGAIN
 *   without being performed; a plugin that posts more than 4 × TURN_ITEMS
 *   items in one turn is cut off (the serving ends). A post of answers holds
 *   at most MAX_BATCH items (a long turn posts as it goes), and a batch from
 *   the plugin at most MAX_BATCH items; a longer one ends the serving.
 * - bytes and objects in flight to the plugin: flow control, not an error.
 *   The plugin opens a window (messages, bytes, objects), clamped here by
 *   `maxMessagesInFlight`/`maxBytesInFlight`/`maxObjectsInFlight`; a message
 *   is taken from the peer only while every count is below its window, so
 *   what is in flight is at most the window plus one message. The plugin
 *   gives credit back as it consumes. Past the window messages wait in the
 *   peer's queue, charged to the served peer as any queued message is: the
 *   bus's quotas (SPEC §8) make senders to a plugin that does not read see
 *   EDQUOT, and the fair share protects the app.
 * - seed reads: each copy of the seed counts in the turn's work, one per 64
 *   bytes: past the bound, `recv({ seed: true })` is EAGAIN until the next
 *   turn.
 * - credit for more than was pushed is a protocol error: the serving ends.
 * - buffers the plugin gives back (batch.ts "Buffers go back"): at most
 *   KEPT_SPARES (64) are kept, holding at most SPARE_BYTES (4 MiB) and the
 *   window's bytes together (as much as may be in flight to the plugin: a
 *   full window's buffers come back as its credit does); past either the
 *   oldest are dropped. A kept buffer carries only later pushes to this
 *   same plugin, its bytes past theirs zeroed.
 * - what the plugin sends is charged by the bus like any sender's (SPEC §8).
 *   Its objects arrive here as clones and stay in this thread until they are
 *   received: their number is bounded by the receivers' object quotas, and
 *   the bytes of one send's objects, as cloneBytes measures them, by
 *   `maxObjectBytes` (EMSGSIZE past it).
 *
 * The plugin's side watches this one: the welcome says how often this side
 * pings (`livenessMs`), and a RemotePeer that hears nothing for two of its
 * checks in a row (within three times `livenessMs`) takes the serving side
 * for gone (ESHUTDOWN).
 *
 * Liveness is judged over time this thread was free: a ping timer that
 * runs late (the thread was busy, and a pong may wait behind it in the
 * port) does not find the plugin dead, it pings again.
 *
 * Lifecycle. The serving ends, and the served Peer reference is closed (the
 * peer is disconnected if it was the last reference, with the notifications
 * that implies), when: `close()` is called; the port emits "close" (Node,
 * and browsers that have it: the other end closed or its thread died); the
 * plugin sends `close`; the plugin says nothing for two liveness periods in
 * a row (pings every `livenessMs`, default 10 s; a dead plugin on a
 * platform without a "close" event is found within three times that); a
 * message breaks the protocol; or the Peer
 * reference is closed on this side (bus.close(), say). `closed`
 * resolves with the reason. A disconnected peer does not end the serving:
 * the plugin's calls get ESHUTDOWN, as a local reference's would.
 */
import { Bus1Error, type ErrorCode } from "./errors.js";
import { fail, readBoolean, readInteger, readOptions, describe, viewBuffer, search, LEAF, isDetachedBuffer } from "./check.js";
import { Peer, TAKE_OVER, stateOf } from "./peer.js";
import { MAY_MOVE, type Message, type MessageType } from "./message.js";
import {
  eventData, isPortLike, readClientMessage, WIRE_VERSION, MAX_BATCH, MAX_TEXT, MAX_PENDING_CALLS, OFFSET_ALIAS_BASE, isTransferable,
  type ClientMessage, type PortLike, type Read, type Window,
} from "./wire.js";
import { INLINE_BYTES, inlineData, isBatch, OWN_BYTES, readClientBatch, ServerWriter } from "./batch.js";

export interface ServeOptions {
  /** Most messages pushed and not yet credited back (default 256). */
  maxMessagesInFlight?: number;
  /** Most payload bytes pushed and not yet credited back, plus one message (default 4 MiB). */
  maxBytesInFlight?: number;
  /** Most host objects pushed and not yet credited back, plus one message's (default 1024). */
  maxObjectsInFlight?: number;
  /** How often the plugin is pinged; one silent for two periods in a row is taken for dead (default 10000; 0: never pinged). */
  livenessMs?: number;
  /** Most bytes the objects of one send of the plugin may take, as measured here (default 1 MiB); more is EMSGSIZE. */
  maxObjectBytes?: number;
}

/** The trusted side's handle on one serving. */
export interface Serving {
  /** Ends the serving: the plugin is told `reason`, the port and the Peer reference are closed. Never throws. */
  close(reason?: string): void;
  /** Resolves with the reason once the serving has ended. */
  readonly closed: Promise<string>;
}

export const DEFAULT_SERVE_WINDOW: Readonly<Window> = Object.freeze({ messages: 256, bytes: 4 << 20, objects: 1024 });
const DEFAULT_LIVENESS_MS = 10_000;
/** The alias under which a served peer sees its seed's offset (wire.ts). */
const SEED_ALIAS = OFFSET_ALIAS_BASE;

const SERVE_OPTIONS = ["maxMessagesInFlight", "maxBytesInFlight", "maxObjectsInFlight", "livenessMs", "maxObjectBytes"];
const DEFAULT_MAX_OBJECT_BYTES = 1 << 20;

/** Serves `peer` to the plugin at the other end of `port`; see the DOC block. */
export function serve(peer: Peer, port: PortLike, options?: ServeOptions): Serving {
  const op = "serve";
  const o = readOptions(op, options, SERVE_OPTIONS);
  const cap = (k: string, d: number) => (o[k] === undefined ? d : readInteger(op, k, o[k], 1, 0x7fffffff));
  const caps: Window = {
    messages: cap("maxMessagesInFlight", DEFAULT_SERVE_WINDOW.messages),
    bytes: cap("maxBytesInFlight", DEFAULT_SERVE_WINDOW.bytes),
    objects: cap("maxObjectsInFlight", DEFAULT_SERVE_WINDOW.objects),
  };
  const liveness = o.livenessMs === undefined ? DEFAULT_LIVENESS_MS : readInteger(op, "livenessMs", o.livenessMs, 0, 0x7fffffff);
  const maxObjectBytes = cap("maxObjectBytes", DEFAULT_MAX_OBJECT_BYTES);
  if (!(peer instanceof Peer)) throw fail("EINVAL", op, `peer must be a Peer, got ${describe(peer)}`);
  if (peer.closed) throw Bus1Error.of("EBADF", op, "that peer reference is closed");
  if (!isPortLike(port)) throw fail("EINVAL", op, `port must be a MessagePort, got ${describe(port)}`);
  // the serving owns the reference from here: closing it (bus.close(), say) ends the serving
  let server: Server | null = null;
  if (!peer[TAKE_OVER](() => server?.close("the served peer reference was closed"))) {
    throw fail("EINVAL", op, "that peer reference is already served");
  }
  server = new Server(peer, port, caps, liveness, maxObjectBytes);
  return server.handle;
}

class Server {
  readonly handle: Serving;
  #resolveClosed!: (reason: string) => void;
  #done = false;
  #welcomed = false;
  /** ESHUTDOWN or EBADF once the peer can receive no more (told to the plugin once). */
  #ended = false;
  #window: Window = { messages: 0, bytes: 0, objects: 0 };
  #inflight: Window = { messages: 0, bytes: 0, objects: 0 };
  /**
   * Buffers the plugin gave back, to carry later pushes (batch.ts "Buffers
   * go back"), oldest first, each with its size when kept; and their bytes.
   */
  #spares: { buffer: ArrayBuffer; size: number }[] = [];
  #spareBytes = 0;
  #waiting = false;
  #alive = true;
  #timer: ReturnType<typeof setInterval> | null = null;
  readonly #liveness: number;
  /** Items waiting for the next post (answers, `ended`), in order, and what they transfer. */
  #out: Item[] = [];
  #outTransfer: Transferable[] = [];
  #flushScheduled = false;
  readonly #writer = new ServerWriter();
  readonly #flushLater = () => {
    this.#flushScheduled = false;
    this.#items = this.#work = 0; // the turn is over
    this.#guard(() => this.#flush(null));
  };
  /**
   * The turn's bound (see the DOC block): items taken and work done since
   * the end of the last turn, and items refused for it. A turn ends when
   * the deferred post runs (the event loop got to it).
   */
  #items = 0;
  #work = 0;
  /** When the liveness timer last ran (to tell a plugin that is silent from a thread that was busy). */
  #lastTick = 0;
  /** Liveness periods in a row in which the plugin said nothing. */
  #silent = 0;
  readonly #onMessage = (e: { data: unknown }) => this.#guard(() => this.#receivePost(eventData(e)));
  readonly #onClose = () => this.close("the port closed");
  readonly #onMessageError = () => this.close("protocol error: a port message could not be deserialized");

  constructor(readonly peer: Peer, readonly port: PortLike, readonly caps: Window, liveness: number,
              readonly maxObjectBytes: number) {
    this.#liveness = liveness;
    const closed = new Promise<string>((resolve) => { this.#resolveClosed = resolve; });
    this.handle = Object.freeze({ close: (reason?: string) => this.close(reason), closed });
    port.addEventListener("message", this.#onMessage);
    port.addEventListener("close", this.#onClose);
    port.addEventListener("messageerror", this.#onMessageError);
    port.start?.();
    if (liveness > 0) {
      this.#timer = setInterval(() => this.#guard(() => this.#ping(liveness)), liveness);
      (this.#timer as { unref?: () => void }).unref?.();
    }
  }

  /** Runs `f`; whatever it throws ends the serving instead of reaching the event loop. */
  #guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.close(`the serving side failed (${e instanceof Error ? e.message : describe(e)})`);
    }
  }

  #ping(liveness: number): void {
    const now = Date.now(), late = this.#lastTick !== 0 && now - this.#lastTick > 1.5 * liveness;
    this.#lastTick = now;
    // a timer that runs late ran after this thread was busy: a pong may be waiting behind it in the
    // port, so silence counts only over a period in which this thread was free to hear it
    // and it takes two silent periods in a row: a pong may also wait behind other ports' messages
    if (this.#alive || late) this.#silent = 0;
    else if (++this.#silent >= 2) {
      this.close(`the plugin answered no liveness check within ${2 * liveness} ms`);
      return;
    }
    this.#alive = false;
    this.#post({ t: "ping" });
  }

  #post(m: object, transfer?: Transferable[]): void {
    this.port.postMessage(m, transfer ?? []);
  }

  /** Queues an item for the next post (at the end of this task, or with the next pushes). */
  #queue(item: Item): void {
    this.#out.push(item);
    // a post holds at most MAX_BATCH items: a long turn posts as it goes
    if (this.#out.length >= MAX_BATCH) this.#flush(null);
    this.#endTurnLater();
  }

  /** The turn ends (its bounds start again, what is queued is posted) in a task of its own, once. */
  #endTurnLater(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    nextTask(this.#flushLater);
  }

  /**
   * Posts the queued items, then `pushes` (items whose payloads are in
   * `data`), in one batch (batch.ts). A batch the port refuses (an object
   * it cannot take) is posted again item by item, each object it refuses
   * arriving as EOPNOTSUPP in its place: nothing is lost and the order holds.
   */
  #flush(pushes: { items: PushItem[]; data: ArrayBuffer | string | null; transfer: Transferable[] } | null): void {
    if (this.#done) return;
    const items = this.#out, transfer = this.#outTransfer;
    if (items.length === 0 && pushes === null) return;
    this.#out = [];
    this.#outTransfer = [];
    let data: ArrayBuffer | string | null = null;
    if (pushes) {
      for (const p of pushes.items) items.push(p);
      for (const t of pushes.transfer) transfer.push(t);
      data = pushes.data;
      // one copy out of the pool, transferred: never cloned a second time (a few bytes go inline: batch.ts)
      if (data instanceof ArrayBuffer) transfer.push(data);
    }
    const w = this.#writer;
    for (const item of items) write(w, item);
    try {
      this.#post(w.take(data), transfer);
    } catch {
      // a port that refuses a post late may have emptied its buffers already (the streams that do so are
      // kept out of posts: #encode); payloads are never posted empty
      for (const t of transfer) {
        if (t instanceof ArrayBuffer && isDetachedBuffer(t)) {
          this.close("the port refused a post after it had taken its buffers");
          return;
        }
      }
      for (const item of items) this.#postAlone(item, data);
    }
  }

  /** One item in a batch of its own (the way back when a batch was refused). */
  #postAlone(item: Item, data: ArrayBuffer | string | null): void {
    const w = this.#writer;
    if (item.t !== "push") {
      write(w, item);
      this.#post(w.take(null));
      return;
    }
    const own = item.at >= 0 && data !== null ? data.slice(item.at, item.at + item.size) : null;
    const one: PushItem = { ...item, at: own !== null ? 0 : -1 };
    // a copy of its own bytes in a buffer goes with it, transferred, as does a buffer of its own (OWN);
    // inline bytes are a string
    const moved: Transferable[] = own instanceof ArrayBuffer ? [own] : item.own ? [item.own] : [];
    const transfer = (item.objects ?? []).filter((v): v is Transferable => v !== null && isTransferable(v));
    try {
      write(w, one);
      this.#post(w.take(own), [...moved, ...transfer]);
      return;
    } catch {
      w.take(null);
    }
    // the port refused one of its objects: the transferables (a port already moved, a locked stream)
    // arrive as EOPNOTSUPP in their place, and if that is not enough, every object does
    const objects = (one.objects ?? []).slice(), errors = (one.errors ?? []).slice();
    for (let i = 0; i < objects.length; i++) {
      if (objects[i] === null || !isTransferable(objects[i])) continue;
      objects[i] = null;
      errors.push([i, "EOPNOTSUPP", `recv: objects[${i}]: cannot be transferred to a served peer (EOPNOTSUPP)`]);
    }
    try {
      write(w, { ...one, objects, errors });
      this.#post(w.take(own), moved);
    } catch {
      w.take(null);
      const none = objects.map(() => null);
      const all = objects.map((_v, i): [number, string, string] =>
        [i, "EOPNOTSUPP", `recv: objects[${i}]: cannot be posted to a served peer (EOPNOTSUPP)`]);
      write(w, { ...one, objects: none, errors: all });
      this.#post(w.take(own), moved);
    }
  }

  /** A port message: a batch of items (batch.ts), or one message (wire.ts). */
  #receivePost(data: unknown): void {
    if (this.#done) return;
    this.#alive = true;
    if (!isBatch(data)) return this.#handle(readClientMessage(data));
    if (!this.#welcomed) return this.close("protocol error: a batch before hello");
    for (const r of readClientBatch(data)) {
      if (this.#done) return;
      this.#handle(r);
    }
  }

  #handle(r: Read<ClientMessage>): void {
    // every item counts in the turn's bound, whatever it is and whether or not it is any good; the turn
    // ends with the deferred post (scheduled here if nothing else has)
    if (++this.#items > 4 * TURN_ITEMS) return this.#cutOff();
    this.#endTurnLater();
    if (!r.ok) {
      if (r.id !== null && this.#welcomed) this.#reply(r.id, Bus1Error.of("EINVAL", "serve", r.reason));
      else this.close(`protocol error: ${r.reason}`);
      return;
    }
    const m = r.message;
    if (!this.#welcomed && m.t !== "hello") {
      this.close(`protocol error: ${m.t} before hello`);
      return;
    }
    switch (m.t) {
      case "hello": return this.#hello(m);
      case "call": return this.#items > TURN_ITEMS ? this.#refuse(m.id, m.op) : this.#call(m);
      case "credit": return this.#credit(m);
      case "spare": return this.#keep(m.buffers);
      case "pong": return;
      case "close": return this.close(m.reason);
    }
  }

  #hello(m: Extract<ClientMessage, { t: "hello" }>): void {
    if (this.#welcomed) return this.close("protocol error: a second hello");
    if (m.version !== WIRE_VERSION) {
      this.#post({ t: "welcome", version: WIRE_VERSION, window: { messages: 0, bytes: 0, objects: 0 }, liveness: 0 });
      return this.close(`the plugin speaks protocol version ${m.version}, this side version ${WIRE_VERSION}`);
    }
    const w = m.window ?? this.caps;
    this.#window = {
      messages: clamp(w.messages, this.caps.messages), bytes: clamp(w.bytes, this.caps.bytes),
      objects: clamp(w.objects, this.caps.objects),
    };
    this.#welcomed = true;
    this.#post({ t: "welcome", version: WIRE_VERSION, window: this.#window, liveness: this.#liveness });
    this.#pump();
  }

  #credit(m: Extract<ClientMessage, { t: "credit" }>): void {
    const f = this.#inflight;
    if (m.messages > f.messages || m.bytes > f.bytes || m.objects > f.objects) {
      return this.close("protocol error: credit for more than was pushed");
    }
    f.messages -= m.messages;
    f.bytes -= m.bytes;
    f.objects -= m.objects;
    this.#pump();
  }

  /**
   * Keeps buffers the plugin gave back, at most KEPT_SPARES of them and
   * SPARE_BYTES or the window's bytes together: the oldest go first, so
   * what is kept follows the sizes pushed lately (a batch of small
   * payloads' buffer does not stay in the way of large ones).
   */
  #keep(buffers: ArrayBuffer[]): void {
    const bound = Math.min(SPARE_BYTES, this.#window.bytes), s = this.#spares;
    for (const buffer of buffers) {
      const size = buffer.byteLength;
      if (size > bound) continue;
      s.push({ buffer, size });
      this.#spareBytes += size;
    }
    let drop = 0;
    while (s.length - drop > KEPT_SPARES || this.#spareBytes > bound) this.#spareBytes -= s[drop++].size;
    if (drop) s.splice(0, drop);
  }

  /**
   * A spare of at least `bytes` and at most twice that, taken, its bytes
   * past `bytes` zeroed (they held earlier pushes); or null.
   */
  #spare(bytes: number): ArrayBuffer | null {
    const s = this.#spares;
    for (let i = s.length - 1; i >= 0; i--) {
      const { buffer, size } = s[i];
      if (size < bytes || size > 2 * bytes) continue;
      s.splice(i, 1);
      this.#spareBytes -= size;
      // batch.ts refuses a buffer given back that its post also sends (an object, its data) or gives twice,
      // so nothing else here holds it; were it detached all the same, it is dropped rather than posted
      if (buffer.byteLength !== size) continue;
      if (size > bytes) new Uint8Array(buffer, bytes).fill(0);
      return buffer;
    }
    return null;
  }

  /** Performs one call on the local peer and answers it (within the call bound, see the DOC block). */
  #call(m: Extract<ClientMessage, { t: "call" }>): void {
    // what the call will cost, roughly: one, plus one per entry of its lists (IDs, handles, objects)
    const work = 1 + listWork(m.args);
    if (this.#work + work > TURN_WORK && this.#work > 0) return this.#refuse(m.id, m.op);
    this.#work += work;
    let value: unknown;
    try {
      value = this.#perform(m.op, m.args);
    } catch (e) {
      return this.#reply(m.id, e);
    }
    this.#reply(m.id, null, value);
  }

  /** A call past the turn's bound: EAGAIN, not performed; a plugin that goes on regardless is cut off. */
  #refuse(id: number, op: string): void {
    this.#reply(id, Bus1Error.of("EAGAIN", op,
      "the plugin asked for more than the serving side does in one turn: wait for the answers"));
  }

  #cutOff(): void {
    this.close(`the plugin posted more than ${4 * TURN_ITEMS} calls in one turn without waiting for answers`);
  }

  #perform(op: string, args: unknown[]): unknown {
    const peer = this.peer;
    switch (op) {
      case "send": {
        const payload = args[1] instanceof ArrayBuffer ? new Uint8Array(args[1]) : args[1];
        // the plugin's objects arrived as clones in this thread: how much they hold is bounded here
        const o = args[2];
        const objects = typeof o === "object" && o !== null ? (o as { objects?: unknown }).objects : undefined;
        if (Array.isArray(objects) && cloneBytes(objects, this.maxObjectBytes) > this.maxObjectBytes) {
          throw Bus1Error.of("EMSGSIZE", op, `objects (more than the ${this.maxObjectBytes} bytes of the serving side's maxObjectBytes)`);
        }
        return peer.send(args[0] as number, payload as Uint8Array, args[2] as object);
      }
      case "recv": {
        const seed = readBoolean(op, "seed", readOptions(op, args[0], ["seed"]).seed);
        if (seed) return this.#seed(op);
        // what is ready goes out as pushes first: the answer follows them
        this.#pump(true);
        return null;
      }
      case "transfer":
        if (args[1] !== undefined) {
          throw fail("EINVAL", op, `to must be this peer (a served peer transfers only to itself), got ${describe(args[1])}`);
        }
        return peer.transfer(args[0] as number);
      case "release": return peer.release(args[0] as number);
      case "destroy": return peer.destroy(args[0] as number, args[1] as { releaseHandles?: boolean });
      case "releaseSlice":
        if (args[0] === SEED_ALIAS) return this.#releaseSeed(op);
        return peer.releaseSlice(args[0] as number);
      case "reset": return peer.reset(args[0] as object);
      case "query": return peer.query();
      case "stats": return peer.stats();
      case "disconnect": return peer.disconnect();
    }
    throw fail("EINVAL", "serve", `unknown operation ${JSON.stringify(op)}`);
  }

  /**
   * recv({ seed: true }): a copy of the seed, or null. A copy costs this
   * side its bytes: they count in the turn's work (one per 64 bytes), so
   * seed reads cannot make it copy without bound.
   */
  #seed(op: string): unknown {
    const msg = this.peer.recv({ seed: true });
    if (!msg) return null;
    const size = msg.payload.byteLength;
    const work = Math.ceil(size / 64);
    if (this.#work + work > TURN_WORK && this.#work > 1) {
      throw Bus1Error.of("EAGAIN", op, "the plugin asked for more than the serving side does in one turn: wait for the answers");
    }
    this.#work += work;
    const { item, transfer } = this.#encode(msg, -1, true);
    const payload = new ArrayBuffer(size);
    new Uint8Array(payload).set(msg.payload);
    this.#outTransfer.push(payload, ...transfer);
    return {
      type: item.type, destination: item.destination, continue: item.continue, payload, handles: Array.from(item.handles),
      objects: item.objects ?? [], errors: item.errors ?? [],
    };
  }

  /** releaseSlice of the seed's alias: what a local peer says for its seed's offset (EPERM), or ENXIO without a seed. */
  #releaseSeed(op: string): never {
    const seed = this.peer.recv({ seed: true });
    throw Bus1Error.of(seed ? "EPERM" : "ENXIO", op, `offset (${SEED_ALIAS})`);
  }

  #reply(id: number, error: unknown, value?: unknown): void {
    if (this.#done) return;
    if (error === null) {
      // a result is plain data of this side (numbers, records of numbers, a seed's fields)
      this.#queue({ t: "done", id, value });
      return;
    }
    const b = error instanceof Bus1Error ? error
      : fail("EINVAL", "serve", `the call failed (${error instanceof Error ? error.message : describe(error)})`);
    this.#queue({ t: "fail", id, code: b.code, message: b.message.slice(0, MAX_TEXT) });
  }

  /**
   * Pushes the ready messages the window allows, in one post with what else
   * is queued; then waits for the peer to become readable (or for credit).
   * `fromCall`: a recv call asks, so an error of the peer is thrown to it as
   * well.
   */
  #pump(fromCall = false): void {
    if (this.#done || !this.#welcomed) return;
    const f = this.#inflight, w = this.#window;
    const taken: Message[] = [];
    // the bytes of small payloads (they share the post's buffer) and of all, and the large payloads
    let shared = 0, bytes = 0, owned = 0, error: unknown = null, empty = false;
    while (f.messages < w.messages && f.bytes < w.bytes && f.objects < w.objects &&
           shared < BATCH_BYTES && bytes < POST_BYTES && owned < MAX_OWN && taken.length < MAX_PUSHES) {
      let msg: Message | null;
      try {
        msg = this.peer.recv();
      } catch (e) {
        error = e;
        break;
      }
      if (!msg) {
        empty = true;
        break;
      }
      taken.push(msg);
      const size = msg.payload.byteLength;
      bytes += size;
      if (size >= OWN_BYTES) owned++;
      else shared += size;
      f.messages += 1;
      f.bytes += size;
      f.objects += msg.objects.length;
    }
    if (taken.length) this.#pushAll(taken, shared);
    if (error !== null) {
      this.#end(error);
      if (fromCall) throw error;
      return;
    }
    if (this.#done) return;
    if (empty) return this.#watch();
    // the batch was full but the window is not: go on in the next task, after what came in meanwhile;
    // a full window goes on when credit comes
    if (f.messages < w.messages && f.bytes < w.bytes && f.objects < w.objects) {
      nextTask(() => this.#guard(() => this.#pump()));
    }
  }

  /**
   * Received messages, copied out of the pool (each slice released at
   * once), and posted with what else is queued: the small payloads into one
   * ArrayBuffer (`shared`: their bytes), each large one into one of its own.
   */
  #pushAll(taken: Message[], shared: number): void {
    this.#moving = null; // a new post
    // A few bytes go inline (batch.ts), written straight from the pool. More are copied once into one
    // ArrayBuffer for the post (#bufferFor's when there is one small payload).
    const inline = shared > 0 && shared <= INLINE_BYTES;
    let buffer: ArrayBuffer | null = null, all: Uint8Array | null = null;
    if (!inline && shared > 0) {
      const one = soleSmall(taken);
      if (one !== null) buffer = this.#bufferFor(one);
      else all = new Uint8Array(buffer = this.#spare(shared) ?? new ArrayBuffer(shared), 0, shared);
    }
    let text = "";
    const items: PushItem[] = new Array(taken.length);
    const transfer: Transferable[] = [];
    let at = 0;
    for (let i = 0; i < taken.length; i++) {
      const msg = taken[i];
      const size = msg.payload.byteLength;
      const own = size >= OWN_BYTES;
      const { item, transfer: t } = this.#encode(msg, msg.type === "data" && !own ? at : -1, false);
      if (own) transfer.push(item.own = this.#bufferFor(msg.payload));
      else if (size && all) all.set(msg.payload, at);
      else if (size && inline) text += inlineData(msg.payload, size);
      if (!own) at += size;
      try {
        msg.release();
      } catch {
        // the peer was closed under us: the copy is made, the slice goes with the peer
      }
      items[i] = item;
      for (const v of t) transfer.push(v);
    }
    this.#flush({ items, data: inline ? text : buffer, transfer });
  }

  /**
   * `payload` copied into an ArrayBuffer that carries it alone, its bytes
   * first: one the plugin gave back if one fits (its tail zeroed), else a
   * new one of its exact size (made by the copy: a new ArrayBuffer would
   * first be zeroed, at a cost that shows at 64 KiB).
   */
  #bufferFor(payload: Uint8Array): ArrayBuffer {
    const spare = this.#spare(payload.byteLength);
    if (spare === null) return new Uint8Array(payload).buffer as ArrayBuffer;
    new Uint8Array(spare, 0, payload.byteLength).set(payload);
    return spare;
  }

  /** Waits (once at a time) for the peer to become readable, then pumps. */
  #watch(): void {
    if (this.#waiting || this.#done || this.#ended) return;
    this.#waiting = true;
    // no AbortSignal: closing the serving closes the reference, which settles this with EBADF
    this.peer.readable().then(
      () => { this.#waiting = false; this.#guard(() => this.#pump()); },
      (e) => {
        this.#waiting = false;
        if (this.#done) return;
        // the reference was closed on this side (bus.close(), say): the serving has nothing left to serve
        if (e instanceof Bus1Error && e.code === "EBADF") this.close("the served peer reference was closed");
        else this.#guard(() => this.#end(e));
      },
    );
  }

  /** The peer can receive no more: the plugin is told once (its readable() and iterator end). */
  #end(e: unknown): void {
    if (this.#ended || this.#done) return;
    this.#ended = true;
    const b = e instanceof Bus1Error ? e : fail("ESHUTDOWN", "recv", describe(e));
    this.#queue({ t: "ended", code: b.code, message: b.message.slice(0, MAX_TEXT) });
  }

  /**
   * Whether `v` may move with this post: anything but a stream, or a stream
   * that is not (and does not hold, or belong to) one this post already
   * moves; it is then counted as moving. Reset for each post (#pushAll).
   */
  #claim(v: unknown): boolean {
    const parts = streamParts(v);
    if (parts === null) return true;
    const moving = this.#moving ??= new Set();
    for (const x of parts) if (moving.has(x)) return false;
    for (const x of parts) moving.add(x);
    return true;
  }

  /** The streams the post being made moves (#claim), or null before the first. */
  #moving: Set<unknown> | null = null;

  /**
   * A received message as a push item (its payload at `at` of the batch's
   * data; -1: none), and the objects it transfers. A seed's objects stay with
   * the seed: they are cloned, never transferred.
   */
  #encode(msg: Message, at: number, seed: boolean): { item: PushItem; transfer: Transferable[] } {
    const item: PushItem = {
      t: "push", type: msg.type, destination: msg.destination, continue: msg.continue, at, size: msg.payload.byteLength,
      handles: msg.handles, objects: null, errors: null,
    };
    const n = msg.objects.length;
    if (n === 0) return { item, transfer: NOTHING };
    const transfer: Transferable[] = [];
    const objects: unknown[] = new Array(n);
    const errors: [number, string, string][] = [];
    for (let i = 0; i < n; i++) {
      const v = msg.objects[i];
      objects[i] = null;
      if (v instanceof Bus1Error) {
        errors.push([i, v.code, v.message]);
        continue;
      }
      // a port, a stream or a transferred buffer moves to the plugin only when no other receiver in
      // this thread has it (a multicast to a local peer as well leaves it here, and the plugin an error)
      // a locked stream makes the port refuse the post only after it has detached the post's buffers
      // (Node, and the HTML transfer steps in list order): it never goes into a post, and neither does
      // one that this post already moves otherwise (a TransformStream and one of its sides: moving either
      // locks the other)
      if (!seed && msg[MAY_MOVE](i) && !lockedStream(v) && this.#claim(v)) {
        objects[i] = v;
        if (!transfer.includes(v as Transferable)) transfer.push(v as Transferable);
        continue;
      }
      if (isTransferable(v)) {
        errors.push([i, "EOPNOTSUPP", `recv: objects[${i}] (${describe(v)}) ${seed
          ? "belongs to the seed: it stays in the serving thread"
          : "went to another receiver in the serving thread as well: it stays there"} (EOPNOTSUPP)`]);
        continue;
      }
      // anything else is cloned here once, and the clone (plain data: no getter runs again) is
      // searched for what must stay, at any depth; the clone is what is posted
      // a view of a private bus's memory would clone with the whole memory: it stays
      const held = holdsMemory(v, stateOf(this.peer)!.core.views().buffer);
      if (held) {
        errors.push([i, "EOPNOTSUPP", `recv: objects[${i}] (${describe(v)}): ${held} (EOPNOTSUPP)`]);
        continue;
      }
      let copy: unknown;
      try {
        copy = structuredClone(v);
      } catch {
        errors.push([i, "EOPNOTSUPP", `recv: objects[${i}] (${describe(v)}) cannot be cloned to a served peer (EOPNOTSUPP)`]);
        continue;
      }
      const stays = mustStay(copy);
      if (stays) errors.push([i, "EOPNOTSUPP", `recv: objects[${i}] (${describe(v)}): ${stays} (EOPNOTSUPP)`]);
      else objects[i] = copy;
    }
    item.objects = objects;
    if (errors.length) item.errors = errors;
    return { item, transfer };
  }

  /** Ends the serving (idempotent, never throws). */
  close(reason = "the serving was closed"): void {
    if (this.#done) return;
    this.#done = true;
    this.#spares = [];
    this.#spareBytes = 0;
    if (this.#timer !== null) clearInterval(this.#timer);
    const port = this.port;
    // what was answered goes out before the close
    if (this.#out.length) {
      const w = this.#writer;
      for (const item of this.#out) write(w, item);
      try { port.postMessage(w.take(null), this.#outTransfer); } catch { /* gone */ }
      this.#out = [];
      this.#outTransfer = [];
    }
    try { port.postMessage({ t: "close", reason: String(reason).slice(0, MAX_TEXT) }); } catch { /* gone */ }
    try { port.removeEventListener("message", this.#onMessage); } catch { /* gone */ }
    try { port.removeEventListener("messageerror", this.#onMessageError); } catch { /* gone */ }
    try { port.removeEventListener("close", this.#onClose); } catch { /* gone */ }
    try { port.close(); } catch { /* gone */ }
    try { this.peer.close(); } catch { /* a broken bus: the reference is dropped all the same */ }
    this.#resolveClosed(String(reason));
  }
}

/** A push waiting for its post: its payload is `size` bytes of the batch's data from `at` (-1: none). */
interface PushItem {
  t: "push";
  type: MessageType;
  destination: number;
  continue: boolean;
  at: number;
  size: number;
  handles: ArrayLike<number>;
  objects: unknown[] | null;
  errors: [number, string, string][] | null;
  /** The payload's buffer of its own (batch.ts OWN), transferred with it; or null: the payload is at `at`. */
  own?: ArrayBuffer | null;
}

/** What waits for the next post. */
type Item =
  | { t: "done"; id: number; value: unknown }
  | { t: "fail"; id: number; code: string; message: string }
  | { t: "ended"; code: string; message: string }
  | PushItem;

function write(w: ServerWriter, item: Item): void {
  switch (item.t) {
    case "done": return w.done(item.id, item.value);
    case "fail": return w.fail(item.id, item.code, item.message);
    case "ended": return w.ended(item.code, item.message);
    case "push":
      return w.push(item.type, item.destination, item.continue, item.at, item.size, item.handles, item.objects, item.errors,
        item.own ?? null);
  }
}

/**
 * The turn's bound: items (calls, credit, pongs) taken in one turn, and the
 * work of the calls performed in it (one per call and per entry of its
 * lists, one per 64 bytes of a seed copied). A RemotePeer has at most
 * MAX_PENDING_CALLS calls waiting, so it stays well within TURN_ITEMS; the
 * work bound lets one call of the largest size a call may have (2^20 IDs)
 * through in each turn, and no more. Calls past either are EAGAIN; more than
 * 4 × TURN_ITEMS items in one turn end the serving.
 */
const TURN_ITEMS = 2 * MAX_PENDING_CALLS;
const TURN_WORK = (1 << 20) + 4 * MAX_PENDING_CALLS;

/** The entries of the lists among a call's arguments (IDs, handles, objects), as the turn's work counts them. */
function listWork(args: unknown[]): number {
  let n = 0;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (Array.isArray(a)) n += a.length;
    else if (typeof a === "object" && a !== null && !(a instanceof Uint8Array) && !(a instanceof ArrayBuffer)) {
      const h = (a as { handles?: unknown }).handles, o = (a as { objects?: unknown }).objects;
      if (Array.isArray(h)) n += h.length;
      if (Array.isArray(o)) n += o.length;
    }
  }
  return n;
}

/** What a message with no objects transfers (shared: nobody writes to it). */
const NOTHING = Object.freeze([]) as unknown as Transferable[];

/** The payload of the one message of `taken` with a small payload (1 to OWN_BYTES − 1 bytes), if just one has. */
function soleSmall(taken: Message[]): Uint8Array | null {
  let one: Uint8Array | null = null;
  for (const m of taken) {
    const size = m.payload.byteLength;
    if (size === 0 || size >= OWN_BYTES) continue;
    if (one !== null) return null;
    one = m.payload;
  }
  return one;
}

/**
 * Most bytes of small payloads in one post (they share its buffer), most
 * payload bytes in all and most large payloads (each in a buffer of its
 * own, batch.ts OWN), and most pushes; more go in the next task's post.
 */
const BATCH_BYTES = 64 << 10;
const POST_BYTES = 1 << 20;
const MAX_OWN = 16;
/** Most buffers given back that the serving side keeps, and most bytes of them (and at most the window's). */
const KEPT_SPARES = 64;
const SPARE_BYTES = 4 << 20;
const MAX_PUSHES = 1024;

/**
 * Runs `f` in a task of its own, after the current one and its microtasks:
 * setImmediate where there is one (Node), else a MessageChannel's message
 * (browsers, Deno), else a timer.
 */
const nextTask: (f: () => void) => void = (() => {
  const g = globalThis as { setImmediate?: (f: () => void) => unknown; MessageChannel?: typeof MessageChannel };
  if (typeof g.setImmediate === "function") {
    const setImmediate = g.setImmediate;
    return (f: () => void) => { setImmediate(f); };
  }
  if (typeof g.MessageChannel === "function") {
    const queue: (() => void)[] = [];
    const ch = new g.MessageChannel();
    ch.port1.onmessage = () => { const f = queue.shift(); f?.(); };
    (ch.port1 as { unref?: () => void }).unref?.();
    return (f: () => void) => { queue.push(f); ch.port2.postMessage(null); };
  }
  return (f: () => void) => { setTimeout(f, 0); };
})();

/**
 * The streams that move when `v` moves: a TransformStream and its two
 * sides, a ReadableStream or WritableStream alone; null for anything else.
 */
function streamParts(v: unknown): unknown[] | null {
  const g = globalThis as { ReadableStream?: any; WritableStream?: any; TransformStream?: any };
  if (g.TransformStream && v instanceof g.TransformStream) return [v, (v as TransformStream).readable, (v as TransformStream).writable];
  if ((g.ReadableStream && v instanceof g.ReadableStream) || (g.WritableStream && v instanceof g.WritableStream)) return [v];
  return null;
}

/** Whether `v` is a stream the port would refuse to transfer (locked, or a TransformStream with a locked side). */
function lockedStream(v: unknown): boolean {
  for (const x of streamParts(v) ?? []) if ((x as { locked?: boolean }).locked === true) return true;
  return false;
}

function clamp(n: number, max: number): number {
  return n < 1 ? 1 : n > max ? max : n;
}

const SAB = typeof SharedArrayBuffer === "function" ? SharedArrayBuffer : null;
const TypedArray = Object.getPrototypeOf(Uint8Array) as abstract new () => ArrayBufferView;


/**
 * About how many bytes a structured clone holds (strings, buffers once
 * each, 8 bytes a number, 16 an object and 8 a key), or more than `limit`
 * as soon as it is known to hold more. The clone is plain data, so walking
 * it runs no code of anyone's.
 */
function cloneBytes(root: unknown, limit: number): number {
  const stack: unknown[] = [root];
  const seen = new Set<object>();
  let bytes = 0;
  while (stack.length && bytes <= limit) {
    const v = stack.pop();
    if (typeof v === "string") {
      bytes += 8 + 2 * v.length;
      continue;
    }
    if (typeof v !== "object" || v === null) {
      bytes += 8;
      continue;
    }
    if (seen.has(v)) continue;
    seen.add(v);
    bytes += 16;
    if (v instanceof ArrayBuffer || (SAB && v instanceof SAB)) {
      bytes += (v as ArrayBuffer).byteLength;
    } else if (v instanceof TypedArray || v instanceof DataView) {
      stack.push((v as ArrayBufferView).buffer);
    } else if (v instanceof Map) {
      for (const [k, x] of v) stack.push(k, x);
    } else if (v instanceof Set) {
      for (const x of v) stack.push(x);
    } else {
      for (const k of Object.keys(v)) {
        bytes += 8 + 2 * k.length;
        stack.push((v as Record<string, unknown>)[k]);
      }
    }
  }
  return bytes;
}

const isView = ArrayBuffer.isView;

/**
 * Why a structured clone must not reach a plugin, or "" when it may: shared
 * memory (a SharedArrayBuffer, a view on one, a WebAssembly.Memory) or the
 * engine's code objects (a module, an instance), at any depth. The clone is
 * plain data, so walking it runs no code of anyone's.
 */
function mustStay(root: unknown): string {
  return search(root, (v) => {
    if ((SAB && v instanceof SAB) || v instanceof WebAssembly.Memory) return "the bus's memory, or any shared memory, never reaches a served peer";
    if (v instanceof WebAssembly.Module || v instanceof WebAssembly.Instance) return "the bus's code never reaches a served peer";
    if (isView(v)) return SAB && viewBuffer(v) instanceof SAB ? "a view of shared memory never reaches a served peer" : LEAF;
    return "";
  });
}

/**
 * Why a value the app sent must not even be cloned for a plugin, or "": it
 * is, or holds, the private memory of the bus or a view on it, which a
 * structured clone would copy whole (every pool of every peer). Walked on the
 * app's own value before the clone, reading what the clone would read.
 */
function holdsMemory(root: unknown, memory: ArrayBufferLike): string {
  const why = "the bus's memory never reaches a served peer";
  return search(root, (v) => v === memory ? why : isView(v) ? (viewBuffer(v) === memory ? why : LEAF) : "", true);
}
