// SPEC §2: handle IDs, user-references, release notifications and
// "no handle, no news".

import { describe, expect, it } from "vitest";
import {
  HANDLE_INVALID,
  UNKNOWN_MANAGED,
  UNKNOWN_REMOTE,
  drain,
  enc,
  expectCode,
  expectEmpty,
  expectNotification,
  expectRemoteId,
  peers,
  take,
  takeOne,
} from "./helpers.js";

describe("caller-chosen node IDs", () => {
  it("creates a node lazily when a caller-chosen ID is used as a send destination", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, enc("to myself"));
    const msg = takeOne(a);
    expect(msg.type).toBe("data");
    expect(msg.destination).toBe(4);
    expect(msg.text).toBe("to myself");
    expectEmpty(a);
  });

  it("creates a node lazily when a caller-chosen ID is attached as a handle", async () => {
    const { peers: [a, b] } = await peers(2);
    const toB = b.transfer(0x100, a);
    a.send(toB, enc("take this"), { handles: [8] });
    const msg = takeOne(b);
    expect(msg.handles).toHaveLength(1);
    const h = msg.handles[0];
    expectRemoteId(h);
    b.send(h, enc("back"));
    const back = takeOne(a);
    expect(back.destination).toBe(8);
    expect(back.text).toBe("back");
  });

  it("creates a node lazily when a caller-chosen ID is a transfer source", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    expectRemoteId(h);
    b.send(h, enc("hi"));
    const msg = takeOne(a);
    expect(msg.destination).toBe(4);
    expect(msg.text).toBe("hi");
  });

  it("creates and at once destroys a node when a caller-chosen ID is first named by destroy", async () => {
    const { peers: [a] } = await peers(1);
    a.destroy(4);
    expectNotification(take(a), "node-destroy", 4);
    expectEmpty(a);
    expectCode(() => a.send(4), "EHOSTUNREACH");
  });

  it("gives the owner's handle the caller-chosen ID itself", async () => {
    const { peers: [a] } = await peers(1);
    expect(a.transfer(0x100)).toBe(0x100);
  });

  it("hands a node's owner its own caller-chosen ID when a handle to the node comes back in a message", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    b.send(h, enc("yours"), { handles: [h] });
    const msg = takeOne(a);
    expect(msg.destination).toBe(4);
    expect(msg.handles).toEqual([4]);
  });

  it("accepts 0 as a caller-chosen node ID", async () => {
    const { peers: [a, b] } = await peers(2);
    a.send(0, enc("zero"));
    const msg = takeOne(a);
    expect(msg.destination).toBe(0);
    const h = a.transfer(0, b);
    b.send(h);
    expect(takeOne(a).destination).toBe(0);
  });

  it("accepts the largest caller-chosen ID below 2^53 and returns it exactly", async () => {
    const { peers: [a, b] } = await peers(2);
    const id = 2 ** 53 - 4;
    const h = a.transfer(id, b);
    expectRemoteId(h);
    b.send(h, enc("far"));
    const msg = takeOne(a);
    expect(msg.destination).toBe(id);
  });

  it("keeps naming the destroyed node while the owner still holds its handle", async () => {
    const { peers: [a, b] } = await peers(2);
    a.transfer(4, b);
    a.destroy(4);
    expectCode(() => a.send(4), "EHOSTUNREACH");
    expect(a.transfer(4, b)).toBe(HANDLE_INVALID);
    expectCode(() => a.destroy(4), "ESTALE");
  });

  it("creates a fresh node under the same ID once the old node is destroyed and its handle released", async () => {
    const { peers: [a, b] } = await peers(2);
    const oldHandle = a.transfer(4, b);
    a.destroy(4);
    expectNotification(take(a), "node-destroy", 4);
    a.release(4);
    const newHandle = a.transfer(4, b);
    expectRemoteId(newHandle);
    expect(newHandle).not.toBe(oldHandle);
    expectCode(() => b.send(oldHandle), "EHOSTUNREACH");
    b.send(newHandle, enc("fresh"));
    const msg = takeOne(a);
    expect(msg.destination).toBe(4);
    expect(msg.text).toBe("fresh");
  });

  it("treats an ID with only the REMOTE bit set as naming nothing, never as a new node", async () => {
    const { peers: [a] } = await peers(1);
    expectCode(() => a.send(2), "ENXIO");
    expectCode(() => a.send(6), "ENXIO");
    expectCode(() => a.transfer(6), "ENXIO");
    expectCode(() => a.destroy(6), "ENXIO");
    expectCode(() => a.release(6), "ENXIO");
  });
});

describe("core-assigned IDs", () => {
  it("sets MANAGED and REMOTE on the ID of a handle to another peer's node", async () => {
    const { peers: [a, b] } = await peers(2);
    expectRemoteId(a.transfer(0x100, b));
  });

  it("assigns strictly increasing IDs in the order handles are given to a peer", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const ids = [a.transfer(4, b), a.transfer(8, b), c.transfer(4, b), c.transfer(0x100, b)];
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1]);
  });

  it("never reuses an ID after its handle is gone", async () => {
    const { peers: [a, b] } = await peers(2);
    const first = a.transfer(4, b);
    b.release(first);
    const second = a.transfer(4, b);
    expect(second).not.toBe(first);
    expect(second).toBeGreaterThan(first);
    expectCode(() => b.send(first), "ENXIO");
  });

  it("never reuses IDs across many handles given and released", async () => {
    const { peers: [a, b] } = await peers(2);
    const seen = new Set<number>();
    let last = -Infinity;
    for (let i = 0; i < 50; i++) {
      const h = a.transfer(4 * (i % 5), b);
      expect(seen.has(h)).toBe(false);
      expect(h).toBeGreaterThan(last);
      seen.add(h);
      last = h;
      b.release(h);
    }
  });

  it("makes an ID meaningful only on the peer that holds it", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const h = a.transfer(4, b);
    expectCode(() => c.send(h), "ENXIO");
    expectCode(() => c.release(h), "ENXIO");
  });

  it("fails with ENXIO for a managed ID that names no handle, in every operation that takes one", async () => {
    const { peers: [a, b] } = await peers(2);
    for (const id of [UNKNOWN_MANAGED, UNKNOWN_REMOTE]) {
      expectCode(() => a.send(id), "ENXIO");
      expectCode(() => a.send(4, undefined, { handles: [id] }), "ENXIO");
      expectCode(() => a.transfer(id, b), "ENXIO");
      expectCode(() => a.release(id), "ENXIO");
      expectCode(() => a.destroy(id), "ENXIO");
    }
  });
});

describe("coalescing", () => {
  it("coalesces a second transfer of the same node into the same ID", async () => {
    const { peers: [a, b] } = await peers(2);
    expect(a.transfer(4, b)).toBe(a.transfer(4, b));
  });

  it("gives distinct IDs to handles of distinct nodes", async () => {
    const { peers: [a, b] } = await peers(2);
    expect(a.transfer(4, b)).not.toBe(a.transfer(8, b));
  });

  it("coalesces a handle received in a message with the one already held", async () => {
    const { peers: [a, b] } = await peers(2);
    const toB = b.transfer(0x100, a);
    const h = a.transfer(4, b);
    a.send(toB, undefined, { handles: [4] });
    expect(takeOne(b).handles).toEqual([h]);
  });

  it("coalesces handles to one node received in two messages", async () => {
    const { peers: [a, b] } = await peers(2);
    const toB = b.transfer(0x100, a);
    a.send(toB, enc("1"), { handles: [4] });
    a.send(toB, enc("2"), { handles: [4] });
    const [m1, m2] = drain(b);
    expectRemoteId(m1.handles[0]);
    expect(m2.handles[0]).toBe(m1.handles[0]);
  });

  it("coalesces a handle passed on by a third peer with the one already held", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const hb = a.transfer(4, b);
    const hc = a.transfer(4, c);
    expect(c.transfer(hc, b)).toBe(hb);
  });

  it("gives the owner its own node's ID when a holder transfers the handle back", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    expect(b.transfer(h, a)).toBe(4);
  });

  it("coalesces a transfer to the holder itself into the ID it already has", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    expect(b.transfer(h)).toBe(h);
  });
});

describe("user-references", () => {
  it("adds one user-reference per transfer", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a.transfer(4, b);
    b.release(h);
    b.release(h);
    expectCode(() => b.release(h), "ENXIO");
  });

  it("adds one user-reference per received message carrying the handle", async () => {
    const { peers: [a, b] } = await peers(2);
    const toB = b.transfer(0x100, a);
    a.send(toB, undefined, { handles: [4] });
    a.send(toB, undefined, { handles: [4] });
    const [m1] = drain(b);
    const h = m1.handles[0];
    b.release(h);
    b.release(h);
    expectCode(() => b.release(h), "ENXIO");
  });

  it("adds one user-reference per self-transfer of a held handle", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    b.transfer(h);
    b.release(h);
    b.send(h, enc("still held"));
    expect(takeOne(a).text).toBe("still held");
    b.release(h);
    expectCode(() => b.send(h), "ENXIO");
  });

  it("does not count a handle in an unreceived message as a reference of the receiver", async () => {
    const { peers: [a, b] } = await peers(2);
    const toB = b.transfer(0x100, a);
    a.send(toB, enc("carrier"), { handles: [4] });
    const h = a.transfer(4, b);
    b.release(h);
    expectCode(() => b.send(h), "ENXIO");
    const msg = takeOne(b);
    expectRemoteId(msg.handles[0]);
    expect(msg.handles[0]).not.toBe(h);
  });

  it("invalidates the ID once its last reference is released", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const h = a.transfer(4, b);
    b.release(h);
    expectCode(() => b.send(h), "ENXIO");
    expectCode(() => b.transfer(h, c), "ENXIO");
    expectCode(() => b.release(h), "ENXIO");
  });

  it("keeps the owner's pinned reference: releasing the last reference of a live node is EBUSY", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, enc("create"));
    take(a);
    expectCode(() => a.release(4), "EBUSY");
    a.send(4, enc("still alive"));
    expect(takeOne(a).text).toBe("still alive");
  });

  it("is EBUSY for the owner even while other peers hold handles", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    expectCode(() => a.release(4), "EBUSY");
    b.send(h, enc("ok"));
    expect(takeOne(a).text).toBe("ok");
  });

  it("lets the owner release the references it holds above the pinned one", async () => {
    const { peers: [a] } = await peers(1);
    expect(a.transfer(4)).toBe(4);
    expect(a.transfer(4)).toBe(4);
    a.release(4);
    a.release(4);
    expectCode(() => a.release(4), "EBUSY");
  });

  it("lets the owner release its last reference once the node is destroyed", async () => {
    const { peers: [a] } = await peers(1);
    a.transfer(4);
    a.release(4);
    a.destroy(4);
    a.release(4);
    expectCode(() => a.release(4), "ENXIO");
  });

  it("gives the owner a core-assigned ID without REMOTE for its destroyed node when a handle to it comes back after the owner ID was released", async () => {
    const { peers: [a, b] } = await peers(2);
    const to8 = a.transfer(8, b);
    const to12 = a.transfer(12, b);
    // sent before the destroy: a handle to node 8 (to a's node 12), then data to node 8
    b.send(to12, enc("handle"), { handles: [to8] });
    b.send(to8, enc("data"));
    a.destroy(8);
    a.release(8); // the owner ID of the destroyed node is gone
    const first = takeOne(a);
    const id = first.handles[0];
    expect(id % 8).toBe(1); // MANAGED, not REMOTE: a node a owns (SPEC §3)
    // a holds a handle to node 8 again, so the data sent before the destroy reaches it there
    const second = takeOne(a);
    expect([second.type, second.destination]).toEqual(["data", id]);
    expectNotification(takeOne(a), "node-destroy", id);
  });

  it("fails with ENXIO to release an unknown caller-chosen ID", async () => {
    const { peers: [a] } = await peers(1);
    expectCode(() => a.release(12), "ENXIO");
  });

  it("never creates a node on release", async () => {
    const { peers: [a, b] } = await peers(2);
    expectCode(() => a.release(12), "ENXIO");
    // a node would have made this EBUSY
    expectCode(() => a.release(12), "ENXIO");
    // and a later use creates the node as new, with no notification queued
    const h = a.transfer(12, b);
    expectRemoteId(h);
    expectEmpty(a);
  });
});

describe("invalid IDs", () => {
  const invalid: [string, unknown][] = [
    ["-1 (HANDLE_INVALID)", -1],
    ["a negative multiple of 4", -8],
    ["a fraction", 1.5],
    ["NaN", NaN],
    ["Infinity", Infinity],
    ["2^53 + 2", 2 ** 53 + 2],
    ["a numeric string", "4"],
    ["null", null],
    ["undefined", undefined],
  ];

  it.each(invalid)("rejects %s as a send destination with EINVAL and creates nothing", async (_, bad) => {
    const { peers: [a] } = await peers(1);
    expectCode(() => a.send([0x100, bad] as any, enc("x")), "EINVAL");
    expectCode(() => a.release(0x100), "ENXIO");
    expectEmpty(a);
  });

  it.each(invalid)("rejects %s as an attached handle with EINVAL and creates nothing", async (_, bad) => {
    const { peers: [a] } = await peers(1);
    expectCode(() => a.send(0x100, enc("x"), { handles: [0x200, bad] as any }), "EINVAL");
    expectCode(() => a.release(0x100), "ENXIO");
    expectCode(() => a.release(0x200), "ENXIO");
    expectEmpty(a);
  });

  it.each(invalid)("rejects %s as a transfer source with EINVAL", async (_, bad) => {
    const { peers: [a, b] } = await peers(2);
    expectCode(() => a.transfer(bad as any, b), "EINVAL");
    expectEmpty(a);
    expectEmpty(b);
  });

  it.each(invalid)("rejects %s as a release target with EINVAL", async (_, bad) => {
    const { peers: [a] } = await peers(1);
    expectCode(() => a.release(bad as any), "EINVAL");
  });

  it.each(invalid)("rejects %s as a destroy target with EINVAL and destroys nothing", async (_, bad) => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    expectCode(() => a.destroy([4, bad] as any), "EINVAL");
    expectEmpty(a);
    expectEmpty(b);
    b.send(h, enc("alive"));
    expect(takeOne(a).text).toBe("alive");
  });
});

describe("release notifications", () => {
  it("queues node-release on the owner when the last other reference is released", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    expectEmpty(a);
    b.release(h);
    expectNotification(take(a), "node-release", 4);
    expectEmpty(a);
  });

  it("queues none while another peer still holds a reference", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const hb = a.transfer(4, b);
    const hc = a.transfer(4, c);
    b.release(hb);
    expectEmpty(a);
    c.release(hc);
    expectNotification(take(a), "node-release", 4);
  });

  it("queues none while the same holder has references left", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a.transfer(4, b);
    b.release(h);
    expectEmpty(a);
    b.release(h);
    expectNotification(take(a), "node-release", 4);
  });

  it("queues none when a node is created", async () => {
    const { peers: [a, b] } = await peers(2);
    a.send(4, enc("created by send"));
    a.transfer(8, b);
    a.transfer(12);
    const all = drain(a);
    expect(all.map((m) => m.type)).toEqual(["data"]);
  });

  it("queues node-release when the owner drops its own extra reference", async () => {
    const { peers: [a] } = await peers(1);
    expect(a.transfer(0x100)).toBe(0x100);
    expectEmpty(a);
    a.release(0x100);
    const msg = take(a);
    expectNotification(msg, "node-release", 0x100);
    expect(msg!.continue).toBe(false);
    expectEmpty(a);
  });

  it("counts a message in flight carrying a handle to the node as a reference", async () => {
    const { peers: [a, b] } = await peers(2);
    const toB = b.transfer(0x100, a);
    a.send(toB, enc("carrier"), { handles: [4] });
    expectEmpty(a);
    const msg = takeOne(b);
    expectEmpty(a);
    b.release(msg.handles[0]);
    expectNotification(take(a), "node-release", 4);
  });

  it("keeps the reference of a message in flight after the previous holder released its handle", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const toC = c.transfer(0x100, b);
    const hb = a.transfer(4, b);
    b.send(toC, enc("pass on"), { handles: [hb] });
    b.release(hb);
    expectEmpty(a);
    const msg = takeOne(c);
    c.release(msg.handles[0]);
    expectNotification(take(a), "node-release", 4);
  });

  it("queues node-release when a message carrying the only other reference is dropped unreceived", async () => {
    const { peers: [a, b] } = await peers(2);
    const toB = b.transfer(0x100, a);
    a.send(toB, enc("never read"), { handles: [4] });
    expectEmpty(a);
    // b drops its only handle to the destination of the queued message
    b.destroy(0x100, { releaseHandles: true });
    expectEmpty(b);
    const got = drain(a);
    const release = got.find((m) => m.type === "node-release");
    expectNotification(release ?? null, "node-release", 4);
    expect(got.filter((m) => m.type === "node-release")).toHaveLength(1);
  });

  it("withdraws a queued node-release when another peer gets a reference before it is received", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const h = a.transfer(4, b);
    b.release(h);
    a.transfer(4, c);
    expectEmpty(a);
  });

  it("withdraws a queued node-release when a message carrying the handle is sent before it is received", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const toC = c.transfer(0x100, a);
    const h = a.transfer(4, b);
    b.release(h);
    a.send(toC, enc("carrier"), { handles: [4] });
    expectEmpty(a);
  });

  it("withdraws a queued node-release when the owner takes an extra reference", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    b.release(h);
    a.transfer(4);
    expectEmpty(a);
  });

  it("queues a new node-release once the count drops again after a withdrawal", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const hb = a.transfer(4, b);
    b.release(hb);
    const hc = a.transfer(4, c);
    c.release(hc);
    const all = drain(a);
    expect(all).toHaveLength(1);
    expectNotification(all[0], "node-release", 4);
  });

  it("queues one node-release each time the count drops after the previous one was received", async () => {
    const { peers: [a, b] } = await peers(2);
    for (let round = 0; round < 3; round++) {
      const h = a.transfer(4, b);
      expectEmpty(a);
      b.release(h);
      expectNotification(take(a), "node-release", 4);
      expectEmpty(a);
    }
  });

  it("queues no node-release for a node that is already destroyed", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a.destroy(4);
    b.release(h);
    const all = drain(a);
    expect(all).toHaveLength(1);
    expectNotification(all[0], "node-destroy", 4);
  });
});

describe("no handle, no news", () => {
  it("drops a queued node-destroy when the holder releases its handle before receiving it", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a.destroy(4);
    b.release(h);
    expectEmpty(b);
    expectNotification(take(a), "node-destroy", 4);
  });

  it("delivers queued data for a destroyed node while the owner still holds its handle", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    b.send(h, enc("late"));
    a.destroy(4);
    const all = drain(a);
    expect(all.map((m) => [m.type, m.destination])).toEqual([
      ["data", 4],
      ["node-destroy", 4],
    ]);
    expect(all[0].text).toBe("late");
  });

  it("drops queued data and the node-destroy once the owner releases the destroyed node's handle", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    b.send(h, enc("late"));
    a.destroy(4);
    a.release(4);
    expectEmpty(a);
  });

  it("drops queued data for a node destroyed with releaseHandles", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    b.send(h, enc("late"));
    a.destroy(4, { releaseHandles: true });
    expectEmpty(a);
    expectNotification(take(b), "node-destroy", h);
  });

  it("keeps delivering to the owner while an extra reference survives releaseHandles", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a.transfer(4);
    b.send(h, enc("late"));
    a.destroy(4, { releaseHandles: true });
    const all = drain(a);
    expect(all.map((m) => m.type)).toEqual(["data", "node-destroy"]);
  });

  it("drops the node-destroy for a handle received in a message once that handle is released", async () => {
    const { peers: [a, b] } = await peers(2);
    const toB = b.transfer(0x100, a);
    a.send(toB, enc("carrier"), { handles: [4] });
    a.destroy(4);
    const msg = takeOne(b);
    expectRemoteId(msg.handles[0]);
    b.release(msg.handles[0]);
    expectEmpty(b);
  });
});
