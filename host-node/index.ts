/**
 * The Node host: loads the wasm core from the package and installs it.
 *
 * Node 20's V8 (11.x) resets wasm locals after memory.atomic.wait in code
 * compiled by Liftoff, its baseline tier (TOOLCHAIN.md). The core is compiled
 * with Liftoff turned off on such versions, before the first module is made,
 * so users need no flag.
 */
import { readFile } from "node:fs/promises";
import { setFlagsFromString, serialize, deserialize } from "node:v8";
import * as workerThreads from "node:worker_threads";
import { threadId, Worker, MessageChannel, MessagePort, receiveMessageOnPort } from "node:worker_threads";
import { types } from "node:util";
import { EventEmitter } from "node:events";
import { availableParallelism } from "node:os";
import { compileOnce, coreFile, installPlatform, serializerCloner, type Courier, type Watcher } from "../host-common/platform.js";
import { Bus1Error } from "../host-common/errors.js";

const v8Major = Number(process.versions.v8.split(".")[0]);
let engineReady = false;

function prepareEngine(): void {
  if (engineReady) return;
  engineReady = true;
  if (v8Major < 12) setFlagsFromString("--no-liftoff");
}

const loadModule = compileOnce((shared) => {
  prepareEngine();
  // BUS1_WASM_DEBUG=1 loads the builds with the core's assertions on (npm run test:debug)
  const file = new URL(coreFile(shared, process.env.BUS1_WASM_DEBUG === "1"), import.meta.url);
  return readFile(file).then((bytes) => WebAssembly.compile(new Uint8Array(bytes)));
});

// A Worker is recognised, and its thread read, through the getter of its class
// (it reads a handle only Node can make: a look-alike object throws), and its
// exit through EventEmitter's own methods: all captured here, at load time.
const workerThreadId = Function.prototype.call.bind(
  Object.getOwnPropertyDescriptor(Worker.prototype, "threadId")!.get!) as (w: unknown) => number;
const on = Function.prototype.call.bind(EventEmitter.prototype.on) as
  (target: unknown, event: string, listener: () => void) => void;
const off = Function.prototype.call.bind(EventEmitter.prototype.removeListener) as
  (target: unknown, event: string, listener: () => void) => void;

/**
 * A bus's watcher: `onExit(threadId)` once a watched worker's thread is
 * really gone: an "exit" that someone emits by hand while the thread runs is
 * ignored (Node sets the worker's threadId to −1 when the thread has ended).
 * One "exit" listener per worker, removed at the exit or when the bus closes:
 * none keeps the bus (the listener holds it) for the life of a Worker object.
 * Listeners keep no process alive.
 */
function watcher(onExit: (thread: number) => void): Watcher {
  const listeners = new Map<unknown, () => void>();
  return {
    add(worker: unknown): void {
      let id: number;
      try {
        id = workerThreadId(worker);
      } catch {
        throw Bus1Error.of("EINVAL", "watch", "worker must be a worker_threads.Worker");
      }
      // already gone (it left before it could attach anything), or watched already
      if (id < 0 || listeners.has(worker)) return;
      const listener = () => {
        if (workerThreadId(worker) !== -1) return;
        listeners.delete(worker);
        off(worker, "exit", listener);
        onExit(id);
      };
      listeners.set(worker, listener);
      on(worker, "exit", listener);
    },
    close(): void {
      const all = [...listeners];
      listeners.clear();
      for (const [worker, listener] of all) off(worker, "exit", listener);
    },
  };
}

// The courier (platform.ts): ports and streams move between threads over
// MessageChannels whose messages a thread takes synchronously with
// receiveMessageOnPort; a channel's far end reaches another thread through
// worker_threads.postMessageToThread (Node 20.19+, 22.5+; without it no
// channel is made and such values stay in the sending thread). What runs
// between send_begin and send_commit is post: MessagePort.prototype.postMessage
// as captured here, on a message of plain arrays; it moves a port or an
// ArrayBuffer without running JS, and a stream through Node's own transfer
// steps, which Node finds by symbols on the stream and its prototypes. So a
// value is movable only when nothing there can be someone else's code (see
// `kindOf`): checked when the arguments are read, and nothing runs between
// that check and the post but the package's own code.
const call = Function.prototype.call;
const portPost = call.bind(MessagePort.prototype.postMessage) as (port: unknown, m: unknown, t: unknown[]) => void;
const portClose = call.bind(MessagePort.prototype.close) as (port: unknown) => void;
const portOn = call.bind(MessagePort.prototype.on) as (port: unknown, event: string, f: (m: unknown) => void) => void;
const portUnref = call.bind(MessagePort.prototype.unref) as (port: unknown) => void;
const takeMessage = receiveMessageOnPort as (port: unknown) => { message: unknown } | undefined;
const isProxy = types.isProxy, isArrayBuffer = types.isArrayBuffer;
const Channel = MessageChannel, Port = MessagePort;
const Readable = globalThis.ReadableStream, Writable = globalThis.WritableStream, Transform = globalThis.TransformStream;
const toThread = (workerThreads as { postMessageToThread?: (id: number, v: unknown, t: unknown[], ms: number) => Promise<void> })
  .postMessageToThread;
const later = queueMicrotask;
const getProto = Object.getPrototypeOf, ownKeys = Reflect.ownKeys, ownDesc = Object.getOwnPropertyDescriptor;
const hasOwn = Object.hasOwn;
const U8 = Uint8Array;
const addProcessListener = call.bind(EventEmitter.prototype.on) as (t: unknown, e: string, f: (v: unknown) => void) => void;
const removeProcessListener = call.bind(EventEmitter.prototype.removeListener) as
  (t: unknown, e: string, f: (v: unknown) => void) => void;
const theProcess = process;

function getter<T>(proto: object, key: string): (v: unknown) => T {
  return call.bind(ownDesc(proto, key)!.get!) as (v: unknown) => T;
}
function method<T>(proto: object, key: string): (v: unknown, ...a: unknown[]) => T {
  return call.bind(ownDesc(proto, key)!.value as (...a: unknown[]) => T) as (v: unknown, ...a: unknown[]) => T;
}
const bufferBytes = getter<number>(ArrayBuffer.prototype, "byteLength");
const readableLocked = getter<boolean>(Readable.prototype, "locked");
const writableLocked = getter<boolean>(Writable.prototype, "locked");
const transformReadable = getter<unknown>(Transform.prototype, "readable");
const transformWritable = getter<unknown>(Transform.prototype, "writable");
const readableCancel = method<Promise<void>>(Readable.prototype, "cancel");
const writableAbort = method<Promise<void>>(Writable.prototype, "abort");
const promiseCatch = method<Promise<void>>(Promise.prototype, "catch");
const ignore = () => {};

/** An object's own members (keys and what each holds) as at load. */
interface Members {
  readonly of: object;
  readonly keys: readonly PropertyKey[];
  readonly values: readonly unknown[];
  readonly gets: readonly unknown[];
  readonly sets: readonly unknown[];
}

function members(of: object): Members {
  const keys = ownKeys(of), values: unknown[] = [], gets: unknown[] = [], sets: unknown[] = [];
  for (let i = 0; i < keys.length; i++) {
    const d = ownDesc(of, keys[i])!;
    values.push(d.value);
    gets.push(d.get);
    sets.push(d.set);
  }
  return { of, keys, values, gets, sets };
}

/** Whether `m.of` has the members it had at load (no Proxy is ever passed here: these are intrinsics). */
function unchanged(m: Members): boolean {
  const keys = ownKeys(m.of);
  if (keys.length !== m.keys.length) return false;
  for (let i = 0; i < keys.length; i++) {
    if (keys[i] !== m.keys[i]) return false;
    const d = ownDesc(m.of, keys[i]);
    if (!d) return false;
    // a descriptor is an ordinary object: read only what it has of its own
    if ((hasOwn(d, "value") ? d.value : undefined) !== m.values[i]) return false;
    if ((hasOwn(d, "get") ? d.get : undefined) !== m.gets[i]) return false;
    if ((hasOwn(d, "set") ? d.set : undefined) !== m.sets[i]) return false;
  }
  return true;
}

// The intrinsic prototypes a moving value may have, and the own keys a genuine
// stream has (Node keeps its state in own symbol-keyed data properties; a
// transform's inner streams have an internal prototype and an own constructor).
const sample = new Transform();
const innerReadable = getProto(transformReadable(sample)) as object;
const innerWritable = getProto(transformWritable(sample)) as object;
const OBJECT = members(Object.prototype);
const PORT = members(Port.prototype);
const READABLE = members(Readable.prototype), WRITABLE = members(Writable.prototype);
const TRANSFORM = members(Transform.prototype);
const INNER_READABLE = members(innerReadable), INNER_WRITABLE = members(innerWritable);
const streamKeys: PropertyKey[] = [];
for (const s of [new Readable(), new Writable(), sample, transformReadable(sample), transformWritable(sample)]) {
  for (const k of ownKeys(s as object)) if (!streamKeys.includes(k)) streamKeys.push(k);
}

const NOT = 0, PORT_KIND = 1, READABLE_KIND = 2, WRITABLE_KIND = 3, TRANSFORM_KIND = 4, BUFFER_KIND = 5;

/** Own members of a stream: only the keys a genuine one has, each a plain data property. */
function plainStream(v: object): boolean {
  const keys = ownKeys(v);
  for (let i = 0; i < keys.length; i++) {
    let known = false;
    for (let j = 0; j < streamKeys.length && !known; j++) known = streamKeys[j] === keys[i];
    if (!known) return false;
    const d = ownDesc(v, keys[i]);
    if (!d || hasOwn(d, "get") || hasOwn(d, "set")) return false;
  }
  return true;
}

/** A stream whose prototype chain is the intrinsic one, untouched since load. */
function streamOf(v: object, outer: Members, inner: Members | null): boolean {
  const proto = getProto(v);
  if (proto === outer.of) return unchanged(outer) && plainStream(v);
  if (inner && proto === inner.of && getProto(inner.of) === outer.of) {
    return unchanged(inner) && unchanged(outer) && plainStream(v);
  }
  return false;
}

/**
 * What `v` is, as far as moving goes: a port, a stream or an ArrayBuffer
 * whose transfer can run nobody's code, or NOT. Not a Proxy, the intrinsic
 * prototype (no subclass), no own members but those a genuine one has (all
 * plain data), and the prototypes (and Object.prototype, where a lookup
 * that misses ends) with the members they had at load. Runs no user code
 * for a value that is not a Proxy.
 */
function kindOf(v: unknown): number {
  if (typeof v !== "object" || v === null || isProxy(v)) return NOT;
  if (isArrayBuffer(v)) return BUFFER_KIND;
  const proto = getProto(v);
  if (proto === Port.prototype) return unchanged(PORT) && unchanged(OBJECT) ? PORT_KIND : NOT;
  if (!unchanged(OBJECT)) return NOT;
  if (streamOf(v, READABLE, INNER_READABLE)) return READABLE_KIND;
  if (streamOf(v, WRITABLE, INNER_WRITABLE)) return WRITABLE_KIND;
  if (streamOf(v, TRANSFORM, null)) {
    const r = transformReadable(v), w = transformWritable(v);
    return typeof r === "object" && r !== null && !isProxy(r) && streamOf(r, READABLE, INNER_READABLE)
      && typeof w === "object" && w !== null && !isProxy(w) && streamOf(w, WRITABLE, INNER_WRITABLE) ? TRANSFORM_KIND : NOT;
  }
  return NOT;
}

/** A process-wide receiver of deliveries, while some bus of this thread has links. */
let delivered: ((m: unknown) => void) | null = null;
let processListener: ((m: unknown) => void) | null = null;

const courier: Courier = {
  movable(v: unknown, listed: boolean): boolean {
    const kind = kindOf(v);
    return kind === BUFFER_KIND ? listed : kind !== NOT;
  },
  postable(v: unknown): boolean {
    switch (kindOf(v)) {
      case BUFFER_KIND:
        if (bufferBytes(v) > 0) return true;
        try {
          new U8(v as ArrayBuffer); // a detached buffer has no view
          return true;
        } catch {
          return false;
        }
      case PORT_KIND: return true;
      case READABLE_KIND: return !readableLocked(v);
      case WRITABLE_KIND: return !writableLocked(v);
      case TRANSFORM_KIND: return !readableLocked(transformReadable(v)) && !writableLocked(transformWritable(v));
      default: return false;
    }
  },
  isPort(v: unknown): boolean {
    return typeof v === "object" && v !== null && !isProxy(v) && getProto(v) === Port.prototype;
  },
  channel(): [unknown, unknown] {
    const c = new Channel();
    return [c.port1, c.port2];
  },
  post: portPost,
  take: takeMessage,
  listen(port, onMessage, onClose): void {
    portOn(port, "message", onMessage);
    portOn(port, "close", onClose);
    portUnref(port);
  },
  close: portClose,
  deliver(thread, message, transfer): void {
    if (thread === threadId) {
      // another attachment of this thread: no transfer needed
      later(() => delivered?.(message));
      return;
    }
    if (!toThread) {
      for (let i = 0; i < transfer.length; i++) portClose(transfer[i]);
      return;
    }
    toThread(thread, message, transfer, 5_000).catch(() => {
      // the thread is gone or not listening: the kept end sees "close" when this end goes
    });
  },
  receive(onDelivery): void {
    delivered = onDelivery;
    if (toThread && !processListener) {
      const listener = (value: unknown) => {
        try {
          delivered?.(value);
        } catch {
          // not ours, or a bus that is gone
        }
      };
      processListener = listener;
      addProcessListener(theProcess, "workerMessage", listener);
    }
  },
  unreceive(): void {
    delivered = null;
    const listener = processListener;
    processListener = null;
    if (listener) removeProcessListener(theProcess, "workerMessage", listener);
  },
  discard(v: unknown): void {
    switch (kindOf(v)) {
      case PORT_KIND: portClose(v); break;
      case READABLE_KIND: promiseCatch(readableCancel(v), ignore); break;
      case WRITABLE_KIND: promiseCatch(writableAbort(v), ignore); break;
      case TRANSFORM_KIND:
        promiseCatch(readableCancel(transformReadable(v)), ignore);
        promiseCatch(writableAbort(transformWritable(v)), ignore);
        break;
      default:
        // a port or stream someone changed since it moved here: closed or cancelled as it is
        if (v instanceof Port) portClose(v);
        else if (v instanceof Readable) v.cancel().catch(ignore);
        else if (v instanceof Writable) v.abort().catch(ignore);
    }
  },
};

installPlatform({
  name: "node",
  module: loadModule,
  sharedAvailable: () => typeof SharedArrayBuffer === "function",
  canBlock: () => true,
  threadId: () => threadId,
  watcher,
  cpus: availableParallelism(),
  cloner: serializerCloner(serialize, deserialize),
  courier,
});

export * from "../host-common/index.js";
