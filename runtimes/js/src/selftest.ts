/**
 * The artifact's self-test (`selftest.bin`, manifest field `selftest`): raw uint8 frames at a
 * camera-like size, the reference embeddings of every frame and the logits after the last,
 * little-endian arrays back to back at offsets that are multiples of 4 bytes.
 */
import type { LoadedArtifact } from "./artifact.js";
import { ArtifactError } from "./errors.js";
import type { SelfTestArray } from "./manifest.js";
import type { RawFrame } from "./preprocess.js";

export interface SelfTestData {
  frames: RawFrame[];
  /** (F, E) reference embeddings, one row per frame. */
  embeddings: Float32Array;
  /** (C) reference logits after the last frame. */
  logits: Float32Array;
  tolerance: { embeddings: number; logits: number; top1: boolean };
}

export interface SelfTestReport {
  passed: boolean;
  frames: number;
  maxAbsEmbeddings: number;
  maxAbsLogits: number;
  top1: { expected: number; got: number };
  /** One line per bar that was missed. */
  problems: string[];
}

const SIZES = { uint8: 1, float32: 4 } as const;

/** Read and check the self-test arrays of a loaded artifact. */
export function readSelfTest(artifact: LoadedArtifact): SelfTestData {
  const entry = artifact.manifest.selftest;
  if (!entry) {
    throw new ArtifactError(`${artifact.where} has no self-test (manifest field 'selftest'); ` +
      "re-export it with a grw-edge that writes selftest.bin");
  }
  const bytes = artifact.files.get(entry.file)!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const where = `${artifact.where}/${entry.file}`;
  const span = (array: SelfTestArray, name: string, dtype: keyof typeof SIZES): number => {
    const count = array.shape.reduce((a, d) => a * d, 1);
    if (array.dtype !== dtype || array.offset % 4 !== 0 || array.offset + count * SIZES[dtype] > bytes.length) {
      throw new ArtifactError(`${where}: '${name}' (${array.dtype} ${JSON.stringify(array.shape)} at ` +
        `${array.offset}) does not fit the file of ${bytes.length} bytes; re-export the artifact`);
    }
    return count;
  };
  const floats = (array: SelfTestArray, name: string): Float32Array => {
    const out = new Float32Array(span(array, name, "float32"));
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(array.offset + 4 * i, true);
    return out;
  };
  span(entry.frames, "frames", "uint8");
  const [count, height, width, channels] = entry.frames.shape;
  if (channels !== 3) throw new ArtifactError(`${where}: self-test frames must be (F, H, W, 3)`);
  const frameBytes = height * width * 3;
  const frames = Array.from({ length: count }, (_, i): RawFrame => ({
    data: bytes.subarray(entry.frames.offset + i * frameBytes, entry.frames.offset + (i + 1) * frameBytes),
    width, height, format: "rgb",
  }));
  return {
    frames,
    embeddings: floats(entry.embeddings, "embeddings"),
    logits: floats(entry.logits, "logits"),
    tolerance: { embeddings: entry.tolerance.embeddings, logits: entry.tolerance.logits,
      top1: entry.tolerance.top1 ?? true },
  };
}

/** Largest |a - b| where `got` holds B rows that must each equal `expected`. */
export function maxAbsDiffRows(got: Float32Array, expected: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - expected[i % expected.length]);
    worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
  }
  return worst;
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** The report, from the largest differences and the top-1 classes. */
export function judge(data: SelfTestData, maxAbsEmbeddings: number, logits: Float32Array): SelfTestReport {
  const classes = data.logits.length;
  const maxAbsLogits = maxAbsDiffRows(logits, data.logits);
  const top1 = { expected: argmax(data.logits), got: argmax(logits.subarray(0, classes)) };
  const problems: string[] = [];
  if (!(maxAbsEmbeddings <= data.tolerance.embeddings)) {
    problems.push(`embeddings differ by ${maxAbsEmbeddings.toExponential(2)} > ${data.tolerance.embeddings}`);
  }
  if (!(maxAbsLogits <= data.tolerance.logits)) {
    problems.push(`logits differ by ${maxAbsLogits.toExponential(2)} > ${data.tolerance.logits}`);
  }
  if (data.tolerance.top1 && top1.expected !== top1.got) {
    problems.push(`top-1 is class ${top1.got}, the reference's ${top1.expected}`);
  }
  return { passed: problems.length === 0, frames: data.frames.length, maxAbsEmbeddings, maxAbsLogits,
    top1, problems };
}
