/** grw-edge-runtime: the platform-neutral core (bring your own onnxruntime module). */
export { type ArtifactSource, type LoadedArtifact, fetchSource, loadArtifact } from "./artifact.js";
export {
  ArtifactError, BackendUnavailableError, GrwEdgeError, InputShapeError, NonFiniteOutputError,
} from "./errors.js";
export { type Frame, framePixels } from "./frames.js";
export { FORMAT_VERSION, type Manifest, type StateEntry, parseManifest } from "./manifest.js";
export { type RawFrame, preprocessFrame } from "./preprocess.js";
export { type SelfTestReport } from "./selftest.js";
export { type Engine, type EngineFactory, type StepOutput } from "./engine.js";
export { type OrtModule, openOrt } from "./ort.js";
export { type Classification, type Prediction, Session, type SessionOptions } from "./session.js";
