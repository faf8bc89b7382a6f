/**
 * Argument checks shared by every kind of peer: each turns what a caller
 * passed into a validated snapshot, before the core is entered.
 *
 * The rules, so that no argument can change under the core's feet:
 * - Every argument is read exactly once, here. A getter, a Proxy trap or a
 *   `valueOf` runs (if at all) while the snapshot is taken, never between two
 *   core calls of one operation or while the core holds a lock. A getter that
 *   calls the bus itself makes an ordinary call that completes before this one
 *   begins.
 * - Typed arrays are read from the engine's internal slots through the
 *   intrinsic getters captured when this module loads (`byteLength`, not the
 *   `length` property, which an own property, a subclass or a Proxy can fake).
 *   A Proxy is not a Uint8Array.
 * - Whatever throws while a snapshot is taken (a getter, a revoked Proxy)
 *   becomes a Bus1Error EINVAL naming the argument, with the original as its
 *   `cause`.
 * - Error messages describe values without reading them again (`describe`).
 *
 * Code that replaces builtins before this module loads is trusted like the
 * engine; replacing them afterwards changes nothing here, nor in the code
 * that runs while the core holds locks (the payload copy, object records),
 * which uses only the intrinsics captured below and plain indexed loops.
 */
import { Bus1Error, type ErrorCode } from "./errors.js";

// ---- intrinsics -------------------------------------------------------------------

const uncurry = <A extends unknown[], R>(f: (...args: A) => R) =>
  Function.prototype.call.bind(f) as unknown as (self: unknown, ...args: A) => R;

function getter(proto: object, key: PropertyKey): (self: unknown) => unknown {
  return uncurry(Object.getOwnPropertyDescriptor(proto, key)!.get! as () => unknown);
}

const U8 = Uint8Array;
const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
const typedArrayTag = getter(TypedArrayPrototype, Symbol.toStringTag) as (v: unknown) => string | undefined;
const typedArrayBuffer = getter(TypedArrayPrototype, "buffer") as (v: unknown) => ArrayBufferLike;
const typedArrayOffset = getter(TypedArrayPrototype, "byteOffset") as (v: unknown) => number;
const typedArrayLength = getter(TypedArrayPrototype, "byteLength") as (v: unknown) => number;
/** %TypedArray%.prototype.set, as `set(target, source, offset)`. */
export const typedArraySet = uncurry((TypedArrayPrototype as Uint8Array).set) as
  (target: Uint8Array, source: Uint8Array, offset?: number) => void;
/** The buffer and offset of a typed array, by the intrinsic getters. */
export const bufferOf = typedArrayBuffer, offsetOf = typedArrayOffset;
const dataViewBuffer = getter(DataView.prototype, "buffer") as (v: unknown) => ArrayBufferLike;
/** The buffer under any ArrayBuffer view (a typed array or a DataView), by the intrinsic getters. */
export function viewBuffer(v: ArrayBufferView): ArrayBufferLike {
  return typedArrayTag(v) !== undefined ? typedArrayBuffer(v) : dataViewBuffer(v);
}
/** A fixed-length view on `buffer` (the intrinsic constructor: no user code). */
export function viewOf(buffer: ArrayBufferLike, offset: number, length: number): Uint8Array {
  return new U8(buffer, offset, length);
}
const isArray = Array.isArray;
const objectKeys = Object.keys;
const abortSignalAborted = typeof AbortSignal === "function"
  ? getter(AbortSignal.prototype, "aborted") as (v: unknown) => boolean : null;

const U32_MAX = 0xffffffff;
/** The snapshot of absent options (shared: callers only read it). */
const NO_OPTIONS: Record<string, unknown> = Object.freeze(Object.create(null));

// ---- describing values -------------------------------------------------------------

/**
 * A short description of a value for an error message. It reads nothing
 * that could run code: no property, no Proxy trap, no `toString`.
 */
export function describe(v: unknown): string {
  switch (typeof v) {
    case "string": return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v);
    case "number": return Object.is(v, -0) ? "-0" : String(v);
    case "boolean": case "bigint": case "undefined": return String(v);
    case "symbol": return "a symbol";
    case "function": return "a function";
  }
  if (v === null) return "null";
  const tag = typedArrayTag(v);
  if (tag !== undefined) return `a ${tag} of ${typedArrayLength(v)} bytes`;
  try {
    if (isArray(v)) return "an array";
  } catch {
    return "a revoked Proxy";
  }
  return "an object";
}

/** Bus1Error `code` of `op` about `what`. */
export function fail(code: ErrorCode, op: string, what: string, cause?: unknown): Bus1Error {
  const e = Bus1Error.of(code, op, what);
  if (cause !== undefined) Object.defineProperty(e, "cause", { value: cause, configurable: true, writable: true });
  return e;
}

/** Runs `read` (which may run user code); anything it throws that is not a Bus1Error becomes EINVAL about `name`. */
export function reading<T>(op: string, name: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof Bus1Error) throw e;
    throw fail("EINVAL", op, `${name} could not be read (${errorText(e)})`, e);
  }
}

/** The message of a thrown value, read without running user code where possible. */
function errorText(e: unknown): string {
  if (e instanceof Error) {
    const d = Object.getOwnPropertyDescriptor(e, "message");
    if (d && typeof d.value === "string") return d.value;
  }
  return describe(e);
}

// ---- plain values -------------------------------------------------------------------

/** A snapshot of an options object: each of `keys` read once (absent ones left out), on a prototype-less object. */
export function readOptions(op: string, v: unknown, keys: readonly string[]): Record<string, unknown> {
  if (v === undefined) return NO_OPTIONS;
  const out: Record<string, unknown> = Object.create(null);
  if (typeof v !== "object" || v === null || isArrayChecked(op, "options", v)) {
    throw fail("EINVAL", op, `options must be an object, got ${describe(v)}`);
  }
  return reading(op, "options", () => {
    // an own key we do not know is a mistake; the known ones are read like a
    // dictionary's members (inherited ones count), each exactly once
    const present = objectKeys(v);
    for (let i = 0; i < present.length; i++) {
      const k = present[i];
      if (!keys.includes(k)) throw fail("EINVAL", op, `unknown option ${JSON.stringify(k)}`);
    }
    for (let i = 0; i < keys.length; i++) {
      const x = (v as Record<string, unknown>)[keys[i]];
      if (x !== undefined) out[keys[i]] = x;
    }
    return out;
  });
}

function isArrayChecked(op: string, name: string, v: unknown): boolean {
  try {
    return isArray(v);
  } catch (e) {
    throw fail("EINVAL", op, `${name} is a revoked Proxy`, e);
  }
}

export function readBoolean(op: string, name: string, v: unknown): boolean {
  if (v === undefined) return false;
  if (typeof v !== "boolean") throw fail("EINVAL", op, `${name} must be a boolean, got ${describe(v)}`);
  return v;
}

/** An integer in [min, max]. */
export function readInteger(op: string, name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw fail("EINVAL", op, `${name} must be an integer from ${min} to ${max}, got ${describe(v)}`);
  }
  return v;
}

export interface LimitsSnapshot {
  maxSlices?: number;
  maxHandles?: number;
  maxInflightBytes?: number;
  maxInflightObjects?: number;
}

export const LIMIT_KEYS = ["maxSlices", "maxHandles", "maxInflightBytes", "maxInflightObjects"] as const;

export function readLimits(op: string, v: unknown): LimitsSnapshot {
  const o = readOptions(op, v, LIMIT_KEYS);
  const limits: LimitsSnapshot = {};
  for (const k of LIMIT_KEYS) {
    if (o[k] !== undefined) limits[k] = readInteger(op, `limits.${k}`, o[k], 0, U32_MAX);
  }
  return limits;
}

/** A timeout in milliseconds: Infinity when absent. */
export function readTimeout(op: string, v: unknown): number {
  if (v === undefined) return Infinity;
  if (typeof v !== "number" || Number.isNaN(v) || v < 0) {
    throw fail("EINVAL", op, `timeoutMs must be a non-negative number, got ${describe(v)}`);
  }
  return v;
}

/** An AbortSignal or undefined (checked by its internal slots). */
export function readSignal(op: string, v: unknown): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (abortSignalAborted) {
    try {
      abortSignalAborted(v);
      return v as AbortSignal;
    } catch {
      // not an AbortSignal
    }
  }
  throw fail("EINVAL", op, `signal must be an AbortSignal, got ${describe(v)}`);
}

// ---- lists of handle IDs ------------------------------------------------------------

/** A list read once: the raw values (for error messages) and the IDs the core gets (NaN for a non-number). */
export interface IdList {
  readonly values: readonly unknown[];
  readonly ids: Float64Array;
}

const NO_VALUES: readonly unknown[] = Object.freeze([]);
const NO_IDS = new Float64Array(0);
export const NO_ID_LIST: IdList = Object.freeze({ values: NO_VALUES, ids: NO_IDS });

/**
 * A number or an array-like of numbers (`single` allows a lone number), read
 * once. More than `max` entries is `tooMany` (EMSGSIZE or EINVAL), said with
 * the count, before any entry is read.
 */
export function readIds(op: string, name: string, v: unknown, max: number, tooMany: ErrorCode,
                        single: boolean): IdList {
  if (single && typeof v === "number") return { values: [v], ids: Float64Array.of(v) };
  if (typeof v !== "object" || v === null) {
    throw fail("EINVAL", op, `${name} must be ${single ? "a handle ID or " : ""}an array of handle IDs, got ${describe(v)}`);
  }
  return reading(op, name, () => {
    const n = (v as ArrayLike<unknown>).length;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0) {
      throw fail("EINVAL", op, `${name} must be ${single ? "a handle ID or " : ""}an array of handle IDs, got ${describe(v)} with length ${describe(n)}`);
    }
    if (n > max) throw fail(tooMany, op, `${name}: ${n} entries, more than ${max}`);
    const values: unknown[] = new Array(n);
    const ids = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const x = (v as ArrayLike<unknown>)[i];
      values[i] = x;
      ids[i] = typeof x === "number" ? x : NaN;
    }
    return { values, ids };
  });
}

// ---- payloads -----------------------------------------------------------------------

/**
 * Byte length of a genuine Uint8Array (by its internal slots), or −1 for
 * anything else, a detached one included. Runs no user code.
 */
export function uint8Length(v: unknown): number {
  if (typeof v !== "object" || v === null || typedArrayTag(v) !== "Uint8Array") return -1;
  const n = typedArrayLength(v);
  return n === 0 && isDetached(v) ? -1 : n;
}

function isDetached(v: unknown): boolean {
  return isDetachedBuffer(typedArrayBuffer(v));
}

/** Whether `b` was detached (a view on it, even an empty one, cannot be made). Runs no user code. */
export function isDetachedBuffer(b: ArrayBufferLike): boolean {
  try {
    new U8(b, 0, 0);
    return false;
  } catch {
    return true;
  }
}

/** A payload read once: fixed-length views of the caller's bytes and their total. */
export interface Payload {
  readonly vecs: readonly Uint8Array[];
  /** Each vec's byte length, as counted. */
  readonly lengths: readonly number[];
  readonly size: number;
}

export const NO_PAYLOAD: Payload = Object.freeze({ vecs: Object.freeze([]), lengths: Object.freeze([]), size: 0 });

/**
 * A Uint8Array or an array of them. Each vec becomes a view of fixed length
 * on its buffer, made from its internal slots: what is copied is exactly what
 * was counted, whatever the caller's objects do later.
 */
export function readPayload(op: string, v: unknown, maxVecs: number): Payload {
  if (v === undefined) return NO_PAYLOAD;
  if (uint8Length(v) >= 0) {
    const view = fixedView(op, "payload", v);
    const n = typedArrayLength(view);
    return { vecs: [view], lengths: [n], size: n };
  }
  if (typeof v !== "object" || v === null || !isArrayChecked(op, "payload", v)) {
    throw fail("EINVAL", op, `payload must be a Uint8Array or an array of them, got ${describe(v)}`);
  }
  return reading(op, "payload", () => {
    const n = (v as unknown[]).length;
    if (n > maxVecs) throw fail("EMSGSIZE", op, `payload: ${n} vecs, more than ${maxVecs}`);
    const vecs: Uint8Array[] = new Array(n);
    const lengths: number[] = new Array(n);
    let size = 0;
    for (let i = 0; i < n; i++) {
      const x = (v as unknown[])[i];
      vecs[i] = fixedView(op, `payload[${i}]`, x);
      lengths[i] = typedArrayLength(vecs[i]);
      size += lengths[i];
    }
    return { vecs, lengths, size };
  });
}

/**
 * Throws EINVAL if a view of `payload` lost bytes since it was read (its
 * buffer shrank or was detached): the caller's getters ran after it, while
 * the rest of the arguments were read.
 */
export function payloadUnchanged(op: string, payload: Payload): void {
  const { vecs, lengths } = payload;
  for (let i = 0; i < vecs.length; i++) {
    if (uint8Length(vecs[i]) !== lengths[i]) {
      throw fail("EINVAL", op, `payload${vecs.length > 1 ? `[${i}]` : ""} changed while the arguments were read (its buffer shrank or was detached)`);
    }
  }
}

/**
 * The most bytes V8 keeps inside a typed array made on its own (a `new
 * Uint8Array(8)`, a small payload a reader made): such an array has no
 * ArrayBuffer until something reads its `.buffer`, and that read makes one,
 * at 0.3–1 µs here (Node 20), where copying its bytes costs 50–70 ns. Its
 * `byteOffset` is 0 and reading that makes nothing.
 */
export const IN_OBJECT_BYTES = 64;

/**
 * A fixed-length snapshot of the Uint8Array `v`, by its internal slots (no
 * user code runs): a view of its bytes, or for at most IN_OBJECT_BYTES a copy
 * of them (so its buffer is never made).
 */
function fixedView(op: string, name: string, v: unknown): Uint8Array {
  if (typeof v !== "object" || v === null || typedArrayTag(v) !== "Uint8Array") {
    throw fail("EINVAL", op, `${name} must be a Uint8Array, got ${describe(v)}`);
  }
  const n = typedArrayLength(v); // 0 when detached: the view below throws
  if (n > 0 && n <= IN_OBJECT_BYTES) {
    const copy = new U8(n);
    typedArraySet(copy, v as Uint8Array);
    return copy;
  }
  try {
    return new U8(typedArrayBuffer(v), typedArrayOffset(v), typedArrayLength(v));
  } catch (e) {
    throw fail("EINVAL", op, `${name} is detached`, e);
  }
}

// ---- objects ------------------------------------------------------------------------

/** An array of host values, read once (its entries are checked by the caller). */
export function readValues(op: string, name: string, v: unknown, max: number): unknown[] {
  if (typeof v !== "object" || v === null || !isArrayChecked(op, name, v)) {
    throw fail("EINVAL", op, `${name} must be an array, got ${describe(v)}`);
  }
  return reading(op, name, () => {
    const n = (v as unknown[]).length;
    if (n > max) throw fail("EMSGSIZE", op, `${name}: ${n} entries, more than ${max}`);
    const out: unknown[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = (v as unknown[])[i];
    return out;
  });
}

// ---- a send's arguments -------------------------------------------------------------

/** Bounds on the counts of one send (the core's, or CALL_BOUNDS where there is no core). */
export interface SendBounds {
  destinations: number;
  vecs: number;
  handles: number;
  objects: number;
}

/** The arguments of one send, read once, in the order every kind of peer reads them. */
export interface SendSnapshot {
  continue: boolean;
  seed: boolean;
  destinations: IdList;
  payload: Payload;
  /** The attached handles, or null when the option is absent. */
  handles: IdList | null;
  /** The host objects (not yet checked for what may travel), or null when the option is absent. */
  objects: unknown[] | null;
  /** Objects to move rather than clone (`transfer`, SPEC §9), or null when the option is absent. */
  transfer: unknown[] | null;
}

/** Reads `send`'s arguments (local and served peers alike: one set of checks, one order). */
export function readSend(op: string, destinations: unknown, payload: unknown, options: unknown,
                         bounds: SendBounds): SendSnapshot {
  const o = readOptions(op, options, ["handles", "objects", "continue", "seed", "transfer"]);
  const cont = readBoolean(op, "continue", o.continue);
  const seed = readBoolean(op, "seed", o.seed);
  const dsts = readIds(op, "destinations", destinations, bounds.destinations, "EMSGSIZE", true);
  if (seed) {
    if (dsts.ids.length) throw fail("EINVAL", op, `seed: a seed has no destinations, got ${dsts.ids.length}`);
    if (cont) throw fail("EINVAL", op, "continue: a seed is set, not sent, so continue has no meaning");
  }
  const body = readPayload(op, payload, bounds.vecs);
  const handles = o.handles === undefined ? null : readIds(op, "handles", o.handles, bounds.handles, "EMSGSIZE", false);
  const objects = o.objects === undefined ? null : readValues(op, "objects", o.objects, bounds.objects);
  const transfer = o.transfer === undefined ? null : readValues(op, "transfer", o.transfer, bounds.objects);
  return { continue: cont, seed, destinations: dsts, payload: body, handles, objects, transfer };
}

// ---- walking a structured clone ------------------------------------------------------

/** Most values `search` walks in one value (a larger one is a reason: it stays where it is). */
const SEARCH_LIMIT = 100_000;
const mapForEach = Function.prototype.call.bind(Map.prototype.forEach) as
  (m: Map<unknown, unknown>, f: (v: unknown, k: unknown) => void) => void;
const setForEach = Function.prototype.call.bind(Set.prototype.forEach) as (s: Set<unknown>, f: (v: unknown) => void) => void;
/** What `search`'s check returns for a value whose insides need no look. */
export const LEAF = "\0leaf";

/**
 * Walks `root` and what it holds at any depth (own enumerable properties,
 * an own `cause` even when it is not enumerable, as an Error's is and a
 * structured clone keeps, Map and Set entries, by the intrinsic methods),
 * each object once: the first reason `check` gives, or "". `check` returns a
 * reason, "" to look inside, or LEAF to go no deeper. More than SEARCH_LIMIT
 * objects is a reason, and so is a `cause` that is not enumerable and is an
 * accessor (what a clone would read from it cannot be known here). `live`:
 * `root` is a caller's own value, not a clone: a property that is an
 * accessor is a reason too (a clone made after this walk would call it
 * again, and could get something else).
 */
export function search(root: unknown, check: (v: object) => string, live = false): string {
  const stack: unknown[] = [root];
  const seen = new Set<object>();
  while (stack.length) {
    const v = stack.pop();
    if (typeof v !== "object" || v === null || seen.has(v)) continue;
    seen.add(v);
    if (seen.size > SEARCH_LIMIT) return `it holds more than ${SEARCH_LIMIT} values to check`;
    const why = check(v);
    if (why === LEAF) continue;
    if (why) return why;
    if (v instanceof Map) mapForEach(v, (x, k) => stack.push(k, x));
    else if (v instanceof Set) setForEach(v, (x) => stack.push(x));
    else {
      for (const k of objectKeys(v)) {
        if (!live) {
          stack.push((v as Record<string, unknown>)[k]);
          continue;
        }
        const d = ownDescriptor(v, k);
        if (d === undefined) continue;
        if (!("value" in d)) return `it holds a getter (${describe(k)}), which is not checked`;
        stack.push(d.value);
      }
      const cause = ownDescriptor(v, "cause");
      if (cause !== undefined && !cause.enumerable) {
        if (!("value" in cause)) return "it holds a cause that is an accessor, which is not checked";
        stack.push(cause.value);
      }
    }
  }
  return "";
}
const ownDescriptor = Object.getOwnPropertyDescriptor;
