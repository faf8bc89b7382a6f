/**
 * DOC: batches, the compact form of the wire protocol's hot messages.
 *
 * Measured on Node 20, a port message that is an object costs several
 * microseconds more to post and read than one that is an array of numbers
 * and an ArrayBuffer (each object key is written and read as a string), as
 * much as the bare port costs for a small message. So the messages of the
 * hot path (calls, answers, pushes, credit) travel as batches:
 *
 *   [words, data, extras]
 *
 * - `words`: an array of numbers, the items one after another, each opened
 *   by its kind (below);
 * - `data`: an ArrayBuffer holding the payloads of the batch's sends or
 *   pushes, which name their bytes by `at` and `size` (at = -1: no
 *   payload), or null;
 * - `extras`: an array of what is not a number (strings, a call's other
 *   arguments, a message's objects), which items name by index, or null.
 *
 *   plugin → serving side
 *     CALL    id op at size args   op: index in CALL_OPS; args: index in extras of the argument
 *                                  array (-1: none); a send's payload is `at`/`size` of data,
 *                                  put in args[1]
 *     SEND    id to at size        send(to, payload) to one destination with no options, the
 *                                  common case, with nothing in extras
 *     CREDIT  messages bytes objects
 *     PONG
 *     SPARE   e                    extras[e]: buffers the plugin gives back (below)
 *   serving side → plugin
 *     DONE    id value             value: index in extras, or UNDEFINED / NULL
 *     SENT    id n                 a send's result with no error: { errors: n × null }
 *     FAIL    id e                 extras[e], extras[e + 1]: code, message
 *     PUSH    type destination continue at size nHandles handles… o
 *                                  type: index in MESSAGE_TYPES; o: index in extras of
 *                                  [objects, errors], or -1
 *     OWN     type destination continue b size nHandles handles… o
 *                                  a push whose payload has a buffer of its own: extras[b],
 *                                  its `size` bytes first, zeros after (below)
 *     ENDED   e                    extras[e], extras[e + 1]: code, message
 *     PING                         read, for a serving side that batches its pings (serve.ts
 *                                  posts its own alone, as { t: "ping" }, so none waits for a turn)
 *
 * Data is transferred, never cloned: each payload is copied once, into the
 * batch's buffer, and that buffer changes threads as it is. Except when it
 * is tiny: a batch whose payloads come to at most INLINE_BYTES carries them
 * as a string of as many characters, one byte each (0–255), which `at` and
 * `size` index the same way. Measured on Node 20 (a port message posted and
 * taken in one thread): [5 numbers, an 8-byte ArrayBuffer, null] costs
 * 2.0 µs, transferred or cloned alike; the same numbers with an 8-character
 * string 0.95 µs: an ArrayBuffer costs a port about a microsecond whatever
 * its size, more than copying 64 bytes twice. Making one is what costs
 * (about 1 µs here, measured alone, for 8 bytes as for 64 KiB; a typed
 * array of at most 64 bytes made on its own has no ArrayBuffer until its
 * .buffer is read), so inline bytes never pass through one: the serving
 * side writes the string straight from the pool, and a reader gives each
 * inline payload bytes of its own. A plugin's reader gives every payload a
 * buffer of its own: one that is its batch's whole buffer keeps it, one
 * that is a part of it is copied out (so transferring one message's
 * `payload.buffer` away takes no other message's bytes with it).
 *
 * Buffers go back. Making an ArrayBuffer here costs more than copying
 * 64 KiB (measured alone on Node 20: a new 64 KiB buffer 2.7–13 µs, most
 * of it the collector's work on external memory; copying 64 KiB into one
 * already made 0.7 µs, 2.5–2.8 µs when its lines come from the other
 * thread's core: docs/PERFORMANCE.md), so a buffer the plugin is done with travels back
 * and carries later pushes: a batch buffer whose payloads were all copied
 * out, at once, and a payload's own buffer when its message is released.
 * The plugin gives them back in a SPARE item with whatever it posts next (no
 * post of their own), at most MAX_SPARES per batch; the serving side keeps
 * them up to its own bound and fills each at most twice as large as the
 * bytes it carries, zeroing what the bytes leave over. A push's payload
 * keeps its batch's buffer when it is the only payload in it, even if the
 * buffer is larger: so `payload.buffer` holds that payload and zeros,
 * nothing of another message. A batch that gives buffers back carries no
 * call with objects (one port message is one structured clone: a buffer in
 * both would be one object, a receiver's and a spare at once).
 *
 * Large payloads travel in buffers of their own. A payload of OWN_BYTES or
 * more is copied into a buffer that carries it alone (a given-back one if
 * one fits) and named by an OWN item, so several large messages share one
 * post without sharing a buffer: the plugin keeps each buffer as its
 * payload's, with no copy out, and gives it back on release. A port message
 * costs about the same whatever it carries, so this is where large messages
 * save most (measured on Node 20 between two threads, 64 KiB buffers given
 * back and refilled: 7.3–12.3 µs per message posted one by one, 3.7–6.4 µs
 * four to a post, 3.2–4.8 µs eight to a post: bench/probes/post-batching.js,
 * docs/PERFORMANCE.md). Each
 * OWN buffer appears once in a batch and is not its data, and no buffer
 * that goes back on release (an OWN buffer, data a payload keeps or that
 * goes back at once) is reachable, at any depth, from an object or answer
 * of the batch (`reaches`: one structured clone makes them one object).
 *
 * A batch holds at most MAX_BATCH items. The readers check every number
 * and index before use and never throw: a batch that breaks the form is
 * refused whole (the serving ends, or the plugin takes the serving side for
 * gone); a call item that is well formed but names a bad operation or bad
 * arguments is refused alone, with an EINVAL answer. A port message is a
 * structured clone, so it holds data properties only: reading it runs no
 * code.
 */
import type { MessageType } from "./message.js";
import { SENT_ONE } from "./types.js";
import { LEAF, search, viewBuffer } from "./check.js";
import {
  CALL_OPS, MAX_BATCH, MAX_TEXT, CALL_BOUNDS, type CallOp, type ClientMessage, type Read, type ServerMessage,
} from "./wire.js";

export const CALL = 1, CREDIT = 2, PONG = 3, DONE = 4, SENT = 5, FAIL = 6, PUSH = 7, ENDED = 8, PING = 9, SEND = 10,
  SPARE = 11, OWN = 12;
/** A payload of at least this many bytes is pushed in a buffer of its own (an OWN item, above). */
export const OWN_BYTES = 16 << 10;
/** Most buffers a plugin gives back in one batch (a SPARE item with more breaks the batch). */
export const MAX_SPARES = 64;
/** DONE's value when it is undefined, or null. */
const UNDEFINED = -1, NULL = -2;

export const MESSAGE_TYPES: readonly MessageType[] = ["data", "node-destroy", "node-release"];

/** Most arguments of a call, and most words of a plugin's batch. */
const MAX_ARGS = 3;
const MAX_CALL_WORDS = 6;

const isArray = Array.isArray;
const isInteger = Number.isInteger;

export type Batch = [number[], ArrayBuffer | string | null, unknown[] | null];

/** A push's lists when it has none (shared: nobody writes to them; a local Peer's are frozen the same way). */
const NONE = Object.freeze([]) as unknown as never[];

/** A batch whose payloads come to at most this many bytes carries them as a string (see above). */
export const INLINE_BYTES = 64;

/** The first `n` (≤ INLINE_BYTES) bytes of `bytes` as a batch's data: a string, one byte per character. */
export function inlineData(bytes: Uint8Array, n: number): string {
  // subarray() of a small typed array made on its own first makes its ArrayBuffer (about 1 µs)
  const b = n === bytes.length ? bytes : bytes.subarray(0, n);
  return String.fromCharCode.apply(null, b as unknown as number[]);
}

/**
 * Whether a batch's inline data is well formed: at most INLINE_BYTES
 * characters, each a byte. Read without making a buffer: an ArrayBuffer
 * costs about a microsecond to make here, whatever its size (a typed array
 * of at most 64 bytes made on its own does not, until its .buffer is read).
 */
function inlineOk(d: string): boolean {
  if (d.length > INLINE_BYTES) return false;
  for (let i = 0; i < d.length; i++) if (d.charCodeAt(i) > 0xff) return false;
  return true;
}

/** A batch's data, checked: an ArrayBuffer, an inline string (inlineOk) or null. */
type Data = ArrayBuffer | string | null;

function dataLength(d: ArrayBuffer | string): number {
  return typeof d === "string" ? d.length : d.byteLength;
}

/**
 * The `size` bytes at `at` of a batch's data (checked to be within it):
 * a view of the buffer, or the inline characters copied into bytes of
 * their own.
 */
function bytesAt(d: ArrayBuffer | string, at: number, size: number): Uint8Array {
  if (typeof d !== "string") return new Uint8Array(d, at, size);
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = d.charCodeAt(at + i);
  return out;
}

/** Whether a port message is a batch (then it is read by readClientBatch / readServerBatch). */
export function isBatch(v: unknown): v is unknown[] {
  return isArray(v);
}

/** Collects items; `take` makes the batch and starts a new one. */
class Writer {
  words: number[] = [];
  extras: unknown[] = [];
  items = 0;

  protected extra(v: unknown): number {
    this.extras.push(v);
    return this.extras.length - 1;
  }

  take(data: ArrayBuffer | string | null): Batch {
    const b: Batch = [this.words, data, this.extras.length ? this.extras : null];
    this.words = [];
    this.extras = [];
    this.items = 0;
    return b;
  }
}

/** The serving side's items. */
export class ServerWriter extends Writer {
  done(id: number, value: unknown): void {
    this.items++;
    if (value === undefined) this.words.push(DONE, id, UNDEFINED);
    else if (value === null) this.words.push(DONE, id, NULL);
    else if (isSendResult(value)) this.words.push(SENT, id, value.errors.length);
    else this.words.push(DONE, id, this.extra(value));
  }

  fail(id: number, code: string, message: string): void {
    this.items++;
    this.words.push(FAIL, id, this.extra(code));
    this.extras.push(message);
  }

  ended(code: string, message: string): void {
    this.items++;
    this.words.push(ENDED, this.extra(code));
    this.extras.push(message);
  }

  /**
   * A push: its payload at `at` of the batch's data (-1: none), or, when
   * `own` is a buffer, the first `size` bytes of that buffer (an OWN item;
   * the caller transfers it).
   */
  push(type: MessageType, destination: number, cont: boolean, at: number, size: number, handles: ArrayLike<number>,
       objects: unknown[] | null, errors: [number, string, string][] | null, own: ArrayBuffer | null = null): void {
    this.items++;
    const w = this.words;
    if (own !== null) w.push(OWN, MESSAGE_TYPES.indexOf(type), destination, cont ? 1 : 0, this.extra(own), size, handles.length);
    else w.push(PUSH, MESSAGE_TYPES.indexOf(type), destination, cont ? 1 : 0, at, size, handles.length);
    for (let i = 0; i < handles.length; i++) w.push(handles[i]);
    w.push(objects ? this.extra([objects, errors ?? []]) : -1);
  }
}

function isSendResult(v: unknown): v is { errors: unknown[] } {
  if (v === SENT_ONE) return true; // a send to one destination: the one result a local Peer's send shares
  if (typeof v !== "object" || v === null) return false;
  const keys = Object.keys(v);
  if (keys.length !== 1 || keys[0] !== "errors") return false;
  const e = (v as { errors: unknown }).errors;
  if (!isArray(e)) return false;
  for (let i = 0; i < e.length; i++) if (e[i] !== null) return false;
  return true;
}

/**
 * The plugin's items. A send's payload is copied at the call into the
 * batch's data, so the caller may change its bytes as soon as send()
 * returns. The first payload of a batch gets a buffer of its exact size (a
 * lone call, the common case, posts no spare byte); more grow it by
 * doubling. The buffer is transferred with the batch, unless the batch's
 * bytes go inline (INLINE_BYTES): then it is kept for the next one.
 */
export class ClientWriter extends Writer {
  #data: Uint8Array | null = null;
  #used = 0;
  /** Buffers to give back with the next batch (not items: they make no post of their own). */
  #spares: ArrayBuffer[] = [];

  /**
   * Gives `b` back with the next batch, if there is room (MAX_SPARES) and it
   * is not empty; whether it was kept.
   */
  spare(b: ArrayBuffer): boolean {
    if (this.#spares.length >= MAX_SPARES || !plainBuffer(b) || this.#spares.includes(b)) return false;
    this.#spares.push(b);
    return true;
  }

  /** Room for `size` more bytes of data; returns where they go. */
  reserve(size: number): { into: Uint8Array; at: number } {
    let d = this.#data;
    const at = this.#used;
    if (!d || at + size > d.length) {
      const grown = new Uint8Array(d ? Math.max(2 * d.length, at + size) : size);
      if (d && at) grown.set(d.subarray(0, at));
      this.#data = d = grown;
    }
    this.#used = at + size;
    return { into: d, at };
  }

  /** A call; `at`/`size`: its payload, already written to reserve()'s bytes (at = -1: none). */
  call(id: number, op: CallOp, args: unknown[] | null, at = -1, size = 0): void {
    this.items++;
    if (op === "send" && args && args.length === 1 && typeof args[0] === "number") {
      this.words.push(SEND, id, args[0], at, size);
      return;
    }
    this.words.push(CALL, id, CALL_OPS.indexOf(op), at, size, args ? this.extra(args) : -1);
  }

  credit(messages: number, bytes: number, objects: number): void {
    this.items++;
    this.words.push(CREDIT, messages, bytes, objects);
  }

  pong(): void {
    this.items++;
    this.words.push(PONG);
  }

  /**
   * The batch, its data the bytes written so far, and what it transfers: a
   * few bytes go inline, and the buffer stays for the next batch; more go
   * in the buffer, which is transferred.
   */
  takeAll(): { batch: Batch; transfer: ArrayBuffer[] } {
    const d = this.#data, used = this.#used;
    this.#used = 0;
    const transfer = this.#takeSpares();
    if (!d || used <= INLINE_BYTES) return { batch: this.take(used ? inlineData(d!, used) : null), transfer };
    this.#data = null;
    const data = d.buffer as ArrayBuffer;
    transfer.push(data);
    return { batch: this.take(data), transfer };
  }

  /**
   * The spares as a SPARE item, and the list to transfer (a new one). One
   * the plugin has transferred elsewhere meanwhile (released, then sent on)
   * is left out: a detached buffer would make the port refuse the batch.
   */
  #takeSpares(): ArrayBuffer[] {
    const s = this.#spares;
    if (s.length === 0) return [];
    this.#spares = [];
    const live: ArrayBuffer[] = [];
    for (const b of s) if (b.byteLength > 0) live.push(b);
    if (live.length) this.words.push(SPARE, this.extra(live));
    return live.slice();
  }
}

/** The three slots of a batch, checked; or why not. */
function frame(v: unknown[], maxWords: number):
  { ok: true; words: unknown[]; data: Data; extras: unknown[] } | { ok: false; reason: string } {
  if (v.length !== 3) return { ok: false, reason: "batch: must be [words, data, extras]" };
  const [words, data, extras] = v;
  if (!isArray(words) || words.length > maxWords) {
    return { ok: false, reason: `batch: words must be an array of at most ${maxWords} numbers` };
  }
  const bytes = typeof data === "string" ? (inlineOk(data) ? data : null)
    : data === null || data instanceof ArrayBuffer ? data : null;
  if (bytes === null && data !== null) {
    return { ok: false, reason: `batch: data must be an ArrayBuffer, a string of at most ${INLINE_BYTES} bytes, or null` };
  }
  if (extras !== null && !isArray(extras)) return { ok: false, reason: "batch: extras must be an array or null" };
  return { ok: true, words, data: bytes, extras: extras ?? [] };
}

/** A word that must be an integer within [min, max]. */
function int(v: unknown, min: number, max: number): number | null {
  return typeof v === "number" && isInteger(v) && v >= min && v <= max ? v : null;
}

function text(v: unknown): string | null {
  return typeof v === "string" ? (v.length > MAX_TEXT ? v.slice(0, MAX_TEXT) : v) : null;
}

const MAX_COUNT = 0x7fffffff;
const MAX_ID = Number.MAX_SAFE_INTEGER;

/**
 * A plugin's batch as messages, in order. A call item that is well formed
 * but bad inside is a refusal with its id (answered EINVAL); an item that
 * breaks the form ends the list with a refusal without an id (the serving
 * ends). Never throws.
 */
export function readClientBatch(v: unknown[]): Read<ClientMessage>[] {
  const f = frame(v, MAX_BATCH * MAX_CALL_WORDS);
  if (!f.ok) return [{ ok: false, reason: f.reason, id: null }];
  const { words, data, extras } = f;
  const out: Read<ClientMessage>[] = [];
  const broken = (why: string) => { out.push({ ok: false, reason: `batch: ${why}`, id: null }); return out; };
  // buffers given back, all SPARE items together, and whether a call carries objects (see spares())
  let given: Set<ArrayBuffer> | null = null; // made by the first SPARE item: most batches have none
  let withObjects = false;
  for (let i = 0; i < words.length;) {
    if (out.length >= MAX_BATCH) return broken(`more than ${MAX_BATCH} items`);
    switch (words[i]) {
      case CALL: {
        if (i + 6 > words.length) return broken("a call cut short");
        const id = int(words[i + 1], 0, MAX_ID), op = int(words[i + 2], 0, CALL_OPS.length - 1);
        const at = int(words[i + 3], -1, MAX_COUNT), size = int(words[i + 4], 0, MAX_COUNT);
        const a = int(words[i + 5], -1, extras.length - 1);
        i += 6;
        if (id === null) return broken("a call's id must be an integer from 0 to 2^53 − 1");
        if (op === null || at === null || size === null || a === null) {
          out.push({ ok: false, reason: "call: bad operation, payload or arguments", id });
          continue;
        }
        const name = CALL_OPS[op];
        const args = a < 0 ? [] : denseArgs(extras[a]);
        if (!args) {
          out.push({ ok: false, reason: `${name}: args must be a dense array of at most ${MAX_ARGS} entries`, id });
          continue;
        }
        if (!withObjects) withObjects = carriesObjects(args);
        if (at >= 0) {
          if (name !== "send" || (size > 0 && (data === null || at + size > dataLength(data)))) {
            out.push({ ok: false, reason: `${name}: bad payload`, id });
            continue;
          }
          while (args.length < 2) args.push(undefined);
          args[1] = size > 0 ? bytesAt(data!, at, size) : new Uint8Array(0);
        }
        out.push({ ok: true, message: { t: "call", id, op: name, args } });
        continue;
      }
      case SEND: {
        if (i + 5 > words.length) return broken("a send cut short");
        const id = int(words[i + 1], 0, MAX_ID), to = words[i + 2];
        const at = int(words[i + 3], -1, MAX_COUNT), size = int(words[i + 4], 0, MAX_COUNT);
        i += 5;
        if (id === null) return broken("a call's id must be an integer from 0 to 2^53 − 1");
        if (typeof to !== "number" || at === null || size === null ||
            (at >= 0 && size > 0 && (data === null || at + size > dataLength(data)))) {
          out.push({ ok: false, reason: "send: bad destination or payload", id });
          continue;
        }
        const payload = at < 0 ? undefined : size > 0 ? bytesAt(data!, at, size) : new Uint8Array(0);
        out.push({ ok: true, message: { t: "call", id, op: "send", args: payload === undefined ? [to] : [to, payload] } });
        continue;
      }
      case CREDIT: {
        if (i + 4 > words.length) return broken("a credit cut short");
        const messages = int(words[i + 1], 0, MAX_COUNT), bytes = int(words[i + 2], 0, MAX_COUNT);
        const objects = int(words[i + 3], 0, MAX_COUNT);
        i += 4;
        if (messages === null || bytes === null || objects === null) {
          return broken("credit: messages, bytes and objects must be integers from 0 to 2^31 − 1");
        }
        out.push({ ok: true, message: { t: "credit", messages, bytes, objects } });
        continue;
      }
      case PONG:
        i += 1;
        out.push({ ok: true, message: { t: "pong" } });
        continue;
      case SPARE: {
        const e = int(words[i + 1], 0, extras.length - 1);
        i += 2;
        const buffers = e === null ? null : spares(extras[e], given ??= new Set());
        if (buffers === null) {
          return broken(`spare: must name an array of at most ${MAX_SPARES} distinct, non-empty, non-resizable ` +
            "ArrayBuffers, not given back before in this batch");
        }
        out.push({ ok: true, message: { t: "spare", buffers } });
        continue;
      }
      default:
        return broken(`unknown item kind ${typeof words[i] === "number" ? words[i] : typeof words[i]}`);
    }
  }
  // A port message is one structured clone: an object that appears twice in it is one object here. A
  // buffer given back that is also a sent object would be the receiver's object and a spare at once
  // (a later push would fill it and take it away), so a batch that gives buffers back carries no
  // call with objects; a RemotePeer posts such calls alone, and buffers with other items only.
  if (given !== null && given.size && withObjects) {
    return [{ ok: false, reason: "batch: spare: a batch that gives buffers back carries no call with objects", id: null }];
  }
  // nor its own data: a push made by a call of the batch (recv) could fill it before a send reads it
  if (given !== null && data !== null && typeof data !== "string" && given.has(data)) {
    return [{ ok: false, reason: "batch: spare: a batch does not give back its own data", id: null }];
  }
  return out;
}

/** Whether a call's arguments have an options object that names objects (a send's, the one place they are kept). */
function carriesObjects(args: unknown[]): boolean {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a === "object" && a !== null && !isArray(a) && Object.prototype.hasOwnProperty.call(a, "objects")) return true;
  }
  return false;
}

/**
 * Whether `b` may go back and carry pushes: a non-empty ArrayBuffer (not a
 * SharedArrayBuffer, which is no ArrayBuffer) that cannot be resized.
 */
function plainBuffer(b: unknown): b is ArrayBuffer {
  return b instanceof ArrayBuffer && b.byteLength > 0 && (b as { resizable?: boolean }).resizable !== true;
}

/**
 * A SPARE item's buffers: a dense array of at most MAX_SPARES plain
 * ArrayBuffers (copied), none of them in `given` (added to it), or null.
 */
function spares(v: unknown, given: Set<ArrayBuffer>): ArrayBuffer[] | null {
  if (!isArray(v) || v.length > MAX_SPARES) return null;
  const out: ArrayBuffer[] = new Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const b = v[i];
    // a structured clone: no getter of the plugin's runs
    if (!plainBuffer(b)) return null;
    if (given.has(b)) return null;
    given.add(b);
    out[i] = b;
  }
  return out;
}

/** A call's arguments: a dense array of at most MAX_ARGS entries (copied), or null. */
function denseArgs(v: unknown): unknown[] | null {
  if (!isArray(v) || v.length > MAX_ARGS) return null;
  const out: unknown[] = new Array(v.length);
  for (let i = 0; i < v.length; i++) {
    if (!(i in v)) return null;
    out[i] = v[i];
  }
  return out;
}

/**
 * A serving side's batch as messages, in order, or the reason it is
 * refused (the plugin then takes the serving side for gone). Never throws.
 * A push whose payload is the only one in the batch's buffer keeps the
 * buffer (`own`: it goes back when the message is released); with several,
 * each is copied out and the buffer is `spare`, to be given back at once.
 */
export function readServerBatch(v: unknown[]):
  { ok: true; messages: ServerMessage[]; spare: ArrayBuffer | null } | { ok: false; reason: string } {
  const f = frame(v, Number.MAX_SAFE_INTEGER);
  if (!f.ok) return f;
  const { words, data, extras } = f;
  const out: ServerMessage[] = [];
  /** The first push with bytes in the buffer (it keeps the buffer if no other has any), and whether another has. */
  let sole: Extract<ServerMessage, { t: "push" }> | null = null, shared = false;
  /** The buffers of OWN items (no object or answer of the batch may reach them: checked at the end). */
  let owned: Set<ArrayBuffer> | null = null;
  const broken = (why: string) => ({ ok: false as const, reason: `batch: ${why}` });
  const pair = (e: number | null) => {
    if (e === null || e + 1 >= extras.length) return null;
    const code = text(extras[e]), message = text(extras[e + 1]);
    return code === null || message === null ? null : { code, message };
  };
  for (let i = 0; i < words.length;) {
    if (out.length >= MAX_BATCH) return broken(`more than ${MAX_BATCH} items`);
    switch (words[i]) {
      case DONE: case SENT: {
        // a send's result has one entry per destination, and a send has at most CALL_BOUNDS.destinations
        const id = int(words[i + 1], 0, MAX_ID);
        const x = int(words[i + 2], words[i] === SENT ? 0 : NULL, words[i] === SENT ? CALL_BOUNDS.destinations : MAX_COUNT);
        if (id === null || x === null) return broken("a bad answer");
        if (words[i] === SENT) {
          out.push({ t: "done", id, value: { errors: new Array(x).fill(null) } });
        } else {
          if (x >= extras.length) return broken("a bad answer");
          out.push({ t: "done", id, value: x === UNDEFINED ? undefined : x === NULL ? null : extras[x] });
        }
        i += 3;
        continue;
      }
      case FAIL: {
        const id = int(words[i + 1], 0, MAX_ID), e = pair(int(words[i + 2], 0, MAX_COUNT));
        if (id === null || e === null) return broken("a bad failure");
        out.push({ t: "fail", id, code: e.code, message: e.message });
        i += 3;
        continue;
      }
      case ENDED: {
        const e = pair(int(words[i + 1], 0, MAX_COUNT));
        if (e === null) return broken("a bad end");
        out.push({ t: "ended", code: e.code, message: e.message });
        i += 2;
        continue;
      }
      case PING:
        out.push({ t: "ping" });
        i += 1;
        continue;
      case PUSH: case OWN: {
        const own = words[i] === OWN;
        const type = int(words[i + 1], 0, MESSAGE_TYPES.length - 1), destination = words[i + 2];
        const cont = int(words[i + 3], 0, 1), size = int(words[i + 5], 0, MAX_COUNT);
        // PUSH: where its bytes are in the batch's data (-1: none); OWN: the index of its buffer in extras
        const at = own ? int(words[i + 4], 0, extras.length - 1) : int(words[i + 4], -1, MAX_COUNT);
        // a server that lies about its lists must not freeze the plugin's thread
        const n = int(words[i + 6], 0, CALL_BOUNDS.handles);
        if (type === null || typeof destination !== "number" || cont === null || at === null || size === null || n === null) {
          return broken("a bad push");
        }
        if (i + 8 + n > words.length) return broken("a push cut short");
        let payload: Uint8Array | null = null, inBuffer = false;
        if (own) {
          const b = extras[at];
          if (!plainBuffer(b) || b === data || size > b.byteLength || owned?.has(b)) {
            return broken("an own buffer must be a non-empty ArrayBuffer of at least its payload's size, used once");
          }
          (owned ??= new Set()).add(b);
          payload = new Uint8Array(b, 0, size);
        } else if (at >= 0 && size === 0) {
          payload = new Uint8Array(0);
        } else if (at >= 0) {
          if (data === null || at + size > dataLength(data)) return broken("a push's payload is not in the batch's data");
          payload = bytesAt(data, at, size);
          inBuffer = typeof data !== "string";
          // a payload that shares the buffer gets one of its own: the plugin may transfer a payload's buffer
          if (inBuffer && sole !== null) {
            if (!shared) sole.payload = sole.payload!.slice();
            shared = true;
            payload = payload.slice();
          }
        }
        const handles: number[] = n === 0 ? NONE : new Array(n);
        for (let k = 0; k < n; k++) {
          const h = words[i + 7 + k];
          if (typeof h !== "number") return broken("a push's handle is not a number");
          handles[k] = h;
        }
        const o = int(words[i + 7 + n], -1, extras.length - 1);
        if (o === null) return broken("a push's objects are not in the batch");
        let objects: unknown[] = NONE, errors: [number, string, string][] = NONE;
        if (o >= 0) {
          const pairOf = extras[o];
          if (!isArray(pairOf) || pairOf.length !== 2 || !isArray(pairOf[0]) || !isArray(pairOf[1])) {
            return broken("a push's objects are malformed");
          }
          objects = pairOf[0];
          errors = pairOf[1] as [number, string, string][];
          if (objects.length > CALL_BOUNDS.objects || errors.length > objects.length) {
            return broken("a push with more objects or errors than a message can carry");
          }
        }
        const push: Extract<ServerMessage, { t: "push" }> = {
          t: "push", type: MESSAGE_TYPES[type], destination, continue: cont === 1, payload, handles, objects, errors, own,
        };
        if (inBuffer && sole === null) sole = push;
        out.push(push);
        i += 8 + n;
        continue;
      }
      default:
        return broken(`unknown item kind ${typeof words[i] === "number" ? words[i] : typeof words[i]}`);
    }
  }
  // one structured clone: a buffer that goes back on release (an own buffer, or the data a sole payload keeps
  // or that goes back at once) must not be reachable from any object or answer of the batch, at any depth
  let kept = owned;
  if (data instanceof ArrayBuffer && (sole !== null || shared)) (kept ??= new Set()).add(data);
  if (kept !== null) {
    const roots: unknown[] = [];
    for (const m of out) {
      if (m.t === "push") for (const o of m.objects) roots.push(o); // each as the serving side checked it (mustStay)
      else if (m.t === "done" && typeof m.value === "object" && m.value !== null) roots.push(m.value);
    }
    if (roots.length && reaches(roots, kept)) return broken("a payload's buffer is also reachable from an object or answer of the batch");
  }
  if (sole !== null && !shared) sole.own = true;
  return { ok: true, messages: out, spare: shared ? data as ArrayBuffer : null };
}

/**
 * Whether a buffer of `kept` (or a view on one) is reachable from one of
 * `roots`, structured clones (walking them runs no code), each walked on its
 * own: a root too large to walk counts as reaching one.
 */
function reaches(roots: unknown[], kept: Set<ArrayBuffer>): boolean {
  const check = (v: object) => {
    const b = v instanceof ArrayBuffer ? v : ArrayBuffer.isView(v) ? viewBuffer(v) : null;
    return b === null ? "" : kept.has(b as ArrayBuffer) ? "reached" : LEAF;
  };
  for (const root of roots) if (search(root, check) !== "") return true;
  return false;
}
