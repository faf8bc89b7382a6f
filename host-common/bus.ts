/**
 * The public API (API.md): Bus and Peer, shared by every host.
 *
 * This layer turns JS values into ABI arguments and ABI results into JS
 * values, and names the bad argument when the core refuses a call. Every
 * bus1 rule is enforced by the core; what is checked here is only what the
 * core cannot see: the JS types of arguments, and which host values may
 * travel as objects.
 */
import { Bus1Error, codeOf, describe, type ErrorCode } from "./errors.js";
import { ABI_VERSION, Core, CTX_SPINNING, MAX_PAGES, ROOT_SPINNERS } from "./core.js";
import { Message, type MessageType } from "./message.js";
import type { Cloner } from "./objects.js";

export interface Limits {
  maxSlices: number;
  maxHandles: number;
  maxInflightBytes: number;
  maxInflightObjects: number;
}

export interface BusOptions {
  /** Shared memory usable by several threads; default: where SharedArrayBuffer can be used. */
  shared?: boolean;
  /** Per-user limits (SPEC §6). */
  limits?: Partial<Limits>;
  /** Bound on the bus's memory; default DEFAULT_MAX_MEMORY_BYTES, at most MAX_MEMORY_BYTES. */
  maxMemoryBytes?: number;
}

export interface ConnectOptions {
  /** Accounting principal, 0 … 2^31 − 1; default 0. */
  user?: number;
}

export interface SendOptions {
  handles?: ArrayLike<number>;
  objects?: unknown[];
  continue?: boolean;
  seed?: boolean;
}

export interface SendResult {
  errors: (ErrorCode | null)[];
}

export interface ResetOptions {
  flush?: boolean;
  flushSeed?: boolean;
  limits?: Partial<Limits>;
}

/** Counters of one peer, for tests and monitoring (an addition to API.md). */
export interface PeerStats {
  /** Charged to this peer now: slices, handles, bytes, objects. */
  slices: number;
  handles: number;
  bytes: number;
  objects: number;
  /** Bytes of memory its pool holds. */
  poolBytes: number;
  /** Live handle IDs, handle records, received unreleased slices. */
  handleIds: number;
  handleRecords: number;
  liveSlices: number;
}

/** Structured-cloneable description of a bus, for Bus.attach in a worker. */
export interface BusHandle {
  readonly id: number;
  readonly module: WebAssembly.Module;
  readonly memory: WebAssembly.Memory;
}

/** Structured-cloneable reference to one peer, for bus.adopt. */
export interface PeerRef {
  readonly bus: number;
  readonly slot: number;
  readonly gen: number;
}

export const HANDLE_INVALID = -1;
export const HANDLE_FLAG_MANAGED = 1;
export const HANDLE_FLAG_REMOTE = 2;

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxSlices: 16384,
  maxHandles: 65536,
  maxInflightBytes: 16 * 1024 * 1024,
  maxInflightObjects: 4096,
});

/** Default bound of a bus's memory: 1 GiB. */
export const DEFAULT_MAX_MEMORY_BYTES = 1 << 30;
/** Largest bound: the core keeps every address below 2 GiB. */
export const MAX_MEMORY_BYTES = MAX_PAGES * 65536;

const LIMIT_KEYS = ["maxSlices", "maxHandles", "maxInflightBytes", "maxInflightObjects"] as const;
const U32_MAX = 0xffffffff;

// ABI flags and argument names (docs/ABI.md)
const SEND_CONTINUE = 1, SEND_SEED = 2, RECV_SEED = 1, DESTROY_RELEASE_HANDLES = 1;
const RESET_FLUSH = 1, RESET_FLUSH_SEED = 2, RESET_LIMIT = 0x100;
const EAGAIN = 11;
const ARG_NAMES = ["", "destinations", "handles", "handle", "options", "offset", "limits", "payload", "objects", "payload", "user", "to"];
const ARG_BROKEN = 12;
const BROKEN_REASONS = ["", "a lock stayed held for 5 s: its thread is gone", "a thread died inside a bus call"];
const TYPES: MessageType[] = ["data", "data", "node-destroy", "node-release"];

/** How a host loads the core; installed by each host entry point. */
export interface Platform {
  /** The compiled core for shared or private memory. */
  module(shared: boolean): Promise<WebAssembly.Module>;
  /** Whether SharedArrayBuffer can be used here. */
  sharedAvailable(): boolean;
  /** Whether this thread may block (Atomics.wait); a browser's main thread may not. */
  canBlock(): boolean;
  /** The host's id for this thread (Node: worker_threads.threadId). */
  threadId(): number;
  /** Copies objects between threads of a shared bus (none: same thread only). */
  cloner?: Cloner;
  /** Processors this process may run on (a wait spins only when there is more than one). */
  cpus?: number;
  name: string;
}

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

let platform: Platform | null = null;

export function installPlatform(p: Platform): void {
  platform = p;
}

/** Values that are bus endpoints: never transferable as objects. */
const endpoints = new WeakSet<object>();

export function isEndpoint(v: unknown): boolean {
  return typeof v === "object" && v !== null && endpoints.has(v);
}

export function markEndpoint(v: object): void {
  endpoints.add(v);
}

/** What checkOptions returns for no options (shared: callers only read it). */
const NO_OPTIONS: Record<string, unknown> = Object.freeze({});

function checkOptions(op: string, options: unknown, keys: readonly string[]): Record<string, unknown> {
  if (options === undefined) return NO_OPTIONS;
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw Bus1Error.of("EINVAL", op, `options must be an object, got ${describe(options)}`);
  }
  for (const k of Object.keys(options)) {
    if (!keys.includes(k)) throw Bus1Error.of("EINVAL", op, `unknown option ${JSON.stringify(k)}`);
  }
  return options as Record<string, unknown>;
}

function checkBoolean(op: string, name: string, v: unknown): boolean {
  if (v === undefined) return false;
  if (typeof v !== "boolean") throw Bus1Error.of("EINVAL", op, `${name} must be a boolean, got ${describe(v)}`);
  return v;
}

function checkLimits(op: string, v: unknown): Partial<Limits> {
  const limits = checkOptions(op, v, LIMIT_KEYS) as Partial<Limits>;
  for (const k of LIMIT_KEYS) {
    const x = limits[k];
    if (x === undefined) continue;
    if (typeof x !== "number" || !Number.isInteger(x) || x < 0 || x > U32_MAX) {
      throw Bus1Error.of("EINVAL", op, `limits.${k} must be an integer from 0 to ${U32_MAX}, got ${describe(x)}`);
    }
  }
  return limits;
}

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return typeof v === "object" && v !== null && typeof (v as ArrayLike<unknown>).length === "number"
    && Number.isInteger((v as ArrayLike<unknown>).length) && (v as ArrayLike<unknown>).length >= 0;
}

let busIds = 0;

export class Bus {
  /** @internal */ readonly core: Core;
  /** @internal */ readonly id: number;
  readonly shared: boolean;
  readonly #module: WebAssembly.Module;
  readonly #peers = new Set<Peer>();
  /** @internal pending readable() calls of this thread */
  readonly readers = new Set<Reader>();
  #closed = false;
  #handle: BusHandle | null = null;

  private constructor(module: WebAssembly.Module, memory: WebAssembly.Memory, id: number, shared: boolean) {
    this.core = new Core(module, memory, shared ? requirePlatform().cloner ?? null : null);
    this.#module = module;
    this.id = id;
    this.shared = shared;
    markEndpoint(this);
  }

  /** Loads the core and makes a new bus. */
  static async create(options?: BusOptions): Promise<Bus> {
    const p = requirePlatform();
    const o = checkOptions("Bus.create", options, ["shared", "limits", "maxMemoryBytes"]);
    if (o.shared !== undefined && typeof o.shared !== "boolean") {
      throw Bus1Error.of("EINVAL", "Bus.create", `shared must be a boolean, got ${describe(o.shared)}`);
    }
    const shared = (o.shared as boolean | undefined) ?? p.sharedAvailable();
    if (shared && !p.sharedAvailable()) {
      throw Bus1Error.of("EINVAL", "Bus.create", "shared memory is not available here (SharedArrayBuffer)");
    }
    const limits = { ...DEFAULT_LIMITS, ...checkLimits("Bus.create", o.limits) };
    const maxBytes = o.maxMemoryBytes ?? DEFAULT_MAX_MEMORY_BYTES;
    if (typeof maxBytes !== "number" || !Number.isInteger(maxBytes) || maxBytes < 2 * 65536 || maxBytes > MAX_MEMORY_BYTES) {
      throw Bus1Error.of("EINVAL", "Bus.create",
        `maxMemoryBytes must be an integer from ${2 * 65536} to ${MAX_MEMORY_BYTES}, got ${describe(maxBytes)}`);
    }
    const pages = Math.floor(maxBytes / 65536);
    const module = await p.module(shared);
    // Private memory is made at its full size: growing it would detach every
    // payload view handed out so far (shared memory grows without detaching).
    // The pages are only reserved; the OS backs them when they are touched.
    const memory = new WebAssembly.Memory({ initial: shared ? 2 : pages, maximum: pages, shared });
    const bus = new Bus(module, memory, (Math.random() * 0x7fffffff) ^ ++busIds, shared);
    const rc = bus.core.ex.bus_init(pages, limits.maxSlices, limits.maxHandles, limits.maxInflightBytes,
      limits.maxInflightObjects);
    if (rc < 0) throw Bus1Error.of("ENOMEM", "Bus.create", `maxMemoryBytes ${maxBytes} is too small`);
    bus.core.open(p.canBlock(), p.threadId());
    return bus;
  }

  /** Joins a bus made elsewhere (in another thread) through its handle. */
  static async attach(handle: BusHandle): Promise<Bus> {
    requirePlatform();
    if (typeof handle !== "object" || handle === null || !(handle.module instanceof WebAssembly.Module)
      || !(handle.memory instanceof WebAssembly.Memory) || typeof handle.id !== "number") {
      throw Bus1Error.of("EINVAL", "Bus.attach", `not a bus handle: ${describe(handle)}`);
    }
    const shared = typeof SharedArrayBuffer !== "undefined" && handle.memory.buffer instanceof SharedArrayBuffer;
    const bus = new Bus(handle.module, handle.memory, handle.id, shared);
    if (bus.core.ex.bus_version() !== ABI_VERSION) throw Bus1Error.of("EINVAL", "Bus.attach", "the memory holds no bus");
    const p = requirePlatform();
    bus.core.open(p.canBlock(), p.threadId());
    return bus;
  }

  /** Structured-cloneable: post it to a worker and Bus.attach it there. */
  get handle(): BusHandle {
    if (!this.#handle) {
      this.#handle = Object.freeze({ id: this.id, module: this.#module, memory: this.core.memory });
      markEndpoint(this.#handle);
    }
    return this.#handle;
  }

  /** @internal */
  checkOpen(op: string): void {
    if (this.#closed) throw Bus1Error.of("EBADF", op, "the bus is closed in this thread");
    if (this.core.broken) throw Bus1Error.of("ESHUTDOWN", op, `the bus is broken: ${this.core.broken}`);
  }

  /** A new peer (open("/dev/bus1")). */
  connect(options?: ConnectOptions): Peer {
    this.checkOpen("connect");
    const o = checkOptions("connect", options, ["user"]);
    const user = o.user ?? 0;
    if (typeof user !== "number" || !Number.isInteger(user) || user < 0 || user > 0x7fffffff) {
      throw Bus1Error.of("EINVAL", "connect", `user must be an integer from 0 to 2147483647, got ${describe(user)}`);
    }
    const core = this.core;
    const rc = this.call("connect", () => core.ex.peer_connect(core.ctx, user));
    if (rc < 0) throw this.error("connect", rc, { user });
    const out = core.views().out >>> 2;
    return this.track(new Peer(this, core.u32[out], core.u32[out + 1]));
  }

  /** Another reference to a peer, from its `ref`. */
  adopt(ref: PeerRef): Peer {
    this.checkOpen("adopt");
    if (typeof ref !== "object" || ref === null || typeof ref.slot !== "number" || typeof ref.gen !== "number"
      || typeof ref.bus !== "number") {
      throw Bus1Error.of("EINVAL", "adopt", `not a peer reference: ${describe(ref)}`);
    }
    if (ref.bus !== this.id) throw Bus1Error.of("EINVAL", "adopt", "the reference is to a peer of another bus");
    const core = this.core;
    const rc = this.call("adopt", () => core.ex.peer_ref(core.ctx, ref.slot >>> 0, ref.gen >>> 0));
    if (rc < 0) throw this.error("adopt", rc === -9 ? -108 : rc);
    return this.track(new Peer(this, ref.slot >>> 0, ref.gen >>> 0));
  }

  /**
   * Ties a worker's life to the bus: when it exits, the peer references it
   * held are closed (peers only it used are disconnected); if it died inside
   * a bus call, the bus is marked broken. Node: a worker_threads.Worker.
   */
  watch(worker: { threadId: number; once(event: "exit", listener: () => void): unknown }): void {
    this.checkOpen("watch");
    const id = worker.threadId;
    worker.once("exit", () => {
      if (this.#closed || this.core.broken) return;
      const rc = this.call("watch", () => this.core.ex.thread_exit(this.core.ctx, id));
      if (rc < 0) this.error("watch", rc);
      this.poke();
    });
  }

  /** This thread lets go: closes every peer reference it holds. */
  close(): void {
    if (this.#closed) return;
    for (const peer of [...this.#peers]) peer.close();
    this.#closed = true;
    for (const r of [...this.readers]) r.fail(Bus1Error.of("EBADF", "readable", "the bus was closed"));
    this.core.close();
  }

  private track(peer: Peer): Peer {
    this.#peers.add(peer);
    return peer;
  }

  /** @internal */
  untrack(peer: Peer): void {
    this.#peers.delete(peer);
  }

  /** @internal Calls into the core; a trap marks the bus broken. */
  call(op: string, f: () => number): number {
    try {
      return f();
    } catch (e) {
      throw this.trap(op, e);
    }
  }

  /** @internal What a call that threw turns into: a trap of the core breaks this bus. */
  trap(op: string, e: unknown): unknown {
    if (!(e instanceof WebAssembly.RuntimeError || (e as Error)?.message?.startsWith("bus1 core"))) return e;
    this.core.broken = String((e as Error)?.message ?? e);
    return Bus1Error.of("ESHUTDOWN", op, `the bus core failed (${this.core.broken})`);
  }

  /** @internal The Bus1Error for −errno `rc` of `op`, naming the argument at fault. */
  error(op: string, rc: number, values?: Record<string, unknown>): Bus1Error {
    const code = codeOf(-rc);
    const arg = this.core.errArg();
    if (code === "ESHUTDOWN" && arg === ARG_BROKEN) {
      this.core.broken = BROKEN_REASONS[this.core.ex.bus_broken_reason()] ?? "unknown";
      return Bus1Error.of("ESHUTDOWN", op, `the bus is broken (${this.core.broken})`);
    }
    let what: string | undefined;
    if (arg > 0 && arg < ARG_NAMES.length && code !== "ESHUTDOWN" && code !== "EBADF" && code !== "ENOMEM") {
      const name = ARG_NAMES[arg];
      const list = values?.[name];
      if (Array.isArray(list) || (isArrayLike(list) && name !== "payload")) {
        const i = this.core.errIndex();
        what = `${name}[${i}] (${describe((list as ArrayLike<unknown>)[i])})`;
      } else if (values && name in values) {
        what = `${name} (${describe(values[name])})`;
      } else {
        what = name;
      }
    }
    return Bus1Error.of(code, op, what);
  }

  /** @internal After an operation that may have made peers readable. */
  poke(): void {
    if (this.readers.size === 0) return;
    for (const r of [...this.readers]) r.check();
  }
}

function requirePlatform(): Platform {
  if (!platform) throw new Bus1Error("EINVAL", "bus1: no host installed (import bus1-wasm/node, /browser or /deno)");
  return platform;
}

/** A pending readable(): settled by poke() or by a wake from another thread. */
class Reader {
  constructor(readonly peer: Peer, readonly resolve: () => void, readonly reject: (e: unknown) => void,
              readonly signal: AbortSignal | undefined, readonly onAbort: () => void) {}

  check(): void {
    let ready: boolean;
    try {
      ready = this.peer.ready();
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
    this.peer.bus.readers.delete(this);
    this.signal?.removeEventListener("abort", this.onAbort);
    this.wake?.();
    this.wake = null;
  }
}

/** A count for a u32 parameter: anything larger becomes the largest u32 (refused by the core). */
function u32Clamp(n: number): number {
  return n > U32_MAX ? U32_MAX : n;
}

/** The result of a send to one destination (shared: it never varies). */
const SENT_ONE: SendResult = Object.freeze({ errors: Object.freeze([null]) as (ErrorCode | null)[] });

/** Handles and objects of a message that has none (shared, frozen). */
const NO_HANDLES = Object.freeze([]) as unknown as number[];
const NO_OBJECTS = Object.freeze([]) as unknown as unknown[];

function toId(v: unknown): number {
  return typeof v === "number" ? v : NaN;
}

export class Peer {
  /** @internal */ readonly bus: Bus;
  /** @internal */ readonly slot: number;
  /** @internal */ readonly gen: number;
  #closed = false;
  #ref: PeerRef | null = null;

  /** @internal */
  constructor(bus: Bus, slot: number, gen: number) {
    this.bus = bus;
    this.slot = slot;
    this.gen = gen;
    markEndpoint(this);
  }

  /** Structured-cloneable reference to this peer, for bus.adopt in any attached thread. */
  get ref(): PeerRef {
    if (!this.#ref) {
      this.#ref = Object.freeze({ bus: this.bus.id, slot: this.slot, gen: this.gen });
      markEndpoint(this.#ref);
    }
    return this.#ref;
  }

  get closed(): boolean {
    return this.#closed;
  }

  private check(op: string): void {
    if (this.#closed) throw Bus1Error.of("EBADF", op, "this peer reference is closed");
    this.bus.checkOpen(op);
  }

  /** @internal Throws what a call on this reference would throw before looking at its arguments. */
  usable(op: string): void {
    this.check(op);
    const core = this.bus.core;
    const rc = this.bus.call(op, () => core.ex.query(core.ctx, this.slot, this.gen));
    if (rc < 0) throw this.bus.error(op, rc);
  }

  /** Sends one message to the owners of `destinations` (one transaction). */
  send(destinations: number | ArrayLike<number>, payload?: Uint8Array | readonly Uint8Array[], options?: SendOptions): SendResult {
    if (typeof destinations === "number" && options === undefined && (payload === undefined || payload instanceof Uint8Array)) {
      return this.sendOne(destinations, payload);
    }
    return this.sendMany(destinations, payload, options);
  }

  /** The common case, kept short: one destination, one vec, no options. */
  private sendOne(destination: number, payload: Uint8Array | undefined): SendResult {
    this.check("send");
    const bus = this.bus, core = bus.core;
    const base = core.scratchFor(16);
    const size = payload === undefined ? 0 : payload.length;
    core.f64[base >>> 3] = destination;
    let rc: number;
    try {
      rc = core.ex.send_begin(core.ctx, this.slot, this.gen, 0, base, 1, 1, size, base + 8, 0, base + 8, 0, base + 8);
    } catch (e) {
      throw bus.trap("send", e);
    }
    if (rc < 0) throw bus.error("send", rc, { destinations: [destination] });
    if (rc > 0 && size > 0) {
      core.views();
      try {
        core.u8.set(payload!, core.u32[(base + 12) >>> 2]);
      } catch (e) {
        core.ex.send_cancel(core.ctx);
        throw Bus1Error.of("EINVAL", "send", `payload could not be copied (${(e as Error)?.message ?? e})`);
      }
    }
    core.ex.send_commit(core.ctx);
    if (bus.readers.size) bus.poke();
    return SENT_ONE;
  }

  private sendMany(destinations: number | ArrayLike<number>, payload: Uint8Array | readonly Uint8Array[] | undefined,
                   options: SendOptions | undefined): SendResult {
    const op = "send";
    this.check(op);
    const bus = this.bus, core = bus.core;
    const o = checkOptions(op, options, ["handles", "objects", "continue", "seed"]);
    let flags = 0;
    if (checkBoolean(op, "continue", o.continue)) flags |= SEND_CONTINUE;
    if (checkBoolean(op, "seed", o.seed)) flags |= SEND_SEED;
    // destinations
    let dsts: ArrayLike<unknown>;
    if (typeof destinations === "number") dsts = [destinations];
    else if (isArrayLike(destinations) && typeof destinations !== "string") dsts = destinations;
    else throw Bus1Error.of("EINVAL", op, `destinations must be a handle ID or an array of them, got ${describe(destinations)}`);
    // payload vecs
    let vecs: readonly Uint8Array[];
    if (payload === undefined) vecs = [];
    else if (payload instanceof Uint8Array) vecs = [payload];
    else if (Array.isArray(payload)) {
      vecs = payload;
      for (let i = 0; i < vecs.length; i++) {
        if (!(vecs[i] instanceof Uint8Array)) {
          throw Bus1Error.of("EINVAL", op, `payload[${i}] must be a Uint8Array, got ${describe(vecs[i])}`);
        }
      }
    } else throw Bus1Error.of("EINVAL", op, `payload must be a Uint8Array or an array of them, got ${describe(payload)}`);
    let size = 0;
    for (let i = 0; i < vecs.length; i++) size += vecs[i].length;
    // attached handles and objects
    let handles: ArrayLike<unknown> = [];
    if (o.handles !== undefined) {
      if (!isArrayLike(o.handles) || typeof o.handles === "string") {
        throw Bus1Error.of("EINVAL", op, `handles must be an array of handle IDs, got ${describe(o.handles)}`);
      }
      handles = o.handles;
    }
    let objects: unknown[] = [];
    if (o.objects !== undefined) {
      if (!Array.isArray(o.objects)) throw Bus1Error.of("EINVAL", op, `objects must be an array, got ${describe(o.objects)}`);
      objects = o.objects;
      for (let i = 0; i < objects.length; i++) {
        if (isEndpoint(objects[i])) {
          throw Bus1Error.of("EOPNOTSUPP", op, `objects[${i}] (${describe(objects[i])}) is a bus endpoint`);
        }
      }
    }
    const nd = dsts.length, nh = handles.length, no = objects.length;
    // the core refuses oversized counts before it reads the arrays: don't write them
    const bounds = core.bounds;
    const nds = nd > bounds.destinations ? 0 : nd, nhs = nh > bounds.handles ? 0 : nh;
    // IDs as f64, then room for the core's resolved handles (u32 each)
    const dstOff = 0, hOff = dstOff + nds * 8, oOff = hOff + nhs * 8 + ((nhs * 4 + 7) & ~7);
    const outOff = oOff + ((no * 4 + 7) & ~7);
    const base = core.scratchFor(outOff + nds * 8 + 8);
    core.views();
    const f64 = core.f64, u32 = core.u32;
    for (let i = 0, at = (base + dstOff) >>> 3; i < nds; i++) f64[at + i] = toId(dsts[i]);
    for (let i = 0, at = (base + hOff) >>> 3; i < nhs; i++) f64[at + i] = toId(handles[i]);
    const table = core.objects;
    const slots = no > 0 && no <= bounds.objects ? table.put(objects) : [];
    for (let i = 0, at = (base + oOff) >>> 2; i < slots.length; i++) u32[at + i] = slots[i];
    const rc = bus.call(op, () => core.ex.send_begin(core.ctx, this.slot, this.gen, flags, base + dstOff, u32Clamp(nd),
      vecs.length, u32Clamp(size), base + hOff, u32Clamp(nh), base + oOff, u32Clamp(no), base + outOff));
    if (rc < 0) {
      table.hold(slots, 0);
      throw bus.error(op, rc, { destinations: dsts, handles, objects, payload });
    }
    table.hold(slots, rc);
    core.views();
    const u8 = core.u8, i32 = core.i32, u32b = core.u32;
    const outAt = (base + outOff) >>> 2;
    const results = flags & SEND_SEED ? 1 : nd;
    // the core holds the receivers' locks until commit: copy, and nothing else
    try {
      if (size > 0 && rc > 0) {
        for (let i = 0; i < results; i++) {
          let addr = u32b[outAt + 2 * i + 1];
          if (i32[outAt + 2 * i] !== 0 || addr === 0) continue;
          for (let v = 0; v < vecs.length; v++) {
            u8.set(vecs[v], addr);
            addr += vecs[v].length;
          }
        }
      }
    } catch (e) {
      if (flags & SEND_SEED) {
        // a seed is set by send_begin: drop it rather than keep a torn payload
        core.ex.send_commit(core.ctx);
        this.reset({ flushSeed: true });
      } else {
        core.ex.send_cancel(core.ctx);
        table.hold(slots, 0);
      }
      throw Bus1Error.of("EINVAL", op, `payload could not be copied (${(e as Error)?.message ?? e})`);
    }
    core.ex.send_commit(core.ctx);
    const errors: (ErrorCode | null)[] = new Array(nd);
    for (let i = 0; i < nd; i++) {
      const e = flags & SEND_SEED ? 0 : i32[outAt + 2 * i];
      errors[i] = e ? codeOf(e) : null;
    }
    bus.poke();
    return { errors };
  }

  /** Takes the next message, or null when none is ready. */
  recv(options?: { seed?: boolean }): Message | null {
    const op = "recv";
    this.check(op);
    const o = checkOptions(op, options, ["seed"]);
    const seed = checkBoolean(op, "seed", o.seed);
    const bus = this.bus, core = bus.core;
    const rc = bus.call(op, () => core.ex.recv(core.ctx, this.slot, this.gen, seed ? RECV_SEED : 0));
    if (rc < 0) {
      if (rc === -EAGAIN) return null;
      throw bus.error(op, rc);
    }
    core.views();
    const u32 = core.u32, out = core.out >>> 2;
    const type = TYPES[u32[out]];
    const cont = (u32[out + 1] & 1) !== 0;
    const destination = core.f64[(core.out + 8) >>> 3];
    if (type !== "data") {
      bus.poke();
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
      bus.poke();
    }
    if (no) {
      objects = new Array(no);
      const table = core.objects;
      for (let i = 0; i < no; i++) objects[i] = seed ? table.peek(u32[at + i]) : table.take(u32[at + i]);
    }
    return new Message(this, "data", seed ? HANDLE_INVALID : destination, cont, offset, payload, handles, objects);
  }

  /** Gives `to` (default: this peer) a handle to the node of `handle`; returns its ID there. */
  transfer(handle: number, to?: Peer): number {
    const op = "transfer";
    this.check(op);
    let target: Peer = this;
    if (to !== undefined) {
      if (!(to instanceof Peer) || to.bus.core.memory !== this.bus.core.memory) {
        throw Bus1Error.of("EINVAL", op, `to must be a Peer of the same bus, got ${describe(to)}`);
      }
      if (to.#closed) throw Bus1Error.of("EBADF", op, "to: that peer reference is closed");
      target = to;
    }
    const bus = this.bus, core = bus.core;
    const rc = bus.call(op, () => core.ex.transfer(core.ctx, this.slot, this.gen, toId(handle), target.slot, target.gen));
    if (rc < 0) throw bus.error(op, rc, { handle });
    bus.poke();
    return core.views().f64[core.out >>> 3];
  }

  /** Drops one reference of `handle`. */
  release(handle: number): void {
    const op = "release";
    this.check(op);
    const bus = this.bus, core = bus.core;
    const rc = bus.call(op, () => core.ex.release(core.ctx, this.slot, this.gen, toId(handle)));
    if (rc < 0) throw bus.error(op, rc, { handle });
    bus.poke();
  }

  /** Destroys owned nodes, as one transaction. */
  destroy(nodes: number | ArrayLike<number>, options?: { releaseHandles?: boolean }): void {
    const op = "destroy";
    this.check(op);
    const o = checkOptions(op, options, ["releaseHandles"]);
    const flags = checkBoolean(op, "releaseHandles", o.releaseHandles) ? DESTROY_RELEASE_HANDLES : 0;
    let ids: ArrayLike<unknown>;
    if (typeof nodes === "number") ids = [nodes];
    else if (isArrayLike(nodes) && typeof nodes !== "string") ids = nodes;
    else throw Bus1Error.of("EINVAL", op, `nodes must be a handle ID or an array of them, got ${describe(nodes)}`);
    const bus = this.bus, core = bus.core;
    const n = ids.length;
    const nw = n > core.bounds.destroy ? 0 : n;
    const base = core.scratchFor(nw * 12 + 8);
    const f64 = core.views().f64;
    for (let i = 0, at = base >>> 3; i < nw; i++) f64[at + i] = toId(ids[i]);
    const rc = bus.call(op, () => core.ex.destroy(core.ctx, this.slot, this.gen, flags, base, u32Clamp(n)));
    if (rc < 0) throw bus.error(op, rc, { handles: ids });
    bus.poke();
  }

  /** Frees a received slice. */
  releaseSlice(offset: number): void {
    const op = "releaseSlice";
    this.check(op);
    const bus = this.bus, core = bus.core;
    const rc = bus.call(op, () => core.ex.slice_release(core.ctx, this.slot, this.gen, toId(offset)));
    if (rc < 0) throw bus.error(op, rc, { offset });
  }

  /** Sets limits; flushes the peer and/or its seed. */
  reset(options?: ResetOptions): void {
    const op = "reset";
    this.check(op);
    const o = checkOptions(op, options, ["flush", "flushSeed", "limits"]);
    let flags = 0;
    if (checkBoolean(op, "flush", o.flush)) flags |= RESET_FLUSH;
    if (checkBoolean(op, "flushSeed", o.flushSeed)) flags |= RESET_FLUSH_SEED;
    const limits = checkLimits(op, o.limits);
    const bus = this.bus, core = bus.core;
    const base = core.scratchFor(32);
    const f64 = core.views().f64;
    LIMIT_KEYS.forEach((k, r) => {
      if (limits[k] !== undefined) {
        flags |= RESET_LIMIT << r;
        f64[(base >>> 3) + r] = limits[k]!;
      }
    });
    const rc = bus.call(op, () => core.ex.reset(core.ctx, this.slot, this.gen, flags, base));
    if (rc < 0) throw bus.error(op, rc, { limits });
    bus.poke();
  }

  /** The peer's limits. */
  query(): Limits {
    const op = "query";
    this.check(op);
    const bus = this.bus, core = bus.core;
    const rc = bus.call(op, () => core.ex.query(core.ctx, this.slot, this.gen));
    if (rc < 0) throw bus.error(op, rc);
    const u32 = core.views().u32, at = core.out >>> 2;
    return { maxSlices: u32[at], maxHandles: u32[at + 1], maxInflightBytes: u32[at + 2], maxInflightObjects: u32[at + 3] };
  }

  /** Counters of this peer (an addition to the API: tests, monitoring). */
  stats(): PeerStats {
    const op = "stats";
    this.check(op);
    const bus = this.bus, core = bus.core;
    const rc = bus.call(op, () => core.ex.stats(core.ctx, this.slot, this.gen));
    if (rc < 0) throw bus.error(op, rc);
    const u32 = core.views().u32, at = core.out >>> 2;
    return {
      slices: u32[at], handles: u32[at + 1], bytes: u32[at + 2], objects: u32[at + 3], poolBytes: u32[at + 4],
      handleIds: u32[at + 5], handleRecords: u32[at + 6], liveSlices: u32[at + 7],
    };
  }

  /** Ends the peer for every holder: a full flush, then ESHUTDOWN. */
  disconnect(): void {
    const op = "disconnect";
    this.check(op);
    const bus = this.bus, core = bus.core;
    const rc = bus.call(op, () => core.ex.disconnect(core.ctx, this.slot, this.gen));
    if (rc < 0) throw bus.error(op, rc);
    bus.poke();
  }

  /** Drops this reference; the last one disconnects the peer. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const bus = this.bus, core = bus.core;
    bus.untrack(this);
    if (!core.broken && core.ctx) bus.call("close", () => core.ex.peer_unref(core.ctx, this.slot, this.gen));
    bus.poke();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal True if recv() would return a message now. */
  ready(): boolean {
    const op = "ready";
    this.check(op);
    const bus = this.bus, core = bus.core;
    const rc = bus.call(op, () => core.ex.ready(core.ctx, this.slot, this.gen));
    if (rc < 0) throw bus.error(op, rc);
    return rc > 0;
  }

  /** Blocks until recv() would return a message; false on timeout. */
  wait(timeoutMs?: number): boolean {
    const op = "wait";
    this.check(op);
    if (timeoutMs !== undefined && (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs) || timeoutMs < 0)) {
      throw Bus1Error.of("EINVAL", op, `timeoutMs must be a non-negative number, got ${describe(timeoutMs)}`);
    }
    const timeout = timeoutMs ?? Infinity;
    if (this.ready()) return true;
    const core = this.bus.core;
    if (!this.bus.shared) {
      // one thread, private memory: nothing can arrive while we block
      if (timeout === Infinity) {
        throw Bus1Error.of("EAGAIN", op, "nothing is queued and nothing can arrive on a single-thread bus");
      }
      if (timeout > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, timeout);
      return this.ready();
    }
    const word = core.ex.wake_addr(this.slot, this.gen) >>> 2;
    const start = performance.now();
    const end = start + timeout;
    if (this.spin(word, Math.min(end, start + WAIT_SPIN_MS))) return true;
    for (;;) {
      const i32 = core.views().i32;
      const seq = Atomics.load(i32, word);
      Atomics.add(i32, word + 1, 1);
      try {
        if (this.ready()) return true;
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
   * registered sleepers): true if a message became ready meanwhile. Does
   * nothing when as many threads spin as there are processors but one (the
   * count never goes above that).
   */
  private spin(word: number, until: number): boolean {
    const core = this.bus.core;
    const i32 = core.views().i32;
    const spinners = (core.root + ROOT_SPINNERS) >>> 2;
    const limit = (platform?.cpus ?? 2) - 1;
    for (;;) {
      const n = Atomics.load(i32, spinners);
      if (n >= limit) return false;
      if (Atomics.compareExchange(i32, spinners, n, n + 1) === n) break;
    }
    // if this thread dies spinning, thread_exit takes its count back
    const flag = (core.ctx + CTX_SPINNING) >>> 2;
    Atomics.store(i32, flag, 1);
    try {
      const seq = Atomics.load(i32, word);
      for (let n = 1; ; n++) {
        if (Atomics.load(i32, word) !== seq) return this.ready();
        if ((n & 63) === 0 && performance.now() >= until) return false;
      }
    } finally {
      if (Atomics.exchange(i32, flag, 0)) Atomics.sub(i32, spinners, 1);
    }
  }

  /** Resolves when recv() would return a message. */
  readable(signal?: AbortSignal): Promise<void> {
    try {
      this.check("readable");
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (this.ready()) return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => reader.fail(signal!.reason);
      const reader = new Reader(this, resolve, reject, signal, onAbort);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.bus.readers.add(reader);
      if (this.bus.shared) this.watch(reader);
    });
  }

  /** Waits on the wake word for senders in other threads. */
  private watch(reader: Reader): void {
    const core = this.bus.core;
    const waitAsync = (Atomics as unknown as { waitAsync?: Function }).waitAsync;
    if (!waitAsync) {
      // no Atomics.waitAsync here: look again every few milliseconds (not a busy loop)
      const tick = () => {
        if (!this.bus.readers.has(reader)) return;
        reader.check();
        if (this.bus.readers.has(reader)) setTimeout(tick, 4);
      };
      setTimeout(tick, 4);
      return;
    }
    const word = core.ex.wake_addr(this.slot, this.gen) >>> 2;
    const loop = () => {
      if (!this.bus.readers.has(reader)) return;
      const i32 = core.views().i32;
      const seq = Atomics.load(i32, word);
      reader.check();
      if (!this.bus.readers.has(reader)) return;
      Atomics.add(i32, word + 1, 1);
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
