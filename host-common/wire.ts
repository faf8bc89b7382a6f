/**
 * DOC: the wire protocol of a served peer (serve.ts ↔ remote.ts).
 *
 * A served peer is one `Peer` of the trusted side, driven by a plugin over a
 * `MessagePort`. Every port message is a plain object whose `t` says what it
 * is; everything else in it is structured-cloneable data (numbers, strings,
 * arrays, plain objects, ArrayBuffers, and a message's host objects: ports
 * and streams in the transfer list, see `isTransferable`).
 *
 * Batches. The messages of the hot path (calls, credit, pongs; answers,
 * pushes, `ended`, pings) travel in batches, port messages that are arrays
 * of numbers with the payloads in one ArrayBuffer (batch.ts has the form
 * and why). Below, each is shown as the object it is read into. The other
 * messages (hello, welcome, close, ping) are posted alone, as objects; a
 * call, credit, pong or push may also be posted alone as an object (tests
 * and tools do).
 *
 *   plugin → serving side
 *     { t: "hello", version, window: { messages, bytes, objects } }   first, once
 *     { t: "call", id, op, args }       op ∈ PEER_METHODS except "close"; id: unique while unanswered
 *     { t: "credit", messages, bytes, objects }   gives back flow-control credit for consumed pushes
 *     { t: "pong" }                     answers a ping
 *     { t: "spare", buffers }           ArrayBuffers the plugin is done with, for later pushes
 *                                       (batches only: batch.ts, "Buffers go back")
 *     { t: "close", reason }            the plugin lets go (= RemotePeer.close())
 *
 *   serving side → plugin
 *     { t: "welcome", version, window, liveness }
 *                                       first, once: the window as clamped by the serving side, and
 *                                       how often it pings (ms; 0: never)
 *     { t: "done", id, value }          a call's result (recv with seed: the seed as a push's fields
 *                                       with its own `payload` ArrayBuffer, or null; a non-seed recv:
 *                                       null, after pushing what is ready)
 *     { t: "fail", id, code, message }  a call's Bus1Error
 *     { t: "push", type, destination, continue, payload, handles, objects, errors }
 *                                       a received message; in a batch its payload is in the
 *                                       batch's data, or a large one in a buffer of its own (batch.ts
 *                                       OWN) (posted alone: `payload`, an ArrayBuffer, or
 *                                       null for a notification); errors: [index, code, message]
 *                                       for objects that arrive as Bus1Error; absent lists are empty
 *     { t: "ended", code, message }     the peer can receive no more (ESHUTDOWN, EBADF)
 *     { t: "ping" }                     liveness check
 *     { t: "close", reason }            the serving side ends (the port is closed after it)
 *
 * Versions: `hello` and `welcome` keep this shape in every version and are
 * posted alone, so a mismatch is always told apart from garbage. The serving
 * side answers a hello of another version with its own welcome and closes;
 * the client then fails `connect` with EINVAL naming both versions.
 *
 * Validation (serving side): `readClientMessage` turns any value into a typed
 * message or a reason to refuse it, reads each field once (own data
 * properties only: no getter runs), and never throws. It checks the shape,
 * the operation name, that `args` is a short dense array and that numbers are
 * in range; the arguments themselves are checked by the local Peer's own
 * methods (check.ts), so a served peer and a local one give the same errors.
 */

import { PEER_METHODS, type PeerMethod } from "./api.js";

/** Version of this protocol; bumped by any change a peer of the other version would misread. */
export const WIRE_VERSION = 5;

/** Most items in one batch (a longer one breaks the protocol). */
export const MAX_BATCH = 4096;

/**
 * Calls a plugin may have waiting for an answer at once. RemotePeer refuses
 * one more with EAGAIN; the serving side performs at most this many between
 * two posts of its answers (a client that waits for answers never has more)
 * and refuses the rest with EAGAIN (serve.ts, "Bounds").
 */
export const MAX_PENDING_CALLS = 1024;

/**
 * The counts check.ts bounds a call by (SPEC §2: destinations, vecs,
 * handles, objects per message; nodes per destroy). The core exports them
 * too; a client has no core, so they are restated here.
 */
export const CALL_BOUNDS = Object.freeze({
  destinations: 65536, vecs: 1024, handles: 1 << 20, objects: 256, destroy: 1 << 20,
});

/**
 * Offsets a plugin sees are aliases from here up, never bus addresses (those
 * are below 2^31): 2^32 for its seed, 2^32 + 8·n for the n-th data message
 * pushed on a connection.
 */
export const OFFSET_ALIAS_BASE = 2 ** 32;

/** Flow-control window: what may be pushed and not yet given back by credit. */
export interface Window {
  messages: number;
  bytes: number;
  objects: number;
}

/** Operations a plugin calls (close travels as its own message). */
export type CallOp = Exclude<PeerMethod, "close">;

export const CALL_OPS: readonly CallOp[] = PEER_METHODS.filter((m): m is CallOp => m !== "close");

/** Most arguments any call takes (send: destinations, payload, options). */
const MAX_ARGS = 3;
/** Longest reason or message carried (longer ones are cut). */
export const MAX_TEXT = 1024;
/** Largest count in a window or a credit (2^31 − 1). */
const MAX_COUNT = 0x7fffffff;

export type ClientMessage =
  | { t: "hello"; version: number; window: Window | null }
  | { t: "call"; id: number; op: CallOp; args: unknown[] }
  | { t: "credit"; messages: number; bytes: number; objects: number }
  | { t: "pong" }
  | { t: "spare"; buffers: ArrayBuffer[] }
  | { t: "close"; reason: string };

export type ServerMessage =
  | { t: "welcome"; version: number; window: Window; liveness: number }
  | { t: "done"; id: number; value: unknown }
  | { t: "fail"; id: number; code: string; message: string }
  | { t: "push"; type: string; destination: number; continue: boolean; payload: Uint8Array | null;
      handles: number[]; objects: unknown[]; errors: [number, string, string][];
      /** The payload's buffer is its own alone (a batch's whole buffer, or an OWN item's): it may go back on release. */
      own?: boolean }
  | { t: "ended"; code: string; message: string }
  | { t: "ping" }
  | { t: "close"; reason: string };

/** A validated message, or why it was refused (and the call's id, when it could be read, for an error reply). */
export type Read<T> = { ok: true; message: T } | { ok: false; reason: string; id: number | null };

const getOwn = Object.getOwnPropertyDescriptor;
const isArray = Array.isArray;
const getProto = Object.getPrototypeOf;

/** The own data property `key` of `v`, or undefined; never runs a getter, never throws. */
function field(v: object, key: string): unknown {
  try {
    const d = getOwn(v, key);
    return d && "value" in d ? d.value : undefined;
  } catch {
    return undefined; // a revoked Proxy (only possible for a port in the same realm)
  }
}

function isRecord(v: unknown): v is object {
  if (typeof v !== "object" || v === null) return false;
  try {
    if (isArray(v)) return false;
    const p = getProto(v);
    return p === Object.prototype || p === null;
  } catch {
    return false;
  }
}

function isCount(v: unknown, max = MAX_COUNT): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max;
}

function text(v: unknown): string | null {
  return typeof v === "string" ? (v.length > MAX_TEXT ? v.slice(0, MAX_TEXT) : v) : null;
}

const refuse = (reason: string, id: number | null = null): Read<never> => ({ ok: false, reason, id });

/**
 * `v` as a dense array of at most `max` entries (copied), or null. Only a
 * genuine array counts; a hole or a getter is refused.
 */
function denseArray(v: unknown, max: number): unknown[] | null {
  try {
    if (!isArray(v)) return null;
    const n = field(v, "length");
    if (!isCount(n, max)) return null;
    const out: unknown[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const d = getOwn(v, i);
      if (!d || !("value" in d)) return null;
      out[i] = d.value;
    }
    return out;
  } catch {
    return null;
  }
}

/** The counts { messages, bytes, objects } of a record (a window, a credit), or undefined. */
function readCounts(v: object): Window | undefined {
  const messages = field(v, "messages"), bytes = field(v, "bytes"), objects = field(v, "objects");
  if (!isCount(messages) || !isCount(bytes) || !isCount(objects)) return undefined;
  return { messages, bytes, objects };
}

/** A window: null when absent, undefined when malformed. */
function readWindow(v: unknown): Window | null | undefined {
  if (v === undefined || v === null) return null;
  return isRecord(v) ? readCounts(v) : undefined;
}

function unknownType(t: unknown): Read<never> {
  return refuse(`unknown message type ${typeof t === "string" ? JSON.stringify(t.slice(0, 40)) : typeof t}`);
}

/** Validates a message of the plugin (serving side). Never throws. */
export function readClientMessage(v: unknown): Read<ClientMessage> {
  if (!isRecord(v)) return refuse("a port message must be a plain object");
  const t = field(v, "t");
  switch (t) {
    case "call": {
      const id = field(v, "id");
      if (!isCount(id, Number.MAX_SAFE_INTEGER)) return refuse("call: id must be an integer from 0 to 2^53 − 1");
      const op = field(v, "op");
      if (typeof op !== "string" || !(CALL_OPS as readonly string[]).includes(op)) {
        return refuse(`call: unknown operation ${typeof op === "string" ? JSON.stringify(op.slice(0, 40)) : typeof op}`, id);
      }
      const args = denseArray(field(v, "args"), MAX_ARGS);
      if (!args) return refuse(`${op}: args must be a dense array of at most ${MAX_ARGS} entries`, id);
      return { ok: true, message: { t, id, op: op as CallOp, args } };
    }
    case "credit": {
      const c = readCounts(v);
      if (!c) return refuse("credit: messages, bytes and objects must be integers from 0 to 2^31 − 1");
      return { ok: true, message: { t, ...c } };
    }
    case "hello": {
      const version = field(v, "version");
      if (!isCount(version)) return refuse("hello: version must be a non-negative integer");
      const window = readWindow(field(v, "window"));
      if (window === undefined) return refuse("hello: window must be { messages, bytes, objects } of counts");
      return { ok: true, message: { t, version, window } };
    }
    case "pong":
      return { ok: true, message: { t } };
    case "close":
      return { ok: true, message: { t, reason: text(field(v, "reason")) ?? "the plugin closed its peer" } };
    default:
      return unknownType(t);
  }
}

/**
 * Validates a message of the serving side (client side). The serving side
 * is trusted, but a port may be connected to anything: what is not a
 * message of this protocol is refused, never thrown on.
 */
export function readServerMessage(v: unknown): Read<ServerMessage> {
  if (!isRecord(v)) return refuse("a port message must be a plain object");
  const t = field(v, "t");
  switch (t) {
    case "welcome": {
      const version = field(v, "version");
      if (!isCount(version)) return refuse("welcome: version must be a non-negative integer");
      const window = readWindow(field(v, "window"));
      const liveness = field(v, "liveness");
      return { ok: true, message: { t, version, window: window ?? { messages: 0, bytes: 0, objects: 0 },
        liveness: isCount(liveness) ? liveness : 0 } };
    }
    case "done": case "fail": {
      const id = field(v, "id");
      if (!isCount(id, Number.MAX_SAFE_INTEGER)) return refuse(`${t}: bad id`);
      if (t === "done") return { ok: true, message: { t, id, value: field(v, "value") } };
      const code = text(field(v, "code")), message = text(field(v, "message"));
      if (code === null || message === null) return refuse("fail: code and message must be strings", id);
      return { ok: true, message: { t, id, code, message } };
    }
    case "push": return readPush(v);
    case "ended": {
      const code = text(field(v, "code")), message = text(field(v, "message"));
      if (code === null || message === null) return refuse("ended: code and message must be strings");
      return { ok: true, message: { t, code, message } };
    }
    case "ping":
      return { ok: true, message: { t } };
    case "close":
      return { ok: true, message: { t, reason: text(field(v, "reason")) ?? "the serving side closed" } };
    default:
      return unknownType(t);
  }
}

/** A list of a push: absent is empty. */
function list(v: object, key: string): unknown[] | null {
  const l = field(v, key);
  return l === undefined ? [] : isArray(l) ? l : null;
}

/** A push posted alone, or a seed: the payload is an ArrayBuffer of its own, or null. */
function readPush(v: object): Read<ServerMessage> {
  const type = field(v, "type"), destination = field(v, "destination"), cont = field(v, "continue");
  const handles = list(v, "handles"), objects = list(v, "objects"), errors = list(v, "errors");
  if (type !== "data" && type !== "node-destroy" && type !== "node-release") return refuse("push: bad type");
  if (typeof destination !== "number" || typeof cont !== "boolean") return refuse("push: bad destination or continue");
  if (!handles || !objects || !errors) return refuse("push: bad handles, objects or errors");
  // a server that lies about its lists must not freeze the plugin's thread
  if (handles.length > CALL_BOUNDS.handles || objects.length > CALL_BOUNDS.objects || errors.length > objects.length) {
    return refuse("push: more handles, objects or errors than a message can carry");
  }
  const own = field(v, "payload");
  if (own !== null && !(own instanceof ArrayBuffer)) return refuse("push: payload must be an ArrayBuffer or null");
  const payload = own ? new Uint8Array(own) : null;
  return { ok: true, message: { t: "push", type, destination, continue: cont, payload, handles: handles as number[], objects,
    errors: errors as [number, string, string][] } };
}

const transferables: Function[] = [];
for (const name of ["MessagePort", "ReadableStream", "WritableStream", "TransformStream"]) {
  const c = (globalThis as Record<string, unknown>)[name];
  if (typeof c === "function") transferables.push(c as Function);
}

/**
 * Host objects that travel by transfer, either way (the JS analogue of
 * passing a file descriptor): ports and streams, which cannot be cloned.
 * Everything else is cloned; an ArrayBuffer too, since a receiver in the
 * sending thread shares it with its sender, and detaching it would take it
 * from the sender.
 */
export function isTransferable(v: unknown): v is Transferable {
  if (typeof v !== "object" || v === null) return false;
  for (const c of transferables) if (v instanceof c) return true;
  return false;
}

/** Whether `v` offers what the protocol uses of a MessagePort (PortLike). */
export function isPortLike(v: unknown): v is PortLike {
  if (typeof v !== "object" || v === null) return false;
  const p = v as Partial<PortLike>;
  return typeof p.postMessage === "function" && typeof p.addEventListener === "function" && typeof p.close === "function";
}

/** A port event's data, read without letting a getter throw (the event may come from a port-like object). */
export function eventData(e: { data: unknown }): unknown {
  try {
    return e && typeof e === "object" && "data" in e ? e.data : undefined;
  } catch {
    return undefined;
  }
}

/** What a MessagePort of any platform offers that the protocol uses. */
export interface PortLike {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  addEventListener(type: string, listener: (event: any) => void): void;
  removeEventListener(type: string, listener: (event: any) => void): void;
  start?(): void;
  close(): void;
}
