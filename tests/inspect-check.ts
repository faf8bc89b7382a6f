// What a snapshot of bus.inspect() must satisfy whatever was going on when it
// was taken: the core's invariants (assembly/handle.ts, user.ts, queue.ts)
// read across peers, nodes, handles, queues and users. A torn snapshot (one
// that caught an operation half-way) breaks at least one of them. Portable:
// used by inspect.test.ts and inspect-threads.test.ts.

import { HANDLE_INVALID, type BusSnapshot, type PeerSnapshot } from "bus1-wasm";

/** Every way `s` is inconsistent, as sentences (empty: consistent). */
export function snapshotProblems(s: BusSnapshot): string[] {
  const bad: string[] = [];
  const peers = new Map<number, PeerSnapshot>();
  for (const p of s.peers) {
    if (peers.has(p.id)) bad.push(`peer ${p.id} listed twice`);
    peers.set(p.id, p);
  }
  const nodes = new Map(s.nodes.map((n) => [n.id, n]));
  if (nodes.size !== s.nodes.length) bad.push("a node listed twice");

  // node references: the sum over its handles of references, seed references, in flight
  const refs = new Map<number, number>();
  const owners = new Map<number, number>();
  for (const p of s.peers) {
    if (p.state === "closed" && (p.handles.length || p.queue.length || p.references)) {
      bad.push(`closed peer ${p.id} keeps handles, a queue or references`);
    }
    const seen = new Set<number>();
    for (const h of p.handles) {
      const n = nodes.get(h.node);
      if (!n) { bad.push(`peer ${p.id}: handle ${h.id} names node ${h.node}, which is not listed`); continue; }
      if (seen.has(h.node)) bad.push(`peer ${p.id} has two handle records for node ${h.node}`);
      seen.add(h.node);
      if (!n.holders.includes(p.id)) bad.push(`node ${h.node} does not list holder ${p.id}`);
      refs.set(h.node, (refs.get(h.node) ?? 0) + h.references + h.seedReferences + h.inflight);
      const live = h.references + h.seedReferences > 0;
      if (live !== (h.id !== HANDLE_INVALID)) bad.push(`peer ${p.id}: handle of node ${h.node} live=${live} with ID ${h.id}`);
      if (h.owner) {
        if (n.owner !== p.id) bad.push(`peer ${p.id} has the owner handle of node ${h.node}, owned by ${n.owner}`);
        owners.set(h.node, (owners.get(h.node) ?? 0) + 1);
      }
      if (h.queued && !h.owner) bad.push(`peer ${p.id}: messages queued to a handle that is not an owner's`);
    }
  }
  for (const n of s.nodes) {
    if (!peers.has(n.owner)) bad.push(`node ${n.id}: owner ${n.owner} is not listed`);
    if ((refs.get(n.id) ?? 0) !== n.references) {
      bad.push(`node ${n.id}: ${n.references} references, its handles hold ${refs.get(n.id) ?? 0}`);
    }
    if (!n.destroyed) {
      if (owners.get(n.id) !== 1) bad.push(`live node ${n.id} has ${owners.get(n.id) ?? 0} owner handles`);
      if (n.references < 1) bad.push(`live node ${n.id} without its owner's reference`);
    }
  }

  // queues, handle counters and peer usage
  const txTs = new Map<string, number>();
  for (const p of s.peers) {
    const handleOf = new Map(p.handles.map((h) => [h.node, h]));
    const inflight = new Map<number, number>();
    const queued = new Map<number, number>();
    let data = 0, carried = 0, objects = 0;
    let last: { ts: number; sender: number; seq: number } | null = null;
    for (const e of p.queue) {
      if (e.ts % 2 !== 0) bad.push(`peer ${p.id}: a staged entry (ts ${e.ts}) is visible`);
      if (last && (e.ts < last.ts || (e.ts === last.ts && (e.sender < last.sender || (e.sender === last.sender && e.seq < last.seq))))) {
        bad.push(`peer ${p.id}: queue out of order at ts ${e.ts}`);
      }
      last = e;
      const key = `${e.sender}/${e.seq}`;
      if (txTs.has(key) && txTs.get(key) !== e.ts) bad.push(`transaction ${key} committed at two timestamps`);
      txTs.set(key, e.ts);
      const n = nodes.get(e.node);
      if (!n) { bad.push(`peer ${p.id}: a queued ${e.type} names node ${e.node}, which is not listed`); continue; }
      if (e.type === "data") {
        data++;
        carried += e.handles.length;
        objects += e.objects;
        if (n.owner !== p.id) bad.push(`peer ${p.id}: a message to node ${e.node}, owned by ${n.owner}`);
        queued.set(e.node, (queued.get(e.node) ?? 0) + 1);
        for (const c of e.handles) {
          if (!handleOf.has(c)) bad.push(`peer ${p.id}: a queued message carries node ${c} without a handle record for it`);
          inflight.set(c, (inflight.get(c) ?? 0) + 1);
        }
      } else if (e.type === "node-destroy") {
        if (!n.destroyed) bad.push(`peer ${p.id}: node-destroy queued for live node ${e.node}`);
        if (!handleOf.has(e.node)) bad.push(`peer ${p.id}: node-destroy for node ${e.node} without a handle record`);
      } else if (n.owner !== p.id) {
        bad.push(`peer ${p.id}: node-release of node ${e.node}, owned by ${n.owner}`);
      }
    }
    for (const h of p.handles) {
      if ((inflight.get(h.node) ?? 0) !== h.inflight) {
        bad.push(`peer ${p.id}: handle of node ${h.node} counts ${h.inflight} in flight, its queue carries ${inflight.get(h.node) ?? 0}`);
      }
      if ((queued.get(h.node) ?? 0) !== h.queued) {
        bad.push(`peer ${p.id}: handle of node ${h.node} counts ${h.queued} queued, its queue has ${queued.get(h.node) ?? 0}`);
      }
    }
    const live = p.handles.filter((h) => h.id !== HANDLE_INVALID).length;
    if (p.usage.handles !== live + carried) {
      bad.push(`peer ${p.id}: ${p.usage.handles} handles charged, ${live} live + ${carried} in flight`);
    }
    const slices = data + p.slices + (p.seed ? 1 : 0);
    if (p.usage.slices !== slices) {
      bad.push(`peer ${p.id}: ${p.usage.slices} slices charged, ${data} queued + ${p.slices} received + seed ${p.seed ? 1 : 0}`);
    }
    if (p.usage.objects < objects) bad.push(`peer ${p.id}: ${p.usage.objects} objects charged, ${objects} queued`);
  }

  // users: the sum of their peers
  for (const u of s.users) {
    const mine = s.peers.filter((p) => p.user === u.id);
    if (mine.length !== u.peers) bad.push(`user ${u.id}: counts ${u.peers} peers, ${mine.length} listed`);
    for (const r of ["slices", "handles", "bytes", "objects"] as const) {
      const sum = mine.reduce((a, p) => a + p.usage[r], 0);
      if (sum !== u.usage[r]) bad.push(`user ${u.id}: ${u.usage[r]} ${r} charged, its peers ${sum}`);
    }
  }
  return bad;
}

/** Throws with every problem of `s`. */
export function checkSnapshot(s: BusSnapshot): void {
  const bad = snapshotProblems(s);
  if (bad.length) throw new Error(`inconsistent snapshot:\n  ${bad.slice(0, 20).join("\n  ")}`);
}
