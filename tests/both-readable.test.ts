// Waiting for messages on both kinds of peer (issue 9): readable() and the
// async iterator (API.md "Peer"), on private and shared memory. `wait` is a
// local Peer's only: a served peer has no blocking call (API.md "Sandboxed
// peers"). Every wait here is bounded by `within`.

import { describe, expect, it } from "vitest";
import { enc, makeBus } from "./helpers.js";
import type { BusKind } from "./helpers.js";
import {
  ENDPOINT, copy, drainTexts, expectNothing, kinds, rejects, takeOne, tick, within,
  type Got, type PeerKind, type TestPeer,
} from "./peer-kinds.js";

/** p owns node 0x200; app holds hp (11) to it. */
async function pair(kind: PeerKind, busKind: BusKind) {
  const bus = await makeBus(busKind);
  const s = bus.connect();
  const app = bus.connect();
  const hp = s.transfer(0x200, app);
  const ha = app.transfer(0x100, s);
  const p = await kind.wrap(bus, s);
  return { bus, p, app, hp, ha };
}

/** Collects up to `n` messages from the iterator, copied and released. */
async function iterate(p: TestPeer, n: number, ms = 3000): Promise<Got[] | "timeout"> {
  const out: Got[] = [];
  const loop = (async () => {
    for await (const msg of p as AsyncIterable<Parameters<typeof copy>[0]>) {
      out.push(copy(msg));
      msg.release();
      if (out.length === n) break;
    }
    return out;
  })();
  return within(loop, ms);
}

describe.each(kinds)("readable ($name peer)", (kind) => {
  describe.each(["private", "shared"] as BusKind[])("%s memory", (busKind) => {
    it("resolves for a queued message, which stays queued", async () => {
      const { p, app, hp } = await pair(kind, busKind);
      app.send(hp, enc("queued"));
      expect(await within(p.readable(), 2000)).toBeUndefined();
      expect(await within(p.readable(), 2000)).toBeUndefined();
      expect((await takeOne(p)).text).toBe("queued");
    });

    it("resolves once a message is sent later, not before", async () => {
      const { p, app, hp } = await pair(kind, busKind);
      let resolved = false;
      const ready = p.readable().then(() => { resolved = true; });
      await tick(20);
      expect(resolved).toBe(false);
      app.send(hp, enc("later"));
      expect(await within(ready, 2000)).toBeUndefined();
      expect(resolved).toBe(true);
      expect((await takeOne(p)).text).toBe("later");
    });

    it("resolves for a notification", async () => {
      const { p, app, ha } = await pair(kind, busKind);
      const ready = p.readable();
      setTimeout(() => app.destroy(0x100), 5);
      expect(await within(ready, 2000)).toBeUndefined();
      const msg = await takeOne(p);
      expect([msg.type, msg.destination]).toEqual(["node-destroy", ha]);
    });

    it("resolves for a message it sent itself", async () => {
      const { p } = await pair(kind, busKind);
      await p.send(4, enc("to myself"));
      expect(await within(p.readable(), 2000)).toBeUndefined();
      expect((await takeOne(p)).text).toBe("to myself");
    });

    it("rejects with the signal's reason when it aborts before a message arrives, consuming nothing", async () => {
      const { p, app, hp } = await pair(kind, busKind);
      const controller = new AbortController();
      const ready = p.readable(controller.signal);
      const reason = new Error("stop waiting");
      setTimeout(() => controller.abort(reason), 5);
      expect(await within(ready.then(() => "resolved", (e) => e), 2000)).toBe(reason);
      await expectNothing(p);
      app.send(hp, enc("after the abort"));
      expect((await takeOne(p)).text).toBe("after the abort");
    });

    it("rejects at once for a signal that is already aborted", async () => {
      const { p } = await pair(kind, busKind);
      const reason = new Error("already");
      expect(await within(p.readable(AbortSignal.abort(reason)).then(() => "resolved", (e) => e), 2000)).toBe(reason);
    });

    it("does not count the seed as a queued message", async () => {
      const { p } = await pair(kind, busKind);
      await p.send([], enc("seed"), { seed: true });
      expect(await within(p.readable(), 50)).toBe("timeout");
    });

    it("rejects with ESHUTDOWN once the peer is disconnected, pending or later", async () => {
      const { p } = await pair(kind, busKind);
      const pending = p.readable();
      await p.disconnect();
      await rejects(() => pending, "ESHUTDOWN", "readable: the peer is disconnected (ESHUTDOWN)");
      await rejects(() => p.readable(), "ESHUTDOWN", "readable: the peer is disconnected (ESHUTDOWN)");
    });

    it("rejects with EBADF once the reference is closed, pending or later", async () => {
      const { p } = await pair(kind, busKind);
      const pending = p.readable();
      await p.close();
      await rejects(() => pending, "EBADF", "readable: this peer reference is closed: the reference is closed (EBADF)");
      await rejects(() => p.readable(), "EBADF", "readable: this peer reference is closed: the reference is closed (EBADF)");
    });

    it("rejects a signal that is not an AbortSignal with EINVAL", async () => {
      const { p } = await pair(kind, busKind);
      await rejects(() => p.readable(5 as never), "EINVAL", "readable: signal must be an AbortSignal, got 5: invalid argument (EINVAL)");
    });
  });
});

describe.each(kinds)("async iteration ($name peer)", (kind) => {
  describe.each(["private", "shared"] as BusKind[])("%s memory", (busKind) => {
    it("yields the queued messages in order", async () => {
      const { p, app, hp } = await pair(kind, busKind);
      for (const t of ["1", "2", "3"]) app.send(hp, enc(t));
      const got = await iterate(p, 3);
      expect(got !== "timeout" && got.map((m) => m.text)).toEqual(["1", "2", "3"]);
    });

    it("leaves the peer usable and the rest of the queue in place after a break", async () => {
      const { p, app, hp } = await pair(kind, busKind);
      for (const t of ["1", "2", "3"]) app.send(hp, enc(t));
      const got = await iterate(p, 1);
      expect(got !== "timeout" && got.map((m) => m.text)).toEqual(["1"]);
      expect((await takeOne(p)).text).toBe("2");
      app.send(hp, enc("4"));
      expect(await drainTexts(p)).toEqual(["3", "4"]);
    });

    it("waits for a message sent after the loop started", async () => {
      const { p, app, hp } = await pair(kind, busKind);
      setTimeout(() => app.send(hp, enc("late arrival")), 10);
      const got = await iterate(p, 1);
      expect(got !== "timeout" && got.map((m) => [m.text, m.destination])).toEqual([["late arrival", 0x200]]);
    });

    it("yields notifications as well as data", async () => {
      const { p, app, hp } = await pair(kind, busKind);
      app.send(hp, enc("data"));
      app.release(hp);
      const got = await iterate(p, 2);
      expect(got !== "timeout" && got.map((m) => [m.type, m.destination])).toEqual([["data", 0x200], ["node-release", 0x200]]);
    });

    it("ends quietly when the peer is disconnected", async () => {
      const { p, app, hp } = await pair(kind, busKind);
      app.send(hp, enc("one"));
      setTimeout(() => {
        app.send(hp, enc("two"));
        setTimeout(() => void p.disconnect(), 10);
      }, 10);
      const got = await iterate(p, 100);
      expect(got !== "timeout" && got.map((m) => m.text)).toEqual(["one", "two"]);
    });

    it("ends quietly when the reference is closed", async () => {
      const { p, app, hp } = await pair(kind, busKind);
      app.send(hp, enc("one"));
      setTimeout(() => void p.close(), 20);
      const got = await iterate(p, 100);
      expect(got !== "timeout" && got.map((m) => m.text)).toEqual(["one"]);
    });

    it("streams 300 messages sent in bursts, in order", async () => {
      const { p, app, hp } = await pair(kind, busKind);
      const reader = iterate(p, 300, 5000);
      for (let i = 0; i < 300; i++) {
        app.send(hp, enc(`m${i}`));
        if (i % 50 === 49) await tick(0);
      }
      const got = await reader;
      expect(got !== "timeout" && got.map((m) => m.text)).toEqual(Array.from({ length: 300 }, (_, i) => `m${i}`));
    });
  });
});

describe.each(kinds)("wait ($name peer)", (kind) => {
  it("is a local Peer's only", async () => {
    const { p, app, hp } = await pair(kind, "private");
    app.send(hp, enc("ready"));
    const endpoint = p[ENDPOINT] as unknown as { wait?: (ms: number) => boolean };
    // a served peer has no blocking call: it cannot sleep on the bus's memory, which it never sees
    if (kind.served) expect(endpoint.wait).toBeUndefined();
    else expect(endpoint.wait!(0)).toBe(true);
  });
});
