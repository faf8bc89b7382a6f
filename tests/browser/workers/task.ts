// The worker side of tests/browser/threads.ts: the first message is the task;
// a failure goes back as { error } (a rejected promise in a worker reaches
// nobody otherwise).
export type Post = (message: unknown, transfer?: Transferable[]) => void;

export function onTask(body: (data: any, post: Post) => unknown): void {
  const post: Post = (m, t = []) => (self as unknown as Worker).postMessage(m, t);
  self.addEventListener("message", async (e) => {
    try {
      await body((e as MessageEvent).data, post);
    } catch (err) {
      post({ error: String((err as Error)?.stack ?? err) });
    }
  }, { once: true });
}
