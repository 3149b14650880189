// The web entry in real Chromium (headless, puppeteer-core): the self-test of the ONNX artifact
// on onnxruntime-web and of the LiteRT artifact on LiteRT.js (wasm, XNNPACK), and the LiteRT.js
// embeddings against the Python LiteRT session's on the same frames. Skips, saying why, where
// there is no Chromium (set CHROMIUM to its path).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";

import { CASE, info } from "./helpers.mjs";
import { serve } from "./server.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}: install it or set CHROMIUM`;
const skipLiteRt = skip || (info.litert ? false : "the case has no LiteRT artifact (litert-torch not installed)");
let browser, server, page;

/** A fresh page (LiteRT.js's wasm build and thread pool are fixed per page). */
async function newPage() {
  const fresh = await browser.newPage();
  fresh.on("pageerror", (error) => console.log(`pageerror: ${error.message}`));
  await fresh.goto(server.url);
  return fresh;
}

before(async () => {
  if (skip) return;
  const { default: puppeteer } = await import("puppeteer-core");
  server = await serve({ "/case/": CASE, "/": CASE });
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  page = await newPage();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Open the case's artifact at `path` in the page, run `body(session, arg)` there, return its result. */
function inPage(path, options, body, arg = null, on = page) {
  return on.evaluate(async (path, options, body, arg) => {
    const { Session } = await import("grw-edge-runtime/web");
    const session = await Session.create(`/case/${path}`, { wasmPaths: "/ort/", ...options });
    try {
      return await (0, eval)(body)(session, arg);
    } finally {
      await session.release();
    }
  }, path, options, body.toString(), arg);
}

const relative = (path) => path.slice(CASE.length).replace(/^\/+/, "");

test("the ONNX artifact's self-test passes on onnxruntime-web (wasm)", { skip }, async () => {
  const report = await inPage(relative(info.artifact), { backend: "wasm" }, (session) => session.selfTest());
  console.log("onnxruntime-web", JSON.stringify(report));
  assert.ok(report.passed, report.problems.join("; "));
});

test("the LiteRT artifact's self-test passes on LiteRT.js (wasm)", { skip: skipLiteRt }, async () => {
  const report = await inPage(relative(info.litert.artifact), { backend: "wasm" }, async (session) =>
    ({ ...(await session.selfTest()), backend: session.backend }));
  console.log("LiteRT.js", JSON.stringify(report));
  assert.equal(report.backend, "litert-wasm");
  assert.ok(report.passed, report.problems.join("; "));
});

test("LiteRT.js embeddings and logits equal the Python LiteRT session's", { skip: skipLiteRt }, async () => {
  const [count, height, width] = info.litert.frames;
  const result = await inPage(relative(info.litert.artifact), { backend: "wasm" }, async (session, shape) => {
    const read = async (name) => new Uint8Array(await (await fetch(`/case/${name}`)).arrayBuffer());
    const frames = await read("litert_frames.bin");
    const expected = new Float32Array((await read("litert_embeddings.bin")).buffer);
    const logits = new Float32Array((await read("litert_logits.bin")).buffer);
    const [count, height, width] = shape;
    const size = height * width * 3, e = session.manifest.embed_dim;
    let embeddings = 0;
    for (let i = 0; i < count; i++) {
      const got = await session.push({ data: frames.subarray(i * size, (i + 1) * size), width, height, format: "rgb" });
      for (let k = 0; k < e; k++) embeddings = Math.max(embeddings, Math.abs(got[k] - expected[i * e + k]));
    }
    const got = (await session.classify()).logits;
    let worst = 0;
    for (let k = 0; k < logits.length; k++) worst = Math.max(worst, Math.abs(got[k] - logits[k]));
    return { embeddings, logits: worst, tolerance: session.manifest.selftest.tolerance };
  }, info.litert.frames);
  console.log(`LiteRT.js vs Python LiteRT over ${count} frames (${width}x${height}): ` +
    `max |embeddings| ${result.embeddings.toExponential(2)}, max |logits| ${result.logits.toExponential(2)}`);
  assert.ok(result.embeddings <= result.tolerance.embeddings, `embeddings differ by ${result.embeddings}`);
  assert.ok(result.logits <= result.tolerance.logits, `logits differ by ${result.logits}`);
});

test("an ONNX-only platform refuses a LiteRT artifact in one line", { skip: skipLiteRt }, async () => {
  const { Session } = await import("../dist/node.js");
  await assert.rejects(Session.create(info.litert.artifact),
    /^BackendUnavailableError: this is a 'litert' artifact, which this platform cannot run: run it in a browser/);
});

test("LiteRT.js with 2 threads passes its self-test; sessions beyond the page's wasm workers are refused",
  { skip: skipLiteRt }, async () => {
    const threaded = await newPage();
    try {
      const options = { backend: "wasm", threads: 2 };
      const result = await inPage(relative(info.litert.artifact), options, async (session, path) => {
        const { Session } = await import("grw-edge-runtime/web");
        const report = await session.selfTest();
        const more = [];  // each holds one of the navigator.hardwareConcurrency workers
        let refused = null;
        try {
          while (more.length <= navigator.hardwareConcurrency) more.push(await Session.create(path, { threads: 2 }));
        } catch (error) {
          refused = `${error.name}: ${error.message}`;
        }
        for (const other of more) await other.release();  // hung the page when a pool worker was missing
        return { report, refused, opened: 1 + more.length, workers: navigator.hardwareConcurrency,
          isolated: crossOriginIsolated };
      }, `/case/${relative(info.litert.artifact)}`, threaded);
      console.log("LiteRT.js, 2 threads", JSON.stringify(result));
      assert.ok(result.isolated);
      assert.ok(result.report.passed, result.report.problems.join("; "));
      assert.equal(result.opened, result.workers);
      assert.match(result.refused,
        /^BackendUnavailableError: LiteRT.js threads 2 need 1 of the page's \d+ wasm workers/);
      assert.doesNotMatch(result.refused, /\n/);
    } finally {
      await threaded.close();
    }
  });
