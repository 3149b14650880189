/** grw-edge-runtime in React Native apps: bundled artifact files, run by onnxruntime-react-native. */
import * as ortNative from "onnxruntime-react-native";

import { type ArtifactSource, fetchSource } from "./artifact.js";
import { ArtifactError } from "./errors.js";
import { type OrtModule, ortOnly } from "./ort.js";
import { Session as CoreSession, type SessionOptions } from "./session.js";

export * from "./index.js";

export interface NativeSessionOptions extends SessionOptions {
  /** 'cpu' (default), 'xnnpack', 'coreml' (iOS) or 'nnapi' (Android). */
  backend?: "cpu" | "xnnpack" | "coreml" | "nnapi";
}

/**
 * An artifact bundled with the app: each file name (manifest.json, step.onnx, head.onnx,
 * labels.txt, selftest.bin, ...) mapped to its asset URI, e.g.
 * `Image.resolveAssetSource(require("./a0s/step.onnx")).uri`; manifest.json may be the object
 * Metro makes of `require("./a0s/manifest.json")`.
 */
export type BundledArtifact = Record<string, string | object>;

function bundledSource(files: BundledArtifact): ArtifactSource {
  const urls = Object.fromEntries(Object.entries(files).filter(([, v]) => typeof v === "string")) as
    Record<string, string>;
  const remote = fetchSource("bundled artifact", urls);
  return {
    where: remote.where,
    async read(name: string): Promise<Uint8Array | null> {
      const value = files[name];
      return typeof value === "object" ? new TextEncoder().encode(JSON.stringify(value)) : remote.read(name);
    },
  };
}

export class Session extends CoreSession {
  /** Open a bundled artifact, or any `ArtifactSource` (e.g. files read with expo-file-system). */
  static async create(artifact: BundledArtifact | ArtifactSource,
    options: NativeSessionOptions = {}): Promise<CoreSession> {
    const source = typeof artifact.read === "function" ? artifact as ArtifactSource
      : bundledSource(artifact as BundledArtifact);
    if (source !== artifact && !(artifact as BundledArtifact)["manifest.json"]) {
      throw new ArtifactError("the bundled artifact has no manifest.json");
    }
    return CoreSession.open(source, ortOnly(ortNative as unknown as OrtModule, options, "cpu"), options);
  }
}
