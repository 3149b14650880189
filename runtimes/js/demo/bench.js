// Per-frame time of the streaming step in this browser (?threads=N&frames=N&warmup=N&backend=wasm):
// push() of preprocessed frames, after warm-up. Results in window.grwBench (runtimes/js/bench).
import { Session } from "grw-edge-runtime/web";
import { timePushes } from "/js/bench.js";

const params = new URLSearchParams(location.search);
const threads = Number(params.get("threads") ?? 1);
try {
  const session = await Session.create(params.get("artifact") ?? "/artifact/",
    { backend: params.get("backend") ?? "wasm", threads, wasmPaths: "/ort/" });
  const timing = await timePushes(session, Number(params.get("frames") ?? 100), Number(params.get("warmup") ?? 10));
  window.grwBench = { ...timing, threads, isolated: crossOriginIsolated };
} catch (error) {
  window.grwBench = { error: error.message };
}
document.getElementById("out").textContent = JSON.stringify(window.grwBench, null, 1);
