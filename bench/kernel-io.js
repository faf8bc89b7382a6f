// Case 5 — the bus1 kernel's own table: its `test-io` self-test
// (tools/testing/selftests/bus1/test-io.c), on one thread.
//
// One sender and 256 receivers, each receiver owning a node the sender holds
// a handle to. One iteration sends one message to the first K of those
// nodes, then each of the K receivers receives it and releases the slice.
// As in the kernel's table:
//   - the cost of a send of 1 KiB to no destination (the base),
//   - the extra cost of one destination without payload and with 1 KiB,
//   - the extra cost per destination for K = 2, 4 … 256 with 1 KiB:
//     (cost(K) − base) ÷ K.
// All configurations are measured in every round, in rotating order.
// Target: the per-destination cost at K = 64 is at most 1.5× the one at
// K = 1 (multicast scales linearly).

import { Bus } from "bus1-wasm";
import { compare, summarize, timeLoop, warmUp } from "./harness.js";

const MAX_DESTINATIONS = 256;
const SIZE = 1024;

const CONFIGS = [
  { name: "no destination", k: 0, size: SIZE },
  { name: "one destination, no payload", k: 1, size: 0 },
  ...[1, 2, 4, 8, 16, 32, 64, 128, 256].map((k) => ({ name: `K = ${k}`, k, size: SIZE })),
];

export async function run({ rounds, windowMs, log }) {
  const bus = await Bus.create();
  const sender = bus.connect();
  const receivers = [];
  const handles = [];
  for (let i = 0; i < MAX_DESTINATIONS; i++) {
    const receiver = bus.connect();
    handles.push(receiver.transfer(4, sender));
    receivers.push(receiver);
  }

  const variants = CONFIGS.map(({ name, k, size }) => {
    const dsts = handles.slice(0, k);
    const payload = new Uint8Array(size).fill(0xab);
    return {
      name,
      measure: () => timeLoop((n) => {
        for (let i = 0; i < n; i++) {
          sender.send(dsts, payload);
          for (let r = 0; r < k; r++) receivers[r].recv().release();
        }
      }, windowMs),
    };
  });
  log("  K = 0 … 256");
  await warmUp(variants);
  const { result, rerun } = await compare(variants, rounds, log);
  bus.close();

  // Per-destination costs, from each round's own base (rounds are paired).
  const base = result["no destination"];
  const extra = (name, k) => summarize(result[name].samples.map((t, r) => (t - base.samples[r]) / k));
  const table = [{ name: "send with no destination (1 KiB)", cost: base }];
  table.push({ name: "+ one destination, no payload", cost: extra("one destination, no payload", 1) });
  for (const { name, k, size } of CONFIGS.slice(2)) {
    table.push({ name: k === 1 ? "+ one destination (1 KiB)" : `+ per destination, K = ${k}`, k, cost: extra(name, k) });
  }
  const perDest = (k) => table.find((t) => t.k === k).cost;
  const scaling = summarize(perDest(64).samples.map((x, r) => x / perDest(1).samples[r]));
  return {
    kernelTable: { rows: table, totals: result, rerun },
    figures: [{
      group: "kernel test-io", name: "per-destination cost, K = 64 ÷ K = 1", short: "per destination, K = 64 ÷ K = 1", value: perDest(64).median / perDest(1).median,
      unit: "×", spread: scaling, target: ["<=", 1.5], rerun,
    }],
  };
}
