// bus.inspect(): a snapshot of the bus as the core sees it (docs/SPEC.md
// "Inspecting the bus", docs/ABI.md "Inspecting the bus"). What it shows
// after scripted steps, on a deterministic single-thread bus; every snapshot
// is also checked against the core's invariants (inspect-check.ts). The
// concurrent behaviour is in inspect-threads.test.ts. Portable: no runtime
// modules, so that it runs in Node, Deno and Chromium alike.

import { describe, expect, it } from "vitest";
import { Bus, HANDLE_INVALID, RemotePeer, type BusSnapshot, type Peer, type PeerSnapshot } from "bus1-wasm";
import { enc, expectCode, newBus, newSharedBus } from "./helpers.js";
import { checkSnapshot } from "./inspect-check.js";

/** A snapshot, checked for consistency. */
function snap(bus: Bus): BusSnapshot {
  const s = bus.inspect();
  checkSnapshot(s);
  return s;
}

/** The snapshot's entry of a peer, found by its reference's slot. */
function entryOf(s: BusSnapshot, peer: Peer): PeerSnapshot {
  const p = s.peers.find((x) => x.slot === peer.ref.slot);
  if (!p) throw new Error(`peer in slot ${peer.ref.slot} is not in the snapshot`);
  return p;
}

/** The node a peer's handle ID names. */
function nodeOf(s: BusSnapshot, peer: Peer, id: number) {
  const h = entryOf(s, peer).handles.find((x) => x.id === id);
  if (!h) throw new Error(`no handle ${id}`);
  return s.nodes.find((n) => n.id === h.node)!;
}

describe("bus.inspect()", () => {
  it("shows an empty bus: no users, peers or nodes, one attached thread", async () => {
    const bus = await newBus();
    const s = snap(bus);
    expect(s.peers).toEqual([]);
    expect(s.nodes).toEqual([]);
    expect(s.users).toEqual([]);
    expect(s.transactions).toEqual([]);
    expect(s.threads).toBe(1);
    expect(s.usedBytes).toBeGreaterThan(0);
    expect(s.heapBytes).toBeGreaterThanOrEqual(s.usedBytes);
  });

  it("shows each peer's user, limits, references and state", async () => {
    const bus = await newBus({ limits: { maxSlices: 100 } });
    const a = bus.connect({ user: 7 });
    const b = bus.connect({ user: 9 });
    const b2 = bus.adopt(b.ref);
    const c = bus.connect({ user: 9 });
    a.reset({ limits: { maxHandles: 5 } });
    c.disconnect();
    const s = snap(bus);
    expect(s.peers.map((p) => p.id)).toEqual([...s.peers.map((p) => p.id)].sort((x, y) => x - y));
    const pa = entryOf(s, a), pb = entryOf(s, b), pc = entryOf(s, c);
    expect(pa).toMatchObject({ user: 7, state: "connected", references: 1, slices: 0, seed: null, handles: [], queue: [] });
    expect(pa.limits).toEqual({ maxSlices: 100, maxHandles: 5, maxInflightBytes: 16 * 1024 * 1024, maxInflightObjects: 4096 });
    expect(pa.usage).toEqual({ slices: 0, handles: 0, bytes: 0, objects: 0 });
    expect(pb).toMatchObject({ user: 9, state: "connected", references: 2 });
    expect(pc).toMatchObject({ user: 9, state: "disconnected", references: 1 });
    expect(new Set([pa.id, pb.id, pc.id]).size).toBe(3);
    expect(s.users.map((u) => [u.id, u.peers])).toEqual([[7, 1], [9, 2]]);
    expect(s.users[0].limits.maxSlices).toBe(100);
    b2.close();
    expect(entryOf(snap(bus), b).references).toBe(1);
  });

  it("shows a node with its owner and holders, and each holder's handle with its ID", async () => {
    const bus = await newBus();
    const a = bus.connect(), b = bus.connect();
    const hb = a.transfer(0x100, b);
    const s = snap(bus);
    expect(s.nodes).toHaveLength(1);
    const n = s.nodes[0];
    const pa = entryOf(s, a), pb = entryOf(s, b);
    expect(n).toMatchObject({ owner: pa.id, destroyed: false, references: 2 });
    expect(n.holders).toEqual([pa.id, pb.id].sort((x, y) => x - y));
    expect(pa.handles).toEqual([{ id: 0x100, node: n.id, owner: true, references: 1, seedReferences: 0, inflight: 0, queued: 0 }]);
    expect(pb.handles).toEqual([{ id: hb, node: n.id, owner: false, references: 1, seedReferences: 0, inflight: 0, queued: 0 }]);
    expect(pa.usage.handles).toBe(1);
    expect(pb.usage.handles).toBe(1);
  });

  it("shows a queued message: sender, destination, size, charge and the handles it carries in flight", async () => {
    const bus = await newBus();
    const a = bus.connect(), b = bus.connect();
    const hb = a.transfer(0x100, b);
    b.send(hb, enc("hello"), { handles: [0x200] });
    const s = snap(bus);
    const pa = entryOf(s, a), pb = entryOf(s, b);
    const n200 = nodeOf(s, b, 0x200);
    expect(pa.queue).toHaveLength(1);
    const e = pa.queue[0];
    expect(e).toMatchObject({ type: "data", sender: pb.id, destination: 0x100, node: nodeOf(s, a, 0x100).id, size: 5,
      handles: [n200.id], objects: 0 });
    expect(e.bytes).toBe(8 + 8);
    // a's handle to b's node exists, without an ID, counted in flight
    expect(pa.handles.find((h) => h.node === n200.id)).toMatchObject({ id: HANDLE_INVALID, references: 0, inflight: 1 });
    expect(pa.handles.find((h) => h.id === 0x100)).toMatchObject({ owner: true, queued: 1 });
    expect(n200.holders).toEqual([pa.id, pb.id].sort((x, y) => x - y));
    expect(n200.references).toBe(2);
    expect(pa.usage).toEqual({ slices: 1, handles: 2, bytes: 16, objects: 0 });
    expect(s.transactions).toEqual([{ sender: pb.id, seq: e.seq, ts: e.ts, receivers: [pa.id] }]);
  });

  it("shows a received message as a live handle and a slice held, until the slice is released", async () => {
    const bus = await newBus();
    const a = bus.connect(), b = bus.connect();
    const hb = a.transfer(0x100, b);
    b.send(hb, enc("hello"), { handles: [0x200] });
    const m = a.recv()!;
    let s = snap(bus);
    let pa = entryOf(s, a);
    expect(pa.queue).toEqual([]);
    expect(pa.slices).toBe(1);
    const got = pa.handles.find((h) => h.id === m.handles[0])!;
    expect(got).toMatchObject({ references: 1, inflight: 0, owner: false });
    expect(got.node).toBe(nodeOf(s, b, 0x200).id);
    expect(pa.usage).toEqual({ slices: 1, handles: 2, bytes: 16, objects: 0 });
    m.release();
    s = snap(bus);
    pa = entryOf(s, a);
    expect(pa.slices).toBe(0);
    expect(pa.usage).toEqual({ slices: 0, handles: 2, bytes: 0, objects: 0 });
  });

  it("shows a destroyed node with a node-destroy queued to every holder, and drops it when the last handle goes", async () => {
    const bus = await newBus();
    const a = bus.connect(), b = bus.connect(), c = bus.connect();
    const hb = a.transfer(0x100, b);
    const hc = a.transfer(0x100, c);
    a.destroy(0x100);
    let s = snap(bus);
    const n = s.nodes[0];
    expect(n.destroyed).toBe(true);
    for (const [p, id] of [[a, 0x100], [b, hb], [c, hc]] as const) {
      expect(entryOf(s, p).queue).toEqual([expect.objectContaining({ type: "node-destroy", node: n.id, destination: id })]);
    }
    expect(s.transactions).toHaveLength(1);
    expect(s.transactions[0].receivers).toHaveLength(3);
    expect(s.transactions[0].sender).toBe(entryOf(s, a).id);
    for (const [p, id] of [[a, 0x100], [b, hb], [c, hc]] as const) {
      p.recv();
      p.release(id);
    }
    s = snap(bus);
    expect(s.nodes).toEqual([]);
    for (const p of s.peers) expect(p.handles).toEqual([]);
  });

  it("shows a multicast as one transaction queued on every receiver at one timestamp", async () => {
    const bus = await newBus();
    const a = bus.connect(), b = bus.connect(), c = bus.connect();
    const toB = b.transfer(0x10, a), toC = c.transfer(0x20, a);
    a.send([toB, toC], enc("x"));
    const s = snap(bus);
    const pa = entryOf(s, a);
    expect(s.transactions).toEqual([{ sender: pa.id, seq: expect.any(Number), ts: expect.any(Number),
      receivers: [entryOf(s, b).id, entryOf(s, c).id].sort((x, y) => x - y) }]);
    expect(entryOf(s, b).queue[0].ts).toBe(entryOf(s, c).queue[0].ts);
    expect(entryOf(s, b).queue[0].destination).toBe(0x10);
    expect(entryOf(s, c).queue[0].destination).toBe(0x20);
  });

  it("shows a node-release queued to the owner when the last other handle is released", async () => {
    const bus = await newBus();
    const a = bus.connect(), b = bus.connect();
    const hb = a.transfer(0x100, b);
    b.release(hb);
    const s = snap(bus);
    const pa = entryOf(s, a);
    expect(pa.queue).toEqual([expect.objectContaining({ type: "node-release", node: nodeOf(s, a, 0x100).id, destination: 0x100 })]);
    expect(s.nodes[0]).toMatchObject({ references: 1, holders: [pa.id] });
    expect(entryOf(s, b).handles).toEqual([]);
  });

  it("shows the seed and the references it holds", async () => {
    const bus = await newBus();
    const a = bus.connect();
    a.send([], enc("seed!"), { seed: true, handles: [0x50] });
    const s = snap(bus);
    const pa = entryOf(s, a);
    expect(pa.seed).toEqual({ size: 5, handles: 1, objects: 0 });
    expect(pa.handles).toEqual([expect.objectContaining({ id: 0x50, owner: true, references: 1, seedReferences: 1 })]);
    expect(pa.usage.slices).toBe(1);
  });

  it("shows users with the sum of their peers' usage and each sending user's share", async () => {
    const bus = await newBus();
    const r1 = bus.connect({ user: 1 }), r2 = bus.connect({ user: 1 }), s2 = bus.connect({ user: 2 });
    const to1 = r1.transfer(0x10, s2), to2 = r2.transfer(0x20, s2);
    s2.send(to1, enc("abc"));
    s2.send(to2, enc("abcdefghij"));
    r1.send(0x10, enc("self"));
    const s = snap(bus);
    const u1 = s.users.find((u) => u.id === 1)!;
    expect(u1.usage).toEqual({ slices: 3, handles: 2, bytes: 8 + 16 + 8, objects: 0 });
    // only user 2's messages count in a share of user 1; r1's message to itself does not
    expect(u1.shares).toEqual([{ user: 2, slices: 2, handles: 0, bytes: 8 + 16, objects: 0 }]);
    expect(s.users.find((u) => u.id === 2)!.shares).toEqual([]);
  });

  it("shows a peer whose references are all closed as closed while a node it owned is still held", async () => {
    const bus = await newBus();
    const a = bus.connect(), b = bus.connect();
    const hb = a.transfer(0x100, b);
    const aId = entryOf(snap(bus), a).id;
    a.close();
    let s = snap(bus);
    const pa = s.peers.find((p) => p.id === aId)!;
    expect(pa).toMatchObject({ state: "closed", slot: null, user: null, references: 0, handles: [], queue: [] });
    expect(s.nodes).toEqual([expect.objectContaining({ owner: aId, destroyed: true, holders: [entryOf(s, b).id] })]);
    b.recv();
    b.release(hb);
    s = snap(bus);
    expect(s.peers.map((p) => p.id)).toEqual([entryOf(s, b).id]);
    expect(s.nodes).toEqual([]);
  });

  it("follows a handle as it moves from peer to peer", async () => {
    const bus = await newBus();
    const a = bus.connect(), b = bus.connect(), c = bus.connect();
    const hb = a.transfer(0x100, b);
    const node = () => bus.inspect().nodes[0];
    const ids = () => bus.inspect().peers.map((p) => p.id);
    const [ia, ib, ic] = [a, b, c].map((p) => entryOf(snap(bus), p).id);
    expect(node().holders).toEqual([ia, ib]);
    const hc = b.transfer(hb, c);
    expect(node().holders).toEqual([ia, ib, ic]);
    b.release(hb);
    expect(node().holders).toEqual([ia, ic]);
    expect(entryOf(snap(bus), c).handles.map((h) => h.id)).toEqual([hc]);
    expect(ids()).toEqual([ia, ib, ic]);
  });

  it("is plain data: a JSON round trip gives the same snapshot", async () => {
    const bus = await newBus();
    const a = bus.connect({ user: 3 }), b = bus.connect();
    const hb = a.transfer(0x100, b);
    b.send(hb, enc("x"), { handles: [0x8], objects: [{ k: 1 }] });
    a.send([], enc("s"), { seed: true });
    const s = snap(bus);
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
    expect(entryOf(s, a).queue[0].objects).toBe(1);
  });

  it("is the same on a shared bus", async () => {
    const bus = await newSharedBus();
    const a = bus.connect(), b = bus.connect();
    const hb = a.transfer(0x100, b);
    b.send(hb, enc("x"), { handles: [0x200] });
    const s = snap(bus);
    expect(s.nodes).toHaveLength(2);
    expect(entryOf(s, a).queue).toHaveLength(1);
  });

  it("grows its room for a large bus and stays cheap enough to call several times a second", async () => {
    const bus = await newBus();
    const ps = Array.from({ length: 40 }, () => bus.connect());
    // every peer owns 100 nodes and holds a handle to each of its neighbour's,
    // and has a message queued that carries a handle of the next peer's
    const held: number[][] = ps.map(() => []);
    for (let i = 0; i < ps.length; i++) {
      const next = (i + 1) % ps.length;
      for (let k = 0; k < 100; k++) held[next].push(ps[i].transfer(0x1000 + 8 * k, ps[next]));
    }
    for (let i = 0; i < ps.length; i++) ps[i].send(held[i][0], enc("queued"), { handles: [0x1000] });
    const first = snap(bus);
    expect(first.nodes).toHaveLength(4000);
    expect(first.peers.reduce((a, p) => a + p.handles.length, 0)).toBe(8000 + 40);
    expect(first.peers.every((p) => p.queue.length === 1)).toBe(true);
    const t0 = performance.now();
    const rounds = 10;
    for (let i = 0; i < rounds; i++) bus.inspect();
    const each = (performance.now() - t0) / rounds;
    // a few calls a second must cost little of a frame: generous for a debug build
    expect(each).toBeLessThan(100);
  });

  it("throws EBADF once the bus is closed in this thread, and EINVAL on something that is not a Bus", async () => {
    const bus = await newBus();
    const inspect = bus.inspect;
    expectCode(() => inspect.call({}), "EINVAL");
    bus.close();
    expectCode(() => bus.inspect(), "EBADF");
  });

  it("cannot be reached from a served peer", async () => {
    const bus = await newBus();
    const p = bus.connect();
    const { port1, port2 } = new MessageChannel();
    try {
      bus.serve(p, port1);
      const remote = await RemotePeer.connect(port2);
      expect("inspect" in remote).toBe(false);
      expect(Object.keys(remote).concat(Object.getOwnPropertyNames(RemotePeer.prototype))).not.toContain("inspect");
      await remote.close();
    } finally {
      port1.close();
      port2.close();
    }
  });
});
