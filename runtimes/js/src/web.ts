/**
 * grw-edge-runtime in browsers: artifacts from a URL, run by onnxruntime-web (ONNX artifacts)
 * or LiteRT.js (LiteRT artifacts), each on its wasm CPU kernels or WebGPU. The manifest's
 * `target` picks the library; only that one is imported.
 */
import { fetchSource } from "./artifact.js";
import { type EngineFactory, targetRuntime } from "./engine.js";
import { BackendUnavailableError, firstLine } from "./errors.js";
import { type LiteRtModule, openLiteRt } from "./litert.js";
import { type OrtModule, openOrt } from "./ort.js";
import { Session as CoreSession, type SessionOptions } from "./session.js";

export * from "./index.js";

export interface WebSessionOptions extends SessionOptions {
  /** 'wasm' (default: the CPU, XNNPACK for LiteRT.js), 'webgpu', or 'auto' (WebGPU when the browser has it). */
  backend?: "wasm" | "webgpu" | "auto";
  /** Where onnxruntime-web's .wasm/.mjs files are served (ort.env.wasm.wasmPaths), for ONNX artifacts. */
  wasmPaths?: string;
  /** Where @litertjs/core's wasm/ folder is served, for LiteRT artifacts (default: /litertjs/core/wasm/). */
  litertWasmPath?: string;
}

/** A package the artifact needs, imported when it is used, with a one-line error when it is not installed. */
async function importPackage<T>(name: string, load: () => Promise<T>, why: string): Promise<T> {
  try {
    return await load();
  } catch (error) {
    throw new BackendUnavailableError(`${why} needs the package '${name}', which cannot be imported ` +
      `(${firstLine(error)}): install it and map it in your bundler or import map (README, "LiteRT.js")`);
  }
}

/**
 * The onnxruntime-web build for a backend: the plain wasm build for 'wasm' (the builds with
 * WebGPU support run the CPU kernels several times slower), the WebGPU build for 'webgpu'.
 */
function ortBuild(backend: "wasm" | "webgpu") {
  return backend === "webgpu"
    ? importPackage("onnxruntime-web", () => import("onnxruntime-web/webgpu"), "an ONNX artifact on WebGPU")
    : importPackage("onnxruntime-web", () => import("onnxruntime-web/wasm"), "an ONNX artifact");
}

/** The engine for the artifact's target on `backend`. */
function webEngine(backend: "wasm" | "webgpu", options: WebSessionOptions): EngineFactory {
  return async (artifact) => {
    if (targetRuntime(artifact.manifest, ["onnxruntime", "litert"]) === "litert") {
      const lib = await importPackage("@litertjs/core", () => import("@litertjs/core"), "a LiteRT artifact");
      const wasmPath = new URL(options.litertWasmPath ?? "/litertjs/core/wasm/", globalThis.location?.href).href;
      return openLiteRt(artifact, lib as LiteRtModule, { accelerator: backend, threads: options.threads, wasmPath });
    }
    const ort = await ortBuild(backend);
    if (options.wasmPaths) ort.env.wasm.wasmPaths = options.wasmPaths;
    if (options.threads) ort.env.wasm.numThreads = options.threads;
    return openOrt(artifact, ort as unknown as OrtModule, { backend, fused: options.fused !== false });
  };
}

export class Session extends CoreSession {
  /**
   * Open the artifact below the base URL `artifact` (a folder holding manifest.json).
   * Wasm threads need a cross-origin isolated page (COOP/COEP headers) and are fixed by the
   * first session of the page.
   */
  static async create(artifact: string | URL, options: WebSessionOptions = {}): Promise<CoreSession> {
    const gpu = (globalThis.navigator as { gpu?: unknown } | undefined)?.gpu;
    const wanted = options.backend ?? "wasm";
    const backend = wanted === "auto" ? (gpu ? "webgpu" : "wasm") : wanted;
    if (backend === "webgpu" && !gpu) {
      throw new BackendUnavailableError("this browser has no WebGPU (navigator.gpu); use backend 'wasm'");
    }
    const base = new URL(String(artifact), globalThis.location?.href).href;
    return CoreSession.open(fetchSource(base), webEngine(backend, options), options);
  }
}
