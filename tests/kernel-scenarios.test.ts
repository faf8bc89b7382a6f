// The scenarios of the bus1 kernel self-tests (test-api, test-xfer, test-peer,
// test-io, test-hive), restated against this API and SPEC.md. Where SPEC.md
// differs from the old module (owner handles are pinned; destroying twice is
// ESTALE; destroying a remote handle is EREMOTE) the spec is followed.
// Each scenario runs on private and on shared memory, on one thread.

import { describe, expect, it } from "vitest";
import {
  HANDLE_INVALID,
  bytesOf,
  dec,
  drain,
  drainTexts,
  enc,
  expectCode,
  expectEmpty,
  expectNotification,
  expectRemoteId,
  makeBus,
  newBus,
  take,
  takeOne,
} from "./helpers.js";
import type { BusKind, Peer } from "./helpers.js";

/** `peer` holds exactly `n` references of a handle to another peer's node. */
function expectRemoteReferences(peer: Peer, handle: number, n: number) {
  expectCode(() => peer.destroy(handle), "EREMOTE");
  for (let i = 0; i < n; i++) peer.release(handle);
  expectCode(() => peer.release(handle), "ENXIO");
}

/** `peer` owns live `node` and holds exactly `n` references of its handle; destroys it. */
function expectOwnReferences(peer: Peer, node: number, n: number) {
  peer.destroy(node);
  expectCode(() => peer.destroy(node), "ESTALE");
  for (let i = 0; i < n; i++) peer.release(node);
  expectCode(() => peer.release(node), "ENXIO");
}

describe.each(["private", "shared"] as BusKind[])("kernel self-test scenarios (%s memory)", (kind) => {
  describe("api", () => {
    it("connects, resets with no changes, disconnects, then refuses with ESHUTDOWN", async () => {
      const bus = await makeBus(kind);
      const p = bus.connect();
      const before = p.query();
      p.reset({ limits: {} });
      expect(p.query()).toEqual(before);
      p.disconnect();
      expectCode(() => p.disconnect(), "ESHUTDOWN");
      expectCode(() => p.reset(), "ESHUTDOWN");
    });

    it("transfers a handle and marks it MANAGED and REMOTE", async () => {
      const bus = await makeBus(kind);
      const p1 = bus.connect();
      const p2 = bus.connect();
      const h = p1.transfer(0x100, p2);
      expect(h).not.toBe(HANDLE_INVALID);
      expectRemoteId(h);
    });

    it("notifies release twice over for a self-transferred node", async () => {
      const bus = await makeBus(kind);
      const p = bus.connect();
      for (let round = 0; round < 2; round++) {
        expect(p.transfer(0x100)).toBe(0x100);
        expectEmpty(p);
        p.release(0x100);
        const msg = take(p);
        expectNotification(msg, "node-release", 0x100);
        expect(msg!.continue).toBe(false);
        expectEmpty(p);
      }
    });

    it("notifies destruction to owner and holder", async () => {
      const bus = await makeBus(kind);
      const p1 = bus.connect();
      const p2 = bus.connect();
      const h = p1.transfer(0x100, p2);
      expectEmpty(p1);
      expectEmpty(p2);
      p1.destroy(0x100);
      const own = take(p1);
      expectNotification(own, "node-destroy", 0x100);
      expect(own!.continue).toBe(false);
      const held = take(p2);
      expectNotification(held, "node-destroy", h);
      expect(held!.continue).toBe(false);
      expectEmpty(p1);
      expectEmpty(p2);
    });

    it("sends and receives an empty unicast", async () => {
      const bus = await makeBus(kind);
      const p = bus.connect();
      p.send([0x100]);
      const msg = takeOne(p);
      expect(msg.type).toBe("data");
      expect(msg.continue).toBe(false);
      expect(msg.destination).toBe(0x100);
      expect(msg.bytes.length).toBe(0);
      expectEmpty(p);
    });

    it("sends a multicast to two nodes of one peer: two messages, the first flagged continue", async () => {
      const bus = await makeBus(kind);
      const p = bus.connect();
      const data = new Uint8Array(new BigUint64Array(Array.from({ length: 13 }, (_, i) => BigInt(i))).buffer);
      p.send([0x100, 0x200], data);
      const m1 = p.recv()!;
      const m2 = p.recv()!;
      expect(m1.type).toBe("data");
      expect(m1.continue).toBe(true);
      expect(m2.continue).toBe(false);
      expect([0x100, 0x200]).toContain(m1.destination);
      expect([0x100, 0x200]).toContain(m2.destination);
      expect(m1.destination).not.toBe(m2.destination);
      for (const m of [m1, m2]) {
        expect(m.payload.length).toBe(data.length);
        expect(Array.from(m.payload)).toEqual(Array.from(data));
        m.release();
      }
      expectEmpty(p);
    });
  });

  describe("xfer", () => {
    it("transfers existing and new handles through a multicast", async () => {
      const bus = await makeBus(kind);
      const c1 = bus.connect();
      const c2 = bus.connect();
      const c3 = bus.connect();

      const handle2 = c1.transfer(0x100, c2); // c1's node2 = 0x100
      const handle3 = c1.transfer(0x200, c3); // c1's node3 = 0x200

      // c2 creates node20 by sending it to c1; c3 likewise node30
      c2.send(handle2, undefined, { handles: [0x100] });
      const handle20 = takeOne(c1).handles[0];
      expectRemoteId(handle20);
      c3.send(handle3, undefined, { handles: [0x100] });
      const handle30 = takeOne(c1).handles[0];
      expectRemoteId(handle30);
      expect(handle30).not.toBe(handle20);

      // everything known so far, plus two nodes created on the fly
      c1.send([handle20, handle30], undefined, {
        handles: [handle20, handle30, 0x300, 0x100, 0x200, 0x400],
      });

      const at2 = takeOne(c2);
      expect(at2.type).toBe("data");
      expect(at2.handles).toHaveLength(6);
      expect(at2.handles[0]).toBe(0x100);
      expect(at2.handles[3]).toBe(handle2);
      for (const i of [1, 2, 4, 5]) expectRemoteId(at2.handles[i]);
      expect(new Set(at2.handles).size).toBe(6);

      const at3 = takeOne(c3);
      expect(at3.handles).toHaveLength(6);
      expect(at3.handles[1]).toBe(0x100);
      expect(at3.handles[4]).toBe(handle3);
      for (const i of [0, 2, 3, 5]) expectRemoteId(at3.handles[i]);
      expect(new Set(at3.handles).size).toBe(6);

      expectEmpty(c1);
      expectEmpty(c2);
      expectEmpty(c3);

      // c1 owns node2 and node3 once each
      c1.destroy([0x100, 0x200]);
      expectCode(() => c1.destroy([0x100, 0x200]), "ESTALE");
      const ownNotes = drain(c1);
      expect(ownNotes.map((m) => m.type)).toEqual(["node-destroy", "node-destroy"]);
      expect(ownNotes.map((m) => m.continue)).toEqual([true, false]);
      expect(new Set(ownNotes.map((m) => m.destination))).toEqual(new Set([0x100, 0x200]));
      expect(new Set(drain(c2).map((m) => m.destination))).toEqual(new Set([handle2, at2.handles[4]]));
      expect(new Set(drain(c3).map((m) => m.destination))).toEqual(new Set([at3.handles[3], handle3]));
      c1.release(0x100);
      expectCode(() => c1.release(0x100), "ENXIO");
      c1.release(0x200);
      expectCode(() => c1.release(0x200), "ENXIO");

      // c1 holds one reference each of handle20 and handle30
      expectRemoteReferences(c1, handle20, 1);
      expectRemoteReferences(c1, handle30, 1);

      // c2 holds handle2 twice (transfer + message) and node20 pinned + once from the message
      expectRemoteReferences(c2, handle2, 2);
      expectOwnReferences(c2, 0x100, 2);

      // and c3 likewise
      expectRemoteReferences(c3, handle3, 2);
      expectOwnReferences(c3, 0x100, 2);
    });

    it("notifies release after the holder releases, then destruction", async () => {
      const bus = await makeBus(kind);
      const c1 = bus.connect();
      const c2 = bus.connect();
      const h = c1.transfer(0x100, c2);
      c2.release(h);
      expectCode(() => c2.release(h), "ENXIO");
      expectCode(() => c1.release(0x100), "EBUSY");
      expectNotification(take(c1), "node-release", 0x100);
      c1.destroy(0x100);
      expectNotification(take(c1), "node-destroy", 0x100);
      expectEmpty(c1);
      expectEmpty(c2);
    });
  });

  describe("peer", () => {
    it("sends, receives, releases slices and refuses a doubled destination", async () => {
      const bus = await makeBus(kind);
      const p = bus.connect();
      expect(p.recv()).toBeNull();
      p.send(0x100, bytesOf(24, 9));
      const msg = p.recv()!;
      expect(msg.payload.length).toBe(24);
      expectCode(() => p.releaseSlice(msg.offset + 8), "ENXIO");
      p.releaseSlice(msg.offset);
      expectCode(() => p.releaseSlice(msg.offset), "ENXIO");
      expect(p.recv()).toBeNull();
      p.send(0x100, bytesOf(24, 1));
      p.send(0x100, bytesOf(24, 2));
      expectCode(() => p.send([0x100, 0x100], bytesOf(24, 3)), "ENOTUNIQ");
      expect(drain(p).map((m) => m.bytes[0])).toEqual([1, 2]);
      expect(p.recv()).toBeNull();
    });
  });

  describe("io", () => {
    it("multicasts 1 KiB to 1..64 receivers repeatedly without leaking slices", async () => {
      const bus = await makeBus(kind);
      const sender = bus.connect();
      const receivers: Peer[] = [];
      const handles: number[] = [];
      for (let i = 0; i < 64; i++) {
        const r = bus.connect();
        r.reset({ limits: { maxSlices: 2 } });
        handles.push(r.transfer(0x100, sender));
        receivers.push(r);
      }
      const payload = bytesOf(1024, 0x5a);
      for (const n of [0, 1, 2, 4, 8, 16, 32, 64]) {
        for (let iteration = 0; iteration < 20; iteration++) {
          sender.send(handles.slice(0, n), payload);
          for (let i = 0; i < n; i++) {
            const msg = receivers[i].recv()!;
            expect(msg.type).toBe("data");
            expect(msg.payload.length).toBe(1024);
            receivers[i].releaseSlice(msg.offset);
          }
        }
      }
      for (const r of receivers) expectEmpty(r);
    });
  });

  describe("three peers passing a handle", () => {
    /** A can send to B's node 0x100, B to C's node 0x100. */
    async function threePeers() {
      const bus = await makeBus(kind);
      const a = bus.connect();
      const b = bus.connect();
      const c = bus.connect();
      return { a, b, c, aToB: b.transfer(0x100, a), bToC: c.transfer(0x100, b) };
    }

    it("lets C reach A's node through B, and tells B and C when A destroys it", async () => {
      const { a, b, c, aToB, bToC } = await threePeers();

      // A creates node 4 and sends a handle to it to B
      a.send(aToB, enc("here is my node"), { handles: [4] });
      const atB = takeOne(b);
      const bHandle = atB.handles[0];
      expectRemoteId(bHandle);

      // B passes it on to C
      b.send(bToC, enc("from A, via B"), { handles: [bHandle] });
      const atC = takeOne(c);
      const cHandle = atC.handles[0];
      expectRemoteId(cHandle);

      // C sends to A's node
      c.send(cHandle, enc("hello A, from C"));
      const atA = takeOne(a);
      expect(atA.destination).toBe(4);
      expect(atA.text).toBe("hello A, from C");

      // A destroys it: B and C are told, with their own IDs
      a.destroy(4);
      expectNotification(take(a), "node-destroy", 4);
      expectNotification(take(b), "node-destroy", bHandle);
      expectNotification(take(c), "node-destroy", cHandle);
      expectCode(() => c.send(cHandle, enc("too late")), "EHOSTUNREACH");
      expectCode(() => b.send(bHandle, enc("too late")), "EHOSTUNREACH");
      expectEmpty(a);
    });

    it("tells C about the destruction after the message that carried the handle, when A destroys before C receives", async () => {
      const { a, b, c, aToB, bToC } = await threePeers();
      a.send(aToB, undefined, { handles: [4] });
      const bHandle = takeOne(b).handles[0];
      b.send(bToC, enc("carrier"), { handles: [bHandle] });
      b.release(bHandle);
      a.destroy(4);
      expectEmpty(b);
      const carrier = takeOne(c);
      expect(carrier.text).toBe("carrier");
      const cHandle = carrier.handles[0];
      expectRemoteId(cHandle);
      expectNotification(take(c), "node-destroy", cHandle);
      expectEmpty(c);
    });
  });

  describe("hive", () => {
    it("connects 300 peers with 20 sibling handles each and tears them all down", async () => {
      const N = 300;
      const SIBLINGS = 20;
      const bus = await makeBus(kind);
      const parent = bus.connect();
      const children: Peer[] = [];
      const childHandles: number[] = [];
      for (let i = 0; i < N; i++) {
        const child = bus.connect();
        children.push(child);
        childHandles.push(child.transfer(0x100, parent));
      }
      expect(new Set(childHandles).size).toBe(N);

      const siblings: number[][] = [];
      for (let i = 0; i < N; i++) {
        const mine: number[] = [];
        for (let j = 0; j < SIBLINGS; j++) {
          const h = parent.transfer(childHandles[(i + j + 1) % N], children[i]);
          expectRemoteId(h);
          mine.push(h);
        }
        expect(new Set(mine).size).toBe(SIBLINGS);
        siblings.push(mine);
      }

      // every child greets its next sibling
      for (let i = 0; i < N; i++) children[i].send(siblings[i][0], enc(String(i)));
      for (let i = 0; i < N; i++) {
        const got = drain(children[i]);
        expect(got.map((m) => [m.destination, m.text])).toEqual([[0x100, String((i + N - 1) % N)]]);
      }

      for (const child of children) child.disconnect();

      const notes = drain(parent);
      expect(notes).toHaveLength(N);
      for (const m of notes) expectNotification(m, "node-destroy", m.destination);
      expect(new Set(notes.map((m) => m.destination))).toEqual(new Set(childHandles));
      for (const h of childHandles) expectCode(() => parent.send(h), "EHOSTUNREACH");
      for (const h of childHandles) parent.release(h);
      parent.disconnect();
      expectCode(() => parent.recv(), "ESHUTDOWN");
    });
  });

  describe("ordering", () => {
    it("delivers messages of several senders in the same order at every common receiver", async () => {
      const bus = await makeBus(kind);
      const senders = [bus.connect(), bus.connect(), bus.connect()];
      const r1 = bus.connect();
      const r2 = bus.connect();
      const to = senders.map((s) => [r1.transfer(0x100, s), r2.transfer(0x100, s)]);
      const sent: string[] = [];
      for (let round = 0; round < 5; round++) {
        senders.forEach((s, i) => {
          const text = `${i}:${round}`;
          s.send(to[i], enc(text));
          sent.push(text);
        });
      }
      const at1 = drainTexts(r1);
      const at2 = drainTexts(r2);
      expect(at1).toEqual(sent);
      expect(at2).toEqual(sent);
    });

    it("orders a node-destroy against every message to or carrying the node", async () => {
      const bus = await makeBus(kind);
      const owner = bus.connect();
      const holder = bus.connect();
      const other = bus.connect();
      const toOwner = owner.transfer(4, holder);
      const toOther = other.transfer(0x100, holder);
      holder.send(toOwner, enc("before"));
      holder.send(toOther, enc("carrying before"), { handles: [toOwner] });
      owner.destroy(4);
      expectCode(() => holder.send(toOwner, enc("after")), "EHOSTUNREACH");
      holder.send(toOther, enc("carrying after"), { handles: [toOwner] });

      expect(drain(owner).map((m) => [m.type, m.text])).toEqual([
        ["data", "before"],
        ["node-destroy", ""],
      ]);
      const atOther = drain(other);
      expect(atOther.map((m) => m.type)).toEqual(["data", "node-destroy", "data"]);
      expectRemoteId(atOther[0].handles[0]);
      expect(atOther[1].destination).toBe(atOther[0].handles[0]);
      expect(atOther[2].text).toBe("carrying after");
      expect(atOther[2].handles).toEqual([HANDLE_INVALID]);
    });
  });
});

describe("determinism of a private bus", () => {
  async function trace(): Promise<unknown[]> {
    const bus = await newBus();
    const log: unknown[] = [];
    const ps = Array.from({ length: 4 }, () => bus.connect());
    const hs = ps.map((p, i) => p.transfer(0x100, ps[(i + 1) % 4]));
    log.push(hs);
    for (let i = 0; i < 4; i++) {
      const p = ps[(i + 1) % 4];
      log.push(p.send(hs[i], bytesOf(3 + 5 * i, i), { handles: [0x200 + 4 * i] }).errors);
    }
    ps[2].destroy(0x100);
    try {
      ps[3].send(hs[2], enc("late"));
    } catch (e) {
      log.push((e as { code: string }).code);
    }
    for (const p of ps) {
      for (let m = p.recv(); m !== null; m = p.recv()) {
        log.push([m.type, m.destination, m.offset, m.continue, dec(m.payload), m.handles]);
      }
    }
    bus.close();
    return log;
  }

  it("gives the same IDs, offsets, orders and errors for the same calls", async () => {
    const first = await trace();
    const second = await trace();
    expect(second).toEqual(first);
    expect(first).toContain("EHOSTUNREACH");
  });
});
