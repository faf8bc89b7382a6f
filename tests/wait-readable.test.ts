// Waiting for messages on one thread: peer.wait, peer.readable and the async
// iterator (API.md, "Peer").

import { describe, expect, it } from "vitest";
import { CAN_BLOCK, copyMessage, enc, expectCode, expectEmpty, peers, takeOne } from "./helpers.js";
import type { Message } from "./helpers.js";

describe.each(["private", "shared"] as const)("wait (%s memory)", (kind) => {
  it("returns false at once with a zero timeout when nothing is queued", async () => {
    const { peers: [a] } = await peers(1, kind);
    expect(a.wait(0)).toBe(false);
  });

  it("returns true when a message is queued", async () => {
    const { peers: [a] } = await peers(1, kind);
    a.send(4, enc("ready"));
    expect(a.wait(0)).toBe(true);
    if (CAN_BLOCK) {
      expect(a.wait(10)).toBe(true);
      expect(a.wait()).toBe(true);
    } else {
      // a browser's main thread: a wait that could block is refused, even when it would not have to
      expectCode(() => a.wait(10), "EOPNOTSUPP");
      expectCode(() => a.wait(), "EOPNOTSUPP");
    }
  });

  it("does not consume the message", async () => {
    const { peers: [a] } = await peers(1, kind);
    a.send(4, enc("still there"));
    a.wait(0);
    a.wait(0);
    expect(takeOne(a).text).toBe("still there");
    expect(a.wait(0)).toBe(false);
  });

  it("returns true for a queued notification", async () => {
    const { peers: [a, b] } = await peers(2, kind);
    const h = a.transfer(4, b);
    b.release(h);
    expect(a.wait(0)).toBe(true);
  });

  it("returns true for a message another peer sent, as soon as its send returned", async () => {
    const { peers: [a, b] } = await peers(2, kind);
    const h = a.transfer(4, b);
    expect(a.wait(0)).toBe(false);
    b.send(h, enc("now"));
    expect(a.wait(0)).toBe(true);
  });

  it("times out after roughly the given fractional number of milliseconds", async () => {
    const { peers: [a] } = await peers(1, kind);
    if (!CAN_BLOCK) {
      expectCode(() => a.wait(20.5), "EOPNOTSUPP");
      return;
    }
    const start = performance.now();
    expect(a.wait(20.5)).toBe(false);
    const elapsed = performance.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(15);
    expect(elapsed).toBeLessThan(5_000);
  });

  it("does not count the seed as a queued message", async () => {
    const { peers: [a] } = await peers(1, kind);
    a.send([], enc("seed"), { seed: true });
    expect(a.wait(0)).toBe(false);
  });

  it("fails with ESHUTDOWN on a disconnected peer", async () => {
    const { peers: [a] } = await peers(1, kind);
    a.disconnect();
    expectCode(() => a.wait(0), "ESHUTDOWN");
  });

  it("fails with EBADF on a closed reference", async () => {
    const { peers: [a] } = await peers(1, kind);
    a.close();
    expectCode(() => a.wait(0), "EBADF");
  });
});

describe.each(["private", "shared"] as const)("readable (%s memory)", (kind) => {
  it("resolves for a queued message", async () => {
    const { peers: [a] } = await peers(1, kind);
    a.send(4, enc("queued"));
    await expect(a.readable()).resolves.toBeUndefined();
    expect(takeOne(a).text).toBe("queued");
  });

  it("resolves once a message is sent later", async () => {
    const { peers: [a, b] } = await peers(2, kind);
    const h = a.transfer(4, b);
    let resolved = false;
    const ready = a.readable().then(() => {
      resolved = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(resolved).toBe(false);
    b.send(h, enc("later"));
    await ready;
    expect(resolved).toBe(true);
    expect(takeOne(a).text).toBe("later");
  });

  it("resolves for a notification", async () => {
    const { peers: [a, b] } = await peers(2, kind);
    const h = a.transfer(4, b);
    const ready = b.readable();
    setTimeout(() => a.destroy(4), 5);
    await ready;
    const msg = takeOne(b);
    expect(msg.type).toBe("node-destroy");
    expect(msg.destination).toBe(h);
  });

  it("rejects when its signal aborts before a message arrives", async () => {
    const { peers: [a] } = await peers(1, kind);
    const controller = new AbortController();
    const ready = a.readable(controller.signal);
    setTimeout(() => controller.abort(), 5);
    await expect(ready).rejects.toBeDefined();
    expectEmpty(a);
  });

  it("rejects at once for a signal that is already aborted", async () => {
    const { peers: [a] } = await peers(1, kind);
    await expect(a.readable(AbortSignal.abort())).rejects.toBeDefined();
  });
});

describe.each(["private", "shared"] as const)("async iteration (%s memory)", (kind) => {
  it("yields the queued messages in order", async () => {
    const { peers: [a] } = await peers(1, kind);
    for (const t of ["1", "2", "3"]) a.send(4, enc(t));
    const got: string[] = [];
    for await (const msg of a) {
      got.push(copyMessage(msg as Message).text);
      (msg as Message).release();
      if (got.length === 3) break;
    }
    expect(got).toEqual(["1", "2", "3"]);
  });

  it("leaves the peer usable and the rest of the queue in place after a break", async () => {
    const { peers: [a] } = await peers(1, kind);
    for (const t of ["1", "2", "3"]) a.send(4, enc(t));
    for await (const msg of a) {
      expect(copyMessage(msg as Message).text).toBe("1");
      (msg as Message).release();
      break;
    }
    expect(takeOne(a).text).toBe("2");
    a.send(4, enc("4"));
    expect(takeOne(a).text).toBe("3");
    expect(takeOne(a).text).toBe("4");
  });

  it("waits for a message sent after the loop started", async () => {
    const { peers: [a, b] } = await peers(2, kind);
    const h = a.transfer(4, b);
    setTimeout(() => b.send(h, enc("late arrival")), 10);
    for await (const msg of a) {
      const copy = copyMessage(msg as Message);
      (msg as Message).release();
      expect(copy.text).toBe("late arrival");
      expect(copy.destination).toBe(4);
      break;
    }
  });

  it("yields notifications as well as data", async () => {
    const { peers: [a, b] } = await peers(2, kind);
    const h = a.transfer(4, b);
    a.send(4, enc("data"));
    b.release(h);
    const types: string[] = [];
    for await (const msg of a) {
      types.push((msg as Message).type);
      (msg as Message).release();
      if (types.length === 2) break;
    }
    expect(types).toEqual(["data", "node-release"]);
  });
});
