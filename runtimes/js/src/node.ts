/** grw-edge-runtime on Node: artifacts from a directory, run by onnxruntime-node. */
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";

import * as ortNode from "onnxruntime-node";

import type { ArtifactSource } from "./artifact.js";
import { ArtifactError } from "./errors.js";
import { type OrtModule, ortOnly } from "./ort.js";
import { Session as CoreSession, type SessionOptions } from "./session.js";

export * from "./index.js";

/** The files of an artifact directory. */
export function directorySource(directory: string): ArtifactSource {
  const root = resolve(directory);
  return {
    where: root,
    async read(name: string): Promise<Uint8Array | null> {
      try {
        return new Uint8Array(await readFile(join(root, name)));
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || (code === "ENOTDIR" && name !== "manifest.json")) return null;
        if (code === "ENOTDIR") throw new ArtifactError(`no artifact directory at ${root}`);
        throw new ArtifactError(`cannot read ${join(root, name)}: ${(error as Error).message}`);
      }
    },
  };
}

export class Session extends CoreSession {
  /** Open the ONNX artifact directory `directory` (backend 'cpu' by default). */
  static async create(directory: string, options: SessionOptions = {}): Promise<CoreSession> {
    return CoreSession.open(directorySource(directory), ortOnly(ortNode as unknown as OrtModule, options, "cpu"),
      options);
  }
}
