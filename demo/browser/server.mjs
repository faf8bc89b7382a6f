// The browser demo's server (npm run demo:browser): serves the repository's
// demo page, the compiled browser host (dist/) and the wasm core (build/) on
// 127.0.0.1, with the two headers that make a page cross-origin isolated
// (shared memory, one bus all workers attach to). The same page under
// /plain/ is served without them, to show the fallback: a private bus in the
// page, and workers on served peers.
//
//   npm run demo:browser            # http://127.0.0.1:8181/ (PORT=… to change)
//
// Nothing but files under demo/browser/, dist/ and build/ is served.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SERVED = ["demo/browser/", "dist/", "build/"];
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".map": "application/json",
  ".png": "image/png",
};
const ISOLATION = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

/** The file a request path names, or null: `/` is the page, `/plain/…` the same files without isolation. */
function fileOf(pathname) {
  let rel = decodeURIComponent(pathname).replace(/^\/plain(?=\/|$)/, "");
  if (rel === "" || rel === "/") rel = "/demo/browser/index.html";
  const file = normalize(join(ROOT, rel));
  if (!file.startsWith(ROOT)) return null;
  const inside = file.slice(ROOT.length).split(sep).join("/");
  return SERVED.some((dir) => inside.startsWith(dir)) ? file : null;
}

/** Starts the server; resolves to its URL and a close(). `port` 0 picks a free one. */
export function startDemoServer({ port = 8181, host = "127.0.0.1" } = {}) {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const plain = url.pathname === "/plain" || url.pathname.startsWith("/plain/");
    const file = fileOf(url.pathname);
    const headers = { "Cache-Control": "no-store", "Cross-Origin-Resource-Policy": "same-origin", ...(plain ? {} : ISOLATION) };
    if (!file) {
      res.writeHead(404, headers).end("not found");
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { ...headers, "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404, headers).end("not found");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const { port: bound } = server.address();
      resolve({
        url: `http://${host}:${bound}/`,
        close: () => new Promise((done) => {
          server.closeAllConnections?.();
          server.close(() => done());
        }),
      });
    });
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === normalize(process.argv[1])) {
  const { url } = await startDemoServer({ port: Number(process.env.PORT ?? 8181) });
  console.log(`bus1-wasm browser demo: ${url}`);
  console.log(`  the same page without cross-origin isolation (private bus, served peers): ${url}plain/`);
  console.log("  Ctrl-C to stop");
}
