// Ports, streams and transferred ArrayBuffers travel between threads of one
// shared bus (SPEC §9, "Moves"): they move to the thread that receives for the
// destination peer, arrive with their message and in order, count against
// maxInflightObjects, and are let go of (ports closed, streams cancelled) when
// their message is flushed, dropped or never received.
//
// Workers (workers/transfer-agent.mjs, the Agent of transfer-agent.ts) attach, adopt peers and act on request;
// the main thread watches each. Every test is bounded in time and terminates
// its workers in afterEach.
import { describe, expect, it } from "vitest";
import { type MessagePort } from "node:worker_threads";
import { Bus1Error } from "bus1-wasm";
import { Agent, channel, closed, enc, newBus, ports, text, within, type Got, type Obj, setup, setupTwo } from "./transfer-agent.js";
// internals, for the tests of leaks and of the serving hook: not part of the API
import { coreOf } from "../dist/host-common/bus.js";
import { MAY_MOVE } from "../dist/host-common/message.js";

function expectMoved(o: Obj, code = "EOPNOTSUPP") {
  expect(o.kind, JSON.stringify(o)).toBe("error");
  expect(o.code).toBe(code);
}

describe("what moves to a worker", () => {
  it("a MessagePort sent from the main thread arrives in the worker that receives for the peer, and works there", async () => {
    const { a, hb, agent } = await setup();
    const { port1, port2 } = channel();
    a.send(hb, enc("a port"), { objects: [port1] });
    const got = await agent.recv("b");
    expect(got!.text).toBe("a port");
    expect(got!.objects[0].kind).toBe("port");
    const n = got!.objects[0].n;
    // both ways through the port that moved
    const there = agent.do("portRecv", { n });
    port2.postMessage("ping");
    expect(await there).toBe("ping");
    const back = within(new Promise((r) => port2.once("message", r)), 5_000, "the reply");
    await agent.do("portPost", { n, data: "pong" });
    expect(await back).toBe("pong");
  });

  it("a ReadableStream moves to the worker and is read there", async () => {
    const { a, hb, agent } = await setup();
    const stream = new ReadableStream({
      start(c) {
        c.enqueue("one");
        c.enqueue("two");
        c.close();
      },
    });
    a.send(hb, enc("a stream"), { objects: [stream] });
    const got = await agent.recv("b");
    expect(got!.objects[0].kind).toBe("readable");
    expect(await agent.do("read", { n: got!.objects[0].n })).toEqual(["one", "two"]);
  });

  it("a WritableStream moves to the worker and what it writes arrives here", async () => {
    const { a, hb, agent } = await setup();
    const chunks: unknown[] = [];
    let done!: () => void;
    const finished = new Promise<void>((r) => { done = r; });
    const stream = new WritableStream({ write(c) { chunks.push(c); }, close() { done(); } });
    a.send(hb, enc("a sink"), { objects: [stream] });
    const got = await agent.recv("b");
    expect(got!.objects[0].kind).toBe("writable");
    await agent.do("write", { n: got!.objects[0].n, chunks: ["x", "y"] });
    await within(finished, 5_000, "the sink closing");
    expect(chunks).toEqual(["x", "y"]);
  });

  it("an ArrayBuffer listed in transfer moves (detached here); one not listed is copied", async () => {
    const { a, hb, agent } = await setup();
    const moved = new Uint8Array([1, 2, 3]).buffer;
    const copied = new Uint8Array([4, 5]).buffer;
    a.send(hb, enc("buffers"), { objects: [moved, copied], transfer: [moved] });
    expect(moved.byteLength).toBe(0);
    expect(copied.byteLength).toBe(2);
    const got = await agent.recv("b");
    expect(got!.objects.map((o) => [o.kind, o.bytes])).toEqual([["buffer", [1, 2, 3]], ["buffer", [4, 5]]]);
  });

  it("transfer must list objects of the send, and only what can move", async () => {
    const { a, hb } = await setup();
    const buffer = new ArrayBuffer(4);
    for (const [objects, transfer] of [[[], [buffer]], [[{}], [{}]], [[{ x: 1 }], [[]]]] as const) {
      let thrown: unknown = null;
      try {
        a.send(hb, undefined, { objects: [...objects], transfer: [...transfer] });
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(Bus1Error);
      expect((thrown as Bus1Error).code).toBe("EINVAL");
    }
    const plain = { x: 1 };
    let thrown: unknown = null;
    try {
      a.send(hb, undefined, { objects: [plain], transfer: [plain] });
    } catch (e) {
      thrown = e;
    }
    expect((thrown as Bus1Error).code).toBe("EINVAL");
    expect(buffer.byteLength).toBe(4);
  });

  it("objects arrive with their own message, in order with messages that carry none", async () => {
    const { a, hb, agent } = await setup();
    const first = channel(), second = channel();
    a.send(hb, enc("m1"));
    a.send(hb, enc("m2"), { objects: [first.port1] });
    a.send(hb, enc("m3"), { objects: [{ plain: true }] });
    a.send(hb, enc("m4"), { objects: [second.port1, new Uint8Array([9]).buffer] });
    const got: NonNullable<Got>[] = [];
    for (let i = 0; i < 4; i++) got.push((await agent.recv("b"))!);
    expect(got.map((m) => m.text)).toEqual(["m1", "m2", "m3", "m4"]);
    expect(got.map((m) => m.objects.map((o) => o.kind))).toEqual([[], ["port"], ["other"], ["port", "buffer"]]);
    // each port is the one sent with its message
    const onSecond = agent.do("portRecv", { n: got[3].objects[0].n });
    second.port2.postMessage("to the second");
    expect(await onSecond).toBe("to the second");
    const onFirst = agent.do("portRecv", { n: got[1].objects[0].n });
    first.port2.postMessage("to the first");
    expect(await onFirst).toBe("to the first");
  });

  it("a port sent by a worker to a peer received in the main thread arrives here and works", async () => {
    const { bus, agent } = await setup();
    const c = bus.connect();
    const sender = bus.connect();
    const hc = c.transfer(4, sender);
    await agent.adopt(sender, "s");
    c.recv(); // the main thread receives for c
    const n = await agent.do("sendPort", { peer: "s", to: hc, text: "from the worker" });
    const m = c.recv()!;
    expect(text(m)).toBe("from the worker");
    const port = m.objects[0] as MessagePort;
    expect(typeof port.postMessage).toBe("function");
    ports.push(port);
    const there = agent.do("portRecv", { n });
    port.postMessage("hello worker");
    expect(await there).toBe("hello worker");
    m.release();
  });
});

describe("multicast", () => {
  it("a receiver in the sending thread keeps the value; a receiver in another thread gets EOPNOTSUPP in its place", async () => {
    const { bus, a, hb, agent } = await setup();
    const c = bus.connect();
    const hc = c.transfer(4, a);
    const { port1 } = channel();
    a.send([hb, hc], enc("both"), { objects: [port1] });
    const here = c.recv()!;
    expect(here.objects[0]).toBe(port1);
    const there = await agent.recv("b");
    expect(there!.text).toBe("both");
    expectMoved(there!.objects[0]);
    expect(there!.objects[0].message).toMatch(/stayed in the thread that sent it/);
  });

  it("with no receiver in the sending thread, it moves to the thread of the first destination; every receiver there gets the same value, others EOPNOTSUPP", async () => {
    const { bus, a, b, hb, agent } = await setup();
    const other = new Agent(bus);
    const c = bus.connect(), d = bus.connect();
    const hc = c.transfer(4, a), hd = d.transfer(4, a);
    await agent.adopt(c, "c");
    await other.adopt(d, "d");
    const { port1, port2 } = channel();
    a.send([hd, hb, hc], enc("three"), { objects: [port1] });
    const onD = await other.recv("d");
    expect(onD!.objects[0].kind).toBe("port");
    const onB = await agent.recv("b"), onC = await agent.recv("c");
    expectMoved(onB!.objects[0]);
    expectMoved(onC!.objects[0]);
    expect(onB!.objects[0].message).toMatch(/moved to another thread/);
    const there = other.do("portRecv", { n: onD!.objects[0].n });
    port2.postMessage("to d");
    expect(await there).toBe("to d");
    void b;
  });

  it("receivers in the one thread it moved to share it; the serving hook says only a sole receiver may move it on", async () => {
    const { bus, a, b, c, hb, hc, agent } = await setupTwo();
    const { port1 } = channel();
    a.send([hb, hc], enc("shared"), { objects: [port1] });
    const onB = await agent.recv("b"), onC = await agent.recv("c");
    expect(onB!.objects[0].kind).toBe("port");
    expect(onC!.objects[0].n).toBe(onB!.objects[0].n);
    // the hook, in the main thread: a unicast of a port is the receiver's to move; a multicast here is not
    const d = bus.connect(), e = bus.connect();
    const hd = d.transfer(4, a), he = e.transfer(4, a);
    d.recv();
    e.recv();
    const one = channel(), two = channel();
    a.send(hd, enc("alone"), { objects: [one.port1, { plain: 1 }] });
    a.send([hd, he], enc("together"), { objects: [two.port1] });
    const alone = d.recv()!, together = d.recv()!, also = e.recv()!;
    expect([alone[MAY_MOVE](0), alone[MAY_MOVE](1)]).toEqual([true, false]);
    expect(together[MAY_MOVE](0)).toBe(false);
    expect(also[MAY_MOVE](0)).toBe(false);
    expect(also.objects[0]).toBe(two.port1);
  });
});

describe("quota", () => {
  it("moved objects count against maxInflightObjects, and a refused send moves nothing", async () => {
    const { a, b, hb, agent } = await setup();
    b.reset({ limits: { maxInflightObjects: 1 } });
    const first = channel(), second = channel();
    a.send(hb, enc("one"), { objects: [first.port1] });
    let thrown: unknown = null;
    try {
      a.send(hb, enc("two"), { objects: [second.port1] });
    } catch (e) {
      thrown = e;
    }
    expect((thrown as Bus1Error).code).toBe("EDQUOT");
    // the refused port is still this thread's, and alive
    const echo = new Promise((r) => second.port2.once("message", r));
    second.port1.postMessage("still here");
    expect(await within(echo, 5_000, "the refused port")).toBe("still here");
    const got = await agent.recv("b");
    expect(got!.objects[0].kind).toBe("port");
    expect(b.stats().objects).toBe(0);
    a.send(hb, enc("two"), { objects: [second.port1] });
    expect((await agent.recv("b"))!.objects[0].kind).toBe("port");
  });
});

describe("release", () => {
  it("a port in a message the receiving worker flushes is closed", async () => {
    const { a, hb, agent } = await setup();
    const { port1, port2 } = channel();
    const gone = closed(port2);
    a.send(hb, enc("flushed"), { objects: [port1] });
    await agent.do("call", { peer: "b", method: "reset", args: [{ flush: true }] });
    await within(gone, 5_000, "the port closing");
    expect(await agent.recv("b", 0)).toBeNull();
  });

  it("a stream in a message dropped unreceived (its node destroyed) is cancelled", async () => {
    const { a, hb, agent } = await setup();
    let cancelled!: (why: unknown) => void;
    const cancel = new Promise((r) => { cancelled = r; });
    const stream = new ReadableStream({ pull() {}, cancel(why) { cancelled(why); } });
    a.send(hb, enc("dropped"), { objects: [stream] });
    await agent.do("call", { peer: "b", method: "destroy", args: [4, { releaseHandles: true }] });
    // "no handle, no news": the message is dropped when it reaches the front of the queue
    expect(await agent.recv("b", 0)).toBeNull();
    await within(cancel, 5_000, "the stream being cancelled");
  });

  it("a port moved to a worker whose message another thread receives is closed there, and the receiver gets EOPNOTSUPP", async () => {
    const { a, b, hb, agent } = await setup();
    const { port1, port2 } = channel();
    const gone = closed(port2);
    a.send(hb, enc("taken here"), { objects: [port1] });
    const m = b.recv()!;
    expect(text(m)).toBe("taken here");
    expect(m.objects[0]).toBeInstanceOf(Bus1Error);
    expect((m.objects[0] as Bus1Error).code).toBe("EOPNOTSUPP");
    m.release();
    // the worker, idle, finds the value's message gone and lets go of it
    await within(gone, 5_000, "the port closing in the worker");
    expect(await agent.do("inTransit")).toMatchObject({ parked: 0 });
  });

  it("a port that stays in the sending thread is closed when its message is flushed unreceived", async () => {
    const bus = await newBus();
    const a = bus.connect(), c = bus.connect();
    const hc = c.transfer(4, a);
    const { port1, port2 } = channel();
    const gone = closed(port2);
    a.send(hc, enc("flushed here"), { objects: [port1] });
    c.reset({ flush: true });
    await within(gone, 5_000, "the port closing");
    expect(coreOf(bus).objects.inTransit()).toMatchObject({ held: 0, parked: 0 });
  });

  it("a port in the queue of a peer that is disconnected is closed", async () => {
    const { a, hb, agent } = await setup();
    const { port1, port2 } = channel();
    const gone = closed(port2);
    a.send(hb, enc("never"), { objects: [port1] });
    await agent.do("call", { peer: "b", method: "disconnect" });
    await within(gone, 5_000, "the port closing");
  });
});

describe("threads that end", () => {
  it("a worker that dies holding a moved port: the port closes, and the message is received elsewhere with EOPNOTSUPP, never a hang", async () => {
    const { a, b, hb, agent } = await setup();
    const { port1, port2 } = channel();
    const gone = closed(port2);
    a.send(hb, enc("to a dying worker"), { objects: [port1] });
    expect(await agent.do("ready", { peer: "b" })).toBe(true);
    await agent.worker.terminate();
    await agent.exited;
    await within(gone, 5_000, "the port closing with its thread");
    const m = b.recv()!;
    expect(text(m)).toBe("to a dying worker");
    expect((m.objects[0] as Bus1Error).code).toBe("EOPNOTSUPP");
    m.release();
    expect(b.stats().objects).toBe(0);
  });

  it("a worker that dies after sending a port: the message is received here with the port or EOPNOTSUPP in its place, and the records go", async () => {
    const { bus, agent } = await setup();
    const before = bus.stats();
    const c = bus.connect(), sender = bus.connect();
    const hc = c.transfer(4, sender);
    await agent.adopt(sender, "s");
    c.recv();
    await agent.do("sendPort", { peer: "s", to: hc, text: "last words" });
    await agent.worker.terminate();
    await agent.exited;
    const m = c.recv()!;
    expect(text(m)).toBe("last words");
    const v = m.objects[0];
    if (v instanceof Bus1Error) expect(v.code).toBe("EOPNOTSUPP");
    else ports.push(v as MessagePort);
    m.release();
    c.close();
    sender.close();
    const after = bus.stats();
    expect(after.records).toBe(0);
    expect(after.threads).toBe(before.threads - 1);
  });
});

describe("memory", () => {
  it("after moves, drops and a worker's bus.close(), records, used bytes, parked values and channels are back to baseline", async () => {
    const bus = await newBus();
    {
      // this thread's argument scratch is made by its first send with objects, and kept
      const x = bus.connect(), y = bus.connect();
      x.send(y.transfer(4, x), enc("warm"), { objects: [{}, {}, {}] });
      y.recv()!.release();
      x.close();
      y.close();
    }
    const base = bus.stats();
    const a = bus.connect();
    const b = bus.connect();
    const hb = b.transfer(4, a);
    const agent = new Agent(bus);
    await agent.adopt(b, "b");
    expect(coreOf(bus).objects.inTransit().links).toBe(1);
    for (let i = 0; i < 20; i++) {
      const { port1 } = channel();
      const buffer = new ArrayBuffer(64);
      a.send(hb, enc(`m${i}`), { objects: [port1, buffer, { i }], transfer: [buffer] });
    }
    for (let i = 0; i < 10; i++) expect((await agent.recv("b"))!.objects.map((o) => o.kind)).toEqual(["port", "buffer", "other"]);
    await agent.do("call", { peer: "b", method: "reset", args: [{ flush: true }] });
    await within((async () => {
      while ((await agent.do("inTransit")).parked !== 0) await new Promise((r) => setTimeout(r, 10));
    })(), 5_000, "the worker letting go of parked values");
    await agent.do("close");
    b.close();
    a.close();
    await within((async () => {
      while (coreOf(bus).objects.inTransit().links !== 0) await new Promise((r) => setTimeout(r, 10));
    })(), 5_000, "the channel to the worker closing");
    const after = bus.stats();
    expect(after.records).toBe(0);
    expect(after.threads).toBe(base.threads);
    expect(after.usedBytes).toBe(base.usedBytes);
    expect(coreOf(bus).objects.inTransit()).toEqual({ parked: 0, held: 0, links: 0 });
  });
});
