/**
 * bus.inspect(): the core writes a snapshot of the whole bus as a stream of
 * records into this thread's scratch (`bus_inspect`, assembly/inspect.ts,
 * docs/ABI.md "Inspecting the bus"); this file asks for it with enough room
 * and turns it into a BusSnapshot of plain values. Consistency is the core's
 * (it holds every peer lock while it writes); here there is only decoding.
 */
import { broken, type BusState } from "./state.js";
import type { MessageType } from "./message.js";
import {
  HANDLE_INVALID, type BusSnapshot, type HandleSnapshot, type Limits, type NodeSnapshot, type PeerSnapshot,
  type PeerState, type QueuedSnapshot, type TransactionSnapshot, type Usage, type UserSnapshot,
} from "./types.js";

declare module "./core.js" {
  interface CoreExports {
    /** docs/ABI.md "Inspecting the bus": the stream's length in bytes (more than `cap`: call again), or −errno. */
    bus_inspect(ctx: number, buf: number, cap: number): number;
  }
}

/** The stream format this host reads (the BUS record's second word). */
const FORMAT = 1;
const REC_BUS = 1, REC_USER = 2, REC_SHARE = 3, REC_PEER = 4, REC_HANDLE = 5, REC_NODE = 6, REC_ENTRY = 7;
const NONE = 0xffffffff;
const PEER_DISCONNECTED = 1, PEER_FREED = 2;
const TYPES: MessageType[] = ["data", "data", "node-destroy", "node-release"];

/** Room to ask for first, and what the last stream of each thread's bus needed (a few snapshots a second grow it once). */
const FIRST_ROOM = 16384;
const lastRoom = new WeakMap<BusState, number>();

/** The snapshot of the bus of `s` (checked open by the caller). */
export function inspectBus(s: BusState, op: string): BusSnapshot {
  const core = s.core;
  let room = lastRoom.get(s) ?? FIRST_ROOM;
  for (;;) {
    const buf = core.scratchFor(room);
    const rc = s.call(op, () => core.ex.bus_inspect(core.ctx, buf, room));
    if (rc < 0) throw s.error(op, rc);
    if (rc <= room) {
      lastRoom.set(s, Math.max(FIRST_ROOM, rc + (rc >>> 2) + 7 & ~7));
      try {
        return readSnapshot(core.views().u32, buf >>> 2, (buf + rc) >>> 2);
      } catch (e) {
        // a stream this host cannot read: the core is not the one it was built with, or it failed
        core.broken = `the core failed (${(e as Error).message})`;
        throw broken(op, core.broken);
      }
    }
    // the bus grew past the room: ask again with a margin for what grows meanwhile
    room = Math.max(rc + (rc >>> 1), room * 2) + 7 & ~7;
  }
}

/** A u64 of two words (low first); all ones (ID_NONE) is HANDLE_INVALID. */
function u64(u32: Uint32Array, i: number): number {
  const lo = u32[i], hi = u32[i + 1];
  return lo === NONE && hi === NONE ? HANDLE_INVALID : hi * 0x1_0000_0000 + lo;
}

function limits(u32: Uint32Array, i: number): Limits {
  return { maxSlices: u32[i], maxHandles: u32[i + 1], maxInflightBytes: u32[i + 2], maxInflightObjects: u32[i + 3] };
}

function usage(u32: Uint32Array, i: number): Usage {
  return { slices: u32[i], handles: u32[i + 1], bytes: u32[i + 2], objects: u32[i + 3] };
}

function state(flags: number): PeerState {
  return flags & PEER_FREED ? "closed" : flags & PEER_DISCONNECTED ? "disconnected" : "connected";
}

const byId = (a: { id: number }, b: { id: number }) => a.id - b.id;
/** Handles by ID, those without one last (by node). */
const byHandleId = (a: HandleSnapshot, b: HandleSnapshot) =>
  (a.id === HANDLE_INVALID ? Infinity : a.id) - (b.id === HANDLE_INVALID ? Infinity : b.id) || a.node - b.node;

/** Decodes the stream in words [at, end) of `u32` (docs/ABI.md "Inspecting the bus"). */
export function readSnapshot(u32: Uint32Array, at: number, end: number): BusSnapshot {
  const snap: BusSnapshot = { threads: 0, heapBytes: 0, usedBytes: 0, users: [], peers: [], nodes: [], transactions: [] };
  const nodes = new Map<number, NodeSnapshot>();
  const txs = new Map<string, TransactionSnapshot>();
  let user: UserSnapshot | null = null;
  let peer: PeerSnapshot | null = null;
  while (at < end) {
    const head = u32[at], kind = head & 0xff, words = head >>> 8;
    if (words === 0 || at + words > end) throw new Error(`bus_inspect wrote a malformed record at word ${at}`);
    const i = at;
    at += words;
    switch (kind) {
      case REC_BUS:
        if (u32[i + 1] !== FORMAT) throw new Error(`bus_inspect writes format ${u32[i + 1]}, this host reads ${FORMAT}`);
        snap.threads = u32[i + 2];
        snap.heapBytes = u32[i + 3];
        snap.usedBytes = u32[i + 4];
        break;
      case REC_USER:
        user = { id: u32[i + 1], peers: u32[i + 2], limits: limits(u32, i + 3), usage: usage(u32, i + 7), shares: [] };
        snap.users.push(user);
        break;
      case REC_SHARE:
        user?.shares.push({ user: u32[i + 1], ...usage(u32, i + 2) });
        break;
      case REC_PEER:
        peer = {
          id: u32[i + 1],
          slot: u32[i + 2] === NONE ? null : u32[i + 2],
          state: state(u32[i + 3]),
          references: u32[i + 4],
          user: u32[i + 5] === NONE ? null : u32[i + 5],
          clock: u64(u32, i + 6),
          limits: limits(u32, i + 8),
          usage: usage(u32, i + 12),
          poolBytes: u32[i + 16],
          slices: u32[i + 19],
          seed: u32[i + 21] === NONE ? null : { size: u32[i + 21], handles: u32[i + 22], objects: u32[i + 23] },
          handles: [],
          queue: [],
        };
        snap.peers.push(peer);
        break;
      case REC_HANDLE:
        peer?.handles.push({
          id: u64(u32, i + 2), node: u32[i + 1], owner: (u32[i + 8] & 1) !== 0, references: u32[i + 4],
          seedReferences: u32[i + 5], inflight: u32[i + 6], queued: u32[i + 7],
        });
        break;
      case REC_NODE:
        nodes.set(u32[i + 1], {
          id: u32[i + 1], owner: u32[i + 2], destroyed: (u32[i + 4] & 1) !== 0, references: u32[i + 3], holders: [],
        });
        break;
      case REC_ENTRY: {
        if (!peer) break;
        const n = u32[i + 11];
        const carried: number[] = [];
        for (let j = 0; j < n; j++) carried.push(u32[i + 13 + j]);
        const e: QueuedSnapshot = {
          type: TYPES[u32[i + 1]] ?? "data", sender: u32[i + 4], seq: u32[i + 5], ts: u64(u32, i + 2),
          node: u32[i + 6], destination: u64(u32, i + 7), size: u32[i + 9], bytes: u32[i + 10],
          handles: carried, objects: u32[i + 12],
        };
        peer.queue.push(e);
        const key = `${e.ts}/${e.sender}/${e.seq}`;
        let tx = txs.get(key);
        if (!tx) txs.set(key, tx = { sender: e.sender, seq: e.seq, ts: e.ts, receivers: [] });
        if (tx.receivers[tx.receivers.length - 1] !== peer.id) tx.receivers.push(peer.id);
        break;
      }
      // a kind of a later format: skipped by its length
    }
  }
  snap.users.sort(byId);
  snap.peers.sort(byId);
  // peers in order of id: each node's holders come out in that order too
  for (const p of snap.peers) {
    p.handles.sort(byHandleId);
    for (const h of p.handles) nodes.get(h.node)?.holders.push(p.id);
  }
  snap.nodes = [...nodes.values()].sort(byId);
  for (const t of txs.values()) if (t.receivers.length > 1) t.receivers.sort((a, b) => a - b);
  snap.transactions = [...txs.values()].sort((a, b) => a.ts - b.ts || a.sender - b.sender || a.seq - b.seq);
  return snap;
}
