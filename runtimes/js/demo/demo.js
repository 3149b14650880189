// The live demo: camera or video file -> frames at the manifest's fps -> grw-edge-runtime -> top-5.
// Query parameters: artifact (base URL, default /artifact/), backend (wasm|webgpu), threads,
// camera (start the camera at once), record (keep every pushed frame and its logits in
// window.grwDemo.results, for tests).
import { Session } from "grw-edge-runtime/web";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const demo = { session: null, ready: false, error: null, results: [], latencies: [], busy: false };
window.grwDemo = demo;

const backend = params.get("backend") ?? "wasm";
const threads = Number(params.get("threads") ?? 1);
const record = params.has("record");
const canvas = document.createElement("canvas");
const context = canvas.getContext("2d", { willReadFrequently: true });
let sampled = [];

function showError(error) {
  demo.error = error?.message ?? String(error);
  $("error").textContent = demo.error;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

function kib(bytes) {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function showTop(top) {
  $("top").replaceChildren(...top.map(({ label, score }) => {
    const item = document.createElement("li");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(1, score * 100).toFixed(1)}%`;
    item.append(`${label} — ${(score * 100).toFixed(1)}%`, bar);
    return item;
  }));
}

/** One sampled frame: read its pixels, push, classify, show. */
async function step(video) {
  const { videoWidth: width, videoHeight: height } = video;
  if (!width || !height) return;
  canvas.width = width;
  canvas.height = height;
  context.drawImage(video, 0, 0, width, height);
  const image = context.getImageData(0, 0, width, height);
  const start = performance.now();
  await demo.session.push(image);
  const { logits, top } = await demo.session.classify();
  const latency = performance.now() - start;
  demo.latencies = [...demo.latencies.slice(-49), latency];
  const now = performance.now();
  sampled = [...sampled.filter((t) => now - t < 2000), now];
  if (record) {
    demo.results.push({ width, height, rgba: base64(image.data), top1: top[0].index, logits: Array.from(logits) });
  }
  showTop(top);
  $("frames").textContent = String(demo.session.frames);
  $("latency").textContent = `${latency.toFixed(1)} ms (median ${median(demo.latencies).toFixed(1)} ms)`;
  const rate = sampled.length > 1 ? (1000 * (sampled.length - 1)) / (now - sampled[0]) : 0;
  $("rate").textContent = `${rate.toFixed(1)} frames/s (manifest: ${demo.session.manifest.fps} fps)`;
  $("faults").textContent = String(demo.session.faults);
}

/** Sample the video at the manifest's frame rate; a frame that arrives while busy is dropped. */
function startSampling(video) {
  clearInterval(demo.timer);
  demo.timer = setInterval(async () => {
    if (demo.busy || !demo.ready || video.readyState < 2 || video.paused) return;
    demo.busy = true;
    try {
      await step(video);
    } catch (error) {
      showError(error);
    } finally {
      demo.busy = false;
    }
  }, 1000 / demo.session.manifest.fps);
}

async function play(video, setSource) {
  clearError();
  try {
    setSource(video);
    await video.play();
    demo.session.reset();
    startSampling(video);
  } catch (error) {
    showError(error);
  }
}

async function main() {
  $("backend").value = backend;
  $("threads").value = String(threads);
  for (const id of ["backend", "threads"]) {
    $(id).addEventListener("change", () => {
      params.set(id, $(id).value);
      location.search = params.toString();  // wasm threads are fixed per page
    });
  }
  try {
    demo.session = await Session.create(params.get("artifact") ?? "/artifact/", { backend, threads, wasmPaths: "/ort/" });
  } catch (error) {
    $("model").textContent = "no model";
    showError(error);
    return;
  }
  const m = demo.session.manifest;
  $("model").textContent = `${m.backbone} · ${m.input.shape[4]} px · ${m.fps} fps · window ${m.frames_per_clip} · ` +
    `${backend}, ${threads} thread${threads > 1 ? "s" : ""}${crossOriginIsolated ? "" : " (not isolated: 1 thread)"}`;
  $("memory").textContent = `${kib(demo.session.stateBytes)} in ${m.states.length} states`;
  demo.ready = true;
  const video = $("video");
  $("camera").onclick = async () => {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
      await play(video, (v) => { v.loop = false; v.srcObject = stream; });
    } catch (error) {
      showError(new Error(`camera unavailable: ${error.message}`));
    }
  };
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) play(video, (v) => { v.srcObject = null; v.loop = true; v.src = URL.createObjectURL(file); });
  });
  $("reset").addEventListener("click", () => {
    demo.session.reset();
    $("top").replaceChildren();
    $("frames").textContent = "0";
  });
  $("selftest").addEventListener("click", async () => {
    demo.busy = true;
    try {
      const report = await demo.session.selfTest();
      $("selftest-result").textContent = report.passed
        ? `passed (${report.frames} frames; max |Δ| embeddings ${report.maxAbsEmbeddings.toExponential(1)}, logits ${report.maxAbsLogits.toExponential(1)})`
        : `FAILED: ${report.problems.join("; ")}`;
    } catch (error) {
      showError(error);
    } finally {
      demo.busy = false;
    }
  });
  if (params.has("camera")) $("camera").click();
}

main();
