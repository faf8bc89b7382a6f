// A bus on private memory starts small and grows as it needs (issue 10: a
// page can make dozens of private buses), and the views it handed out
// survive the growth where they are read through the message
// (host-common/message.ts). Portable: runs in Node, Deno and Chromium.
import { afterEach, describe, expect, it } from "vitest";
import { Bus, type Message } from "bus1-wasm";
import { firstDifference } from "./helpers.js";

const buses: Bus[] = [];
afterEach(() => {
  for (const b of buses.splice(0)) b.close();
});

async function privateBus(maxMemoryBytes?: number): Promise<Bus> {
  const bus = await Bus.create({ shared: false, ...(maxMemoryBytes ? { maxMemoryBytes } : {}) });
  buses.push(bus);
  return bus;
}

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}
const memoryBytes = (bus: Bus) => bus.handle.memory.buffer.byteLength;

describe("private memory", () => {
  it("starts at a small fraction of maxMemoryBytes and grows as messages need it", async () => {
    const bus = await privateBus(1 << 30);
    expect(memoryBytes(bus)).toBeLessThanOrEqual(256 << 10);
    const a = bus.connect(), b = bus.connect();
    const to = b.transfer(4, a);
    const big = bytes(4 << 20, 1);
    a.send(to, big);
    expect(memoryBytes(bus)).toBeGreaterThan(4 << 20);
    const m = b.recv()!;
    expect(firstDifference(m.payload, big)).toBe(-1);
    m.release();
  });

  it("lets a page make dozens of private buses, each working", async () => {
    const many: Bus[] = [];
    for (let i = 0; i < 48; i++) many.push(await privateBus());
    let total = 0;
    for (const [i, bus] of many.entries()) {
      const a = bus.connect(), b = bus.connect();
      a.send(b.transfer(4, a), bytes(64, i));
      const m = b.recv()!;
      expect(m.payload).toEqual(bytes(64, i));
      m.release();
      total += memoryBytes(bus);
    }
    expect(total).toBeLessThanOrEqual(48 << 20);
  });

  it("keeps the payload of a held message readable while the memory grows under it", async () => {
    const bus = await privateBus();
    const a = bus.connect(), b = bus.connect(), c = bus.connect();
    const toB = b.transfer(4, a), toC = c.transfer(4, a);
    const held: Message[] = [];
    for (let i = 0; i < 64; i++) {
      a.send(toB, bytes(100 + i, i));
      held.push(b.recv()!);
    }
    const before = bus.handle.memory.buffer;
    // grow: big messages to another peer, held so the pool cannot reuse their room
    const big: Message[] = [];
    for (let i = 0; i < 6; i++) {
      a.send(toC, bytes(2 << 20, i));
      big.push(c.recv()!);
    }
    expect(before.byteLength).toBe(0); // the old buffer was detached by the growth
    held.forEach((m, i) => expect(m.payload).toEqual(bytes(100 + i, i)));
    big.forEach((m, i) => expect(firstDifference(m.payload, bytes(2 << 20, i))).toBe(-1));
    for (const m of [...held, ...big]) m.release();
    expect(b.stats().slices + c.stats().slices).toBe(0);
  });

  it("fails a send that would pass maxMemoryBytes with EDQUOT or ENOMEM, and the bus goes on", async () => {
    const bus = await privateBus(8 << 20);
    const a = bus.connect(), b = bus.connect();
    const to = b.transfer(4, a);
    let code = "";
    try {
      a.send(to, bytes(16 << 20, 3));
    } catch (e) {
      code = (e as { code: string }).code;
    }
    expect(["EDQUOT", "ENOMEM", "EMSGSIZE"]).toContain(code);
    a.send(to, bytes(1000, 4));
    const m = b.recv()!;
    expect(m.payload).toEqual(bytes(1000, 4));
    m.release();
  });
});
