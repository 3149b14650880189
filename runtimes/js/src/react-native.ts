/** grw-edge-runtime in React Native apps: bundled artifact files, run by onnxruntime-react-native. */
import * as ortNative from "onnxruntime-react-native";

import { fetchSource } from "./artifact.js";
import { ArtifactError } from "./errors.js";
import { type OrtModule, Session as CoreSession, type SessionOptions } from "./session.js";

export * from "./index.js";

export interface NativeSessionOptions extends SessionOptions {
  /** 'cpu' (default), 'xnnpack', 'coreml' (iOS) or 'nnapi' (Android). */
  backend?: "cpu" | "xnnpack" | "coreml" | "nnapi";
}

export class Session extends CoreSession {
  /**
   * Open an artifact bundled with the app: `files` maps each file name of the artifact
   * (manifest.json, step.onnx, head.onnx, labels.txt, ...) to its asset URI (e.g. from
   * `Image.resolveAssetSource(require('./a0s/step.onnx')).uri` or expo-asset's `localUri`).
   */
  static async create(files: Record<string, string>, options: NativeSessionOptions = {}): Promise<CoreSession> {
    if (!files["manifest.json"]) throw new ArtifactError("the bundled artifact has no manifest.json asset");
    return CoreSession.open(fetchSource("bundled artifact", files), ortNative as unknown as OrtModule,
      { backend: "cpu", ...options });
  }
}
