/**
 * The host-object table of one thread (SPEC §7).
 *
 * Values that cannot live in linear memory (ports, functions, buffers...)
 * stay here while the message that carries them is in flight; the message
 * carries their slot numbers. A multicast puts one value in several messages,
 * so each slot counts the messages that still hold it. Slots are reused
 * lowest-first, which keeps a single-thread bus deterministic.
 */
export class ObjectTable {
  private values: unknown[] = [];
  private refs: number[] = [];
  private free: number[] = [];

  /** Stores a value; returns its slot (held by no message yet). */
  put(value: unknown): number {
    const slot = this.free.length ? this.free.pop()! : this.values.length;
    this.values[slot] = value;
    this.refs[slot] = 0;
    return slot;
  }

  /** `count` more messages hold the slot; at 0 holders it is freed. */
  hold(slot: number, count: number): void {
    this.refs[slot] += count;
    if (this.refs[slot] === 0) this.drop(slot, 0);
  }

  /** The value, for a receiver that keeps the message (a seed). */
  peek(slot: number): unknown {
    return this.values[slot];
  }

  /** Takes the value out for one message that was received. */
  take(slot: number): unknown {
    const value = this.values[slot];
    this.drop(slot, 1);
    return value;
  }

  /** One message holding the slot is gone. */
  drop(slot: number, count = 1): void {
    const left = (this.refs[slot] -= count);
    if (left > 0) return;
    this.values[slot] = undefined;
    this.free.push(slot);
    // keep the free list sorted high → low so pop() returns the lowest
    if (this.free.length > 1 && this.free[this.free.length - 2] < slot) this.free.sort((a, b) => b - a);
  }

  /** Live slots (for tests of leaks). */
  get size(): number {
    return this.values.length - this.free.length;
  }
}
