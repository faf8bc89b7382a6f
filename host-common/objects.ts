/**
 * Host objects (SPEC §7): values that cannot live in linear memory travel
 * with a message as records in the bus memory (assembly/record.ts has the
 * record's layout and its rules).
 *
 * A receiver in the sending thread gets the value itself (same identity);
 * one in another thread gets a structured clone made from the serialized
 * bytes in the record. A value that cannot be cloned (a function, say), or
 * whose clone cannot be rebuilt in the receiving thread, arrives as a
 * Bus1Error in its place: the message is delivered either way.
 *
 * A record names its owner by the serial of the owning thread's attachment,
 * never by a reused index, so a thread never takes another thread's record
 * for its own. Every message that is received or dropped takes one from the
 * record's `pending`; at zero the owner frees it (at once when it is the one
 * that saw zero, otherwise on its next sweep). When the owner lets go of the
 * bus, or dies and is found by `bus.watch`, the core turns its records into
 * orphans, and whoever takes the last message frees them.
 */
import { Bus1Error } from "./errors.js";
import type { Core } from "./core.js";

/** Record.length of a value that has no serialized form. */
export const NOT_CLONEABLE = 0xffffffff;
/** Record.owner of a record whose thread is gone. */
const ORPHAN = 0xffffffff;
/** Bytes of a record's header (assembly/record.ts RECORD_HEADER). */
const HEADER = 24;
const NONE: number[] = [];

/** How a host copies values between threads; null where it cannot. */
export interface Cloner {
  serialize(value: unknown): Uint8Array | null;
  deserialize(bytes: Uint8Array): unknown;
}

/** Values of one send, serialized (this runs user code) before the core is entered. */
export interface PreparedObjects {
  readonly values: readonly unknown[];
  readonly forms: readonly (Uint8Array | null)[];
}

export const NO_OBJECTS: PreparedObjects = Object.freeze({ values: Object.freeze([]), forms: Object.freeze([]) });

// Atomics as captured at load: drop() and release() run inside core calls
// (objects_drop), hold() between send_begin and send_commit.
const atomicLoad = Atomics.load, atomicStore = Atomics.store, atomicSub = Atomics.sub;
const atomicCas = Atomics.compareExchange;

/** A dictionary with no prototype: writing a key never reaches a setter someone put on a prototype. */
function dict<T>(): Record<number, T> {
  return Object.create(null) as Record<number, T>;
}

export class ObjectTable {
  /** Values by slot; a slot that is free holds undefined. */
  private values: unknown[] = [];
  /** Free slots, as a stack of `nFree`. */
  private free = dict<number>();
  private nFree = 0;
  /** Records this thread made that are still carried by some message (address → 1). */
  private outstanding = dict<number>();
  private nOutstanding = 0;

  constructor(private readonly core: Core, private readonly cloner: Cloner | null) {}

  /** Live values (for tests of leaks). */
  get size(): number {
    return this.values.length - this.nFree;
  }

  /** Serializes the values of one send; getters of the values run here, and only here. */
  prepare(values: readonly unknown[]): PreparedObjects {
    if (values.length === 0) return NO_OBJECTS;
    const forms: (Uint8Array | null)[] = new Array(values.length);
    for (let i = 0; i < values.length; i++) forms[i] = this.cloner ? this.cloner.serialize(values[i]) : null;
    return { values, forms };
  }

  /** Records for prepared values; runs no user code. */
  put(objects: PreparedObjects): number[] {
    const n = objects.values.length;
    if (n === 0) return NONE;
    this.sweep();
    const core = this.core;
    const records: number[] = new Array(n);
    let made = 0;
    try {
      for (let i = 0; i < n; i++) {
        const form = objects.forms[i];
        const slot = this.nFree ? this.free[--this.nFree] : this.values.length;
        const rec = core.ex.object_record(core.ctx, slot, form ? form.length : NOT_CLONEABLE);
        if (!rec) {
          this.free[this.nFree++] = slot;
          throw Bus1Error.of("ENOMEM", "send", "no memory for the objects' records");
        }
        if (slot === this.values.length) this.values.push(objects.values[i]);
        else this.values[slot] = objects.values[i];
        if (form) core.views().u8.set(form, rec + HEADER);
        records[made++] = rec;
      }
    } catch (e) {
      records.length = made;
      this.hold(records, 0);
      throw e;
    }
    return records;
  }

  /** `count` messages carry each record (a multicast); 0 frees them. */
  hold(records: readonly number[], count: number): void {
    if (records.length === 0) return;
    const i32 = this.core.views().i32;
    for (let i = 0; i < records.length; i++) {
      const rec = records[i];
      if (count === 0) {
        atomicStore(i32, (rec >>> 2) + 2, 0);
        this.release(rec);
      } else {
        atomicStore(i32, (rec >>> 2) + 2, count);
        if (this.outstanding[rec] === undefined) {
          this.outstanding[rec] = 1;
          this.nOutstanding++;
        }
      }
    }
  }

  /** The value of a record, for a receiver that keeps the message (a seed); never throws. */
  peek(rec: number): unknown {
    const core = this.core.views();
    const at = rec >>> 2;
    if (atomicLoad(core.u32, at) === core.serial) return this.values[core.u32[at + 1]];
    const length = core.u32[at + 3];
    if (length === NOT_CLONEABLE || !this.cloner) {
      return Bus1Error.of("EOPNOTSUPP", "recv", "an object sent by another thread that cannot be cloned");
    }
    try {
      return this.cloner.deserialize(core.u8.slice(rec + HEADER, rec + HEADER + length));
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      return Bus1Error.of("EOPNOTSUPP", "recv", `an object sent by another thread could not be rebuilt here (${why})`);
    }
  }

  /** The value of a record for one message that was received. */
  take(rec: number): unknown {
    const value = this.peek(rec);
    this.drop(rec);
    return value;
  }

  /** One message carrying the record is gone (received or dropped). Runs inside core calls. */
  drop(rec: number): void {
    const core = this.core.views();
    const at = rec >>> 2;
    if (atomicSub(core.i32, at + 2, 1) !== 1) return;
    const owner = atomicLoad(core.u32, at);
    if (owner === core.serial) this.release(rec);
    else if (owner === ORPHAN && atomicCas(core.i32, at + 2, 0, -1) === 0) {
      core.ex.object_record_free(core.ctx, rec);
    }
  }

  /** Frees the records of this thread that no message carries any more. */
  sweep(): void {
    if (this.nOutstanding === 0) return;
    const i32 = this.core.views().i32;
    for (const key in this.outstanding) {
      const rec = +key;
      if (atomicLoad(i32, (rec >>> 2) + 2) === 0) this.release(rec);
    }
  }

  /** This thread lets go: the core makes its records in flight orphans (ctx_free); the values go. */
  forget(): void {
    this.outstanding = dict<number>();
    this.nOutstanding = 0;
    this.values = [];
    this.free = dict<number>();
    this.nFree = 0;
  }

  private release(rec: number): void {
    const core = this.core.views();
    if (atomicCas(core.i32, (rec >>> 2) + 2, 0, -1) !== 0) return;
    const slot = core.u32[(rec >>> 2) + 1];
    this.values[slot] = undefined;
    this.free[this.nFree++] = slot;
    if (this.outstanding[rec] !== undefined) {
      delete this.outstanding[rec];
      this.nOutstanding--;
    }
    core.ex.object_record_free(core.ctx, rec);
  }
}
