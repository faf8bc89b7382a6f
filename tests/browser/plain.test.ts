// The browser host as a page without a bundler loads it (<script type="module">
// or import()): the package's own files, untransformed, from a server that
// sends .wasm as application/octet-stream, so the core is compiled from the
// whole body instead of while streaming (vitest.browser.config.ts: /plain/).
import { describe, expect, it } from "vitest";

describe("the browser host without a bundler", () => {
  it("loads as plain ESM, finds the core next to it, compiles it from a server that does not send application/wasm, and runs a bus", async () => {
    const wasm = await fetch("/plain/build/bus1.threads.wasm");
    expect(wasm.headers.get("Content-Type")).toBe("application/octet-stream");
    const url = "/plain/dist/host-browser/index.js";
    // as built: relative imports a browser resolves by itself, no bundler's rewriting
    const source = await (await fetch(url)).text();
    expect(source).toContain('from "../host-common/index.js"');
    expect(source).toContain('new URL("../../build/bus1.threads.wasm", import.meta.url)');
    const host = await import(/* @vite-ignore */ url);
    for (const shared of [true, false]) {
      const bus = await host.Bus.create({ shared });
      try {
        expect(bus.shared).toBe(shared);
        const a = bus.connect();
        a.send(a.transfer(4, a), new TextEncoder().encode("plain"));
        const m = a.recv();
        expect(new TextDecoder().decode(m.payload.slice())).toBe("plain");
        m.release();
      } finally {
        bus.close();
      }
    }
  });
});
