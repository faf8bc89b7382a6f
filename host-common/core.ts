/**
 * One thread's binding to the wasm core: the instance, the memory views, the
 * thread's context block and argument scratch. Every call into the core goes
 * through a Core; nothing here knows bus1 semantics beyond the ABI layout
 * (docs/ABI.md).
 */
import { Bus1Error } from "./errors.js";
import { ObjectTable, type Cloner } from "./objects.js";

/** The exports of the wasm core (docs/ABI.md). */
export interface CoreExports {
  bus_init(maxPages: number, slices: number, handles: number, bytes: number, objects: number): number;
  bus_version(): number;
  bus_heap_bytes(): number;
  bus_root(): number;
  ctx_new(canBlock: number, hostThread: number): number;
  ctx_free(ctx: number): void;
  thread_exit(ctx: number, hostThread: number): number;
  bus_broken_reason(): number;
  bus_fail(): void;
  ctx_scratch(ctx: number, size: number): number;
  object_record(ctx: number, slot: number, length: number): number;
  object_record_free(ctx: number, rec: number): void;
  object_record_release(ctx: number, rec: number): number;
  recv_taken(ctx: number): number;
  bus_stats(ctx: number): number;
  peer_connect(ctx: number, user: number): number;
  peer_ref(ctx: number, slot: number, gen: number): number;
  peer_unref(ctx: number, slot: number, gen: number): number;
  send_begin(ctx: number, slot: number, gen: number, flags: number, dsts: number, nDsts: number, nVecs: number,
    size: number, handles: number, nHandles: number, objs: number, nObjs: number, out: number): number;
  send_commit(ctx: number): void;
  send_cancel(ctx: number): void;
  recv(ctx: number, slot: number, gen: number, flags: number): number;
  slice_release(ctx: number, slot: number, gen: number, offset: number): number;
  transfer(ctx: number, slot: number, gen: number, id: number, toSlot: number, toGen: number): number;
  release(ctx: number, slot: number, gen: number, id: number): number;
  destroy(ctx: number, slot: number, gen: number, flags: number, ids: number, n: number): number;
  reset(ctx: number, slot: number, gen: number, flags: number, lims: number): number;
  query(ctx: number, slot: number, gen: number): number;
  disconnect(ctx: number, slot: number, gen: number): number;
  stats(ctx: number, slot: number, gen: number): number;
  ready(ctx: number, slot: number, gen: number): number;
  wake_addr(slot: number, gen: number): number;
  max_destinations: WebAssembly.Global;
  max_handles: WebAssembly.Global;
  max_vecs: WebAssembly.Global;
  max_objects: WebAssembly.Global;
  max_destroy: WebAssembly.Global;
  assertions: WebAssembly.Global;
}

/** Bounds on the counts of one call, as the core exports them. */
export interface CallBounds {
  destinations: number;
  handles: number;
  vecs: number;
  objects: number;
  destroy: number;
}

/** Offsets in the context block (docs/ABI.md, "Thread context"). */
export const CTX_ERR_ARG = 28;
export const CTX_ERR_INDEX = 32;
export const CTX_OUT = 64;
export const CTX_TID = 96;
export const CTX_SERIAL = 176;
export const CTX_IN_CALL = 100;
/** The ABI version this host speaks (bus_version(), docs/ABI.md). */
export const ABI_VERSION = 7;
/** Offset in the context block of the flag that this thread spins in a wait. */
export const CTX_SPINNING = 172;
/** Offset in the root of the count of threads spinning in wait (docs/ABI.md). */
export const ROOT_SPINNERS = 76;
/** Offset in the root of the word that says why the bus is broken (0: it is not). */
export const ROOT_BROKEN = 56;
/**
 * The bit of a wake word's sleepers word (wake + 4) a sleeper sets after it
 * counts itself and before its last look (ABI.md §5.5): the first send to
 * find it set takes it and notifies, the next sends do not until a sleeper
 * sets it again.
 */
export const WAKE_ARMED = 1 << 31;

const SCRATCH_MIN = 4096;
const SCRATCH_KEEP = 65536;

// What views() and the core's imports use, captured at load: they run while
// a core call is open, where no code replaced later may run (check.ts).
const U8 = Uint8Array, U32 = Uint32Array, I32 = Int32Array, F64 = Float64Array;
const memoryBuffer = Function.prototype.call.bind(
  Object.getOwnPropertyDescriptor(WebAssembly.Memory.prototype, "buffer")!.get!) as (m: WebAssembly.Memory) => ArrayBufferLike;
const memoryGrow = Function.prototype.call.bind(WebAssembly.Memory.prototype.grow) as (m: WebAssembly.Memory, pages: number) => number;
const clock = performance.now.bind(performance);
const viewBytes = Function.prototype.call.bind(
  Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), "byteLength")!.get!) as (v: Uint8Array) => number;

/** An assertion of the core failed (a debug build): the bus cannot be trusted. */
export class CoreAssertion extends Error {}

/** Pages of 64 KiB: the core keeps addresses below 2 GiB. */
export const MAX_PAGES = 32767;

export class Core {
  readonly ex: CoreExports;
  readonly memory: WebAssembly.Memory;
  readonly objects: ObjectTable;
  /** This thread's index in the core's thread table. */
  tid = 0;
  /** This attachment's serial: the owner of the object records it makes. */
  serial = 0;
  readonly bounds: CallBounds;
  /** Address of the bus root (the same in every instance of the module). */
  readonly root: number;
  /** The memory's buffer as of the last views(): reading `u8.buffer` costs a view's worth of time. */
  buffer!: ArrayBufferLike;
  u8!: Uint8Array;
  u32!: Uint32Array;
  i32!: Int32Array;
  f64!: Float64Array;
  ctx = 0;
  /** Base of the context's result record, as indexes into each view. */
  out = 0;
  private scratch = 0;
  private scratchSize = 0;
  /** Set when the core trapped: the bus can no longer be trusted. */
  broken: string | null = null;
  /** A build with the core's assertions on: the host checks its own shortcuts against the core too. */
  readonly checked: boolean;

  /** Instantiates the core on `memory`; throws what the engine throws (LinkError for a memory that does not fit). */
  constructor(module: WebAssembly.Module, memory: WebAssembly.Memory, cloner: Cloner | null) {
    this.memory = memory;
    this.objects = new ObjectTable(this, cloner);
    const instance = new WebAssembly.Instance(module, {
      env: {
        memory,
        abort: (msg: number, file: number, line: number, col: number) => {
          throw new CoreAssertion(`bus1 core assertion failed: ${this.string(msg)} (${this.string(file)}:${line}:${col})`);
        },
        now: clock,
        objects_drop: (slots: number, count: number) => {
          const u32 = this.views().u32;
          for (let i = 0; i < count; i++) this.objects.drop(u32[(slots >>> 2) + i]);
        },
      },
    });
    this.ex = instance.exports as unknown as CoreExports;
    const ex = this.ex;
    this.root = ex.bus_root();
    this.bounds = {
      destinations: ex.max_destinations.value, handles: ex.max_handles.value, vecs: ex.max_vecs.value,
      objects: ex.max_objects.value, destroy: ex.max_destroy.value,
    };
    this.checked = ex.assertions.value !== 0;
    this.views();
  }

  /** Index of Root.heapEnd in u32: the heap ends there, views must cover it. */
  private heapEnd = 0;

  /**
   * Views on the memory, re-made after it grew. Reading `memory.buffer` is
   * costly, so the check is the heap's end (written by whichever thread grew
   * the memory, after growing it) against the views' length.
   */
  views(): this {
    if (this.heapEnd !== 0 && this.u32[this.heapEnd] <= this.bytes) return this;
    const end = (this.root + 16) >>> 2;
    this.#make(memoryBuffer(this.memory));
    // Deno 2.9 can hand a thread a stale, shorter buffer of a shared memory that another
    // thread grew (seen with 2.9.6: a memory posted to a worker while it grew); growing by
    // 0 pages makes it read the length again
    if (this.bytes < this.u32[end]) {
      memoryGrow(this.memory, 0);
      this.#make(memoryBuffer(this.memory));
    }
    this.heapEnd = end;
    return this;
  }

  /** Bytes the views cover. */
  private bytes = 0;

  #make(buffer: ArrayBufferLike): void {
    this.buffer = buffer;
    this.u8 = new U8(buffer);
    this.u32 = new U32(buffer);
    this.i32 = new I32(buffer);
    this.f64 = new F64(buffer);
    this.bytes = viewBytes(this.u8);
  }

  /** True while a call of this thread into the core is open (Ctx.inCall). */
  inCall(): boolean {
    return this.ctx !== 0 && this.views().u32[(this.ctx + CTX_IN_CALL) >>> 2] !== 0;
  }

  /** Makes this thread's context block. */
  open(canBlock: boolean, hostThread: number): void {
    this.ctx = this.ex.ctx_new(canBlock ? 1 : 0, hostThread >>> 0);
    if (!this.ctx) throw new Bus1Error("ENOMEM", "bus: out of memory for a thread context");
    this.out = this.ctx + CTX_OUT;
    this.tid = this.views().u32[(this.ctx + CTX_TID) >>> 2];
    this.serial = this.u32[(this.ctx + CTX_SERIAL) >>> 2];
  }

  /** Detaches this thread: its records in flight become orphans, its context goes. */
  close(): void {
    if (!this.ctx) return;
    this.objects.sweep();
    this.objects.forget();
    this.scratch = this.scratchSize = 0;
    const ctx = this.ctx;
    this.ctx = 0;
    this.ex.ctx_free(ctx);
  }

  /**
   * Scratch of at least `bytes` bytes for call arguments (8-aligned), owned
   * by the thread's context in the core. It doubles as it grows, and a large
   * one goes back to 64 KiB once a call needs less than a quarter of it.
   */
  scratchFor(bytes: number): number {
    // callers write their arguments through the views next: they must be current (private memory detaches)
    this.views();
    const size = this.scratchSize;
    if (bytes > size || (size > SCRATCH_KEEP && bytes <= size >>> 2)) {
      const want = bytes > size ? Math.max(bytes, SCRATCH_MIN, size * 2) : Math.max(bytes, SCRATCH_KEEP);
      const p = this.ex.ctx_scratch(this.ctx, want);
      if (!p) {
        if (bytes <= size) return this.scratch;
        throw new Bus1Error("ENOMEM", `bus: out of memory for ${bytes} bytes of call arguments`);
      }
      this.scratch = p;
      this.scratchSize = want;
      // the new block may lie beyond what the views cover
      this.views();
    }
    return this.scratch;
  }

  /** An AssemblyScript string of the module's static data (assertion messages). */
  private string(p: number): string {
    if (!p) return "";
    const u8 = this.views().u8;
    const bytes = new Uint32Array(u8.buffer, p - 4, 1)[0];
    let out = "";
    for (let i = 0; i < bytes; i += 2) out += String.fromCharCode(u8[p + i] | (u8[p + i + 1] << 8));
    return out;
  }

  errArg(): number {
    return this.views().u32[(this.ctx + CTX_ERR_ARG) >>> 2];
  }

  errIndex(): number {
    return this.views().u32[(this.ctx + CTX_ERR_INDEX) >>> 2];
  }
}
