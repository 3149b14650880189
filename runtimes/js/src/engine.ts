/**
 * What a session needs from an inference library: run the step (carrying the states from one
 * call to the next inside the library), the head and, for clip-mode artifacts, the whole clip.
 * The session verbs, policies, self-test and frame checks live once in session.ts; each
 * library (onnxruntime in ort.ts, LiteRT.js in litert.ts) implements this small interface.
 */
import type { LoadedArtifact } from "./artifact.js";
import { ArtifactError, BackendUnavailableError } from "./errors.js";
import type { Manifest } from "./manifest.js";

/** One step's results; its next states are held until the session commits or discards them. */
export interface StepOutput {
  /** (B, t, E) embeddings, row-major. */
  embeddings: Float32Array;
  /** (B, classes) logits of a fused graph (step + head in one). */
  logits?: Float32Array;
  /** False when the next states hold NaN or infinity (where the engine can see it cheaply). */
  statesFinite: boolean;
  /** Make the next states current (the old ones are freed). */
  commit(): void;
  /** Drop the next states (a bad step, or a reset() that overtook it). */
  discard(): void;
}

export interface Engine {
  /** The backend as the user named it ('wasm', 'webgpu', 'cpu', 'litert-wasm', ...). */
  readonly backend: string;
  /** Bytes the states take (the embedding window included on a fused graph). */
  readonly stateBytes: number;
  /** Initial states; the old ones are freed once `idle` resolves (a step may still read them). */
  resetStates(idle: Promise<unknown>): void;
  /** One streaming step on (B, 3, t, R, R) frames, channels first as the session holds them. */
  step(frames: Float32Array): Promise<StepOutput>;
  /** (B, n, E) embeddings of a whole clip (B, 3, n, R, R) (clip-mode artifacts). */
  clip(frames: Float32Array, count: number): Promise<Float32Array>;
  /** (B, classes) logits of the head over (B, n, E) embeddings. */
  head(embeddings: Float32Array, count: number): Promise<Float32Array>;
  release(): Promise<void>;
}

/** Opens an engine for a loaded artifact; platform entries pick one by the manifest's target. */
export type EngineFactory = (artifact: LoadedArtifact) => Promise<Engine>;

/** The runtime each export target runs on (as grw_edge_runtime.DEFAULT_BACKEND in Python). */
export const TARGET_RUNTIME: Record<string, "onnxruntime" | "litert"> = {
  onnx: "onnxruntime", litert: "litert",
};

/** The runtime for a manifest's target, or a one-line error naming what can run it. */
export function targetRuntime(manifest: Manifest, available: readonly string[]): "onnxruntime" | "litert" {
  const runtime = TARGET_RUNTIME[manifest.target];
  if (runtime && available.includes(runtime)) return runtime;
  const where = runtime === "litert" ? "in a browser (grw-edge-runtime/web with @litertjs/core) or with the " +
    "Python runtime" : "with the Python runtime (grw_edge_runtime)";
  throw new BackendUnavailableError(`this is a '${manifest.target}' artifact, which this platform cannot run: ` +
    `run it ${where}, or export with --target onnx`);
}

/** The dimensions of the frames input, read by the letters of `input.layout` (NCTHW, NTHWC). */
export function inputDims(manifest: Manifest): { batch: number; frames: number; resolution: number } {
  const layout = manifest.input.layout ?? "NCTHW";
  const size = (axis: string) => manifest.input.shape[layout.indexOf(axis)];
  return { batch: size("N"), frames: size("T"), resolution: size("H") };
}

/** No NaN or infinity in `data` (x * 0 is NaN exactly for those; one sum, no branch per value). */
export function allFinite(data: Float32Array): boolean {
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum += data[i] * 0;
  return sum === 0;
}

/** Number of values of a shape. */
export function size(shape: readonly number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

/** The names a graph must have: the manifest's inputs exactly, its outputs at least; a
 * one-line error naming the first difference otherwise. */
export function checkNames(file: string, where: string, inputs: readonly string[], outputs: readonly string[],
  expectedInputs: readonly string[], expectedOutputs: readonly string[]): void {
  const problems = [
    ...expectedInputs.filter((n) => !inputs.includes(n)).map((n) => `${file} has no input '${n}'`),
    ...inputs.filter((n) => !expectedInputs.includes(n)).map((n) => `${file} input '${n}' is not in the manifest`),
    ...expectedOutputs.filter((n) => !outputs.includes(n)).map((n) => `${file} has no output '${n}'`),
  ];
  if (problems.length) {
    throw new ArtifactError(`${where}: the manifest does not match the graph (${problems[0]}); re-export the artifact`);
  }
}
