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
 * ready and the window allows (no round trip per recv): each payload is
 * copied once out of the pool into an ArrayBuffer of its own, which is
 * transferred, and the slice is released here at once; a plugin that never
 * calls release(), or dies, leaks nothing. Notifications are pushed too.
 * Objects of a message go with it (MessagePorts and streams transferred,
 * the rest cloned); a SharedArrayBuffer, a view on one, a WebAssembly memory,
 * module or instance never crosses: it arrives as a Bus1Error EOPNOTSUPP in
 * its place, as does a value the port cannot clone.
 *
 * Bounds (what one plugin can make this side spend):
 * - requests queued: none here. Each call is performed to its end in the
 *   port's message event, so the only queue is the port's own; the client
 *   (remote.ts) keeps at most MAX_PENDING_CALLS unanswered calls and
 *   refuses more with EAGAIN.
 * - bytes and objects in flight to the plugin: flow control, not an error.
 *   The plugin opens a window (messages, bytes, objects), clamped here by
 *   `maxMessagesInFlight`/`maxBytesInFlight`/`maxObjectsInFlight`; a message
 *   is taken from the peer only while every count is below its window, so
 *   what is in flight is at most the window plus one message. The plugin
 *   gives credit back as it consumes. Past the window messages wait in the
 *   peer's queue, charged to the served peer as any queued message is: the
 *   bus's quotas (SPEC §8) make senders to a plugin that does not read see
 *   EDQUOT, and the fair share protects the app.
 * - credit for more than was pushed is a protocol error: the serving ends.
 *
 * Not bounded yet (found by a hostile review; open in issue 9): a plugin
 * that bypasses RemotePeer can post calls faster than this thread answers
 * them (the port's queue grows, this thread is kept busy); a seed read
 * (`recv({ seed: true })`) is answered with a copy of the seed outside the
 * window; a port multicast to a served peer and a local one is transferred
 * to the plugin, leaving the local receiver a dead port; and the plugin
 * side has no liveness check of its own, so a server that stops answering
 * leaves its calls waiting.
 *
 * Lifecycle. The serving ends, and the served Peer reference is closed (the
 * peer is disconnected if it was the last reference, with the notifications
 * that implies), when: `close()` is called; the port emits "close" (Node,
 * and browsers that have it: the other end closed or its thread died); the
 * plugin sends `close`; the plugin answers no liveness ping for `livenessMs`
 * (default 10 s; a dead plugin on a platform without a "close" event is
 * found within twice that); a message breaks the protocol; or the Peer
 * reference is closed on this side (bus.close(), say). `closed`
 * resolves with the reason. A disconnected peer does not end the serving:
 * the plugin's calls get ESHUTDOWN, as a local reference's would.
 */
import { Bus1Error, type ErrorCode } from "./errors.js";
import { fail, readBoolean, readInteger, readOptions, describe } from "./check.js";
import { Peer, TAKE_OVER } from "./peer.js";
import type { Message } from "./message.js";
import { readClientMessage, WIRE_VERSION, MAX_TEXT, OFFSET_ALIAS_BASE, isTransferable, type ClientMessage, type PortLike, type Window } from "./wire.js";

export interface ServeOptions {
  /** Most messages pushed and not yet credited back (default 256). */
  maxMessagesInFlight?: number;
  /** Most payload bytes pushed and not yet credited back, plus one message (default 4 MiB). */
  maxBytesInFlight?: number;
  /** Most host objects pushed and not yet credited back, plus one message's (default 1024). */
  maxObjectsInFlight?: number;
  /** A plugin that answers no ping for this long is taken for dead (default 10000; 0: never pinged). */
  livenessMs?: number;
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

const SERVE_OPTIONS = ["maxMessagesInFlight", "maxBytesInFlight", "maxObjectsInFlight", "livenessMs"];

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
  if (!(peer instanceof Peer)) throw fail("EINVAL", op, `peer must be a Peer, got ${describe(peer)}`);
  if (peer.closed) throw Bus1Error.of("EBADF", op, "that peer reference is closed");
  if (typeof port !== "object" || port === null || typeof port.postMessage !== "function" ||
      typeof port.addEventListener !== "function" || typeof port.close !== "function") {
    throw fail("EINVAL", op, `port must be a MessagePort, got ${describe(port)}`);
  }
  // the serving owns the reference from here: closing it (bus.close(), say) ends the serving
  let server: Server | null = null;
  if (!peer[TAKE_OVER](() => server?.close("the served peer reference was closed"))) {
    throw fail("EINVAL", op, "that peer reference is already served");
  }
  server = new Server(peer, port, caps, liveness);
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
  #waiting = false;
  readonly #abort = new AbortController();
  #alive = true;
  #timer: ReturnType<typeof setInterval> | null = null;
  readonly #onMessage = (e: { data: unknown }) => this.#guard(() => this.#receive(readData(e)));
  readonly #onClose = () => this.close("the port closed");
  readonly #onMessageError = () => this.close("protocol error: a port message could not be deserialized");

  constructor(readonly peer: Peer, readonly port: PortLike, readonly caps: Window, liveness: number) {
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
    if (!this.#alive) {
      this.close(`the plugin answered no liveness check within ${liveness} ms`);
      return;
    }
    this.#alive = false;
    this.#post({ t: "ping" });
  }

  #post(m: object, transfer?: Transferable[]): void {
    this.port.postMessage(m, transfer ?? []);
  }

  #receive(data: unknown): void {
    if (this.#done) return;
    this.#alive = true;
    const r = readClientMessage(data);
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
      case "call": return this.#call(m);
      case "credit": return this.#credit(m);
      case "pong": return;
      case "close": return this.close(m.reason);
    }
  }

  #hello(m: Extract<ClientMessage, { t: "hello" }>): void {
    if (this.#welcomed) return this.close("protocol error: a second hello");
    if (m.version !== WIRE_VERSION) {
      this.#post({ t: "welcome", version: WIRE_VERSION, window: { messages: 0, bytes: 0, objects: 0 } });
      return this.close(`the plugin speaks protocol version ${m.version}, this side version ${WIRE_VERSION}`);
    }
    const w = m.window ?? this.caps;
    this.#window = {
      messages: clamp(w.messages, this.caps.messages), bytes: clamp(w.bytes, this.caps.bytes),
      objects: clamp(w.objects, this.caps.objects),
    };
    this.#welcomed = true;
    this.#post({ t: "welcome", version: WIRE_VERSION, window: this.#window });
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

  /** Performs one call on the local peer and answers it. */
  #call(m: Extract<ClientMessage, { t: "call" }>): void {
    let value: unknown;
    try {
      value = this.#perform(m.op, m.args);
    } catch (e) {
      return this.#reply(m.id, e);
    }
    this.#reply(m.id, null, value);
  }

  #perform(op: string, args: unknown[]): unknown {
    const peer = this.peer;
    switch (op) {
      case "send": {
        const payload = args[1] instanceof ArrayBuffer ? new Uint8Array(args[1]) : args[1];
        return peer.send(args[0] as number, payload as Uint8Array, args[2] as object);
      }
      case "recv": {
        const seed = readBoolean(op, "seed", readOptions(op, args[0], ["seed"]).seed);
        if (seed) {
          const msg = peer.recv({ seed: true });
          return msg && this.#encode(msg, SEED_ALIAS).message;
        }
        // what is ready goes out as pushes first: the reply follows them on the port
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

  /** releaseSlice of the seed's alias: what a local peer says for its seed's offset (EPERM), or ENXIO without a seed. */
  #releaseSeed(op: string): never {
    const seed = this.peer.recv({ seed: true });
    throw Bus1Error.of(seed ? "EPERM" : "ENXIO", op, `offset (${SEED_ALIAS})`);
  }

  #reply(id: number, error: unknown, value?: unknown): void {
    if (this.#done) return;
    if (error === null) {
      try {
        this.#post({ t: "done", id, value });
        return;
      } catch (e) {
        error = fail("EINVAL", "serve", "the result could not be posted", e);
      }
    }
    const b = error instanceof Bus1Error ? error
      : fail("EINVAL", "serve", `the call failed (${error instanceof Error ? error.message : describe(error)})`);
    this.#post({ t: "fail", id, code: b.code, message: b.message.slice(0, MAX_TEXT) });
  }

  /**
   * Pushes ready messages while the window allows; then waits for the peer
   * to become readable (or for credit). `fromCall`: a recv call asks, so an
   * error of the peer is thrown to it as well.
   */
  #pump(fromCall = false): void {
    if (this.#done || !this.#welcomed) return;
    const f = this.#inflight, w = this.#window;
    while (f.messages < w.messages && f.bytes < w.bytes && f.objects < w.objects) {
      let msg: Message | null;
      try {
        msg = this.peer.recv();
      } catch (e) {
        this.#end(e);
        if (fromCall) throw e;
        return;
      }
      if (!msg) return this.#watch();
      this.#push(msg);
      if (this.#done) return;
    }
  }

  /** Waits (once at a time) for the peer to become readable, then pumps. */
  #watch(): void {
    if (this.#waiting || this.#done || this.#ended) return;
    this.#waiting = true;
    this.peer.readable(this.#abort.signal).then(
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
    this.#post({ t: "ended", code: b.code, message: b.message.slice(0, MAX_TEXT) });
  }

  /** One received message, copied out of the pool (the slice is released at once), and posted. */
  #push(msg: Message): void {
    const { message, transfer, size, objects } = this.#encode(msg, -1);
    try {
      msg.release();
    } catch {
      // the peer was closed under us: the copy is made, the slice goes with the peer
    }
    this.#inflight.messages += 1;
    this.#inflight.bytes += size;
    this.#inflight.objects += objects;
    try {
      this.#post(message, transfer);
    } catch {
      // an object the port cannot clone: it arrives as EOPNOTSUPP in its place, the message all the same
      for (let i = 0; i < message.objects.length; i++) {
        const v = message.objects[i];
        if (v === null || transfer.includes(v as Transferable)) continue;
        try {
          structuredClone(v);
        } catch {
          message.objects[i] = null;
          message.errors.push([i, "EOPNOTSUPP", `recv: objects[${i}] (${describe(v)}): cannot be cloned to a served peer (EOPNOTSUPP)`]);
        }
      }
      try {
        this.#post(message, transfer);
      } catch {
        message.objects.fill(null);
        message.errors.length = 0;
        for (let i = 0; i < message.objects.length; i++) {
          message.errors.push([i, "EOPNOTSUPP", `recv: objects[${i}]: cannot be cloned to a served peer (EOPNOTSUPP)`]);
        }
        this.#post(message, message.payload ? [message.payload] : []);
      }
    }
  }

  #encode(msg: Message, offset: number) {
    const size = msg.payload.byteLength;
    let payload: ArrayBuffer | null = null;
    const transfer: Transferable[] = [];
    if (msg.type === "data") {
      payload = new ArrayBuffer(size);
      new Uint8Array(payload).set(msg.payload);
      transfer.push(payload);
    }
    const n = msg.objects.length;
    const objects: unknown[] = new Array(n);
    const errors: [number, ErrorCode, string][] = [];
    for (let i = 0; i < n; i++) {
      const v = msg.objects[i];
      objects[i] = null;
      if (v instanceof Bus1Error) {
        errors.push([i, v.code, v.message]);
        continue;
      }
      // a seed's objects stay with the seed: they are cloned, never transferred
      if (offset !== SEED_ALIAS && isTransferable(v)) {
        objects[i] = v;
        if (!transfer.includes(v)) transfer.push(v);
        continue;
      }
      // anything else is cloned here once, and the clone (plain data: no getter runs again) is
      // searched for what must stay, at any depth; the clone is what is posted
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
    const message = {
      t: "push" as const, type: msg.type, destination: msg.destination, continue: msg.continue, payload,
      handles: Array.from(msg.handles), objects, errors, offset,
    };
    return { message, transfer, size, objects: n };
  }

  /** Ends the serving (idempotent, never throws). */
  close(reason = "the serving was closed"): void {
    if (this.#done) return;
    this.#done = true;
    this.#abort.abort();
    if (this.#timer !== null) clearInterval(this.#timer);
    const port = this.port;
    try { port.postMessage({ t: "close", reason: String(reason).slice(0, MAX_TEXT) }); } catch { /* gone */ }
    try { port.removeEventListener("message", this.#onMessage); } catch { /* gone */ }
    try { port.removeEventListener("messageerror", this.#onMessageError); } catch { /* gone */ }
    try { port.removeEventListener("close", this.#onClose); } catch { /* gone */ }
    try { port.close(); } catch { /* gone */ }
    try { this.peer.close(); } catch { /* a broken bus: the reference is dropped all the same */ }
    this.#resolveClosed(String(reason));
  }
}

/** A port event's data, read without letting a getter throw. */
function readData(e: { data: unknown }): unknown {
  try {
    return e && typeof e === "object" && "data" in e ? e.data : undefined;
  } catch {
    return undefined;
  }
}

function clamp(n: number, max: number): number {
  return n < 1 ? 1 : n > max ? max : n;
}

const SAB = typeof SharedArrayBuffer === "function" ? SharedArrayBuffer : null;
const TypedArray = Object.getPrototypeOf(Uint8Array) as abstract new () => ArrayBufferView;

/** Most values one object's clone may hold for mustStay to search it (a larger one stays). */
const SEARCH_LIMIT = 100_000;

/**
 * Why a structured clone must not reach a plugin, or "" when it may: shared
 * memory (a SharedArrayBuffer, a view on one, a WebAssembly.Memory) or the
 * engine's code objects (a module, an instance), at any depth. The clone is
 * plain data, so walking it runs no code of anyone's.
 */
function mustStay(root: unknown): string {
  const stack: unknown[] = [root];
  const seen = new Set<object>();
  while (stack.length) {
    const v = stack.pop();
    if (typeof v !== "object" || v === null || seen.has(v)) continue;
    seen.add(v);
    if (seen.size > SEARCH_LIMIT) return `it holds more than ${SEARCH_LIMIT} values to check`;
    if ((SAB && v instanceof SAB) || v instanceof WebAssembly.Memory) return "the bus's memory, or any shared memory, never reaches a served peer";
    if (v instanceof WebAssembly.Module || v instanceof WebAssembly.Instance) return "the bus's code never reaches a served peer";
    if (v instanceof TypedArray || v instanceof DataView) {
      if (SAB && (v as ArrayBufferView).buffer instanceof SAB) return "a view of shared memory never reaches a served peer";
      continue;
    }
    if (v instanceof Map) {
      for (const [k, x] of v) stack.push(k, x);
    } else if (v instanceof Set) {
      for (const x of v) stack.push(x);
    } else {
      for (const k of Object.keys(v)) stack.push((v as Record<string, unknown>)[k]);
    }
  }
  return "";
}
