/**
 * The onnxruntime engine, whichever package provides it (web, Node, React Native). The next
 * states are the output tensors of a step, fed back as the next step's inputs (on WebGPU they
 * stay in GPU buffers).
 */
import type * as ort from "onnxruntime-common";

import type { LoadedArtifact } from "./artifact.js";
import { type Engine, type StepOutput, allFinite, checkNames, size, targetRuntime } from "./engine.js";
import { ArtifactError, BackendUnavailableError, GrwEdgeError, firstLine } from "./errors.js";
import type { Manifest, StateEntry } from "./manifest.js";

/** The part of an onnxruntime package (web, node, react-native) a session uses. */
export interface OrtModule {
  InferenceSession: {
    create(model: Uint8Array, options?: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession>;
  };
  Tensor: typeof ort.Tensor;
}

export interface OrtOptions {
  /** Execution provider: 'wasm'/'webgpu' (web), 'cpu' (Node), 'cpu'/'xnnpack'/'coreml'/'nnapi' (React Native). */
  backend: string;
  /** Intra-op threads. */
  threads?: number;
  /** Run the artifact's fused graph (step + head) when it has one. */
  fused: boolean;
}

type Feeds = Record<string, ort.Tensor>;

/** A graph and the manifest entries of the states it carries. */
interface Graph {
  session: ort.InferenceSession;
  file: string;
  states: StateEntry[];
  embeddings: string;
  logits?: string;
}

class OrtEngine implements Engine {
  private states = new Map<string, ort.Tensor>();

  constructor(
    private readonly ort: OrtModule,
    private readonly manifest: Manifest,
    private readonly graph: Graph,
    private readonly headSession: ort.InferenceSession,
    readonly backend: string,
  ) {}

  get stateBytes(): number {
    return this.graph.states.reduce((sum, s) => sum + 4 * size(s.shape), 0);
  }

  resetStates(idle: Promise<unknown>): void {
    const old = [...this.states.values()];  // GPU states: freed once a running step is done
    void idle.then(() => old.forEach(disposeTensor));
    this.states = new Map(this.graph.states.map((state) => {
      const data = new Float32Array(size(state.shape)).fill(state.init);
      return [state.input, new this.ort.Tensor("float32", data, state.shape)];
    }));
  }

  async step(frames: Float32Array): Promise<StepOutput> {
    const { manifest, graph } = this;
    const feeds: Feeds = { [manifest.input.name]: new this.ort.Tensor("float32", frames, manifest.input.shape) };
    for (const state of graph.states) feeds[state.input] = this.states.get(state.input)!;
    const results = await this.run(graph.session, feeds, graph.file);
    const fresh = graph.states.map((state) => results[state.output]);
    return {
      embeddings: results[graph.embeddings].data as Float32Array,
      logits: graph.logits === undefined ? undefined : results[graph.logits].data as Float32Array,
      statesFinite: fresh.every((t) => t.location !== "cpu" || allFinite(t.data as Float32Array)),
      commit: () => graph.states.forEach((state, i) => {
        disposeTensor(this.states.get(state.input));
        this.states.set(state.input, fresh[i]);
      }),
      discard: () => fresh.forEach(disposeTensor),
    };
  }

  async clip(frames: Float32Array, count: number): Promise<Float32Array> {
    const [b, c, , h, w] = this.manifest.input.shape;
    const feeds = { [this.manifest.input.name]: new this.ort.Tensor("float32", frames, [b, c, count, h, w]) };
    return (await this.run(this.graph.session, feeds, this.graph.file))[this.graph.embeddings].data as Float32Array;
  }

  async head(embeddings: Float32Array, count: number): Promise<Float32Array> {
    const { head, embed_dim: e } = this.manifest;
    const batch = embeddings.length / (count * e);
    const feeds = { [head.input]: new this.ort.Tensor("float32", embeddings, [batch, count, e]) };
    return (await this.run(this.headSession, feeds, head.file))[head.output].data as Float32Array;
  }

  async release(): Promise<void> {
    for (const tensor of this.states.values()) disposeTensor(tensor);
    await this.graph.session.release();
    await this.headSession.release();
  }

  private async run(session: ort.InferenceSession, feeds: Feeds, file: string): Promise<ort.InferenceSession.ReturnType> {
    try {
      return await session.run(feeds);
    } catch (error) {
      throw new GrwEdgeError(`onnxruntime failed running ${file}: ${firstLine(error)}`);
    }
  }
}

/** Open the artifact's graphs with an onnxruntime package. */
export async function openOrt(artifact: LoadedArtifact, ortModule: OrtModule, options: OrtOptions): Promise<Engine> {
  const { manifest, where } = artifact;
  const useFused = Boolean(manifest.fused) && options.fused && manifest.mode === "streaming";
  const states = manifest.mode !== "streaming" ? [] : useFused
    ? [...manifest.states, manifest.fused!.window_state] : manifest.states;
  const sessionOptions = graphOptions(options, states);
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
  const graph: Graph = useFused
    ? { session: await open(manifest.fused!.file), file: manifest.fused!.file, states,
      embeddings: manifest.fused!.outputs.embeddings, logits: manifest.fused!.outputs.logits }
    : { session: await open(manifest.step.file), file: manifest.step.file, states,
      embeddings: manifest.step.outputs.embeddings };
  checkGraph(manifest, graph, where);
  const engine = new OrtEngine(ortModule, manifest, graph, await open(manifest.head.file), options.backend);
  return engine;
}

/** Session options for the graphs; on WebGPU the states stay on the GPU between steps. */
function graphOptions(options: OrtOptions, states: StateEntry[]): ort.InferenceSession.SessionOptions {
  const result: ort.InferenceSession.SessionOptions = {
    executionProviders: [options.backend], graphOptimizationLevel: "all",
  };
  if (options.threads) {
    result.intraOpNumThreads = options.threads;
    result.interOpNumThreads = 1;
  }
  if (options.backend === "webgpu") {
    result.preferredOutputLocation = Object.fromEntries(states.map((s) => [s.output, "gpu-buffer"]));
  }
  return result;
}

/** The manifest and the graph must name the same inputs and outputs, states the same shapes. */
function checkGraph(manifest: Manifest, graph: Graph, where: string): void {
  const { session, file } = graph;
  checkNames(file, where, session.inputNames, session.outputNames,
    [manifest.input.name, ...graph.states.map((s) => s.input)],
    [graph.embeddings, ...(graph.logits ? [graph.logits] : []), ...graph.states.map((s) => s.output)]);
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

function disposeTensor(tensor: ort.Tensor | undefined): void {
  if (tensor && tensor.location !== "cpu") tensor.dispose();
}

/** The engine factory of a platform whose only runtime is onnxruntime (Node, React Native). */
export function ortOnly(ortModule: OrtModule, options: { backend?: string; threads?: number; fused?: boolean },
  defaultBackend: string): (artifact: LoadedArtifact) => Promise<Engine> {
  return async (artifact) => {
    targetRuntime(artifact.manifest, ["onnxruntime"]);
    return openOrt(artifact, ortModule, { backend: options.backend ?? defaultBackend, threads: options.threads,
      fused: options.fused !== false });
  };
}
