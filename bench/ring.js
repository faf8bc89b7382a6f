// A minimal single-producer/single-consumer message ring on a
// SharedArrayBuffer: the practical floor of JS messaging between two threads,
// the baseline of the cross-worker cases.
//
// It does what a message bus must do at the least: copy the payload once
// into shared memory, publish it, wake a sleeping consumer, and let the
// consumer read it in place until it releases it. Nothing else: no
// capabilities, quotas, ordering across peers, multicast or locks.
//
//   header (Int32Array, 128 bytes; the two sides' words on separate lines)
//     [0]  head: bytes ever published (wraps as int32)
//     [1]  1 while the consumer sleeps on head
//     [16] tail: bytes ever released
//     [17] 1 while the producer sleeps on tail (ring full)
//   data (capacity bytes, a power of two), one record per message:
//     u32 length, u32 unused, payload, zero padding to 8
//   A record never wraps: when one does not fit before the end, the producer
//   writes WRAP in the length and starts again at 0.
//
// A side notifies only when the other has raised its sleep flag: the
// protocol of a bus1 peer's wake word before ABI 6 (a sequence word and a
// count of sleepers; bus1 now also arms it, so a burst notifies once, which
// costs V8 nothing measurable: docs/PERFORMANCE.md). Waiting comes in two kinds:
//   - sleeping at once (Atomics.wait), the plain ring;
//   - spinning first, as peer.wait() does (host-common/peer.ts): up to
//     `spinMs` watching the word, then Atomics.wait. Unlike peer.wait(),
//     every waiting side spins, however many processors there are: a pair
//     of threads handing messages back and forth is the case this ring is
//     written for, and a skilled user would let both spin. This is the fair
//     baseline: it waits the way bus1-wasm waits, at its best.

const HEAD = 0, CONSUMER_SLEEPS = 1, TAIL = 16, PRODUCER_SLEEPS = 17;
const HEADER = 128;
const WRAP = 0xffffffff;
const TIMEOUT_MS = 30_000;

export class Ring {
  /** A new ring of `capacity` bytes (a power of two); post `ring.buffer` to the other side. */
  static create(capacity = 1 << 20, spinMs = 0) {
    if (capacity & (capacity - 1)) throw new RangeError("ring capacity must be a power of two");
    return new Ring(new SharedArrayBuffer(HEADER + capacity), spinMs);
  }

  /** `spinMs`: how long a wait watches the word before it sleeps (0: it sleeps at once). */
  constructor(buffer, spinMs = 0) {
    this.buffer = buffer;
    this.spinMs = spinMs;
    this.words = new Int32Array(buffer, 0, HEADER / 4);
    this.capacity = buffer.byteLength - HEADER;
    this.mask = this.capacity - 1;
    this.u8 = new Uint8Array(buffer, HEADER);
    this.u32 = new Uint32Array(buffer, HEADER);
    this.head = Atomics.load(this.words, HEAD); // producer's copy
    this.tail = Atomics.load(this.words, TAIL); // consumer's copy
    this.taken = 0; // bytes the consumer will release
  }

  // ---- producer ----

  /** Copies `payload` into the ring and publishes it; blocks while the ring is full. */
  send(payload) {
    const len = payload.length;
    const need = 8 + ((len + 7) & ~7);
    if (need > this.capacity) throw new RangeError(`a ${len}-byte message does not fit the ring`);
    let pos = this.head & this.mask;
    const skip = pos + need > this.capacity ? this.capacity - pos : 0;
    for (let tail; this.capacity - ((this.head - (tail = Atomics.load(this.words, TAIL))) | 0) < skip + need;) {
      if (!this.#sleep(TAIL, PRODUCER_SLEEPS, tail, TIMEOUT_MS)) throw new Error("ring: the consumer stopped taking messages");
    }
    if (skip) {
      this.u32[pos >>> 2] = WRAP;
      pos = 0;
    }
    this.u32[pos >>> 2] = len;
    this.u8.set(payload, pos + 8);
    this.head = (this.head + skip + need) | 0;
    Atomics.store(this.words, HEAD, this.head);
    if (Atomics.load(this.words, CONSUMER_SLEEPS)) Atomics.notify(this.words, HEAD);
  }

  // ---- consumer ----

  /** The next message as a view into the ring, or null; valid until release(). */
  recv() {
    if (Atomics.load(this.words, HEAD) === this.tail) return null;
    let pos = this.tail & this.mask;
    let skip = 0;
    let len = this.u32[pos >>> 2];
    if (len === WRAP) {
      skip = this.capacity - pos;
      pos = 0;
      len = this.u32[0];
    }
    this.taken = skip + 8 + ((len + 7) & ~7);
    return new Uint8Array(this.buffer, HEADER + pos + 8, len);
  }

  /** Hands the last received message's bytes back to the producer. */
  release() {
    this.tail = (this.tail + this.taken) | 0;
    this.taken = 0;
    Atomics.store(this.words, TAIL, this.tail);
    if (Atomics.load(this.words, PRODUCER_SLEEPS)) Atomics.notify(this.words, TAIL);
  }

  /** Blocks until recv() would return a message; false after `timeoutMs`. */
  wait(timeoutMs = Infinity) {
    while (Atomics.load(this.words, HEAD) === this.tail) {
      if (!this.#sleep(HEAD, CONSUMER_SLEEPS, this.tail, timeoutMs)) return false;
    }
    return true;
  }

  /**
   * Sleeps while word `at` still holds `seen`, with `flag` raised so that the
   * other side notifies. Atomics.wait compares and sleeps in one step, and
   * the other side stores its word before it reads the flag, so a move in
   * between is never missed. False on timeout.
   */
  #sleep(at, flag, seen, timeoutMs) {
    if (this.spinMs > 0 && this.#spin(at, seen)) return true;
    Atomics.store(this.words, flag, 1);
    const woke = Atomics.wait(this.words, at, seen, timeoutMs);
    Atomics.store(this.words, flag, 0);
    return woke !== "timed-out";
  }

  /** Watches word `at` for up to spinMs while it holds `seen`: true if it moved. */
  #spin(at, seen) {
    const until = performance.now() + this.spinMs;
    for (let n = 1; ; n++) {
      if (Atomics.load(this.words, at) !== seen) return true;
      if ((n & 63) === 0 && performance.now() >= until) return false;
    }
  }
}
