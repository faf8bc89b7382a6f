/**
 * DOC: lock — futex locks on shared memory, and what happens when a holder dies
 *
 * A lock is two u32 words: `holder` (0 = free, else a value naming this
 * acquisition: the holder's thread id + 1 in the low 10 bits, the thread's
 * acquisition count above) and `waiters` (threads sleeping on it). Taking it is one cmpxchg when
 * it is free. A contended taker spins first (SPINS reads of the word, a few
 * microseconds: about what a sleep and a wake-up by the kernel cost, so the
 * spin never loses more than twice what sleeping at once would; with 200
 * reads a receiver contending with a sender in another worker slept so often
 * that it moved 0.13× the messages of the SAB ring, with 4000 it moves about
 * 0.3×, bench/README.md), then sleeps on the holder word with
 * memory.atomic.wait32 in short slices (threads that may not block, such as
 * a browser's main thread, keep spinning); the releaser wakes one sleeper
 * only when `waiters` says there is one.
 *
 * Critical sections are short and never wait for anything but another lock,
 * so a lock that stays held for LOCK_STALE_MS means its holder is gone (a
 * worker terminated inside a bus call). The taker then marks the bus broken:
 * every later call fails with ESHUTDOWN and a reason, instead of hanging or
 * reading state the dead thread left half-changed. A host that learns of a
 * thread's death first (a Worker's exit event) marks it at once
 * (thread_exit in index.ts). In the private builds (one thread, no atomics:
 * sync.ts) a lock found taken can only be this thread's own, left by a call
 * that never ended, so the taker marks the bus broken at once.
 *
 * Lock order (deadlock freedom): peer locks in address order (a lock set,
 * see lockset.ts), then the misc lock, then a user's lock, then the heap
 * lock. No thread waits for a lock that is lower in this order than one it
 * holds; out-of-order peers are only try-locked.
 *
 * On Node 20, V8's baseline compiler loses wasm locals across wait32; the
 * Node host compiles the core with it turned off (host-node/index.ts).
 */

import { sync_add, sync_cas, sync_load, sync_notify, sync_store, sync_sub, sync_wait32 } from "./sync";
import { root, Root } from "./bus";

// @ts-ignore: decorator
@external("env", "now")
declare function host_now(): f64;

// The WASI build (asconfig.wasi.json: the wasi-shim defines ASC_WASI) reads
// WASI's monotonic clock instead of importing env.now; isDefined() is decided
// at compile time, so the other builds compile exactly the env.now call.
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "clock_time_get")
declare function wasi_clock_time_get(id: u32, precision: u64, time: usize): u16;

// @ts-ignore: decorator
@inline const WASI_CLOCK_MONOTONIC: u32 = 1;
// @ts-ignore: decorator
@inline const WASI_CLOCK_SLOTS: u32 = 64;
// @ts-ignore: decorator
@inline const WASI_CLOCK_AGREE_NS: u64 = 1_000_000;

/**
 * The WASI build's clock, in ms. clock_time_get writes its result to linear
 * memory, which all threads share and which has no per-thread stack here: each
 * thread reads through a static slot of its own tid (tid & 63). A slot can
 * still be written by another instance at the same moment (a thread that is
 * not attached yet runs with the tid it had before, or 0; a worker attaching
 * rewrites the data segments), so a reading counts only when two consecutive
 * ones agree within 1 ms: any mix-up makes them disagree, and then it reads
 * again. NaN when the host's clock fails or the readings never agree: the
 * stale-lock check then never fires for this holder (lock_take_slow compares
 * with `>`), rather than breaking a bus on a bad reading.
 */
function wasi_now(tid: u32): f64 {
  let at = changetype<usize>(memory.data(WASI_CLOCK_SLOTS << 3, 8)) + (<usize>(tid & (WASI_CLOCK_SLOTS - 1)) << 3);
  for (let i = 0; i < 64; i++) {
    if (wasi_clock_time_get(WASI_CLOCK_MONOTONIC, 1000, at) != 0) return NaN;
    let a = sync_load<u64>(at);
    if (wasi_clock_time_get(WASI_CLOCK_MONOTONIC, 1000, at) != 0) return NaN;
    let b = sync_load<u64>(at);
    if (a != 0 && b >= a && b - a < WASI_CLOCK_AGREE_NS) return <f64>b / 1e6;
  }
  return NaN;
}

/** Milliseconds on the host's monotonic clock (chosen at compile time: env.now, or WASI's). */
// @ts-ignore: decorator
@inline function lock_clock(tid: u32): f64 {
  return isDefined(ASC_WASI) ? wasi_now(tid) : host_now();
}

// @ts-ignore: decorator
@inline const SPINS: u32 = 4000;
// @ts-ignore: decorator
@inline const SLICE_NS: i64 = 20_000_000;
export const LOCK_STALE_MS: f64 = 5000;

/** Per instance (per thread): whether this thread may block in wait32. */
let canBlock: bool = true;

export function lock_set_can_block(v: bool): void {
  canBlock = v;
}

// @ts-ignore: decorator
@inline export function bus_broken(): bool {
  return sync_load<u32>(changetype<usize>(root()) + offsetof<Root>("broken")) != 0;
}

/** Marks the bus broken with a reason code (BROKEN_*), once. */
export function bus_break(reason: u32): void {
  sync_cas<u32>(changetype<usize>(root()) + offsetof<Root>("broken"), 0, reason);
}

export const BROKEN_STALE_LOCK: u32 = 1;
export const BROKEN_THREAD_DIED: u32 = 2;
export const BROKEN_TRAP: u32 = 3;

/** Per instance (per thread): acquisitions so far, so holder values differ. */
let acquisitions: u32 = 0;

// @ts-ignore: decorator
@inline function holder_value(tid: u32): u32 {
  return ((++acquisitions) << 10) | ((tid + 1) & 1023) | (tid >= 1023 ? 1 : 0);
}

/** Tries once; true if taken. */
// @ts-ignore: decorator
@inline export function lock_try(l: usize, tid: u32): bool {
  return sync_cas<u32>(l, 0, holder_value(tid)) == 0;
}

/** Takes the lock; false if the bus broke while waiting. */
export function lock_take(l: usize, tid: u32): bool {
  if (sync_cas<u32>(l, 0, holder_value(tid)) == 0) return true;
  return lock_take_slow(l, tid);
}

function lock_take_slow(l: usize, tid: u32): bool {
  // a private bus has one thread, which finds a lock taken only if it took
  // it itself in a call that never ended (a trap): it would never be dropped
  if (!ASC_FEATURE_THREADS) {
    bus_break(BROKEN_STALE_LOCK);
    return false;
  }
  for (let i: u32 = 0; i < SPINS; i++) {
    if (sync_load<u32>(l) == 0 && sync_cas<u32>(l, 0, holder_value(tid)) == 0) return true;
  }
  let start: f64 = -1;
  let last: u32 = 0;
  while (true) {
    let h = sync_load<u32>(l);
    if (h == 0) {
      if (sync_cas<u32>(l, 0, holder_value(tid)) == 0) return true;
      continue;
    }
    if (bus_broken()) return false;
    // a holder that keeps the lock this long is gone
    if (h != last) {
      last = h;
      start = lock_clock(tid);
    } else if (lock_clock(tid) - start > LOCK_STALE_MS) {
      bus_break(BROKEN_STALE_LOCK);
      return false;
    }
    if (canBlock) {
      sync_add<u32>(l + 4, 1);
      sync_wait32(l, h, SLICE_NS);
      sync_sub<u32>(l + 4, 1);
    } else {
      for (let i: u32 = 0; i < SPINS && sync_load<u32>(l) != 0; i++) {}
    }
  }
}

export function lock_drop(l: usize): void {
  sync_store<u32>(l, 0);
  if (sync_load<u32>(l + 4)) sync_notify(l, 1);
}
