// The artifact bundled with the app: copy an exported artifact folder to ./assets/a0s and add
// "onnx", "txt" and "bin" to Metro's resolver.assetExts (metro.config.js). Metro bundles
// manifest.json as a JSON module; every other file is an asset URI.
import { Image } from "react-native";

const uri = (asset: number): string => Image.resolveAssetSource(asset).uri;

export const artifactFiles: Record<string, string | object> = {
  "manifest.json": require("./assets/a0s/manifest.json"),
  "step.onnx": uri(require("./assets/a0s/step.onnx")),
  "head.onnx": uri(require("./assets/a0s/head.onnx")),
  "labels.txt": uri(require("./assets/a0s/labels.txt")),
  "selftest.bin": uri(require("./assets/a0s/selftest.bin")),
};
