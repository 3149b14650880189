/**
 * The artifact manifest (`manifest.json`, format_version 1): the public schema the Python
 * exporter writes (README, "Manifest schema"). Parsing validates it and reports the first
 * problem in one line, as the Python reader does.
 */
import { ArtifactError } from "./errors.js";

export const FORMAT_VERSION = 1;
export const MANIFEST_NAME = "manifest.json";

/** A state tensor: the graph input that receives it, the output that returns its next value. */
export interface StateEntry {
  name: string;
  input: string;
  output: string;
  shape: number[];
  dtype: string;
  init: number;
  /** The graph holds the state with its axes reordered from the PyTorch reference's. */
  permute?: number[] | null;
}

/** Where one array lies in `selftest.bin`. */
export interface SelfTestArray {
  offset: number;
  shape: number[];
  dtype: "uint8" | "float32";
}

/** The manifest's `selftest` field (COORD.md / README, "Self-test"). */
export interface SelfTestEntry {
  file: string;
  frames: SelfTestArray;
  embeddings: SelfTestArray;
  logits: SelfTestArray;
  tolerance: { embeddings: number; logits: number; top1?: boolean };
}

export interface Preprocess {
  resize: [number, number];
  center_crop: [number, number];
  interpolation?: string;
  antialias?: boolean;
  scale?: number;
}

export interface Manifest {
  format_version: number;
  backbone: string;
  target: string;
  precision: string;
  mode: "streaming" | "clip";
  frames_per_clip: number;
  fps: number;
  embed_dim: number;
  num_classes: number;
  input: {
    name: string;
    shape: number[];
    dtype: string;
    layout: string;
    range: [number, number];
    preprocess: Preprocess;
  };
  states: StateEntry[];
  /** `signature`: the LiteRT signature key (LiteRT artifacts). */
  step: { file: string; outputs: { embeddings: string }; signature?: string };
  /** LiteRT: a fixed window `shape` [B, N, E] and a `mask` input marking the rows that hold frames. */
  head: { file: string; input: string; output: string; dtype?: string; signature?: string; mask?: string;
    shape?: number[] };
  fused?: {
    file: string;
    outputs: { logits: string; embeddings: string };
    window_state: StateEntry;
  } | null;
  labels: string;
  source: Record<string, unknown>;
  parity?: Record<string, unknown>;
  selftest?: SelfTestEntry | null;
  files?: Record<string, { size: number; sha256: string }> | null;
  [other: string]: unknown;
}

type Check = (value: unknown) => boolean;
const isInt: Check = (v) => Number.isInteger(v);
const isNumber: Check = (v) => typeof v === "number" && Number.isFinite(v);
const isString: Check = (v) => typeof v === "string";
const isObject: Check = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
const isShape: Check = (v) => Array.isArray(v) && v.every((d) => Number.isInteger(d));

const REQUIRED: Record<string, Check> = {
  format_version: isInt, backbone: isString, target: isString, precision: isString,
  mode: isString, frames_per_clip: isInt, fps: isNumber, embed_dim: isInt, num_classes: isInt,
  input: isObject, states: Array.isArray, step: isObject, head: isObject, labels: isString,
  source: isObject,
};
const STATE_KEYS: Record<string, Check> = {
  name: isString, input: isString, output: isString, shape: isShape, dtype: isString,
  init: isNumber,
};
const SUPPORTED_DTYPES = ["float32"];

/** Parse and validate the text of `manifest.json`; `where` names it in error messages. */
export function parseManifest(text: string, where: string): Manifest {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new ArtifactError(`${where} is not valid JSON (${(error as Error).message}); ` +
      "re-export the artifact");
  }
  if (!isObject(data)) throw new ArtifactError(`${where} must hold a JSON object`);
  const m = data as Record<string, unknown>;
  for (const [key, check] of Object.entries(REQUIRED)) {
    if (!(key in m)) throw new ArtifactError(`${where} lacks the field '${key}'; re-export the artifact`);
    if (!check(m[key])) throw new ArtifactError(`${where}: field '${key}' has the wrong type`);
  }
  const version = m.format_version as number;
  if (version > FORMAT_VERSION || version < 1) {
    throw new ArtifactError(`${where} has format_version ${version}; this grw-edge-runtime ` +
      `reads up to ${FORMAT_VERSION}: upgrade grw-edge-runtime`);
  }
  if (m.mode !== "streaming" && m.mode !== "clip") {
    throw new ArtifactError(`${where}: mode must be 'streaming' or 'clip', got '${String(m.mode)}'`);
  }
  const states = m.states as unknown[];
  states.forEach((entry, index) => checkState(entry, `${where}: states[${index}]`));
  const fused = m.fused as Manifest["fused"];
  if (fused) checkState(fused.window_state, `${where}: fused.window_state`);
  const input = m.input as Manifest["input"];
  if (!isShape(input.shape) || input.shape.length !== 5) {
    throw new ArtifactError(`${where}: input.shape must have 5 axes (${input.layout ?? "NCTHW"})`);
  }
  if (input.layout !== undefined && !["NCTHW", "NTHWC"].includes(input.layout)) {
    throw new ArtifactError(`${where}: input.layout '${input.layout}' is not supported (NCTHW or NTHWC); ` +
      "upgrade grw-edge-runtime");
  }
  for (const [what, dtype] of [["input", input.dtype], ["head", (m.head as Manifest["head"]).dtype]]) {
    if (dtype !== undefined && !SUPPORTED_DTYPES.includes(dtype as string)) {
      throw new ArtifactError(`${where}: ${what} dtype ${String(dtype)} is not supported by ` +
        "grw-edge-runtime (float32 only); export without --fp16-io");
    }
  }
  return data as Manifest;
}

function checkState(entry: unknown, where: string): void {
  if (!isObject(entry)) throw new ArtifactError(`${where} must be an object`);
  const state = entry as Record<string, unknown>;
  for (const [key, check] of Object.entries(STATE_KEYS)) {
    if (!check(state[key])) throw new ArtifactError(`${where} lacks a valid '${key}'`);
  }
  const permute = state.permute as unknown;
  if (permute !== undefined && permute !== null && !(isShape(permute) &&
      [...(permute as number[])].sort().join() === (state.shape as number[]).map((_, i) => i).join())) {
    throw new ArtifactError(`${where} has an invalid 'permute' ${JSON.stringify(permute)}`);
  }
  if (!SUPPORTED_DTYPES.includes(state.dtype as string)) {
    throw new ArtifactError(`${where} ('${String(state.name)}') has dtype ${String(state.dtype)}; ` +
      "grw-edge-runtime keeps float32 states: export without --fp16-io");
  }
}

/** The files a runtime must read: the graphs it runs, the labels and the self-test. */
export function requiredFiles(manifest: Manifest): string[] {
  const names = [manifest.step.file, manifest.head.file, manifest.labels];
  if (manifest.fused) names.push(manifest.fused.file);
  if (manifest.selftest) names.push(manifest.selftest.file);
  return names;
}

/** The (resize, crop) sizes of the preprocessing, from `input.preprocess`. */
export function preprocessSizes(manifest: Manifest): { resize: number; crop: number } {
  const resolution = manifest.input.shape[4];
  const preprocess = manifest.input.preprocess ?? ({} as Preprocess);
  const resize = preprocess.resize?.[0] ?? resolution;
  const crop = preprocess.center_crop?.[0] ?? resolution;
  return { resize, crop };
}
