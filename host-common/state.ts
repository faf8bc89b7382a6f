/**
 * One thread's state of one bus (BusState): the core binding, the peer
 * references and pending readable() calls of this thread, and how a failed
 * core call becomes a Bus1Error. A Bus and its Peers share it and keep it in
 * private fields; it is never handed out.
 */
import { Bus1Error, codeOf } from "./errors.js";
import { Core, CoreAssertion } from "./core.js";
import { describe } from "./check.js";
import { requirePlatform, type Watcher } from "./platform.js";
import type { BusHandle } from "./types.js";
import type { Peer, Reader } from "./peer.js";

// argument names of the ABI (docs/ABI.md)
const ARG_NAMES = ["", "destinations", "handles", "handle", "options", "offset", "limits", "payload", "objects", "payload", "user", "to"];
const ARG_BROKEN = 12;
const BROKEN_REASONS = ["", "a lock stayed held for 5 s: its thread is gone", "a thread died inside a bus call",
  "the core trapped in a thread"];

/** Values that are bus endpoints: never transferable as objects. */
const endpoints = new WeakSet<object>();

export function isEndpoint(v: unknown): boolean {
  return typeof v === "object" && v !== null && endpoints.has(v);
}

export function markEndpoint(v: object): void {
  endpoints.add(v);
}

/** ESHUTDOWN for a call on a broken bus, saying why it broke. */
export function broken(op: string, why: string): Bus1Error {
  return new Bus1Error("ESHUTDOWN", `${op}: the bus is broken: ${why} (ESHUTDOWN)`);
}

/**
 * EBUSY for a bus call made while a core call of this thread is open (SPEC
 * §2): only code that is not the package's could make it (a host's transfer
 * step reaching someone's code, say), and it must not enter the core, whose
 * locks the open call holds.
 */
export function reentered(op: string): Bus1Error {
  return new Bus1Error("EBUSY", `${op}: called while a bus call of this thread is open (from code that ran inside it): ` +
    "no bus call may start before that one is over (EBUSY)");
}

/** Array.isArray that says false for a revoked Proxy instead of throwing. */
export function isList(v: unknown): v is unknown[] {
  try {
    return Array.isArray(v);
  } catch {
    return false;
  }
}

/** Proves a constructor call comes from this module (Bus and Peer are made by the API, never by `new`). */
export const MAKE = Symbol("bus1-wasm internal");

/**
 * One thread's state of one bus: the core binding, the peer references and
 * pending readable() calls of this thread. Never handed out: a Bus or a Peer
 * keeps it in a private field.
 */
export class BusState {
  readonly core: Core;
  readonly id: number;
  readonly shared: boolean;
  readonly module: WebAssembly.Module;
  readonly peers = new Set<Peer>();
  readonly readers = new Set<Reader>();
  closed = false;
  handle: BusHandle | null = null;
  /** This bus's watch of workers (bus.watch), made by the first; closed with the bus, so nothing keeps this state. */
  watcher: Watcher | null = null;

  constructor(module: WebAssembly.Module, memory: WebAssembly.Memory, id: number, shared: boolean) {
    this.core = new Core(module, memory, shared ? requirePlatform().cloner ?? null : null);
    this.module = module;
    this.id = id;
    this.shared = shared;
  }

  checkOpen(op: string): void {
    if (this.closed) throw Bus1Error.of("EBADF", op, "the bus is closed in this thread");
    if (this.core.broken) throw broken(op, this.core.broken);
    if (this.core.inCall()) throw reentered(op);
  }

  /** Calls into the core; a trap marks the bus broken. */
  call(op: string, f: () => number): number {
    try {
      return f();
    } catch (e) {
      throw this.trap(op, e);
    }
  }

  /**
   * What a call that threw turns into. A trap of the core (or an assertion of
   * a debug build, or a stack overflow inside a core call) breaks the bus; a
   * Bus1Error, or an error of code outside the core (a builtin replaced by
   * the caller's own code), is passed on as it is.
   */
  trap(op: string, e: unknown): unknown {
    if (e instanceof Bus1Error) return e;
    if (!(e instanceof WebAssembly.RuntimeError || e instanceof CoreAssertion || this.core.inCall())) return e;
    this.core.broken = `the core failed (${e instanceof Error ? e.message : String(e)})`;
    // what it was changing may be half-changed: no thread may go on with it
    try {
      this.core.ex.bus_fail();
    } catch {
      // the memory itself is gone: this thread stops all the same
    }
    return broken(op, this.core.broken);
  }

  /** The Bus1Error for −errno `rc` of `op`, naming the argument at fault from the call's snapshot. */
  error(op: string, rc: number, values?: Record<string, unknown>, rename?: Record<string, string>): Bus1Error {
    const code = codeOf(-rc);
    if (code === undefined) {
      this.core.broken = `the core failed (it returned ${rc}, which is no error code)`;
      return broken(op, this.core.broken);
    }
    const arg = this.core.errArg();
    if (code === "ESHUTDOWN" && arg === ARG_BROKEN) {
      this.core.broken = BROKEN_REASONS[this.core.ex.bus_broken_reason()] ?? "unknown";
      return broken(op, this.core.broken);
    }
    let what: string | undefined;
    if (arg > 0 && arg < ARG_NAMES.length && code !== "ESHUTDOWN" && code !== "EBADF" && code !== "ENOMEM") {
      const name = rename?.[ARG_NAMES[arg]] ?? ARG_NAMES[arg];
      const v = values?.[name];
      if (isList(v) && name !== "payload") {
        const i = this.core.errIndex();
        what = `${name}[${i}] (${describe(v[i])})`;
      } else if (values && name in values && name !== "payload") {
        what = `${name} (${describe(v)})`;
      } else {
        what = name;
      }
    }
    return Bus1Error.of(code, op, what);
  }

  /** After an operation that may have made peers readable; never throws (the operation is done). */
  poke(): void {
    if (this.readers.size === 0) return;
    for (const r of [...this.readers]) {
      try {
        r.check();
      } catch {
        // a reader's own code (its signal) failed: it was settled all the same
      }
    }
  }

  /** This thread lets go: every reference closed, the thread detached. Never throws. */
  close(): void {
    if (this.closed) return;
    if (this.core.inCall()) {
      // called from inside a core call of this thread: done once that call is over
      queueMicrotask(() => this.close());
      return;
    }
    for (const peer of [...this.peers]) {
      try {
        peer.close();
      } catch {
        // a broken core: the reference is dropped all the same
      }
    }
    this.closed = true;
    const watcher = this.watcher;
    this.watcher = null;
    try {
      watcher?.close();
    } catch {
      // a host's failure to let go: the bus is closed all the same
    }
    for (const r of [...this.readers]) r.fail(Bus1Error.of("EBADF", "readable", "the bus was closed"));
    if (this.core.broken) return; // a core that trapped is not entered again
    try {
      this.core.close();
    } catch (e) {
      this.trap("close", e);
    }
  }
}
