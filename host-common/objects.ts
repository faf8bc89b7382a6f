/**
 * Host objects (SPEC §7): values that cannot live in linear memory travel
 * with a message as records in the bus memory.
 *
 * Record (in the bus heap, made by the sending thread):
 *
 *   +0  owner    u32   the sending thread's index in the core's thread table
 *   +4  slot     u32   the value's slot in the owner's table
 *   +8  pending  i32   messages that still carry the record (atomic)
 *   +12 length   u32   bytes of the value's serialized form, NOT_CLONEABLE
 *                      when it has none (or the bus is private)
 *   +16 bytes
 *
 * The message carries the record's address as its object slot. A receiver in
 * the sending thread gets the value itself (same identity); one in another
 * thread gets a structured clone made from the serialized bytes. A value that
 * cannot be cloned (a function, say) reaches other threads as a Bus1Error
 * EOPNOTSUPP in its place. Every message that is received or dropped takes
 * one from `pending`; at zero the owner frees the record and its slot (at
 * once when it is the one that saw it reach zero, otherwise on its next
 * sweep). When the owner thread lets go of the bus, its records still in
 * flight become orphans (owner ORPHAN): receivers get clones, and whoever
 * takes the last one frees the record. Freeing is claimed by moving
 * `pending` from 0 to −1, so a record is freed exactly once.
 */
import { Bus1Error } from "./errors.js";
import type { Core } from "./core.js";

export const NOT_CLONEABLE = 0xffffffff;
/** Owner of a record whose thread has let go of the bus. */
const ORPHAN = 0xffffffff;
const NONE: number[] = [];
const HEADER = 16;

/** How a host copies values between threads; null where it cannot. */
export interface Cloner {
  serialize(value: unknown): Uint8Array | null;
  deserialize(bytes: Uint8Array): unknown;
}

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

  /** Records for `objects`; their addresses are written to u32 `at`. */
  put(objects: readonly unknown[]): number[] {
    if (objects.length === 0) return NONE;
    this.sweep();
    const core = this.core;
    const records: number[] = [];
    try {
      for (const value of objects) {
        const bytes = this.cloner ? this.cloner.serialize(value) : null;
        const rec = core.ex.scratch_alloc(HEADER + (bytes ? bytes.length : 0));
        if (!rec) throw new Bus1Error("ENOMEM", "send: out of memory for the objects");
        const slot = this.free.length ? this.free.pop()! : this.values.length;
        this.values[slot] = value;
        const u32 = core.views().u32, at = rec >>> 2;
        u32[at] = core.tid;
        u32[at + 1] = slot;
        u32[at + 2] = 0;
        u32[at + 3] = bytes ? bytes.length : NOT_CLONEABLE;
        if (bytes) core.u8.set(bytes, rec + HEADER);
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

  /** The value of a record, for a receiver that keeps the message (a seed). */
  peek(rec: number): unknown {
    const core = this.core.views();
    const at = rec >>> 2;
    if (core.u32[at] === core.tid) return this.values[core.u32[at + 1]];
    const length = core.u32[at + 3];
    if (length === NOT_CLONEABLE || !this.cloner) {
      return Bus1Error.of("EOPNOTSUPP", "recv", `an object sent by another thread cannot be cloned`);
    }
    return this.cloner.deserialize(core.u8.slice(rec + HEADER, rec + HEADER + length));
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
    if (owner === core.tid) this.release(rec);
    else if (owner === ORPHAN && Atomics.compareExchange(core.i32, at + 2, 0, -1) === 0) core.ex.scratch_free(rec);
  }

  /** Frees the records of this thread that no message carries any more. */
  sweep(): void {
    if (this.outstanding.size === 0) return;
    const i32 = this.core.views().i32;
    for (const rec of this.outstanding) if (Atomics.load(i32, (rec >>> 2) + 2) === 0) this.release(rec);
  }

  /** This thread lets go: its records in flight become orphans. */
  orphan(): void {
    const core = this.core.views();
    for (const rec of this.outstanding) {
      Atomics.store(core.u32, rec >>> 2, ORPHAN);
      if (Atomics.compareExchange(core.i32, (rec >>> 2) + 2, 0, -1) === 0) core.ex.scratch_free(rec);
    }
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
    core.ex.scratch_free(rec);
  }
}
