// Case 1 — same thread, one message.
//
// bus1-wasm: a peer sends one message to a node of another peer of the same
// user, which receives it and releases the slice: send → recv → release.
// Baselines, in the same loop shape:
//   MessageChannel  port1.postMessage(payload) + receiveMessageOnPort(port2)
//   copy into SAB   payload copied into an 8-byte-aligned place of a
//                   SharedArrayBuffer (Uint8Array.set): the floor, since a
//                   bus1 send copies the payload once into shared memory.
// The payload is a Uint8Array of 0 B, 64 B, 1 KiB or 64 KiB.

import { MessageChannel, receiveMessageOnPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";
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

export async function run({ rounds, windowMs, log }) {
  const bus = await Bus.create();
  const sender = bus.connect();
  const receiver = bus.connect();
  const dst = receiver.transfer(4, sender);
  const { port1, port2 } = new MessageChannel();
  const shared = new Uint8Array(new SharedArrayBuffer(2 * 65536));
  const rows = [];

  for (const [label, size] of SIZES) {
    const payload = new Uint8Array(size).fill(0xab);
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
    ];
    log(`  ${label}`);
    await warmUp(variants);
    const { result, rerun } = await compare(variants, rounds, log);
    rows.push({
      group: "same thread", case: label, unit: "ns", per: "message",
      bus1: result["bus1-wasm"],
      baselines: { MessageChannel: result.MessageChannel, "copy into SAB": result["copy into SAB"] },
      targets: TARGETS[label] ?? {},
      rerun,
    });
  }

  port1.close();
  bus.close();
  return { rows };
}
