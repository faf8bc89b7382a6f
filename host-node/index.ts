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
import { installPlatform, type Courier } from "../host-common/platform.js";
import { Bus1Error } from "../host-common/errors.js";

const v8Major = Number(process.versions.v8.split(".")[0]);
let engineReady = false;

function prepareEngine(): void {
  if (engineReady) return;
  engineReady = true;
  if (v8Major < 12) setFlagsFromString("--no-liftoff");
}

const modules = new Map<boolean, Promise<WebAssembly.Module>>();

function loadModule(shared: boolean): Promise<WebAssembly.Module> {
  let m = modules.get(shared);
  if (!m) {
    prepareEngine();
    // BUS1_WASM_DEBUG=1 loads the builds with the core's assertions on (npm run test:debug)
    const debug = process.env.BUS1_WASM_DEBUG === "1";
    const build = debug ? (shared ? "debug" : "debug-private") : (shared ? "threads" : "private");
    const file = new URL(`../../build/bus1.${build}.wasm`, import.meta.url);
    m = readFile(file).then((bytes) => WebAssembly.compile(new Uint8Array(bytes)));
    modules.set(shared, m);
  }
  return m;
}

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
 * Calls `onExit(threadId)` once the worker's thread is really gone: an "exit"
 * that someone emits by hand while the thread runs is ignored (Node sets the
 * worker's threadId to −1 when the thread has ended).
 */
function watchWorker(worker: unknown, onExit: (thread: number) => void): void {
  let id: number;
  try {
    id = workerThreadId(worker);
  } catch {
    throw Bus1Error.of("EINVAL", "watch", "worker must be a worker_threads.Worker");
  }
  if (id < 0) return; // already gone: it left before it could attach anything
  const listener = () => {
    if (workerThreadId(worker) !== -1) return;
    off(worker, "exit", listener);
    onExit(id);
  };
  on(worker, "exit", listener);
}

// The courier (platform.ts): ports and streams move between threads over
// MessageChannels whose messages a thread takes synchronously with
// receiveMessageOnPort; a channel's far end reaches another thread through
// worker_threads.postMessageToThread (Node 20.19+, 22.5+; without it no
// channel is made and such values stay in the sending thread). What runs
// between send_begin and send_commit (movable's brand checks having passed)
// is post: MessagePort.prototype.postMessage as captured here, on a message
// of plain arrays; it moves a port or an ArrayBuffer without running JS, and
// a stream through Node's own transfer steps.
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
let delivered: ((m: unknown) => void) | null = null;

const courier: Courier = {
  movable(v: unknown, listed: boolean): boolean {
    if (typeof v !== "object" || v === null || isProxy(v)) return false;
    if (isArrayBuffer(v)) return listed;
    return v instanceof Port || v instanceof Readable || v instanceof Writable || v instanceof Transform;
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
      const f = delivered;
      if (f) later(() => f(message));
      return;
    }
    if (!toThread) {
      for (const p of transfer) portClose(p);
      return;
    }
    toThread(thread, message, transfer, 5_000).catch(() => {
      // the thread is gone or not listening: the kept end sees "close" when this end goes
    });
  },
  receive(onDelivery): void {
    delivered = onDelivery;
    if (toThread) {
      process.on("workerMessage", (value: unknown) => {
        try {
          onDelivery(value);
        } catch {
          // not ours, or a bus that is gone
        }
      });
    }
  },
  discard(v: unknown): void {
    if (v instanceof Port) portClose(v);
    else if (v instanceof Readable) v.cancel().catch(() => {});
    else if (v instanceof Writable) v.abort().catch(() => {});
    else if (v instanceof Transform) {
      v.readable.cancel().catch(() => {});
      v.writable.abort().catch(() => {});
    }
  },
};

installPlatform({
  name: "node",
  module: loadModule,
  sharedAvailable: () => typeof SharedArrayBuffer === "function",
  canBlock: () => true,
  threadId: () => threadId,
  watch: watchWorker,
  cpus: availableParallelism(),
  cloner: {
    serialize(value: unknown): Uint8Array | null {
      try {
        const b = serialize(value);
        return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
      } catch {
        return null; // not cloneable: only the sending thread can receive it
      }
    },
    deserialize: (bytes: Uint8Array) => deserialize(bytes),
  },
  courier,
});

export * from "../host-common/index.js";
