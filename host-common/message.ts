/**
 * Message: what `recv` returns. The payload is a view into the receiver's
 * pool (no copy); it stays valid until the slice is released.
 */
import { RELEASED_AGAIN, type Peer } from "./peer.js";
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
  readonly payload: Uint8Array;
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
    this.payload = payload;
    this.handles = handles;
    this.objects = objects;
  }

  #released = false;

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
