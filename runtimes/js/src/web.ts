/** grw-edge-runtime in browsers: artifacts from a URL, run by onnxruntime-web (wasm or WebGPU). */
import { fetchSource } from "./artifact.js";
import { BackendUnavailableError } from "./errors.js";
import { type OrtModule, Session as CoreSession, type SessionOptions } from "./session.js";

export * from "./index.js";

export interface WebSessionOptions extends SessionOptions {
  /** 'wasm' (default), 'webgpu', or 'auto' (WebGPU when the browser has it). */
  backend?: "wasm" | "webgpu" | "auto";
  /** Where onnxruntime-web's .wasm/.mjs files are served (ort.env.wasm.wasmPaths). */
  wasmPaths?: string;
}

/**
 * The onnxruntime-web build for a backend: the plain wasm build for 'wasm' (the builds with
 * WebGPU support run the CPU kernels several times slower), the WebGPU build for 'webgpu'.
 */
async function ortBuild(backend: "wasm" | "webgpu") {
  return backend === "webgpu" ? import("onnxruntime-web/webgpu") : import("onnxruntime-web/wasm");
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
    const ort = await ortBuild(backend);
    if (options.wasmPaths) ort.env.wasm.wasmPaths = options.wasmPaths;
    if (options.threads) ort.env.wasm.numThreads = options.threads;
    const base = new URL(String(artifact), globalThis.location?.href).href;
    return CoreSession.open(fetchSource(base), ort as unknown as OrtModule,
      { ...options, backend, threads: undefined });
  }
}
