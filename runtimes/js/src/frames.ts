/** Every kind of frame an app may hold, turned into pixels the preprocessing reads. */
import { InputShapeError } from "./errors.js";
import type { RawFrame } from "./preprocess.js";

/**
 * One frame: pixels from the DOM (ImageData, ImageBitmap, VideoFrame, a video or canvas
 * element), raw bytes (`{data, width, height, format}`), or an already preprocessed
 * Float32Array (3 x R x R per batch slot, channels first, values in [0, 1]).
 */
export type Frame =
  | RawFrame
  | ImageData
  | ImageBitmap
  | VideoFrame
  | HTMLVideoElement
  | HTMLCanvasElement
  | OffscreenCanvas
  | Float32Array;

type Drawable = ImageBitmap | VideoFrame | HTMLVideoElement | HTMLCanvasElement | OffscreenCanvas;

let scratch: OffscreenCanvas | HTMLCanvasElement | null = null;

/** The (width, height) of a drawable source, as decoded (not as displayed by CSS). */
function drawableSize(source: Drawable): [number, number] {
  if (typeof VideoFrame !== "undefined" && source instanceof VideoFrame) {
    return [source.displayWidth, source.displayHeight];
  }
  if (typeof HTMLVideoElement !== "undefined" && source instanceof HTMLVideoElement) {
    return [source.videoWidth, source.videoHeight];
  }
  return [(source as ImageBitmap).width, (source as ImageBitmap).height];
}

function isDrawable(frame: object): frame is Drawable {
  const kinds = ["ImageBitmap", "VideoFrame", "HTMLVideoElement", "HTMLCanvasElement", "OffscreenCanvas"];
  return kinds.some((kind) => {
    const type = (globalThis as Record<string, unknown>)[kind];
    return typeof type === "function" && frame instanceof (type as abstract new () => object);
  });
}

/** Draw a DOM source on a reused canvas and read its RGBA pixels. */
function readPixels(source: Drawable): RawFrame {
  const [width, height] = drawableSize(source);
  if (!width || !height) {
    throw new InputShapeError(`empty frame (${width}x${height}): the video has no picture yet`);
  }
  if (!scratch) {
    scratch = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(width, height)
      : document.createElement("canvas");
  }
  if (scratch.width !== width || scratch.height !== height) {
    scratch.width = width;
    scratch.height = height;
  }
  const context = scratch.getContext("2d", { willReadFrequently: true }) as
    CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D | null;
  if (!context) throw new InputShapeError("this browser cannot read pixels (no 2D canvas)");
  context.drawImage(source, 0, 0, width, height);
  return { data: context.getImageData(0, 0, width, height).data, width, height, format: "rgba" };
}

/** Raw pixels of a frame, or the Float32Array itself when it is already preprocessed. */
export function framePixels(frame: Frame): RawFrame | Float32Array {
  if (frame instanceof Float32Array) return frame;
  if (typeof frame !== "object" || frame === null) {
    throw new InputShapeError(`a frame must be an image, a video frame or pixels, got ${typeof frame}`);
  }
  if ("data" in frame && "width" in frame && "height" in frame) {
    const format = "format" in frame && typeof frame.format === "string" ? frame.format : "rgba";
    const { data, width, height } = frame as RawFrame;
    if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) {
      throw new InputShapeError("raw frame data must be a Uint8Array or Uint8ClampedArray " +
        "(for floats pass a preprocessed Float32Array)");
    }
    return { data, width, height, format: format as RawFrame["format"] };
  }
  if (isDrawable(frame)) return readPixels(frame);
  throw new InputShapeError(`unsupported frame type ${(frame as object).constructor?.name ?? "object"}`);
}
