/**
 * DOC: sync — atomics where threads share the memory, plain accesses where none can
 *
 * The threads, debug and WASI builds run on a shared memory that every
 * attached thread calls into: each word two threads may touch at once is
 * read and written with the sequentially consistent atomics of the wasm
 * threads proposal, and a thread that must wait for another sleeps in
 * memory.atomic.wait32. The private builds (a bus made with `shared: false`)
 * run on a memory that is not shared and cannot be: only the thread that
 * made the bus ever runs the core, so no other thread can see a word
 * between two accesses. They are compiled without the threads feature, and
 * these helpers become the plain loads and stores they are equivalent to
 * there: an engine compiles an atomic the same way whether its memory is
 * shared or not (on x86-64 a store is an `xchg`, an update a `lock`-prefixed
 * instruction), and the core's frame of four of them per call was a third
 * of a same-thread round trip's time in the core. The kernel does the same
 * with its spinlocks on a uniprocessor build.
 *
 * Each helper means what the Atomics operation of its name means: it acts on
 * the `T` at `ptr + offset` and returns the value it found there (the update
 * and compare-exchange ones). A wait in a private build cannot sleep (no
 * other thread could wake it) and returns at once as if the word had changed
 * ("not-equal", 1); a notify there wakes no one (0). Neither is reached by a
 * private bus: its one thread holds a lock only inside a call, so it never
 * finds one taken (lock.ts breaks the bus at once if it does), and no thread
 * sleeps on its words.
 */

// @ts-ignore: decorator
@inline export function sync_load<T>(ptr: usize, offset: usize = 0): T {
  if (ASC_FEATURE_THREADS) return atomic.load<T>(ptr + offset);
  return load<T>(ptr + offset);
}

// @ts-ignore: decorator
@inline export function sync_store<T>(ptr: usize, value: T, offset: usize = 0): void {
  if (ASC_FEATURE_THREADS) atomic.store<T>(ptr + offset, value);
  else store<T>(ptr + offset, value);
}

// @ts-ignore: decorator
@inline export function sync_add<T>(ptr: usize, value: T, offset: usize = 0): T {
  if (ASC_FEATURE_THREADS) return atomic.add<T>(ptr + offset, value);
  let old = load<T>(ptr + offset);
  store<T>(ptr + offset, old + value);
  return old;
}

// @ts-ignore: decorator
@inline export function sync_sub<T>(ptr: usize, value: T, offset: usize = 0): T {
  if (ASC_FEATURE_THREADS) return atomic.sub<T>(ptr + offset, value);
  let old = load<T>(ptr + offset);
  store<T>(ptr + offset, old - value);
  return old;
}

// @ts-ignore: decorator
@inline export function sync_and<T>(ptr: usize, value: T, offset: usize = 0): T {
  if (ASC_FEATURE_THREADS) return atomic.and<T>(ptr + offset, value);
  let old = load<T>(ptr + offset);
  store<T>(ptr + offset, old & value);
  return old;
}

// @ts-ignore: decorator
@inline export function sync_xchg<T>(ptr: usize, value: T, offset: usize = 0): T {
  if (ASC_FEATURE_THREADS) return atomic.xchg<T>(ptr + offset, value);
  let old = load<T>(ptr + offset);
  store<T>(ptr + offset, value);
  return old;
}

// @ts-ignore: decorator
@inline export function sync_cas<T>(ptr: usize, expected: T, replacement: T, offset: usize = 0): T {
  if (ASC_FEATURE_THREADS) return atomic.cmpxchg<T>(ptr + offset, expected, replacement);
  let old = load<T>(ptr + offset);
  if (old == expected) store<T>(ptr + offset, replacement);
  return old;
}

/** Sleeps while the u32 at `ptr` is `expected`, at most `timeoutNs` (memory.atomic.wait32's results). */
// @ts-ignore: decorator
@inline export function sync_wait32(ptr: usize, expected: u32, timeoutNs: i64): i32 {
  if (ASC_FEATURE_THREADS) return memory.atomic.wait32(ptr, expected, timeoutNs);
  return 1;
}

/** Wakes up to `count` threads sleeping on `ptr`; how many it woke. */
// @ts-ignore: decorator
@inline export function sync_notify(ptr: usize, count: u32): i32 {
  if (ASC_FEATURE_THREADS) return atomic.notify(ptr, count);
  return 0;
}
