/**
 * One streaming session over an inference engine (onnxruntime on the web, in Node and React
 * Native; LiteRT.js in browsers): the four verbs of the Python runtime (`reset`, `push`,
 * `classify`, `selfTest`). Preprocessing, frame checks, the embedding window, the non-finite
 * policy and the self-test live here once; the platform entries only say where files come
 * from and which engine (engine.ts) runs them.
 */
import { type ArtifactSource, type LoadedArtifact, loadArtifact } from "./artifact.js";
import { type Engine, type EngineFactory, allFinite, inputDims } from "./engine.js";
import { InputShapeError, NonFiniteOutputError } from "./errors.js";
import { type Frame, framePixels } from "./frames.js";
import { type Manifest, preprocessSizes } from "./manifest.js";
import { type RawFrame, preprocessFrame } from "./preprocess.js";
import { type SelfTestReport, judge, maxAbsDiffRows, readSelfTest } from "./selftest.js";


export interface SessionOptions {
  /**
   * onnxruntime's execution provider: 'wasm' or 'webgpu' (web), 'cpu' (Node),
   * 'cpu'/'xnnpack'/'coreml'/'nnapi' (React Native); LiteRT.js: 'wasm' (XNNPACK) or 'webgpu'.
   */
  backend?: string;
  /** Intra-op threads (on the web: wasm threads, fixed by the first session of the page). */
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
  private window: Float32Array[] = [];
  private clipFrames: Float32Array[] = [];
  private clipEmbeddings: Float32Array | null = null;
  private fusedLogits: Float32Array | null = null;
  private seen = 0;
  private generation = 0;  // bumped by reset(): a step still running then belongs to the old stream
  private queue: Promise<unknown> = Promise.resolve();

  protected constructor(
    private readonly artifact: LoadedArtifact,
    private readonly engine: Engine,
    private readonly options: SessionOptions,
  ) {
    this.manifest = artifact.manifest;
    this.labels = artifact.labels;
    this.backend = engine.backend;
    const { batch, frames, resolution } = inputDims(this.manifest);
    this.batch = batch;
    this.resolution = resolution;
    this.stepFrames = this.streaming ? frames : 1;
    const r = resolution;
    this.resize = preprocessSizes(this.manifest).resize;
    this.frameSize = 3 * r * r;
    this.reset();
  }

  /** Open an artifact from `source`; `engine` opens its graphs (platform entries pick it). */
  static async open(source: ArtifactSource, engine: EngineFactory, options: SessionOptions = {}): Promise<Session> {
    const artifact = await loadArtifact(source, options.verify ?? false);
    return new Session(artifact, await engine(artifact), options);
  }

  get streaming(): boolean {
    return this.manifest.mode === "streaming";
  }

  /** Bytes the states take (the embedding window included on the fused graph). */
  get stateBytes(): number {
    return this.engine.stateBytes;
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
    if (this.streaming) this.engine.resetStates(this.queue);
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

  /** Free the engine's graphs and states. */
  async release(): Promise<void> {
    await this.queue;
    await this.engine.release();
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
    const out = await this.engine.step(input);
    if (generation !== this.generation) {  // reset() while the step ran: the old stream's result
      out.discard();
      return null;
    }
    const bad = !allFinite(out.embeddings) || !out.statesFinite || (out.logits !== undefined && !allFinite(out.logits));
    if (bad) {
      out.discard();
      this.faults += 1;
      const message = `the step returned non-finite values (fault ${this.faults}); the states are unchanged`;
      if (this.options.onNonfinite === "reset") {
        console.warn(`grw-edge-runtime: ${message}; resetting the stream`);
        this.reset();
        return null;
      }
      throw new NonFiniteOutputError(`${message}: check the frames, or open the session with onNonfinite: 'reset'`);
    }
    out.commit();
    const t = this.stepFrames, e = this.manifest.embed_dim;
    for (let i = 0; i < t; i++) this.window.push(sliceEmbeddings(out.embeddings, this.batch, t, i, e));
    this.window = this.window.slice(-this.manifest.frames_per_clip);
    if (out.logits !== undefined) this.fusedLogits = out.logits;
    this.seen += t;
    return out.embeddings;
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
      this.clipEmbeddings = await this.engine.clip(stackChannels(this.clipFrames, this.batch, this.frameSize), n);
    }
    return { data: this.clipEmbeddings, frames: n };
  }

  private runHead(embeddings: { data: Float32Array; frames: number }): Promise<Float32Array> {
    return this.engine.head(embeddings.data, embeddings.frames);
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
