// Case 1 — same thread, one message.
//
// bus1-wasm: a peer sends one message to a node of another peer of the same
// user, which receives it and releases the slice: send → recv → release.
// Baselines, in the same loop shape:
//   MessageChannel  port1.postMessage(payload) + receiveMessageOnPort(port2)
//   copy into SAB   payload copied into an 8-byte-aligned place of a
//                   SharedArrayBuffer (Uint8Array.set): the floor, since a
//                   bus1 send copies the payload once into shared memory.
// And, to show where bus1-wasm's own time goes, in the same rounds:
//   its core alone  send_begin, send_commit, recv and slice_release called
//                   directly on the wasm exports (no API, no copy, no JS
//                   objects): the part of the round trip the core takes.
//   on a private bus  the same API loop on a bus made with shared: false,
//                   whose core has no atomics (assembly/sync.ts): what
//                   the shared memory's atomics cost this loop.
// The payload is a Uint8Array of 0 B, 64 B, 1 KiB or 64 KiB.

import { MessageChannel, receiveMessageOnPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";
// internals: the core's exports, called directly to measure the core alone
import { coreOf } from "../dist/host-common/bus.js";
import { compare, timeLoop, warmUp } from "./harness.js";

export const SIZES = [
  ["0 B", 0],
  ["64 B", 64],
  ["1 KiB", 1024],
  ["64 KiB", 65536],
];

const TARGETS = {
  "64 B": { MessageChannel: [">=", 10] },
  "1 KiB": { MessageChannel: [">=", 15] },
  // bus1 takes at most 1.5× the time of the copy: copy ÷ bus1 ≥ 1/1.5
  "64 KiB": { "copy into SAB": [">=", 1 / 1.5, "≤ 1.5× the copy"] },
};

/**
 * One send → recv → release of `size` bytes from `sender` to `receiver`
 * (`dst`: the sender's handle), made by calling the core's four exports
 * directly: no API layer, no payload copy, no JS objects. Returns run(n).
 */
export function coreRoundTrip(bus, sender, receiver, dst, size) {
  const core = coreOf(bus), ex = core.ex, ctx = core.ctx;
  const args = core.scratchFor(64);
  core.views().f64[args >>> 3] = dst;
  const out = core.out >>> 2;
  const from = sender.ref, to = receiver.ref;
  return (n) => {
    for (let i = 0; i < n; i++) {
      if (ex.send_begin(ctx, from.slot, from.gen, 0, args, 1, 1, size, args + 8, 0, args + 8, 0, args + 8) !== 1) {
        throw new Error("send_begin failed");
      }
      ex.send_commit(ctx);
      if (ex.recv(ctx, to.slot, to.gen, 0) !== 0) throw new Error("recv failed");
      if (ex.slice_release(ctx, to.slot, to.gen, core.u32[out + 4]) !== 0) throw new Error("slice_release failed");
    }
  };
}

export async function run({ rounds, windowMs, log }) {
  const bus = await Bus.create();
  const sender = bus.connect();
  const receiver = bus.connect();
  const dst = receiver.transfer(4, sender);
  const privateBus = await Bus.create({ shared: false });
  const pSender = privateBus.connect();
  const pReceiver = privateBus.connect();
  const pDst = pReceiver.transfer(4, pSender);
  const { port1, port2 } = new MessageChannel();
  const shared = new Uint8Array(new SharedArrayBuffer(2 * 65536));
  const rows = [];

  for (const [label, size] of SIZES) {
    const payload = new Uint8Array(size).fill(0xab);
    const coreOnly = coreRoundTrip(bus, sender, receiver, dst, size);
    const variants = [
      {
        name: "bus1-wasm",
        measure: () => timeLoop((n) => {
          for (let i = 0; i < n; i++) {
            sender.send(dst, payload);
            receiver.recv().release();
          }
        }, windowMs),
      },
      {
        name: "MessageChannel",
        measure: () => timeLoop((n) => {
          for (let i = 0; i < n; i++) {
            port1.postMessage(payload);
            receiveMessageOnPort(port2);
          }
        }, windowMs),
      },
      {
        name: "copy into SAB",
        measure: () => timeLoop((n) => {
          for (let i = 0; i < n; i++) shared.set(payload, 64);
        }, windowMs),
      },
      {
        // not a baseline: how much of bus1-wasm's own time is its core,
        // measured in the same rounds (docs/PERFORMANCE.md)
        name: "its core alone",
        measure: () => timeLoop(coreOnly, windowMs),
      },
      {
        // not a baseline either: the same loop without the atomics (written
        // out again: one closure for both buses would share V8's feedback,
        // and each loop would run as the other's polymorphic case)
        name: "on a private bus",
        measure: () => timeLoop((n) => {
          for (let i = 0; i < n; i++) {
            pSender.send(pDst, payload);
            pReceiver.recv().release();
          }
        }, windowMs),
      },
    ];
    log(`  ${label}`);
    await warmUp(variants);
    const { result, rerun } = await compare(variants, rounds, log);
    rows.push({
      group: "same thread", case: label, unit: "ns", per: "message",
      bus1: result["bus1-wasm"],
      baselines: {
        MessageChannel: result.MessageChannel, "copy into SAB": result["copy into SAB"], "its core alone": result["its core alone"],
        "on a private bus": result["on a private bus"],
      },
      targets: TARGETS[label] ?? {},
      breakdown: ["its core alone", "on a private bus"],
      rerun,
    });
  }

  port1.close();
  bus.close();
  privateBus.close();
  return { rows };
}
