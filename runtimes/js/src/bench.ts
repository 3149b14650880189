/** Timing of the streaming step through the session API, shared by the Node and browser benchmarks. */
import type { Tensor } from "@litertjs/core";

import { inputDims, size } from "./engine.js";
import { type LiteRtModule, stepOrder } from "./litert.js";
import type { Manifest } from "./manifest.js";
import type { Session } from "./session.js";

export interface StepTiming {
  frames: number;
  medianMs: number;
  p90Ms: number;
}

/** Per-frame time of `push()` on preprocessed frames (deterministic values in [0, 1]) after warm-up. */
export async function timePushes(session: Session, frames: number, warmup: number): Promise<StepTiming> {
  const { batch, frames: t, resolution: r } = inputDims(session.manifest);
  const frame = new Float32Array(batch * 3 * t * r * r);
  for (let i = 0; i < frame.length; i++) frame[i] = ((i * 2654435761) % 1000) / 999;
  session.reset();
  for (let i = 0; i < warmup; i++) await session.push(frame);
  const times: number[] = [];
  for (let i = 0; i < frames; i++) {
    const start = performance.now();
    await session.push(frame);
    times.push(performance.now() - start);
  }
  return summarize(times);
}

/** Median and 90th percentile of per-frame times. */
function summarize(times: number[]): StepTiming {
  const sorted = [...times].sort((x, y) => x - y);
  const at = (q: number) => sorted[Math.floor(sorted.length * q)];
  return { frames: sorted.length, medianMs: at(0.5), p90Ms: at(0.9) };
}

/**
 * Per-frame time of LiteRT.js running a LiteRT artifact's step alone (no session): the same
 * frame tensor every time, the output states fed back as the next inputs. Beside
 * `timePushes`, it shows what the session adds (frame checks, layout, copies, finite checks).
 */
export async function timeLiteRtRuns(litert: LiteRtModule, base: string, manifest: Manifest, threads: number,
  frames: number, warmup: number): Promise<StepTiming> {
  const bytes = new Uint8Array(await (await fetch(new URL(manifest.step.file, base))).arrayBuffer());
  const model = await litert.loadAndCompile(bytes, { accelerator: "wasm", cpuOptions: { numThreads: threads } });
  const runner = model.signatures[manifest.step.signature!];
  const order = stepOrder(runner, manifest);
  const frame = new litert.Tensor(new Float32Array(size(manifest.input.shape)).fill(0.5), manifest.input.shape);
  let states = manifest.states.map((s) => new litert.Tensor(new Float32Array(size(s.shape)), s.shape));
  const times: number[] = [];
  for (let i = 0; i < warmup + frames; i++) {
    const feeds: Tensor[] = [];
    feeds[order.frames] = frame;
    order.states.forEach((at, k) => { feeds[at] = states[k]; });
    const start = performance.now();
    const results = await runner.run(feeds);
    const embeddings = results[order.embeddings];
    await embeddings.data();
    if (i >= warmup) times.push(performance.now() - start);
    embeddings.delete();
    states.forEach((t) => t.delete());
    states = order.next.map((at) => results[at]);
  }
  states.forEach((t) => t.delete());
  frame.delete();
  model.delete();
  return summarize(times);
}
