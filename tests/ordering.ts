// The ordering checks of SPEC §5 on logs of many threads (tests/concurrency.test.ts
// with node:worker_threads, tests/deno/threads.test.ts with Deno's Web Workers;
// the workers' side is tests/workers/stress-agent.mjs): senders multicast
// planned messages, receivers log what they get and answer some of them.

import { expect } from "vitest";

/** What a receiver logs per message: kind (0 planned, 1 reply), sender, seq, stamp, replied-to sender and seq, continue, intact. */
export type Entry = [kind: number, sender: number, seq: number, stamp: number, rs: number, rq: number, cont: number, ok: number];

/** One planned multicast of a sender: receiver indexes and payload size. */
export interface Planned {
  dsts: number[];
  size: number;
}

/** xorshift32, for plans the checker can reproduce. */
export function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

/** Each sender's plan: `perSender` multicasts to random receivers, mostly small, some 4 KiB, a few of 64 KiB. */
export function plan(nSenders: number, nReceivers: number, perSender: number, seed: number): Planned[][] {
  const rand = prng(seed);
  return Array.from({ length: nSenders }, () => Array.from({ length: perSender }, () => {
    const dsts = Array.from({ length: nReceivers }, (_, r) => r).filter(() => rand() < 0.6);
    if (dsts.length === 0) dsts.push(Math.floor(rand() * nReceivers));
    const x = rand();
    const size = x < 0.7 ? Math.floor(rand() * 256) : x < 0.95 ? Math.floor(rand() * 4096) : 65536;
    return { dsts, size };
  }));
}

const key = (e: Entry) => `${e[0]}:${e[1]}:${e[2]}`;

/**
 * Checks the receivers' logs against the plans and the senders' completion
 * indexes (`completed[s][seq]`: the value of a shared counter a sender took
 * right after its send returned; `stamp` is the counter read before a send):
 * payloads intact, exactly once, per-sender order, one order every receiver
 * agrees on, causality through a side channel and through the bus.
 */
export function checkOrdering(logs: Entry[][], completed: number[][], plans: Planned[][]): void {
  const nReceivers = logs.length;
  for (let r = 0; r < nReceivers; r++) {
    const log = logs[r];
    // payloads intact
    expect(log.every((e) => e[7] === 1)).toBe(true);
    // exactly once: the kind-0 messages are those planned for r
    const got = log.filter((e) => e[0] === 0).map(key).sort();
    const want: string[] = [];
    plans.forEach((p, s) => p.forEach((m, seq) => { if (m.dsts.includes(r)) want.push(`0:${s}:${seq}`); }));
    expect(got).toEqual(want.sort());
    expect(new Set(log.map(key)).size).toBe(log.length);
    // per-sender FIFO
    const last = new Map<number, number>();
    for (const e of log) {
      expect(e[2]).toBeGreaterThan(last.get(e[1]) ?? -1);
      last.set(e[1], e[2]);
    }
    // one node per receiver: no multicast puts two messages in one queue
    expect(log.every((e) => e[6] === 0)).toBe(true);
  }
  // any two receivers agree on the order of the messages they share
  const pos = logs.map((log) => new Map(log.map((e, i) => [key(e), i])));
  for (let a = 0; a < nReceivers; a++) {
    for (let b = a + 1; b < nReceivers; b++) {
      const shared = logs[b].filter((e) => pos[a].has(key(e))).map((e) => pos[a].get(key(e))!);
      for (let i = 1; i < shared.length; i++) expect(shared[i]).toBeGreaterThan(shared[i - 1]);
    }
  }
  // causality through a side channel: a send that completed before another
  // started (its completion index is below the other's stamp) comes first
  for (let r = 0; r < nReceivers; r++) {
    const log = logs[r];
    for (let j = 0; j < log.length; j++) {
      if (log[j][0] !== 0) continue;
      const stamp = log[j][3];
      for (let i = j + 1; i < log.length; i++) {
        if (log[i][0] !== 0) continue;
        expect(completed[log[i][1]][log[i][2]] < stamp, `r${r}: ${key(log[i])} completed before ${key(log[j])} started`).toBe(false);
      }
    }
  }
  // causality through the bus: a reply comes after the message it answers
  for (let r = 0; r < nReceivers; r++) {
    for (const e of logs[r]) {
      if (e[0] !== 1) continue;
      const answered = pos[r].get(`0:${e[4]}:${e[5]}`);
      if (answered !== undefined) expect(answered).toBeLessThan(pos[r].get(key(e))!);
    }
  }
}
