/**
 * DOC: thread liveness through Web Locks: how a host with no exit event for
 * its workers (browsers, Deno) learns that a thread has ended, for bus.watch.
 *
 * Concept. Each bus1 thread holds the Web Lock "bus1-wasm thread <id>" for
 * as long as it lives, and says so on the BroadcastChannel "bus1-wasm
 * threads" (its id). The host lets go of a lock only when the thread that
 * holds it is gone (ended, closed or terminated), never while JS can still
 * run there. A watching thread asks for the lock of every other bus1 thread
 * it hears of or sees holding its lock (locks.query()); the grant is the news
 * that the thread has ended, and every bus of the watching thread that
 * watches reclaims it (thread_exit; a thread not attached there is no-op).
 *
 * Why a live thread is never taken for dead. Locks are granted in the order
 * they are asked for. A watcher asks for a thread's lock only once that lock
 * is known held: seen held by query(), or heard of from a thread that speaks
 * only once it holds its lock (ids "claim"). Its request so queues behind the
 * holder's and is granted only once the holder let go, that is, has ended.
 * Nothing is read from the Worker object given to watch (the host only checks
 * it is one): a look-alike can make the bus watch, never a thread look dead.
 *
 * Ids. "claim" (Deno's workers): a random 31-bit id (never 0) is taken only
 * if its lock is free, drawn again while it is not: no two live threads share
 * an id. It is awaited, so the host awaits it at load. "hold" (browsers: a
 * module bundlers may not let await at load): the id is drawn at once and its
 * lock asked for; the thread speaks at once, before the grant (a thread that
 * blocks in wait() at once may never run the grant's callback, yet holds the
 * lock), so a watcher follows it only once query() shows the lock held.
 *
 * Keeping the process alive. In Deno a lock held or asked for and an open
 * BroadcastChannel keep the process running. There only workers hold locks
 * (the main thread's end is the process's: it takes none and is id 0), and
 * the host's channels are node:worker_threads' ones, unreferenced. A lock
 * asked for is asked for only while its thread lives (which keeps the
 * process alive all the same) and is withdrawn when watching stops.
 *
 * Watchers. One per watching bus (Watcher): registered by the bus's first
 * watch(), removed by its close(). A thread listens while some watcher is
 * registered. Once none is, it stops: channel closed, timers cleared, lock
 * requests withdrawn (an AbortSignal), so nothing holds a closed bus. A later
 * watch starts again from query(), which keeps the rule above. (The channel
 * is closed one task later, and taken up again by a watch that starts
 * before: Deno loses messages on a channel opened in the same task as one
 * was closed.)
 *
 * Limits. Every bus1 thread of the origin (browser) or process (Deno) whose
 * lock comes free is reported, not only the watched worker's: which thread a
 * Worker runs is not known. A thread that ended before any watcher saw its
 * lock held or heard it speak is not reported. terminate() ends a thread busy
 * without returning to its event loop (a loop, a wait()) only once it gets
 * back there (Deno), or about 2 s later (Chromium). With "hold", two threads
 * draw the same id with odds of about n²/2³² for n threads; the second then
 * waits for the first's lock, and the first's end is not reported. Without
 * Web Locks (a page that is not a secure context) there is no watch.
 */
import type { Watcher } from "./platform.js";

/** How many times a thread heard of before its grant ("hold") is looked for (about 5 s in all). */
const CONFIRM_TRIES = 60;
/** The Web Lock a thread holds while it lives. */
const LOCK_PREFIX = "bus1-wasm thread ";
/** Where a thread says it is there, for threads already watching. */
const CHANNEL = "bus1-wasm threads";
/** How often "claim" draws an id before it gives up (a lock manager that grants nothing). */
const CLAIM_TRIES = 64;

interface LockInfo { name?: string }
interface LockManagerLike {
  request(name: string, options: { ifAvailable?: boolean; signal?: AbortSignal },
    callback: (lock: unknown) => unknown): Promise<unknown>;
  query(): Promise<{ held?: LockInfo[]; pending?: LockInfo[] }>;
}

/** The part of a BroadcastChannel used here. */
export interface ChannelLike {
  postMessage(message: unknown): void;
  close(): void;
  onmessage: ((e: { data: unknown }) => void) | null;
}

/** What differs between the hosts that use Web Locks. */
export interface LivenessHost {
  /** How a thread takes its id (see the DOC block, "Ids"); `claim()` is for "claim", `hold()` for "hold". */
  ids: "claim" | "hold";
  /** A BroadcastChannel on `name` that keeps no process alive (a browser's own has nothing to keep). */
  channel(name: string): ChannelLike;
  /** Throws a Bus1Error EINVAL unless `worker` is a worker of this host. */
  checkWorker(worker: unknown): void;
}

/** What the watching of a thread holds now (for the package's own tests). */
export interface Watching {
  /** Watchers registered: buses of this thread that watch. */
  buses: number;
  /** Whether the thread listens on the channel on which threads speak. */
  listening: boolean;
  /** Threads whose lock is asked for. */
  following: number;
  /** Timers set (looks for a thread heard of, the channel's close). */
  timers: number;
}

export interface ThreadLiveness {
  /** "claim": this thread's id, once its lock is held (a random one, unwatchable, without Web Locks). */
  claim(): Promise<number>;
  /** "hold": this thread's id, its lock asked for. */
  hold(): number;
  /** A bus's watcher (platform.watcher); absent without Web Locks. */
  readonly watcher?: (onExit: (thread: number) => void) => Watcher;
}

const NOTHING: Watching = Object.freeze({ buses: 0, listening: false, following: 0, timers: 0 });

/**
 * What the watching of this thread holds now, for the package's own tests
 * (not exported by the entry points: internals are not API).
 */
export let watchingNow: () => Watching = () => NOTHING;

function randomId(): number {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return (a[0] & 0x7fffffff) || 1;
}

function isId(v: unknown): v is number {
  return typeof v === "number" && v >>> 0 === v;
}

function idOf(name: unknown): number | null {
  if (typeof name !== "string" || !name.startsWith(LOCK_PREFIX)) return null;
  const id = Number(name.slice(LOCK_PREFIX.length));
  return isId(id) ? id : null;
}

/** The liveness of this thread's bus1 threads, for a host with Web Locks (or without: no watch then). */
export function threadLiveness(host: LivenessHost): ThreadLiveness {
  const locks = (globalThis.navigator as { locks?: LockManagerLike } | undefined)?.locks;
  /** This thread's id once taken (0 until then: the id of a thread that takes no lock). */
  let thread = 0;
  /** The channel this thread spoke on, kept open (Chromium drops a message whose channel is closed right after it is posted). */
  let spoken: ChannelLike | null = null;

  function speak(id: number): void {
    try {
      spoken = host.channel(CHANNEL);
      spoken.postMessage(id);
    } catch {
      // no channel: watchers find this thread by its lock
    }
  }

  /** Takes `id`'s lock for good if no thread holds it; says whether it did. */
  function take(id: number): Promise<boolean> {
    return new Promise((resolve) => {
      locks!.request(LOCK_PREFIX + id, { ifAvailable: true }, (lock) => {
        resolve(lock !== null);
        return lock === null ? undefined : new Promise(() => {});
      }).catch(() => resolve(false));
    });
  }

  async function claim(): Promise<number> {
    if (!locks) return (thread = randomId());
    for (let tries = 0; tries < CLAIM_TRIES; tries++) {
      const id = randomId();
      if (!(await take(id))) continue;
      // spoken once held, never before: a watcher that asks for it after hearing of it queues behind it
      thread = id;
      speak(id);
      return id;
    }
    return (thread = randomId()); // no id could be taken: this thread cannot be watched
  }

  function hold(): number {
    thread = randomId();
    if (!locks) return thread;
    // held until the thread ends; the grant is what counts, not the callback (see "Ids")
    locks.request(LOCK_PREFIX + thread, {}, () => new Promise(() => {})).catch(() => {
      // no lock (a context that is going away): this thread cannot be watched
    });
    speak(thread);
    return thread;
  }

  // ---- watching: one state per thread, while some watcher is registered ----

  /** The registered watchers' exit callbacks. */
  const exits = new Set<(thread: number) => void>();
  /** Withdraws this watching's lock requests; null while nothing watches. */
  let epoch: AbortController | null = null;
  const followed = new Set<number>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let channel: ChannelLike | null = null;
  /** A channel let go of, closed one task later unless a watch takes it up again. */
  let closing: { channel: ChannelLike; timer: ReturnType<typeof setTimeout> } | null = null;

  function report(id: number): void {
    for (const onExit of [...exits]) {
      try {
        onExit(id);
      } catch {
        // a watcher's failure is its own
      }
    }
  }

  /** Asks for `id`'s lock, known held: granted once that thread has ended. */
  function follow(id: number): void {
    if (!epoch || id === thread || followed.has(id)) return;
    followed.add(id);
    const signal = epoch.signal;
    locks!.request(LOCK_PREFIX + id, { signal }, () => {
      followed.delete(id);
      // the lock is held while the watchers run: no new thread can take this id meanwhile
      report(id);
    }).catch(() => {
      if (!signal.aborted) followed.delete(id);
    });
  }

  /** A thread spoke before its grant ("hold"): followed once its lock shows as held. */
  function confirm(id: number, tries = 0): void {
    const e = epoch;
    if (!e || id === thread || followed.has(id)) return;
    locks!.query().then((state) => {
      if (epoch !== e) return;
      if ((state.held ?? []).some((l) => idOf(l.name) === id)) return follow(id);
      if (tries >= CONFIRM_TRIES) return;
      const t = setTimeout(() => {
        timers.delete(t);
        confirm(id, tries + 1);
      }, Math.min(100, 5 * (tries + 1)));
      timers.add(t);
    }, () => {});
  }

  function heard(id: number): void {
    if (host.ids === "claim") follow(id);
    else confirm(id);
  }

  /** Follows every thread that holds its lock now (and, "hold", every one still waiting for it). */
  function scan(): void {
    const e = epoch;
    locks!.query().then((state) => {
      if (epoch !== e) return;
      for (const l of state.held ?? []) {
        const id = idOf(l.name);
        if (id !== null) follow(id);
      }
      // "claim" never waits for its lock: a request waiting there is a watcher's
      if (host.ids === "hold") {
        for (const l of state.pending ?? []) {
          const id = idOf(l.name);
          if (id !== null) confirm(id);
        }
      }
    }, () => {});
  }

  function listen(): void {
    if (closing) {
      clearTimeout(closing.timer);
      channel = closing.channel;
      closing = null;
    } else {
      try {
        channel = host.channel(CHANNEL);
      } catch {
        return; // no channel here: threads are found by their locks alone
      }
    }
    channel.onmessage = (e) => {
      if (isId(e.data)) heard(e.data);
    };
  }

  function start(): void {
    epoch = new AbortController();
    // listen first, then look: a thread is heard of, or seen holding its lock, or both
    listen();
  }

  function stop(): void {
    epoch!.abort();
    epoch = null;
    followed.clear();
    for (const t of timers) clearTimeout(t);
    timers.clear();
    const c = channel;
    channel = null;
    if (!c) return;
    c.onmessage = null;
    closing = {
      channel: c,
      timer: setTimeout(() => {
        closing = null;
        c.close();
      }, 0),
    };
  }

  function watcher(onExit: (thread: number) => void): Watcher {
    // a function of this watcher's own: one registration, however many workers it adds
    const exit = (id: number) => onExit(id);
    return {
      add(worker: unknown): void {
        host.checkWorker(worker);
        if (!exits.has(exit)) {
          exits.add(exit);
          if (!epoch) start();
        }
        scan();
      },
      close(): void {
        if (exits.delete(exit) && exits.size === 0) stop();
      },
    };
  }

  watchingNow = () => ({ buses: exits.size, listening: channel !== null, following: followed.size,
    timers: timers.size + (closing ? 1 : 0) });
  return { claim, hold, watcher: locks ? watcher : undefined };
}
