/** grw-edge-runtime in browsers: artifacts from a URL, run by onnxruntime-web (wasm or WebGPU). */
import * as ortWeb from "onnxruntime-web";

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

export class Session extends CoreSession {
  /**
   * Open the artifact below the base URL `artifact` (a folder holding manifest.json).
   * Wasm threads need a cross-origin isolated page (COOP/COEP headers) and are fixed by the
   * first session of the page.
   */
  static async create(artifact: string | URL, options: WebSessionOptions = {}): Promise<CoreSession> {
    let backend = options.backend ?? "wasm";
    const gpu = (globalThis.navigator as { gpu?: unknown } | undefined)?.gpu;
    if (backend === "auto") backend = gpu ? "webgpu" : "wasm";
    if (backend === "webgpu" && !gpu) {
      throw new BackendUnavailableError("this browser has no WebGPU (navigator.gpu); use backend 'wasm'");
    }
    if (options.wasmPaths) ortWeb.env.wasm.wasmPaths = options.wasmPaths;
    if (options.threads) ortWeb.env.wasm.numThreads = options.threads;
    const base = new URL(String(artifact), globalThis.location?.href).href;
    return CoreSession.open(fetchSource(base), ortWeb as unknown as OrtModule,
      { ...options, backend, threads: undefined });
  }
}
