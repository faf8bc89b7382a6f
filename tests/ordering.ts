// The ordering stress test of SPEC §5 on logs of many threads (tests/concurrency.test.ts
// with node:worker_threads, tests/deno/threads.test.ts with Deno's Web Workers,
// tests/browser/shared-bus.test.ts with a page's Web Workers; the workers' side
// is tests/workers/stress-agent.mjs): senders multicast planned messages,
// receivers log what they get and answer some of them. The world of peers and
// tasks (stressWorld), the checks at the end (checkStressEnd, checkOrdering).

import { expect } from "vitest";
import type { Bus, Peer } from "bus1-wasm";
import { xorshift32 } from "./workers/xorshift.mjs";

/** What a receiver logs per message: kind (0 planned, 1 reply), sender, seq, stamp, replied-to sender and seq, continue, intact. */
export type Entry = [kind: number, sender: number, seq: number, stamp: number, rs: number, rq: number, cont: number, ok: number];

/** One planned multicast of a sender: receiver indexes and payload size. */
export interface Planned {
  dsts: number[];
  size: number;
}

/** xorshift32 (tests/workers/xorshift.mjs), for plans the checker can reproduce. */
export const prng: (seed: number) => () => number = xorshift32;

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

/** What a sender worker returns: its completion indexes. */
export interface SenderResult { index: number; completed: number[] }
/** What a receiver worker returns: its log. */
export interface ReceiverResult { index: number; log: Entry[] }

/** The peers, plans and workers' tasks of one stress run on a shared bus (stressWorld). */
export interface StressWorld {
  bus: Bus;
  /** The receivers' and senders' peers, handed to the workers by ref. */
  R: Peer[];
  S: Peer[];
  plans: Planned[][];
  /** The task of each receiver worker and of each sender worker (tests/workers/stress-agent.mjs's runStress). */
  receiverTasks: Record<string, unknown>[];
  senderTasks: Record<string, unknown>[];
  /** The receivers' stats once the targets were made, and the memory's size before any peer. */
  baseline: ReturnType<Peer["stats"]>[];
  startBytes: number;
}

/**
 * The stress test's world on `bus`: `nReceivers` receivers (user 1), each with
 * a handle to every receiver's node 4 for replies, and `nSenders` senders
 * (users 2...) with a handle to every receiver's node 4; each sender's plan of
 * `perSender` multicasts (plan(), from `seed`); one control block shared by all.
 */
export function stressWorld(bus: Bus, nSenders: number, nReceivers: number, perSender: number, seed: number): StressWorld {
  const startBytes = bus.handle.memory.buffer.byteLength;
  const R = Array.from({ length: nReceivers }, () => bus.connect({ user: 1 }));
  const S = Array.from({ length: nSenders }, (_, i) => bus.connect({ user: 2 + i }));
  const sTargets = S.map((s) => R.map((r) => r.transfer(4, s)));
  const rTargets = R.map((ri) => R.map((rj) => rj.transfer(4, ri)));
  const baseline = R.map((r) => r.stats());
  const ctl = new SharedArrayBuffer(4 * 32);
  const plans = plan(nSenders, nReceivers, perSender, seed);
  const receiverTasks = R.map((r, i) => ({
    handle: bus.handle, role: "receiver", index: i, ref: r.ref, targets: rTargets[i], ctl,
    replyRate: 0.2, seed: 100 + i, nSenders, nReceivers,
  }));
  const senderTasks = S.map((s, i) => ({
    handle: bus.handle, role: "sender", index: i, ref: s.ref, targets: sTargets[i], ctl, plan: plans[i], seed: i + 1,
  }));
  return { bus, R, S, plans, receiverTasks, senderTasks, baseline, startBytes };
}

/**
 * The checks once every worker of `world` reported: the ordering of SPEC §5
 * (checkOrdering); nothing leaked (every slice released, the receivers'
 * handles back to the baseline); the 64 KiB payloads made the shared memory
 * grow while the workers used it.
 */
export function checkStressEnd(world: StressWorld, sent: SenderResult[], got: ReceiverResult[]): void {
  const logs: Entry[][] = [], completed: number[][] = [];
  for (const r of got) logs[r.index] = r.log;
  for (const s of sent) completed[s.index] = s.completed;
  checkOrdering(logs, completed, world.plans);
  world.R.forEach((r, i) => {
    expect(r.stats()).toMatchObject({ slices: 0, bytes: 0, objects: 0, liveSlices: 0, handles: world.baseline[i].handles });
  });
  expect(world.bus.handle.memory.buffer.byteLength).toBeGreaterThan(world.startBytes);
}
