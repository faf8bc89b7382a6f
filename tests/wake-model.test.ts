// The wake-word protocol of ABI.md §5.5 (ABI 6: a send notifies a sleeper
// once per arming), checked by exploring every interleaving of its atomic
// steps (tests/wake-model.mjs: waiters that spin, count themselves, arm,
// look and sleep; senders that commit under the peer's lock, take the arm,
// bump the word and notify after unlocking). A state where a live waiter
// sleeps, with only its timeout left to wake it, while its peer has a
// message queued or is gone, is a lost wake-up. Real threads would hit the
// windows these traces need (nanoseconds between a sender's load and its
// bump) too rarely for a stress test to fail: the model is the judge, and
// two mutants show it can tell.
import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain ES module of the tests, without types
import { check } from "./wake-model.mjs";

type Result = { ok: boolean; violation: string | null; states: number; trace: string[] | null; cut: boolean };
// past this many states a run stops (cut): the configurations below need at most about 600,000
const run = (variant: string, cfg: object): Result => check(variant, { sym: true, maxStates: 2_000_000, ...cfg });

const CONFIGS: [string, object][] = [
  ["two waiters on one peer, two senders", {}],
  ["an arm left behind by a waiter that timed out", { staleArm: true }],
  ["a waiter terminated at any step outside a call", { kill: 0, waiters: [0, 0], senders: [[[0]], [[0]]], timeouts: 1 }],
  ["a peer disconnected while two wait on it", { waiters: [0, 0], senders: [[{ close: 0 }], [[0]]] }],
  ["a slot reused by a new peer while the old one's waiters are still counted",
    { peers: [{ slot: 0 }, { slot: 0, later: true }], waiters: [0, 0, 1], senders: [[{ close: 0, reuse: 1 }, [1]]] }],
  ["a transaction to two peers with a wake list of one (it overflows)",
    { peers: [{ slot: 0 }, { slot: 1 }], waiters: [0, 1], senders: [[[0, 1, 1, 0]], [[1]]], cap: 1 }],
  ["a lane send (no lock) and a locked send", { senders: [[{ lane: 0 }], [[0]]] }],
  ["the host's drained queue (looks before arming answered from the word): a lane send and a locked send",
    { drained: "unarmed", senders: [[{ lane: 0 }], [[0]]] }],
  ["the host's drained queue: two waiters, two lane sends", { drained: "unarmed", waiters: [0, 0], senders: [[{ lane: 0 }, { lane: 0 }]] }],
  ["the host's drained queue: a disconnect and a lane send", { drained: "unarmed", waiters: [0, 0], senders: [[{ close: 0 }], [{ lane: 0 }]] }],
];

describe("the wake-word protocol, every interleaving", () => {
  it.each(CONFIGS)("loses no wake-up: %s", (_name, cfg) => {
    const r = run("new", cfg);
    expect(r.cut).toBe(false);
    expect(r.violation, r.trace?.join("\n")).toBeNull();
    expect(r.states).toBeGreaterThan(1000);
  }, 60_000);

  it("a waiter that arms after its last look loses a wake-up (the model can fail)", () => {
    const r = run("swap", {});
    expect(r.violation).toMatch(/sleeps while peer 0 has 1 message/);
    // the shortest trace: a send reads the sleepers word unarmed, the waiter arms and sleeps, the send bumps
    expect(r.trace!.length).toBeGreaterThan(5);
  }, 60_000);

  it("a host that answers even the look after arming from the drained queue's word loses a lane send's wake-up", () => {
    const r = run("new", { drained: "armed", waiters: [0], senders: [[{ lane: 0 }]], spin: false });
    expect(r.violation).toMatch(/sleeps while peer 0 has 1 message/);
    // the lane push lands and reads the sleepers word unarmed; the waiter arms, answers from the word, sleeps; the bump comes
    expect(r.trace!.join("\n")).toMatch(/lane push[\s\S]*Sa = 1[\s\S]*Atomics.wait[\s\S]*W\+\+/);
  }, 60_000);

  it("a send that bumps the word before it takes the arm loses one when the other waiter leaves", () => {
    const r = run("bumpFirst", { kill: 0, waiters: [0, 0], senders: [[[0]], [[0]]], timeouts: 1 });
    expect(r.violation).toMatch(/sleeps while peer 0 has/);
    expect(run("bumpFirst", { waiters: [0, 0], senders: [[{ close: 0 }], [[0]]] }).violation).toMatch(/sleeps on a gone/);
  }, 60_000);
});
