/** User-facing errors: each carries one line that says what is wrong and what to do. */

/** Base class of every error a user can cause and fix (mirrors the Python `GrwEdgeError`). */
export class GrwEdgeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** An artifact that is missing, damaged, or does not match its manifest. */
export class ArtifactError extends GrwEdgeError {}

/** A frame or tensor whose shape, type or values do not fit what the model expects. */
export class InputShapeError extends GrwEdgeError {}

/** A step that returned NaN or infinity; the session kept its previous states. */
export class NonFiniteOutputError extends GrwEdgeError {}

/** A runtime backend (ONNX Runtime package, execution provider) that cannot run here. */
export class BackendUnavailableError extends GrwEdgeError {}

/** The first line of whatever an underlying library threw, for wrapping in our errors. */
export function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0];
}
