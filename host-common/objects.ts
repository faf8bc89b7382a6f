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

export class ObjectTable {
  private values: unknown[] = [];
  private free: number[] = [];
  /** Records this thread made that are still carried by some message. */
  private outstanding = new Set<number>();

  constructor(private readonly core: Core, private readonly cloner: Cloner | null) {}

  /** Live values (for tests of leaks). */
  get size(): number {
    return this.values.length - this.free.length;
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
    const records: number[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const form = objects.forms[i];
        const slot = this.free.length ? this.free.pop()! : this.values.length;
        const rec = core.ex.object_record(core.ctx, slot, form ? form.length : NOT_CLONEABLE);
        if (!rec) {
          this.free.push(slot);
          throw Bus1Error.of("ENOMEM", "send", "no memory for the objects' records");
        }
        this.values[slot] = objects.values[i];
        if (form) core.views().u8.set(form, rec + HEADER);
        records.push(rec);
      }
    } catch (e) {
      this.hold(records, 0);
      throw e;
    }
    return records;
  }

  /** `count` messages carry each record (a multicast); 0 frees them. */
  hold(records: readonly number[], count: number): void {
    if (records.length === 0) return;
    const i32 = this.core.views().i32;
    for (const rec of records) {
      if (count === 0) {
        Atomics.store(i32, (rec >>> 2) + 2, 0);
        this.release(rec);
      } else {
        Atomics.store(i32, (rec >>> 2) + 2, count);
        this.outstanding.add(rec);
      }
    }
  }

  /** The value of a record, for a receiver that keeps the message (a seed); never throws. */
  peek(rec: number): unknown {
    const core = this.core.views();
    const at = rec >>> 2;
    if (Atomics.load(core.u32, at) === core.serial) return this.values[core.u32[at + 1]];
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

  /** One message carrying the record is gone (received or dropped). */
  drop(rec: number): void {
    const core = this.core.views();
    const at = rec >>> 2;
    if (Atomics.sub(core.i32, at + 2, 1) !== 1) return;
    const owner = Atomics.load(core.u32, at);
    if (owner === core.serial) this.release(rec);
    else if (owner === ORPHAN && Atomics.compareExchange(core.i32, at + 2, 0, -1) === 0) {
      core.ex.object_record_free(core.ctx, rec);
    }
  }

  /** Frees the records of this thread that no message carries any more. */
  sweep(): void {
    if (this.outstanding.size === 0) return;
    const i32 = this.core.views().i32;
    for (const rec of this.outstanding) if (Atomics.load(i32, (rec >>> 2) + 2) === 0) this.release(rec);
  }

  /** This thread lets go: the core makes its records in flight orphans (ctx_free); the values go. */
  forget(): void {
    this.outstanding.clear();
    this.values = [];
    this.free = [];
  }

  private release(rec: number): void {
    const core = this.core.views();
    if (Atomics.compareExchange(core.i32, (rec >>> 2) + 2, 0, -1) !== 0) return;
    const slot = core.u32[(rec >>> 2) + 1];
    this.values[slot] = undefined;
    this.free.push(slot);
    this.outstanding.delete(rec);
    core.ex.object_record_free(core.ctx, rec);
  }
}
