// The page's check that every worker received the multicasts in one order
// (SPEC §7): for two workers A and B, the messages that both receive (those
// of the other senders) must reach them in the same relative order. Each
// receives in the one global order, so what A has received of them so far
// and what B has are both prefixes of one sequence: the shorter must be a
// prefix of the longer. Exactly once and each sender's order the workers
// check themselves (their `violations`).
export class OrderCheck {
  constructor(workers) {
    this.workers = workers;
    this.pending = new Map(); // "a,b" → [queue of a, queue of b]: keys of common messages not yet compared
    for (let a = 0; a < workers; a++) {
      for (let b = a + 1; b < workers; b++) this.pending.set(`${a},${b}`, [[], []]);
    }
    this.compared = 0;
    this.why = "";
  }

  /** A report of worker `w`: `order` holds [from, seq] pairs in the order received. */
  add(w, order, violations, firstViolation) {
    if (violations > 0 && !this.why) this.why = firstViolation || `worker ${w}: ${violations} messages out of order`;
    for (const [key, queues] of this.pending) {
      const [a, b] = key.split(",").map(Number);
      if (w !== a && w !== b) continue;
      const q = queues[w === a ? 0 : 1];
      for (let i = 0; i < order.length; i += 2) {
        const from = order[i];
        if (from !== a && from !== b) q.push(from * 2 ** 32 + order[i + 1]);
      }
      this.compare(a, b, queues);
    }
  }

  compare(a, b, [qa, qb]) {
    const n = Math.min(qa.length, qb.length);
    for (let i = 0; i < n; i++) {
      if (qa[i] !== qb[i] && !this.why) {
        const show = (k) => `#${k % 2 ** 32} of worker ${Math.floor(k / 2 ** 32)}`;
        this.why = `workers ${a} and ${b} disagree: one got ${show(qa[i])} where the other got ${show(qb[i])}`;
      }
    }
    this.compared += n;
    qa.splice(0, n);
    qb.splice(0, n);
  }

  result() {
    return this.why ? { ok: false, why: this.why, compared: this.compared } : { ok: true, compared: this.compared };
  }
}
