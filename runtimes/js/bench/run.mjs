// Per-frame streaming step time of grw-edge-runtime in Node (onnxruntime-node) and in headless
// Chromium: onnxruntime-web wasm on the ONNX artifact and LiteRT.js (XNNPACK wasm) on the LiteRT
// one, 1 and 2 threads, one round; prints one JSON line. benchmarks/js_runtime.py runs rounds of
// this interleaved with the Python sessions.
//   node bench/run.mjs ONNX_DIR LITERT_DIR [frames] [warmup]
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import puppeteer from "puppeteer-core";

import { timePushes } from "../dist/bench.js";
import { Session } from "../dist/node.js";
import { serve } from "../test/server.mjs";

const [onnx, litert, frames = "100", warmup = "10"] = process.argv.slice(2);
const results = {};
const node = await Session.create(onnx, { threads: 1 });
results.node_1 = await timePushes(node, Number(frames), Number(warmup));
await node.release();

const server = await serve({ "/onnx/": onnx, "/litert/": litert,
  "/bench/": join(fileURLToPath(new URL("..", import.meta.url)), "demo") });
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox"],
});
try {
  for (const [name, artifact] of [["chromium_ort_wasm", "/onnx/"], ["chromium_litert_wasm", "/litert/"]]) {
    for (const threads of (process.env.BENCH_THREADS ?? "1,2").split(",").map(Number)) {
      const page = await browser.newPage();  // wasm threads are fixed per page
      await page.goto(`${server.url}bench/bench.html?artifact=${artifact}&threads=${threads}&frames=${frames}` +
        `&warmup=${warmup}`);
      await page.waitForFunction(() => window.grwBench, { timeout: 300_000 });
      const timing = await page.evaluate(() => window.grwBench);
      if (timing.error) throw new Error(`${name} ${threads}: ${timing.error}`);
      if (threads > 1 && !timing.isolated) throw new Error("the bench page is not cross-origin isolated");
      results[`${name}_${threads}`] = timing;
      if (timing.runOnly) results[`${name}_run_only_${threads}`] = timing.runOnly;
      await page.close();
    }
  }
  results.chromium = await browser.version();
} finally {
  await browser.close();
  await server.stop();
}
console.log(JSON.stringify(results));
