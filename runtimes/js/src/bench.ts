/** Timing of the streaming step through the session API, shared by the Node and browser benchmarks. */
import type { Session } from "./session.js";

export interface StepTiming {
  frames: number;
  medianMs: number;
  p90Ms: number;
}

/** Per-frame time of `push()` on preprocessed frames (deterministic values in [0, 1]) after warm-up. */
export async function timePushes(session: Session, frames: number, warmup: number): Promise<StepTiming> {
  const [b, , t, r] = session.manifest.input.shape;
  const frame = new Float32Array(b * 3 * t * r * r);
  for (let i = 0; i < frame.length; i++) frame[i] = ((i * 2654435761) % 1000) / 999;
  session.reset();
  for (let i = 0; i < warmup; i++) await session.push(frame);
  const times: number[] = [];
  for (let i = 0; i < frames; i++) {
    const start = performance.now();
    await session.push(frame);
    times.push(performance.now() - start);
  }
  times.sort((x, y) => x - y);
  return { frames, medianMs: times[Math.floor(frames / 2)], p90Ms: times[Math.floor(frames * 0.9)] };
}
