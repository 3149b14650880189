/**
 * One streaming session over ONNX Runtime, whichever package provides it (web, Node,
 * React Native): the four verbs of the Python runtime (`reset`, `push`, `classify`,
 * `selfTest`). Preprocessing, the states, the embedding window and the head live here once;
 * the platform entries only say where files come from and which `ort` module runs them.
 */
import type * as ort from "onnxruntime-common";

import { type ArtifactSource, type LoadedArtifact, loadArtifact } from "./artifact.js";
import {
  ArtifactError, BackendUnavailableError, GrwEdgeError, InputShapeError, NonFiniteOutputError,
  firstLine,
} from "./errors.js";
import { type Frame, framePixels } from "./frames.js";
import { type Manifest, type StateEntry, preprocessSizes } from "./manifest.js";
import { type RawFrame, preprocessFrame } from "./preprocess.js";
import { type SelfTestReport, judge, maxAbsDiffRows, readSelfTest } from "./selftest.js";

/** The part of an onnxruntime package (web, node, react-native) a session uses. */
export interface OrtModule {
  InferenceSession: {
    create(model: Uint8Array, options?: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession>;
  };
  Tensor: typeof ort.Tensor;
}

export interface SessionOptions {
  /** Execution provider: 'wasm' or 'webgpu' (web), 'cpu' (Node), 'cpu'/'xnnpack'/'coreml'/'nnapi' (React Native). */
  backend?: string;
  /** Intra-op threads (on the web: wasm threads, set before the first session). */
  threads?: number;
  /** Run the artifact's fused graph (step + head) when it has one; default true. */
  fused?: boolean;
  /** What a step with NaN/infinite results does: throw (default) or reset the stream. */
  onNonfinite?: "error" | "reset";
  /** Check every file's sha256 against the manifest when opening. */
  verify?: boolean;
  /** Number of {label, score} pairs `classify()` returns; default 5. */
  topK?: number;
}

export interface Prediction {
  label: string;
  index: number;
  /** Softmax probability. */
  score: number;
}

export interface Classification {
  /** (B, classes) logits, row-major. */
  logits: Float32Array;
  /** The best `topK` classes of the first batch slot. */
  top: Prediction[];
}

type Feeds = Record<string, ort.Tensor>;

/** A graph and the manifest entries of the states it carries. */
interface Graph {
  session: ort.InferenceSession;
  states: StateEntry[];
  embeddings: string;
  logits?: string;
}

const FRAME_MARGIN = 1e-3;

export class Session {
  /** Frames whose step returned NaN or infinity since the session was created. */
  faults = 0;
  readonly manifest: Manifest;
  readonly labels: string[];
  readonly backend: string;

  private readonly batch: number;
  private readonly resolution: number;
  private readonly resize: number;
  private readonly stepFrames: number;
  private readonly frameSize: number;
  private states = new Map<string, ort.Tensor>();
  private window: Float32Array[] = [];
  private clipFrames: Float32Array[] = [];
  private clipEmbeddings: Float32Array | null = null;
  private fusedLogits: Float32Array | null = null;
  private seen = 0;
  private generation = 0;  // bumped by reset(): a step still running then belongs to the old stream
  private queue: Promise<unknown> = Promise.resolve();

  protected constructor(
    private readonly ort: OrtModule,
    private readonly artifact: LoadedArtifact,
    private readonly graph: Graph,
    private readonly head: ort.InferenceSession,
    private readonly options: SessionOptions,
  ) {
    this.manifest = artifact.manifest;
    this.labels = artifact.labels;
    this.backend = options.backend ?? "cpu";
    const [b, , t, r] = this.manifest.input.shape;
    this.batch = b;
    this.resolution = r;
    this.stepFrames = this.streaming ? t : 1;
    this.resize = preprocessSizes(this.manifest).resize;
    this.frameSize = 3 * r * r;
    this.reset();
  }

  /** Open an artifact from `source` with the given onnxruntime package. */
  static async open(source: ArtifactSource, ortModule: OrtModule,
    options: SessionOptions = {}): Promise<Session> {
    const artifact = await loadArtifact(source, options.verify ?? false);
    const { manifest, where } = artifact;
    const useFused = Boolean(manifest.fused) && options.fused !== false && manifest.mode === "streaming";
    const sessionOptions = graphOptions(options, useFused ? [...manifest.states, manifest.fused!.window_state]
      : manifest.states);
    const open = async (file: string): Promise<ort.InferenceSession> => {
      try {
        return await ortModule.InferenceSession.create(artifact.files.get(file)!, sessionOptions);
      } catch (error) {
        const message = firstLine(error);
        if (/backend|execution provider|webgpu/i.test(message)) {
          throw new BackendUnavailableError(`backend '${options.backend}' cannot run here: ${message}`);
        }
        throw new ArtifactError(`${where}/${file} cannot be loaded by onnxruntime: ${message}`);
      }
    };
    let graph: Graph;
    if (useFused) {
      const fused = manifest.fused!;
      graph = { session: await open(fused.file), states: [...manifest.states, fused.window_state],
        embeddings: fused.outputs.embeddings, logits: fused.outputs.logits };
    } else {
      graph = { session: await open(manifest.step.file), states: manifest.states,
        embeddings: manifest.step.outputs.embeddings };
    }
    checkGraph(manifest, graph, useFused ? manifest.fused!.file : manifest.step.file, where);
    const head = await open(manifest.head.file);
    return new Session(ortModule, artifact, graph, head, options);
  }

  get streaming(): boolean {
    return this.manifest.mode === "streaming";
  }

  /** Bytes the states take (the embedding window included on the fused graph). */
  get stateBytes(): number {
    return this.graph.states.reduce((sum, s) => sum + 4 * s.shape.reduce((a, d) => a * d, 1), 0);
  }

  /** Frames pushed since the last reset. */
  get frames(): number {
    return this.seen;
  }

  /** Forget every frame: initial states, empty window. */
  reset(): void {
    this.generation += 1;
    this.window = [];
    this.clipFrames = [];
    this.clipEmbeddings = null;
    this.fusedLogits = null;
    this.seen = 0;
    if (!this.streaming) return;
    const old = [...this.states.values()];  // GPU states: freed once a running step is done
    this.queue = this.queue.then(() => old.forEach(disposeTensor));
    this.states = new Map(this.graph.states.map((state) => {
      const size = state.shape.reduce((a, d) => a * d, 1);
      const data = new Float32Array(size).fill(state.init);
      return [state.input, new this.ort.Tensor("float32", data, state.shape)];
    }));
  }

  /**
   * Feed one step of frames; resolves to their embeddings (B, t, E) flattened, or null for a
   * clip-mode artifact (which only collects frames) and for a push that reset() overtook.
   * The frame is read (and preprocessed) at once, the step runs after the calls before it.
   * A batch-B artifact takes an array of B raw frames, or one Float32Array of
   * B x 3 x t x R x R preprocessed values.
   */
  push(frame: Frame | Frame[]): Promise<Float32Array | null> {
    const generation = this.generation;
    let input: Float32Array;
    try {
      input = this.stepInput(frame);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.exclusive(() => this.pushNow(input, generation));
  }

  private async pushNow(input: Float32Array, generation: number): Promise<Float32Array | null> {
    if (generation !== this.generation) return null;  // reset() was called after this push
    if (!this.streaming) {
      const perFrame = this.batch * this.frameSize;
      const t = input.length / perFrame;
      for (let i = 0; i < t; i++) this.clipFrames.push(sliceFrames(input, this.batch, t, i, this.frameSize));
      this.clipFrames = this.clipFrames.slice(-this.manifest.frames_per_clip);
      this.clipEmbeddings = null;
      this.seen += t;
      return null;
    }
    return this.step(input, generation);
  }

  /** Logits of the head over the last N embeddings (fewer at the start), and the top-k. */
  classify(): Promise<Classification> {
    return this.exclusive(() => this.classifyNow());
  }

  private async classifyNow(): Promise<Classification> {
    let logits: Float32Array;
    if (this.fusedLogits && this.seen >= this.manifest.frames_per_clip) {
      logits = this.fusedLogits;  // the fused graph's head saw exactly the last N embeddings
    } else {
      logits = await this.runHead(await this.heldEmbeddings());
    }
    return { logits, top: this.topK(logits.subarray(0, this.manifest.num_classes)) };
  }

  /** Run the artifact's self-test on this device (resets the session before and after). */
  selfTest(): Promise<SelfTestReport> {
    return this.exclusive(() => this.selfTestNow());
  }

  /** Calls run one at a time, in order, so that overlapping pushes cannot mix their states. */
  private exclusive<T>(call: () => Promise<T>): Promise<T> {
    const result = this.queue.then(call, call);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async selfTestNow(): Promise<SelfTestReport> {
    const data = readSelfTest(this.artifact);
    const e = this.manifest.embed_dim;
    this.reset();
    try {
      let worst = 0;
      for (let i = 0; i < data.frames.length; i += this.stepFrames) {
        const steps = data.frames.slice(i, i + this.stepFrames);
        const input = this.stepFrames === 1 ? Array(this.batch).fill(steps[0]) : this.preprocessSteps(steps);
        const embeddings = await this.pushNow(this.stepInput(input), this.generation);
        if (embeddings) worst = Math.max(worst, maxAbsDiffRows(embeddings, data.embeddings.subarray(i * e, (i + steps.length) * e)));
      }
      if (!this.streaming) worst = maxAbsDiffRows((await this.heldEmbeddings()).data, data.embeddings);
      return judge(data, worst, (await this.classifyNow()).logits);
    } finally {
      this.reset();
    }
  }

  /** Free the onnxruntime sessions. */
  async release(): Promise<void> {
    for (const tensor of this.states.values()) disposeTensor(tensor);
    await this.graph.session.release();
    await this.head.release();
  }

  // ------------------------------------------------------------------ frames

  /** The frame(s) as the graph's float32 input (B, 3, t, R, R), checked. */
  private stepInput(frame: Frame | Frame[]): Float32Array {
    const frames = Array.isArray(frame) ? frame : [frame];
    const { batch: b, resolution: r, stepFrames: t } = this;
    if (frames.length === 1 && frames[0] instanceof Float32Array) return this.checkFloat(frames[0]);
    if (frames.length !== b) {
      throw new InputShapeError(`this artifact takes ${b} frame(s) per push (batch ${b}), got ${frames.length}`);
    }
    if (t !== 1) {
      throw new InputShapeError(`this artifact takes ${t} frames per step: push preprocessed ` +
        `Float32Array frames of ${b} x 3 x ${t} x ${r} x ${r} values`);
    }
    const out = new Float32Array(b * this.frameSize);
    frames.forEach((one, i) => {
      const pixels = framePixels(one);
      if (pixels instanceof Float32Array) {
        throw new InputShapeError("mix of raw and preprocessed frames; push one Float32Array for the batch");
      }
      preprocessFrame(pixels, this.resize, r, out, i * this.frameSize);
    });
    return out;
  }

  /** t raw frames -> (B, 3, t, R, R), the same frames in every batch slot (the self-test). */
  private preprocessSteps(frames: RawFrame[]): Float32Array {
    const perFrame = frames.map((frame) => {
      const one = preprocessFrame(frame, this.resize, this.resolution);
      const block = new Float32Array(this.batch * this.frameSize);
      for (let k = 0; k < this.batch; k++) block.set(one, k * this.frameSize);
      return block;
    });
    return stackChannels(perFrame, this.batch, this.frameSize);
  }

  /** A preprocessed frame: its size, and finite values in [0, 1] (a 1e-3 margin). */
  private checkFloat(data: Float32Array): Float32Array {
    const perFrame = this.batch * this.frameSize;
    if (data.length === 0) throw new InputShapeError("empty frame (0 values)");
    const r = this.resolution;
    const ok = this.streaming ? data.length === perFrame * this.stepFrames : data.length % perFrame === 0;
    if (!ok) {
      throw new InputShapeError(`expected a preprocessed frame of ${this.batch} x 3 x ` +
        `${this.streaming ? this.stepFrames : "t"} x ${r} x ${r} float32 values, got ${data.length}`);
    }
    let low = Infinity, high = -Infinity;
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (!Number.isFinite(v)) throw new InputShapeError(`the frame holds a non-finite value (${v}) at ${i}`);
      if (v < low) low = v;
      if (v > high) high = v;
    }
    if (low < -FRAME_MARGIN || high > 1 + FRAME_MARGIN) {
      throw new InputShapeError(`preprocessed frames must lie in [0, 1], got values in ` +
        `[${low.toPrecision(4)}, ${high.toPrecision(4)}]: divide uint8 pixels by 255`);
    }
    return data;
  }

  // ------------------------------------------------------------------ graphs

  /** One streaming step: run, check, then hand the outputs to the next step's inputs. */
  private async step(input: Float32Array, generation: number): Promise<Float32Array | null> {
    const { manifest, graph } = this;
    const shape = [this.batch, 3, this.stepFrames, this.resolution, this.resolution];
    const feeds: Feeds = { [manifest.input.name]: new this.ort.Tensor("float32", input, shape) };
    for (const state of graph.states) feeds[state.input] = this.states.get(state.input)!;
    const results = await this.run(graph.session, feeds, manifest.step.file);
    const embeddings = results[graph.embeddings].data as Float32Array;
    const fresh = graph.states.map((state) => results[state.output]);
    if (generation !== this.generation) {  // reset() while the step ran: the old stream's result
      fresh.forEach(disposeTensor);
      return null;
    }
    const bad = !allFinite(embeddings) || fresh.some((t) => t.location === "cpu" && !allFinite(t.data as Float32Array))
      || (graph.logits !== undefined && !allFinite(results[graph.logits].data as Float32Array));
    if (bad) {
      fresh.forEach(disposeTensor);
      this.faults += 1;
      const message = `the step returned non-finite values (fault ${this.faults}); the states are unchanged`;
      if (this.options.onNonfinite === "reset") {
        console.warn(`grw-edge-runtime: ${message}; resetting the stream`);
        this.reset();
        return null;
      }
      throw new NonFiniteOutputError(`${message}: check the frames, or open the session with onNonfinite: 'reset'`);
    }
    graph.states.forEach((state, i) => {
      disposeTensor(this.states.get(state.input)!);
      this.states.set(state.input, fresh[i]);
    });
    const t = this.stepFrames, e = manifest.embed_dim;
    for (let i = 0; i < t; i++) this.window.push(sliceEmbeddings(embeddings, this.batch, t, i, e));
    this.window = this.window.slice(-manifest.frames_per_clip);
    if (graph.logits !== undefined) this.fusedLogits = results[graph.logits].data as Float32Array;
    this.seen += t;
    return embeddings;
  }

  /** (B, n, E) embeddings for the head: the window, or the held clip's (clip mode). */
  private async heldEmbeddings(): Promise<{ data: Float32Array; frames: number }> {
    const e = this.manifest.embed_dim;
    if (this.streaming) {
      if (this.window.length === 0) throw new InputShapeError("push at least one frame before classify()");
      return { data: stackFrames(this.window, this.batch, e), frames: this.window.length };
    }
    if (this.clipFrames.length === 0) throw new InputShapeError("push at least one frame before classify()");
    const n = this.clipFrames.length;
    if (!this.clipEmbeddings) {
      const clip = stackChannels(this.clipFrames, this.batch, this.frameSize);
      const shape = [this.batch, 3, n, this.resolution, this.resolution];
      const feeds = { [this.manifest.input.name]: new this.ort.Tensor("float32", clip, shape) };
      const results = await this.run(this.graph.session, feeds, this.manifest.step.file);
      this.clipEmbeddings = results[this.graph.embeddings].data as Float32Array;
    }
    return { data: this.clipEmbeddings, frames: n };
  }

  private async runHead(embeddings: { data: Float32Array; frames: number }): Promise<Float32Array> {
    const { head } = this.manifest;
    const shape = [this.batch, embeddings.frames, this.manifest.embed_dim];
    const results = await this.run(this.head, { [head.input]: new this.ort.Tensor("float32", embeddings.data, shape) },
      head.file);
    return results[head.output].data as Float32Array;
  }

  private async run(session: ort.InferenceSession, feeds: Feeds, file: string): Promise<ort.InferenceSession.ReturnType> {
    try {
      return await session.run(feeds);
    } catch (error) {
      throw new GrwEdgeError(`onnxruntime failed running ${file}: ${firstLine(error)}`);
    }
  }

  private topK(logits: Float32Array): Prediction[] {
    let max = -Infinity;
    for (const v of logits) max = Math.max(max, v);
    let total = 0;
    for (const v of logits) total += Math.exp(v - max);
    const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
    return order.slice(0, this.options.topK ?? 5).map((index) => ({
      index, label: this.labels[index] ?? String(index), score: Math.exp(logits[index] - max) / total,
    }));
  }
}

/** Session options for the graphs; on WebGPU the states stay on the GPU between steps. */
function graphOptions(options: SessionOptions, states: StateEntry[]): ort.InferenceSession.SessionOptions {
  const backend = options.backend ?? "cpu";
  const result: ort.InferenceSession.SessionOptions = {
    executionProviders: [backend], graphOptimizationLevel: "all",
  };
  if (options.threads) {
    result.intraOpNumThreads = options.threads;
    result.interOpNumThreads = 1;
  }
  if (backend === "webgpu") {
    result.preferredOutputLocation = Object.fromEntries(states.map((s) => [s.output, "gpu-buffer"]));
  }
  return result;
}

/** The manifest and the graph must name the same inputs and outputs, states the same shapes. */
function checkGraph(manifest: Manifest, graph: Graph, file: string, where: string): void {
  const session = graph.session;
  const inputs = new Set(session.inputNames);
  const outputs = new Set(session.outputNames);
  const expectedInputs = [manifest.input.name, ...(manifest.mode === "streaming" ? graph.states.map((s) => s.input) : [])];
  const expectedOutputs = [graph.embeddings, ...(graph.logits ? [graph.logits] : []),
    ...graph.states.map((s) => s.output)];
  const problems = [
    ...expectedInputs.filter((n) => !inputs.has(n)).map((n) => `${file} has no input '${n}'`),
    ...[...inputs].filter((n) => !expectedInputs.includes(n)).map((n) => `${file} input '${n}' is not in the manifest`),
    ...expectedOutputs.filter((n) => !outputs.has(n)).map((n) => `${file} has no output '${n}'`),
  ];
  if (problems.length) {
    throw new ArtifactError(`${where}: the manifest does not match the graph (${problems[0]}); re-export the artifact`);
  }
  const metadata = (session as { inputMetadata?: readonly ort.InferenceSession.ValueMetadata[] }).inputMetadata;
  if (!metadata) return;
  const byName = new Map(metadata.map((m) => [m.name, m]));
  for (const state of graph.states) {
    const meta = byName.get(state.input);
    if (!meta || !meta.isTensor) continue;
    if (meta.type !== state.dtype) {
      throw new ArtifactError(`state '${state.name}': the manifest says dtype ${state.dtype}, the graph ${meta.type}`);
    }
    const shape = meta.shape;
    const same = shape.length === state.shape.length &&
      shape.every((d, i) => typeof d !== "number" || d === state.shape[i]);
    if (!same) {
      throw new ArtifactError(`state '${state.name}': the manifest says shape [${state.shape}], the graph [${shape}]`);
    }
  }
}

/** No NaN or infinity in `data` (x * 0 is NaN exactly for those; one sum, no branch per value). */
function allFinite(data: Float32Array): boolean {
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum += data[i] * 0;
  return sum === 0;
}

function disposeTensor(tensor: ort.Tensor | undefined): void {
  if (tensor && tensor.location !== "cpu") tensor.dispose();
}

/** Frame i of a (B, t, E) block, as (B, E). */
function sliceEmbeddings(data: Float32Array, b: number, t: number, i: number, e: number): Float32Array {
  const out = new Float32Array(b * e);
  for (let k = 0; k < b; k++) out.set(data.subarray((k * t + i) * e, (k * t + i + 1) * e), k * e);
  return out;
}

/** (B, E) per frame -> (B, n, E). */
function stackFrames(frames: Float32Array[], b: number, e: number): Float32Array {
  const n = frames.length;
  const out = new Float32Array(b * n * e);
  frames.forEach((frame, i) => {
    for (let k = 0; k < b; k++) out.set(frame.subarray(k * e, (k + 1) * e), (k * n + i) * e);
  });
  return out;
}

/** Frame i of a (B, 3, t, R, R) block, as (B, 3, R, R). */
function sliceFrames(data: Float32Array, b: number, t: number, i: number, frameSize: number): Float32Array {
  const plane = frameSize / 3;
  const out = new Float32Array(b * frameSize);
  for (let k = 0; k < b * 3; k++) out.set(data.subarray((k * t + i) * plane, (k * t + i + 1) * plane), k * plane);
  return out;
}

/** (B, 3, R, R) per frame -> (B, 3, n, R, R). */
function stackChannels(frames: Float32Array[], b: number, frameSize: number): Float32Array {
  const plane = frameSize / 3, n = frames.length;
  const out = new Float32Array(b * frameSize * n);
  frames.forEach((frame, i) => {
    for (let k = 0; k < b * 3; k++) out.set(frame.subarray(k * plane, (k + 1) * plane), (k * n + i) * plane);
  });
  return out;
}
