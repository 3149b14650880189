/**
 * The evaluation transform of grw-edge, equal to the Python runtime's (torchvision):
 * uint8 RGB(A) -> / 255 -> bilinear antialiased resize to (S, S) -> centre crop (R, R),
 * channels first. The resize reproduces torch's `interpolate(..., antialias=True)`
 * (separable triangle filter whose support grows with the downscale factor, weights
 * normalised per output pixel, computed in float32), width first then height.
 */
import { InputShapeError } from "./errors.js";

/** A raw camera frame: 8-bit pixels, row-major, RGBA or RGB. */
export interface RawFrame {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  format: "rgba" | "rgb";
}

const f32 = Math.fround;

/** Taps of one output pixel: the first input index and the normalised weights. */
interface Taps {
  start: Int32Array;
  size: Int32Array;
  weights: Float32Array;
  stride: number;
}

/** torch's `_compute_indices_min_size_weights_aa` for the bilinear filter, float32 arithmetic. */
function antialiasTaps(inSize: number, outSize: number, first: number, count: number): Taps {
  const scale = f32(inSize / outSize);
  const support = scale >= 1 ? scale : 1;
  const invscale = scale >= 1 ? f32(1 / scale) : 1;
  const stride = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(count);
  const size = new Int32Array(count);
  const weights = new Float32Array(count * stride);
  for (let k = 0; k < count; k++) {
    const i = first + k;
    const center = f32(scale * f32(i + 0.5));
    const xmin = Math.max(Math.trunc(f32(f32(center - support) + 0.5)), 0);
    const xsize = Math.min(Math.trunc(f32(f32(center + support) + 0.5)), inSize) - xmin;
    let total = 0;
    for (let j = 0; j < xsize; j++) {
      const x = Math.abs(f32(f32(f32(j + xmin - center) + 0.5) * invscale));
      const w = x < 1 ? f32(1 - x) : 0;
      weights[k * stride + j] = w;
      total = f32(total + w);
    }
    if (total !== 0) for (let j = 0; j < xsize; j++) weights[k * stride + j] = f32(weights[k * stride + j] / total);
    start[k] = xmin;
    size[k] = xsize;
  }
  return { start, size, weights, stride };
}

/** torchvision's centre-crop offset: Python's round((S - R) / 2), halves to even. */
function cropOffset(size: number, crop: number): number {
  const half = (size - crop) / 2;
  const floor = Math.floor(half);
  return half - floor === 0.5 ? (floor % 2 === 0 ? floor : floor + 1) : Math.round(half);
}

/** Check a raw frame's geometry; one readable line for an empty or inconsistent frame. */
export function checkRawFrame(frame: RawFrame): number {
  const { width, height, format, data } = frame;
  if (format !== "rgba" && format !== "rgb") {
    throw new InputShapeError(`raw frames are 'rgba' or 'rgb', got format '${String(format)}'`);
  }
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0) {
    throw new InputShapeError(`frame width and height must be whole numbers, got ${width}x${height}`);
  }
  if (width === 0 || height === 0) throw new InputShapeError(`empty frame (${width}x${height})`);
  const channels = format === "rgba" ? 4 : 3;
  if (data.length !== width * height * channels) {
    throw new InputShapeError(`a ${width}x${height} ${format} frame has ${width * height * channels} ` +
      `bytes, got ${data.length}`);
  }
  return channels;
}

/**
 * Preprocess one raw frame into `out` at `offset`: float32 (3, crop, crop) in [0, 1].
 * `resize` is S of the (S, S) resize, `crop` is R.
 */
export function preprocessFrame(frame: RawFrame, resize: number, crop: number,
  out: Float32Array = new Float32Array(3 * crop * crop), offset = 0): Float32Array {
  const channels = checkRawFrame(frame);
  if (resize < crop) throw new InputShapeError(`resize ${resize} is smaller than the crop ${crop}`);
  const { width, height, data } = frame;
  const left = cropOffset(resize, crop);
  const top = cropOffset(resize, crop);
  const h = antialiasTaps(width, resize, left, crop);
  const v = antialiasTaps(height, resize, top, crop);
  // width pass over every input row: (height, crop, 3), values already divided by 255
  const rows = new Float32Array(height * crop * 3);
  for (let y = 0; y < height; y++) {
    const rowBase = y * width * channels;
    for (let k = 0; k < crop; k++) {
      let r = 0, g = 0, b = 0;
      const x0 = h.start[k], wBase = k * h.stride;
      for (let j = 0; j < h.size[k]; j++) {
        const w = h.weights[wBase + j];
        const p = rowBase + (x0 + j) * channels;
        r = f32(r + f32(w * f32(data[p] / 255)));
        g = f32(g + f32(w * f32(data[p + 1] / 255)));
        b = f32(b + f32(w * f32(data[p + 2] / 255)));
      }
      const q = (y * crop + k) * 3;
      rows[q] = r; rows[q + 1] = g; rows[q + 2] = b;
    }
  }
  // height pass, written channels first
  const plane = crop * crop;
  for (let k = 0; k < crop; k++) {
    const y0 = v.start[k], wBase = k * v.stride;
    for (let x = 0; x < crop; x++) {
      let r = 0, g = 0, b = 0;
      for (let j = 0; j < v.size[k]; j++) {
        const w = v.weights[wBase + j];
        const q = ((y0 + j) * crop + x) * 3;
        r = f32(r + f32(w * rows[q]));
        g = f32(g + f32(w * rows[q + 1]));
        b = f32(b + f32(w * rows[q + 2]));
      }
      const o = offset + k * crop + x;
      out[o] = r; out[o + plane] = g; out[o + 2 * plane] = b;
    }
  }
  return out;
}
