// Shared vocabulary of the served-peer suites (remote-peer.test.ts,
// served-hostile.test.ts): channels and servings that are closed after each
// test, polling, and the serving side's port messages read item by item.

import { afterEach } from "vitest";
import type { Peer, Serving } from "bus1-wasm";
// the serving function itself (bus.serve without the bus), for tests that make many servings
import { serve } from "../dist/host-common/serve.js";
import { readServerBatch } from "../dist/host-common/batch.js";

/** Ports and servings a test made: closed after it. */
export const ports: MessagePort[] = [];
export const servings: Serving[] = [];

afterEach(() => {
  for (const s of servings.splice(0)) s.close("test over");
  for (const p of ports.splice(0)) p.close();
});

export function channel() {
  const { port1, port2 } = new MessageChannel();
  ports.push(port1, port2);
  return { port1, port2 };
}

/** Serves `peer` on a new channel; returns the serving and the plugin's end. */
export function served(peer: Peer, options?: Parameters<typeof serve>[2]) {
  const { port1, port2 } = channel();
  const serving = serve(peer, port1 as any, options);
  servings.push(serving);
  return { serving, port: port2 };
}

export const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `cond()` holds, polling; fails after `ms`. */
export async function until(cond: () => boolean, ms = 2000, what = "condition") {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick(2);
  }
}

/**
 * Calls `f` with each item the serving side posts, in order (wire.ts
 * "Batches"), a push's payload resolved to a view of its batch's data.
 */
export function onItems(port: MessagePort, f: (item: any) => void) {
  port.addEventListener("message", (e) => {
    const m = (e as MessageEvent).data;
    if (!Array.isArray(m)) return f(m);
    const b = readServerBatch(m);
    if (!b.ok) throw new Error(`a malformed batch from the serving side: ${b.reason}`);
    for (const item of b.messages) f(item);
  });
  port.start();
}

/** The next message of `p` (a local peer made async, or a RemotePeer), polling; fails after about 100 tries. */
export async function recvOne<M>(p: { recv(): Promise<M | null> }): Promise<M> {
  for (let i = 0; i < 100; i++) {
    const m = await p.recv();
    if (m) return m;
    await tick(1);
  }
  throw new Error("nothing received");
}
