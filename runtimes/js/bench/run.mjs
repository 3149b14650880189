// Per-frame streaming step time of grw-edge-runtime in Node (onnxruntime-node) and in headless
// Chromium (onnxruntime-web wasm, 1 and 2 threads), one round; prints one JSON line.
// benchmarks/js_runtime.py runs rounds of this interleaved with the Python session.
//   node bench/run.mjs ARTIFACT_DIR DEMO_URL [frames] [warmup]
import puppeteer from "puppeteer-core";

import { timePushes } from "../dist/bench.js";
import { Session } from "../dist/node.js";

const [artifact, url, frames = "100", warmup = "10"] = process.argv.slice(2);
const results = {};
const node = await Session.create(artifact, { threads: 1 });
results.node_1 = await timePushes(node, Number(frames), Number(warmup));
await node.release();

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox"],
});
try {
  for (const threads of [1, 2]) {
    const page = await browser.newPage();  // wasm threads are fixed per page
    await page.goto(`${url}bench.html?threads=${threads}&frames=${frames}&warmup=${warmup}`);
    await page.waitForFunction(() => window.grwBench, { timeout: 300_000 });
    const timing = await page.evaluate(() => window.grwBench);
    if (timing.error) throw new Error(timing.error);
    if (threads > 1 && !timing.isolated) throw new Error("the bench page is not cross-origin isolated");
    results[`chromium_wasm_${threads}`] = timing;
    await page.close();
  }
  results.chromium = await browser.version();
} finally {
  await browser.close();
}
console.log(JSON.stringify(results));
