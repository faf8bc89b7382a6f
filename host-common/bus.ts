/**
 * The Bus (API.md): made by Bus.create or joined by Bus.attach, it makes
 * peers (connect, adopt), watches workers and says what the bus holds.
 *
 * This layer turns JS values into ABI arguments and ABI results into JS
 * values, and names the bad argument when the core refuses a call. Every
 * bus1 rule is enforced by the core; what is checked here is only what the
 * core cannot see: the JS types of arguments, and which host values may
 * travel as objects.
 *
 * Every operation has three steps: the arguments are read once into a
 * snapshot (check.ts; the caller's getters and proxies run here, if at all),
 * the reference and the bus are checked again (a getter may have closed
 * them), and only then is the core entered, with no user code until the
 * operation is over. A Bus or a Peer keeps its state in private fields: the
 * core, the memory and the raw slot are not reachable from them.
 */
import { Bus1Error, refused } from "./errors.js";
import { ABI_VERSION, type Core } from "./core.js";
import { describe, fail, reading, readOptions, readInteger, readLimits } from "./check.js";
import { requirePlatform } from "./platform.js";
import { BusState, MAKE, markEndpoint } from "./state.js";
import { Peer, stateOf } from "./peer.js";
import { serve, type ServeOptions, type Serving } from "./serve.js";
import { inspectBus } from "./inspect.js";
import type { PortLike } from "./wire.js";
import {
  DEFAULT_LIMITS, DEFAULT_MAX_MEMORY_BYTES, MAX_MEMORY_BYTES, type BusHandle, type BusOptions, type BusStats,
  type ConnectOptions, type PeerRef, type BusSnapshot,
} from "./types.js";

const U32_MAX = 0xffffffff;
const EBADF = 9, ESHUTDOWN = 108;
/** Smallest bus: two pages (the root, the thread table and a few small peers). */
const MIN_MEMORY_BYTES = 2 * 65536;

let busIds = 0;

/** A new Peer object for (slot, gen), tracked as this thread's reference. */
function track(s: BusState, slot: number, gen: number): Peer {
  const peer = new Peer(MAKE, s, slot, gen);
  s.peers.add(peer);
  return peer;
}

/**
 * The core binding of a bus in this thread, for the package's own tests and
 * benchmarks (not exported by the entry points: internals are not API).
 */
export let coreOf: (bus: Bus) => Core;

export class Bus {
  readonly #s: BusState;

  static {
    coreOf = (bus) => bus.#s.core;
  }

  /** @internal Buses are made by Bus.create and Bus.attach. */
  constructor(token: symbol, state: BusState) {
    if (token !== MAKE) throw Bus1Error.of("EPERM", "Bus", "buses are made by Bus.create() and Bus.attach()");
    this.#s = state;
    markEndpoint(this);
  }

  /** `self`'s state, for a method called with any `this`. */
  static #state(self: unknown, op: string): BusState {
    if (typeof self !== "object" || self === null || !(#s in self)) {
      throw fail("EINVAL", op, `called on ${describe(self)}, not on a Bus`);
    }
    return (self as Bus).#s;
  }

  /** True when the bus is on shared memory (other threads may attach). */
  get shared(): boolean {
    return this.#s.shared;
  }

  /** Loads the core and makes a new bus. */
  static async create(options?: BusOptions): Promise<Bus> {
    const op = "Bus.create";
    const p = requirePlatform();
    const o = readOptions(op, options, ["shared", "limits", "maxMemoryBytes"]);
    if (o.shared !== undefined && typeof o.shared !== "boolean") {
      throw fail("EINVAL", op, `shared must be a boolean, got ${describe(o.shared)}`);
    }
    const shared = (o.shared as boolean | undefined) ?? p.sharedAvailable();
    if (shared && !p.sharedAvailable()) throw fail("EINVAL", op, "shared memory is not available here (SharedArrayBuffer)");
    const limits = { ...DEFAULT_LIMITS, ...readLimits(op, o.limits) };
    const maxBytes = o.maxMemoryBytes === undefined ? DEFAULT_MAX_MEMORY_BYTES
      : readInteger(op, "maxMemoryBytes", o.maxMemoryBytes, MIN_MEMORY_BYTES, MAX_MEMORY_BYTES);
    const pages = Math.floor(maxBytes / 65536);
    const module = await p.module(shared);
    // Both kinds start small and grow as the bus needs (a page can make dozens
    // of private buses); growing private memory detaches the views of its old
    // buffer, which the host re-makes (Core.views) and Message.payload survives.
    const memory = new WebAssembly.Memory({ initial: 2, maximum: pages, shared });
    const state = new BusState(module, memory, (Math.random() * 0x7fffffff) ^ ++busIds, shared);
    const rc = state.core.ex.bus_init(pages, limits.maxSlices, limits.maxHandles, limits.maxInflightBytes,
      limits.maxInflightObjects);
    if (rc < 0) throw fail("ENOMEM", op, `maxMemoryBytes ${maxBytes} is too small`);
    state.core.open(p.canBlock(), p.threadId());
    await state.core.objects.join(state.id, shared);
    return new Bus(MAKE, state);
  }

  /** Joins a bus made elsewhere (in another thread) through its handle. */
  static async attach(handle: BusHandle): Promise<Bus> {
    const op = "Bus.attach";
    const p = requirePlatform();
    if (typeof handle !== "object" || handle === null) throw fail("EINVAL", op, `not a bus handle: ${describe(handle)}`);
    const { id, module, memory } = reading(op, "handle", () => ({ id: handle.id, module: handle.module, memory: handle.memory }));
    if (!(module instanceof WebAssembly.Module) || !(memory instanceof WebAssembly.Memory) || typeof id !== "number") {
      throw fail("EINVAL", op, `not a bus handle: ${describe(handle)}`);
    }
    const shared = typeof SharedArrayBuffer !== "undefined" && memory.buffer instanceof SharedArrayBuffer;
    let state: BusState;
    try {
      state = new BusState(module, memory, id, shared);
    } catch (e) {
      throw fail("EINVAL", op, `the module and memory of the handle do not fit together (${(e as Error)?.message})`, e);
    }
    if (state.core.ex.bus_version() !== ABI_VERSION) throw fail("EINVAL", op, "the memory holds no bus of this version");
    state.core.open(p.canBlock(), p.threadId());
    // channels to the threads already attached, for objects that move (objects.ts)
    await state.core.objects.join(state.id, shared);
    return new Bus(MAKE, state);
  }

  /** Structured-cloneable: post it to a worker and Bus.attach it there. */
  get handle(): BusHandle {
    const s = this.#s;
    if (!s.handle) {
      s.handle = Object.freeze({ id: s.id, module: s.module, memory: s.core.memory });
      markEndpoint(s.handle);
    }
    return s.handle;
  }

  /** A new peer (open("/dev/bus1")). */
  connect(options?: ConnectOptions): Peer {
    const op = "connect";
    const s = Bus.#state(this, op);
    s.checkOpen(op);
    const o = readOptions(op, options, ["user"]);
    const user = o.user === undefined ? 0 : readInteger(op, "user", o.user, 0, 0x7fffffff);
    s.checkOpen(op);
    const core = s.core;
    const rc = s.call(op, () => core.ex.peer_connect(core.ctx, user));
    if (rc < 0) throw s.error(op, rc, { user });
    const out = core.views().out >>> 2;
    return track(s, core.u32[out], core.u32[out + 1]);
  }

  /** Another reference to a peer, from its `ref`. */
  adopt(ref: PeerRef): Peer {
    const op = "adopt";
    const s = Bus.#state(this, op);
    s.checkOpen(op);
    if (typeof ref !== "object" || ref === null) throw fail("EINVAL", op, `not a peer reference: ${describe(ref)}`);
    const r = reading(op, "ref", () => ({ bus: ref.bus, slot: ref.slot, gen: ref.gen }));
    if (typeof r.bus !== "number") throw fail("EINVAL", op, `not a peer reference: ${describe(ref)}`);
    const slot = readInteger(op, "ref.slot", r.slot, 0, U32_MAX);
    const gen = readInteger(op, "ref.gen", r.gen, 0, U32_MAX);
    if (r.bus !== s.id) throw fail("EINVAL", op, "the reference is to a peer of another bus");
    s.checkOpen(op);
    const core = s.core;
    const rc = s.call(op, () => core.ex.peer_ref(core.ctx, slot, gen));
    if (rc < 0) throw s.error(op, rc === -EBADF ? -ESHUTDOWN : rc);
    return track(s, slot, gen);
  }

  /**
   * Ties a worker's life to the bus: when its thread has ended, the peer
   * references it held are closed (peers only it used are disconnected) and
   * its host objects in flight are handed to their receivers; if it died
   * inside a bus call, the bus is marked broken. Node: a worker_threads.Worker
   * (anything else is EINVAL; an "exit" emitted by hand is not an exit);
   * browsers and Deno: a Worker (host-common/liveness.ts). The watch lasts
   * until the bus is closed in this thread, which lets go of all it held.
   * EOPNOTSUPP where the host cannot tell that a thread has ended.
   */
  watch(worker: object): void {
    const op = "watch";
    const s = Bus.#state(this, op);
    s.checkOpen(op);
    const p = requirePlatform();
    if (!p.watcher) {
      throw refused("EOPNOTSUPP", op, `the ${p.name} host cannot watch workers here: it has no way to learn that a thread ended`);
    }
    // one watcher per bus, kept only once it watches a worker, closed with the bus
    const watcher = s.watcher ?? p.watcher((id) => {
      if (s.closed || s.core.broken) return;
      try {
        const rc = s.call(op, () => s.core.ex.thread_exit(s.core.ctx, id >>> 0));
        if (rc < 0) s.error(op, rc);
        s.poke();
      } catch {
        // an exit is news, not a call of anyone's: a broken bus is seen by the next call
      }
    });
    watcher.add(worker);
    s.watcher = watcher;
  }

  /**
   * Serves `peer` to a plugin on the other end of `port` (API.md "Sandboxed
   * peers"; serve.ts): the serving takes over this Peer reference. Returns
   * the serving, to end it (`close`) or learn why it ended (`closed`).
   */
  serve(peer: Peer, port: PortLike, options?: ServeOptions): Serving {
    const op = "serve";
    const s = Bus.#state(this, op);
    s.checkOpen(op);
    if (stateOf(peer) !== s) throw fail("EINVAL", op, `peer must be a Peer of this bus in this thread, got ${describe(peer)}`);
    return serve(peer, port, options);
  }

  /** Counters of the whole bus (an addition to API.md). */
  stats(): BusStats {
    const op = "stats";
    const s = Bus.#state(this, op);
    s.checkOpen(op);
    s.core.objects.sweep();
    const core = s.core;
    const rc = s.call(op, () => core.ex.bus_stats(core.ctx));
    if (rc < 0) throw s.error(op, rc);
    const u32 = core.views().u32, at = core.out >>> 2;
    return { heapBytes: u32[at], usedBytes: u32[at + 1], peers: u32[at + 2], users: u32[at + 3], threads: u32[at + 4],
      records: u32[at + 5] };
  }

  /**
   * The whole bus as the core sees it, at one instant (API.md; docs/SPEC.md
   * "Inspecting the bus"): users, peers with their handles and queues, nodes
   * and their holders, transactions in flight. Plain data.
   */
  inspect(): BusSnapshot {
    const op = "inspect";
    const s = Bus.#state(this, op);
    s.checkOpen(op);
    return inspectBus(s, op);
  }

  /** This thread lets go: closes every peer reference it holds. Works in every state, and never throws. */
  close(): void {
    Bus.#state(this, "close").close();
  }
}
