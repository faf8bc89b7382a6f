// The send loop of the lock-contention tests, for any host (tests/workers/hammer.mjs
// under node:worker_threads for tests/concurrency.test.ts, tests/browser/workers/hammer.ts
// in a Web Worker for tests/browser/main-thread.test.ts): `count` numbered
// messages to one target as fast as it can, so that the receiver's lock is
// contended by every send and taken through the sleeping path.

/**
 * Sends `count` 8-byte messages (`index`, then 0..count-1, little-endian) from
 * `peer` to `target`, in order; a send refused with EDQUOT (the receiver is
 * behind) calls `backOff()` and is tried again. Any other error is thrown.
 */
export function hammer(peer, { target, count, index }, backOff = () => {}) {
  const payload = new Uint8Array(8);
  const v = new DataView(payload.buffer);
  for (let i = 0; i < count; i++) {
    v.setUint32(0, index, true);
    v.setUint32(4, i, true);
    for (;;) {
      try {
        peer.send(target, payload);
        break;
      } catch (e) {
        if (e?.code !== "EDQUOT") throw e;
        backOff();
      }
    }
  }
}
