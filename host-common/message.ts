/**
 * Message: what `recv` returns. The payload is a view into the receiver's
 * pool (no copy); it stays valid until the slice is released.
 *
 * A bus on private memory grows its memory as it needs it, and growing a
 * private (non-shared) WebAssembly.Memory detaches every view of the old
 * buffer. So `payload` is read through a getter: a view found detached while
 * the slice is still held is made again on the memory as it is now (same
 * offset, same bytes). A view taken out of the message earlier (`const p =
 * m.payload`) is the engine's own object and detaches with the buffer: read
 * `m.payload` again after calls that may grow the memory (sends, connects,
 * transfers). Shared memory grows without detaching.
 */
import { PAYLOAD_VIEW, RELEASED_AGAIN, type Peer } from "./peer.js";
import type { MessageLike } from "./api.js";

export type MessageType = "data" | "node-destroy" | "node-release";

/**
 * Internal (serve.ts): `msg[MAY_MOVE](i)` is true when this receiver may move
 * `objects[i]` out of this thread (post it with a transfer list): a port, a
 * stream or a transferred ArrayBuffer that is held by this thread and was
 * delivered to no other receiver here (SPEC §9, objects.ts). False for
 * everything else, and for a seed's objects.
 */
export const MAY_MOVE = Symbol("may move");

export class Message implements MessageLike {
  readonly type: MessageType;
  readonly destination: number;
  readonly continue: boolean;
  readonly offset: number;
  #payload: Uint8Array;
  readonly #size: number;
  readonly handles: number[];
  readonly objects: unknown[];
  readonly #peer: Peer;
  readonly #exclusive: readonly boolean[] | null;

  constructor(peer: Peer, type: MessageType, destination: number, cont: boolean, offset: number,
              payload: Uint8Array, handles: number[], objects: unknown[], exclusive: readonly boolean[] | null = null) {
    this.#peer = peer;
    this.#exclusive = exclusive;
    this.type = type;
    this.destination = destination;
    this.continue = cont;
    this.offset = offset;
    this.#payload = payload;
    this.#size = payload.byteLength;
    this.handles = handles;
    this.objects = objects;
  }

  #released = false;

  /** The payload's bytes: a view of the slice, made again if the memory grew under it (see above). */
  get payload(): Uint8Array {
    const p = this.#payload;
    if (p.byteLength !== 0 || this.#size === 0 || this.#released) return p;
    return (this.#payload = this.#peer[PAYLOAD_VIEW](this.offset, this.#size));
  }

  /** @internal See MAY_MOVE. */
  [MAY_MOVE](i: number): boolean {
    return this.#exclusive !== null && this.#exclusive[i] === true;
  }

  /**
   * Frees the slice (= peer.releaseSlice(offset)); a no-op for notifications.
   * A second call is ENXIO even if the pool has reused the offset since.
   */
  release(): void {
    if (this.offset < 0) return;
    if (this.#released) throw this.#peer[RELEASED_AGAIN](this.offset);
    this.#peer.releaseSlice(this.offset);
    this.#released = true;
  }
}
