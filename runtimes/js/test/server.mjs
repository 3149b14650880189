// A static server for the browser tests and benchmark: the built package, onnxruntime-web,
// LiteRT.js and folders of artifacts, with the cross-origin isolation headers wasm threads need
// (the same paths as `grw-edge serve`: /js/, /ort/, /litertjs/).
import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));
const TYPES = { ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
  ".json": "application/json", ".html": "text/html" };

/** The import map of a page that uses grw-edge-runtime/web with either library. */
export const IMPORT_MAP = JSON.stringify({ imports: {
  "grw-edge-runtime/web": "/js/web.js",
  "onnxruntime-web/wasm": "/ort/ort.wasm.min.mjs", "onnxruntime-web/webgpu": "/ort/ort.webgpu.min.mjs",
  "@litertjs/core": "/litertjs/core/dist/index.js", "@litertjs/wasm-utils": "/litertjs/wasm-utils/dist/index.js",
} });

/** Serve `routes` (URL prefix -> folder) plus the package's own; resolves to the base URL and a stop(). */
export async function serve(routes = {}) {
  const table = { "/js/": join(ROOT, "dist"), "/ort/": join(ROOT, "node_modules/onnxruntime-web/dist"),
    "/litertjs/": join(ROOT, "node_modules/@litertjs"), ...routes };
  const page = `<!doctype html><meta charset="utf-8"><script type="importmap">${IMPORT_MAP}</script><body></body>`;
  const server = createServer((request, response) => {
    const headers = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
      "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-cache" };
    const path = normalize(decodeURIComponent(new URL(request.url, "http://x").pathname));
    if (path === "/") {
      response.writeHead(200, { ...headers, "Content-Type": "text/html" }).end(page);
      return;
    }
    const prefix = Object.keys(table).find((p) => path.startsWith(p));
    const file = prefix && join(table[prefix], path.slice(prefix.length));
    try {
      if (!file || !statSync(file).isFile()) throw new Error("not a file");
    } catch {
      response.writeHead(404, headers).end();
      return;
    }
    response.writeHead(200, { ...headers, "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(response);
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  return { url: `http://127.0.0.1:${server.address().port}/`, stop: () => new Promise((done) => server.close(done)) };
}
