/**
 * DOC: pool — a peer's pool of slices
 *
 * Each peer receives payloads into its own pool: a list of chunks taken from
 * the bus heap, managed by a TLSF allocator of the peer's own (tlsf.ts). A
 * slice is one used block; its body starts with the Message record (the queue
 * entry and the accounting of the message) and then holds the slice proper,
 * whose address is the `offset` the API reports:
 *
 *   block  +0   TLSF header (8)
 *   body   +0   Message (MESSAGE_SIZE = 80)
 *          +80  payload, zero padding to 8        <- offset
 *               u64 × nHandles   handle IDs (written at receive)
 *               u32 × nObjects   host object slots, padding to 8
 *
 * The Message sits outside the slice the receiver is given (the payload view
 * never covers it), and a peer's slices are looked up by offset in the peer's
 * slice map, never by trusting bytes in the pool.
 *
 * A pool's first chunk is CHUNK_FIRST bytes and later ones at least
 * CHUNK_MIN (a peer that only ever sees a few small messages keeps a small
 * pool, and a small bus has room for a few peers); a slice larger than that
 * gets a chunk of its own size. A chunk that becomes entirely free is handed
 * back to the heap, unless it is the pool's last one, so a quiet peer keeps
 * one chunk. After a burst (the pool grew past one chunk: PEER_POOL_GREW)
 * the one chunk left goes back too once it is empty, if it is larger than
 * CHUNK_FIRST (pool_settle): a peer that had a burst shrinks back to at most
 * a first chunk's size, while one that receives one large message at a time
 * keeps the chunk that holds it instead of asking the heap for it again for
 * every message. The price: a peer whose live bytes go past CHUNK_FIRST and
 * back to nothing again and again asks the heap for its chunks once per
 * such cycle (docs/PERFORMANCE.md). The control block is made with the
 * first chunk, so an idle peer that never received costs nothing here.
 *
 * The steady state of a busy peer is: a slice arrives, is received and
 * released, and the next one of the same size arrives. So a released small
 * slice is kept aside (Peer.poolCache, one block) and handed out again when
 * the next request has exactly its size, which skips both the TLSF free and
 * the TLSF alloc. It is kept only while the pool has one chunk that is
 * not to be handed back (not after a burst), and goes back to the allocator as soon
 * as a request of another size comes or the pool grows, so it can neither
 * raise the pool's peak nor keep a chunk from being handed back.
 *
 * Chunk: +0 next chunk u32, +4 size u32, +8 region (TLSF blocks, sentinel).
 * Guarded by the peer's data lock.
 */

import { Entry, ENTRY_LANE } from "./queue";
import { lane_free } from "./lane";
import { Peer, PEER_POOL_GREW } from "./peer";
import { heap_alloc, heap_free } from "./bus";
import { tlsf_init, tlsf_add_region, tlsf_alloc, tlsf_free, tlsf_take, block_spans_region, block_body, block_size, tlsf_body_size, TLSF_SIZE, BLOCK_HEADER, BLOCK_MAX } from "./tlsf";

// @ts-ignore: decorator
@inline export const CHUNK_MIN: u32 = 65536;
// @ts-ignore: decorator
@inline export const CHUNK_FIRST: u32 = 8192;
// @ts-ignore: decorator
@inline const CHUNK_HEADER: u32 = 8;
/** Largest block body the pool keeps aside for reuse (poolCache). */
// @ts-ignore: decorator
@inline const CACHE_MAX: u32 = 4096;

@unmanaged export class Message extends Entry {
  dest: u32;
  size: u32;
  nHandles: u32;
  nObjects: u32;
  share: u32;
  c0: u32;
  c1: u32;
  c2: u32;
  c3: u32;
  _pad2: u32;
}

// @ts-ignore: decorator
@inline export const MESSAGE_SIZE: u32 = 80;

// @ts-ignore: decorator
@inline export function message_payload(m: Message): usize {
  return changetype<usize>(m) + MESSAGE_SIZE;
}

// @ts-ignore: decorator
@inline export function message_of_payload(p: usize): Message {
  return changetype<Message>(p - MESSAGE_SIZE);
}

// @ts-ignore: decorator
@inline export function message_cost(m: Message): usize {
  return changetype<usize>(m) + offsetof<Message>("c0");
}

/** Address of the handle array of a slice. */
// @ts-ignore: decorator
@inline export function message_handles(m: Message): usize {
  return message_payload(m) + ((<usize>m.size + 7) & ~7);
}

// @ts-ignore: decorator
@inline export function message_objects(m: Message): usize {
  return message_handles(m) + (<usize>m.nHandles << 3);
}

/** Bytes of a slice as charged: payload, padding, handle and object arrays. */
export function slice_bytes(size: u32, nHandles: u32, nObjects: u32): u64 {
  return ((<u64>size + 7) & ~7) + (<u64>nHandles << 3) + (((<u64>nObjects << 2) + 7) & ~7);
}

/** Largest slice a pool can hold. */
export const SLICE_MAX: u64 = <u64>(BLOCK_MAX - MESSAGE_SIZE - CHUNK_HEADER - 64);

/** Allocates a slice of `bytes` (from slice_bytes); returns its Message or 0. */
export function pool_alloc(p: Peer, bytes: u32): Message | null {
  let body = MESSAGE_SIZE + bytes;
  let cached = <usize>p.poolCache;
  if (cached) {
    p.poolCache = 0;
    if (block_size(cached - BLOCK_HEADER) == tlsf_body_size(body)) return changetype<Message>(cached);
    tlsf_free(p.poolTlsf, cached - BLOCK_HEADER);
  }
  if (!p.poolTlsf) {
    let t = heap_alloc(TLSF_SIZE);
    if (!t) return null;
    tlsf_init(t);
    p.poolTlsf = <u32>t;
  }
  let b = tlsf_alloc(p.poolTlsf, body);
  if (!b) {
    if (!pool_grow(p, body)) return null;
    b = tlsf_alloc(p.poolTlsf, body);
    if (!b) return null;
  }
  return changetype<Message>(block_body(b));
}

function pool_grow(p: Peer, body: u32): bool {
  assert(!p.poolCache, "pool grows with a block kept aside");
  let need = <u64>tlsf_body_size(body) + 2 * BLOCK_HEADER + CHUNK_HEADER;
  // round up to a class boundary so the new block is found by the search
  need += need >> 3;
  let least = p.poolChunks ? CHUNK_MIN : CHUNK_FIRST;
  let size = need < <u64>least ? least : <u32>((need + 7) & ~7);
  let c = heap_alloc(size);
  if (!c) return false;
  if (p.poolChunks) p.flags |= PEER_POOL_GREW;
  store<u32>(c, p.poolChunks);
  store<u32>(c, size, 4);
  p.poolChunks = <u32>c;
  p.poolBytes += size;
  tlsf_add_region(p.poolTlsf, c + CHUNK_HEADER, c + size);
  return true;
}

/** Zeroes a slice's payload up to its 8-byte padding; returns where its handle slots start. */
// @ts-ignore: decorator
@inline export function slice_pad(payload: usize, size: u32): usize {
  let padded = (<usize>size + 7) & ~7;
  if (padded != <usize>size) memory.fill(payload + size, 0, padded - size);
  return payload + padded;
}

/** Frees a slice; hands its chunk back if that empties it (the last one: see pool_settle). */
export function pool_free(p: Peer, m: Message): void {
  // a slice in a lane's arena goes back to its lane (lane.ts)
  if (m.state & ENTRY_LANE) {
    lane_free(m);
    return;
  }
  // a slice kept aside is not free in TLSF's eyes: catch a second free here
  assert(<u32>changetype<usize>(m) != p.poolCache, "slice freed twice");
  let mb = changetype<usize>(m) - BLOCK_HEADER;
  if (!p.poolCache && block_size(mb) <= CACHE_MAX && !load<u32>(p.poolChunks) && !(p.flags & PEER_POOL_GREW)) {
    p.poolCache = <u32>changetype<usize>(m);
    return;
  }
  let b = tlsf_free(p.poolTlsf, mb);
  if (!block_spans_region(b)) return;
  let chunk = b - CHUNK_HEADER;
  // an empty chunk goes back to the heap, unless it is the last one
  if (p.poolChunks != <u32>chunk || load<u32>(chunk)) chunk_free(p, chunk);
  pool_settle(p);
}

/**
 * A pool down to one chunk after it grew past one (PEER_POOL_GREW): the
 * burst is over once that chunk is no larger than a first chunk (kept), or
 * once it is empty, and then it goes back to the heap too. Either way, the
 * chunk may be one the burst never used (already empty when the pool grew).
 */
function pool_settle(p: Peer): void {
  let c = <usize>p.poolChunks;
  if (!(p.flags & PEER_POOL_GREW) || !c || load<u32>(c)) return; // no burst, no chunk, or more than one
  if (load<u32>(c, 4) > CHUNK_FIRST) {
    if (!block_spans_region(c + CHUNK_HEADER)) return; // still holds slices: settled when it empties
    chunk_free(p, c);
  }
  p.flags &= ~PEER_POOL_GREW;
}

/** Hands an entirely free chunk (one free block spanning its region) back to the heap. */
function chunk_free(p: Peer, chunk: usize): void {
  tlsf_take(p.poolTlsf, chunk + CHUNK_HEADER);
  pool_unlink_chunk(p, chunk);
  p.poolBytes -= load<u32>(chunk, 4);
  heap_free(chunk);
}

function pool_unlink_chunk(p: Peer, chunk: usize): void {
  let at = changetype<usize>(p) + offsetof<Peer>("poolChunks");
  while (load<u32>(at) != <u32>chunk) at = load<u32>(at);
  store<u32>(at, load<u32>(chunk));
}

/** Frees every chunk and the control block. No slice may be live. */
export function pool_destroy(p: Peer): void {
  let c = p.poolChunks;
  while (c) {
    let next = load<u32>(c);
    heap_free(c);
    c = next;
  }
  p.poolChunks = 0;
  p.poolBytes = 0;
  p.poolCache = 0;
  if (p.poolTlsf) heap_free(p.poolTlsf);
  p.poolTlsf = 0;
}
