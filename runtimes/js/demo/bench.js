// Per-frame time of the streaming step in this browser (?artifact=URL&backend=wasm&threads=N&frames=N&warmup=N):
// push() of preprocessed frames, after warm-up; for a LiteRT artifact also the bare LiteRT.js run of the
// step (states fed back, no session) to split the session's own cost off. Results in window.grwBench.
import { Session } from "grw-edge-runtime/web";
import { timePushes, timeLiteRtRuns } from "/js/bench.js";

const params = new URLSearchParams(location.search);
const threads = Number(params.get("threads") ?? 1);
const frames = Number(params.get("frames") ?? 100), warmup = Number(params.get("warmup") ?? 10);
try {
  const artifact = params.get("artifact") ?? "/artifact/";
  const session = await Session.create(artifact, { backend: params.get("backend") ?? "wasm", threads, wasmPaths: "/ort/" });
  const timing = await timePushes(session, frames, warmup);
  const result = { ...timing, threads, isolated: crossOriginIsolated, backend: session.backend };
  if (session.manifest.target === "litert") {
    const litert = await import("@litertjs/core");
    result.relaxedSimd = await litert.supportsFeature("relaxedSimd");  // picks LiteRT.js's wasm build
    result.runOnly = await timeLiteRtRuns(litert, new URL(artifact, location.href).href, session.manifest, threads, frames, warmup);
  }
  await session.release();
  window.grwBench = result;
} catch (error) {
  window.grwBench = { error: error.message };
}
document.getElementById("out").textContent = JSON.stringify(window.grwBench, null, 1);
