/**
 * The LiteRT.js engine (`@litertjs/core`): a LiteRT artifact's `.tflite` step and head in the
 * browser, on XNNPACK's wasm CPU kernels or on WebGPU.
 *
 * The step's output state tensors become the next step's input tensors as they are: they stay
 * in LiteRT's buffers (wasm memory or GPU buffers) and never pass through JS arrays; a tensor
 * is deleted once the step after it has run. The frames input is channels last (NTHWC) as the
 * manifest's `input.layout` says; states keep the graph's own layout (their `permute`), which
 * only matters to code that reads them, and the session never does. LiteRT graphs have static
 * shapes: the head takes a window of `head.shape[1]` embeddings and a mask marking the rows
 * that hold frames.
 */
import type * as litert from "@litertjs/core";

import type { LoadedArtifact } from "./artifact.js";
import { type Engine, type StepOutput, checkNames, inputDims, size } from "./engine.js";
import { ArtifactError, BackendUnavailableError, GrwEdgeError, InputShapeError, firstLine } from "./errors.js";
import type { Manifest } from "./manifest.js";

/** The part of `@litertjs/core` the engine uses. */
export type LiteRtModule = Pick<typeof litert, "loadLiteRt" | "getGlobalLiteRtPromise" | "loadAndCompile" | "Tensor">;

export interface LiteRtOptions {
  /** 'wasm' (XNNPACK on the CPU) or 'webgpu'. */
  accelerator: "wasm" | "webgpu";
  /**
   * XNNPACK threads of the step (the head runs on one). More than 1 needs a cross-origin
   * isolated page and the first LiteRT session of the page to ask for threads (it picks the
   * threaded wasm); each such session holds threads - 1 of the page's wasm workers.
   */
  threads?: number;
  /** Where @litertjs/core's wasm/ folder is served. */
  wasmPath: string;
}

/** Position of the frames and of each state in a step signature's inputs; of the embeddings and states in its outputs. */
export interface StepOrder { frames: number; states: number[]; embeddings: number; next: number[] }

/** Where the manifest's step names sit in `runner`'s inputs and outputs (looked up once, not per frame). */
export function stepOrder(runner: litert.SignatureRunner, manifest: Manifest): StepOrder {
  const inputs = runner.getInputDetails().map((d) => d.name);
  const outputs = runner.getOutputDetails().map((d) => d.name);
  return {
    frames: inputs.indexOf(manifest.input.name),
    states: manifest.states.map((s) => inputs.indexOf(s.input)),
    embeddings: outputs.indexOf(manifest.step.outputs.embeddings),
    next: manifest.states.map((s) => outputs.indexOf(s.output)),
  };
}

class LiteRtEngine implements Engine {
  private states: litert.Tensor[] = [];
  private readonly order: StepOrder;
  /** Position of the embeddings and the mask in the head's inputs, of the logits in its outputs. */
  private readonly headOrder: { embeddings: number; mask: number; logits: number };
  private readonly toGraph: (frames: Float32Array) => Float32Array;
  private readonly graphShape: number[];

  constructor(
    private readonly lib: LiteRtModule,
    private readonly manifest: Manifest,
    private readonly stepRunner: litert.SignatureRunner,
    private readonly headRunner: litert.SignatureRunner,
    private readonly models: litert.CompiledModel[],
    readonly backend: string,
    private readonly freeWorkers: () => void,
  ) {
    this.order = stepOrder(stepRunner, manifest);
    const headInputs = headRunner.getInputDetails().map((d) => d.name);
    this.headOrder = {
      embeddings: headInputs.indexOf(manifest.head.input),
      mask: headInputs.indexOf(manifest.head.mask!),
      logits: headRunner.getOutputDetails().findIndex((d) => d.name === manifest.head.output),
    };
    this.graphShape = manifest.input.shape;
    this.toGraph = layoutTransform(manifest);
  }

  get stateBytes(): number {
    return this.manifest.states.reduce((sum, s) => sum + 4 * size(s.shape), 0);
  }

  resetStates(idle: Promise<unknown>): void {
    const old = this.states;
    void idle.then(() => old.forEach((t) => t.delete()));
    this.states = this.manifest.states.map((state) =>
      new this.lib.Tensor(new Float32Array(size(state.shape)).fill(state.init), state.shape));
  }

  async step(frames: Float32Array): Promise<StepOutput> {
    const input = new this.lib.Tensor(this.toGraph(frames), this.graphShape);
    const feeds: litert.Tensor[] = [];
    feeds[this.order.frames] = input;
    this.order.states.forEach((at, k) => { feeds[at] = this.states[k]; });
    let outputs: litert.Tensor[];
    try {
      outputs = await this.run(this.stepRunner, feeds, this.manifest.step.file);
    } finally {
      input.delete();
    }
    const embeddings = await read(outputs[this.order.embeddings]);
    outputs[this.order.embeddings].delete();
    const next = this.order.next.map((at) => outputs[at]);
    return {
      embeddings,
      // The embeddings stand for the next states (as in the Python LiteRT session): every value the
      // states gain is carried by the same step, through products and sums, into the embeddings.
      statesFinite: true,
      commit: () => {
        this.states.forEach((t) => t.delete());
        this.states = next;
      },
      discard: () => next.forEach((t) => t.delete()),
    };
  }

  async clip(frames: Float32Array, count: number): Promise<Float32Array> {
    const needed = inputDims(this.manifest).frames;
    if (count !== needed) {
      throw new InputShapeError(`this LiteRT artifact embeds whole clips of ${needed} frames; it holds ${count}: ` +
        `push ${needed - count} more`);
    }
    const input = new this.lib.Tensor(this.toGraph(frames), this.graphShape);
    try {
      const outputs = await this.run(this.stepRunner, [input], this.manifest.step.file);
      const embeddings = await read(outputs[this.order.embeddings]);
      outputs.forEach((t) => t.delete());
      return embeddings;
    } finally {
      input.delete();
    }
  }

  async head(embeddings: Float32Array, count: number): Promise<Float32Array> {
    const head = this.manifest.head;
    const [batch, window, e] = head.shape!;
    if (count > window) {
      throw new InputShapeError(`this LiteRT artifact's head takes at most ${window} frames, got ${count}`);
    }
    const padded = new Float32Array(batch * window * e);
    const mask = new Float32Array(batch * window);
    for (let b = 0; b < batch; b++) {
      padded.set(embeddings.subarray(b * count * e, (b + 1) * count * e), b * window * e);
      mask.fill(1, b * window, b * window + count);
    }
    const tensors: litert.Tensor[] = [];
    tensors[this.headOrder.embeddings] = new this.lib.Tensor(padded, head.shape);
    tensors[this.headOrder.mask] = new this.lib.Tensor(mask, [batch, window]);
    try {
      const outputs = await this.run(this.headRunner, tensors, head.file);
      const logits = await read(outputs[this.headOrder.logits]);
      outputs.forEach((t) => t.delete());
      return logits;
    } finally {
      tensors.forEach((t) => t.delete());
    }
  }

  async release(): Promise<void> {
    this.states.forEach((t) => t.delete());
    this.states = [];
    this.models.forEach((model) => model.delete());
    this.models.length = 0;
    this.freeWorkers();
  }

  private async run(runner: litert.SignatureRunner, inputs: litert.Tensor[], file: string): Promise<litert.Tensor[]> {
    try {
      return await runner.run(inputs);
    } catch (error) {
      throw new GrwEdgeError(`LiteRT.js failed running ${file}: ${firstLine(error)}`);
    }
  }
}

/** The values of an output tensor (copied out of wasm memory or the GPU). */
async function read(tensor: litert.Tensor): Promise<Float32Array> {
  return new Float32Array(await tensor.data() as Float32Array);
}

/**
 * (B, 3, t, R, R) channels-first frames -> the graph's `input.layout` (none for NCTHW). The
 * result is one buffer, rewritten by every call: the caller copies it into a LiteRT tensor
 * before the next call (a fresh array per frame cost more than the transposition itself).
 */
export function layoutTransform(manifest: Manifest): (frames: Float32Array) => Float32Array {
  const layout = manifest.input.layout ?? "NCTHW";
  if (layout === "NCTHW") return (frames) => frames;
  if (layout !== "NTHWC") {
    throw new ArtifactError(`input.layout '${layout}' is not supported (NCTHW or NTHWC); re-export the artifact`);
  }
  const { batch, frames: t, resolution: r } = inputDims(manifest);
  const plane = r * r;
  const out = new Float32Array(batch * 3 * t * plane);
  return (frames) => {
    for (let b = 0; b < batch; b++) {
      for (let f = 0; f < t; f++) {
        const red = ((b * 3) * t + f) * plane, green = red + t * plane, blue = green + t * plane;
        let to = (b * t + f) * plane * 3;
        for (let p = 0; p < plane; p++, to += 3) {  // pixel by pixel: the writes run in order
          out[to] = frames[red + p];
          out[to + 1] = frames[green + p];
          out[to + 2] = frames[blue + p];
        }
      }
    }
    return out;
  };
}

/**
 * LiteRT.js's threaded wasm runs XNNPACK's threads on a pool of navigator.hardwareConcurrency
 * Web Workers made when it loads. A thread beyond the pool gets a worker that starts late, and
 * deleting its model then blocks the page for good (LiteRT.js 2.5.3: the main thread waits in
 * a join the worker never answers). A step compiled with n threads holds n - 1 workers until
 * its session is released, so sessions that would outgrow the pool are refused instead.
 */
const page = { threaded: undefined as boolean | undefined, workersHeld: 0 };

/** Reserve the wasm workers of a step with `threads` threads; returns their release. */
function reserveWorkers(threads: number): () => void {
  const needed = threads - 1;
  if (needed <= 0 || page.threaded === false) return () => undefined;
  const pool = globalThis.navigator?.hardwareConcurrency ?? 1;
  if (page.workersHeld + needed > pool) {
    throw new BackendUnavailableError(`LiteRT.js threads ${threads} need ${needed} of the page's ${pool} wasm ` +
      `workers (navigator.hardwareConcurrency) and open sessions hold ${page.workersHeld}: use threads ` +
      `<= ${pool - page.workersHeld + 1} or release a session`);
  }
  page.workersHeld += needed;
  let held = true;
  return () => {
    if (held) page.workersHeld -= needed;
    held = false;
  };
}

/** Load LiteRT.js's wasm once per page: the threaded build when the first session asks for threads. */
async function loadRuntime(lib: LiteRtModule, options: LiteRtOptions): Promise<void> {
  const threads = (options.threads ?? 1) > 1;
  if (threads && !globalThis.crossOriginIsolated) {
    throw new BackendUnavailableError("LiteRT.js threads need a cross-origin isolated page (headers " +
      "Cross-Origin-Opener-Policy: same-origin, Cross-Origin-Embedder-Policy: require-corp): " +
      "serve it so, or use threads 1");
  }
  if (lib.getGlobalLiteRtPromise()) {
    await lib.getGlobalLiteRtPromise();
    if (threads && page.threaded === false) {
      throw new BackendUnavailableError("LiteRT.js was loaded single-threaded by this page's first session: " +
        "threads > 1 must be asked for by the first LiteRT session of the page, or use threads 1");
    }
    return;
  }
  try {
    await lib.loadLiteRt(options.wasmPath, { threads });
    page.threaded = threads;
  } catch (error) {
    throw new BackendUnavailableError(`LiteRT.js cannot load its wasm from ${options.wasmPath}: ${firstLine(error)}`);
  }
}

/** Open a LiteRT artifact's step and head with LiteRT.js. */
export async function openLiteRt(artifact: LoadedArtifact, lib: LiteRtModule, options: LiteRtOptions): Promise<Engine> {
  const { manifest, where } = artifact;
  await loadRuntime(lib, options);
  const models: litert.CompiledModel[] = [];
  type Graph = { file: string; signature?: string };
  const open = async (graph: Graph, threads: number): Promise<litert.SignatureRunner> => {
    let model: litert.CompiledModel;
    try {
      model = await lib.loadAndCompile(artifact.files.get(graph.file)!, {
        accelerator: options.accelerator, cpuOptions: { numThreads: threads } });
    } catch (error) {
      const message = firstLine(error);
      if (/webgpu|device|adapter/i.test(message)) {
        throw new BackendUnavailableError(`LiteRT.js backend '${options.accelerator}' cannot run here: ${message}`);
      }
      throw new ArtifactError(`${where}/${graph.file} cannot be loaded by LiteRT.js: ${message}`);
    }
    models.push(model);
    const runner = model.signatures[graph.signature ?? ""];
    if (!runner) {
      throw new ArtifactError(`${where}/${graph.file} has no signature '${graph.signature}'; re-export the artifact`);
    }
    return runner;
  };
  const fields: [string, unknown][] = [["step.signature", manifest.step.signature],
    ["head.signature", manifest.head.signature], ["head.mask", manifest.head.mask], ["head.shape", manifest.head.shape]];
  const missing = fields.find(([, value]) => value === undefined)?.[0];
  if (missing) throw new ArtifactError(`${where}: a LiteRT manifest needs '${missing}'; re-export the artifact`);
  const threads = options.accelerator === "wasm" ? options.threads ?? 1 : 1;
  const freeWorkers = reserveWorkers(threads);
  try {
    const step = await open(manifest.step, threads);
    checkStep(manifest, step, where);
    const head = await open(manifest.head, 1);  // a few small matrix products: threads would only wait
    return new LiteRtEngine(lib, manifest, step, head, models, `litert-${options.accelerator}`, freeWorkers);
  } catch (error) {
    models.forEach((model) => model.delete());
    freeWorkers();
    throw error;
  }
}

/** The manifest and the step must name the same tensors, states the same shapes. */
function checkStep(manifest: Manifest, step: litert.SignatureRunner, where: string): void {
  const inputs = new Map(step.getInputDetails().map((d) => [d.name, d]));
  checkNames(manifest.step.file, where, [...inputs.keys()], step.getOutputDetails().map((d) => d.name),
    [manifest.input.name, ...manifest.states.map((s) => s.input)],
    [manifest.step.outputs.embeddings, ...manifest.states.map((s) => s.output)]);
  for (const state of manifest.states) {
    const shape = Array.from(inputs.get(state.input)!.shape);
    if (shape.join() !== state.shape.join()) {
      throw new ArtifactError(`state '${state.name}': the manifest says shape [${state.shape}], the graph [${shape}]`);
    }
  }
}
