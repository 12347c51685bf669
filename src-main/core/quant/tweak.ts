/**
 * Interactive re-quantization of a simulated variant: change one layer (or a few) and sample again, reusing the
 * calibration and every untouched layer. A layer can go back to FP (its FP weight, and its input read before the
 * activation quantizer), take another weight format (rounded to nearest from the FP weight, MSE clipping, per
 * channel or in the format's blocks), or stay as quantized. Nothing is written: the edited graph lives in memory
 * (its session replaces the variant's denoiser for the next samples), so a round trip is a graph edit, one session
 * and the samples.
 */
import { dirname } from 'node:path';
import { DqError } from '../errors.js';
import { analyzeGraph, type QuantizableLayer } from '../onnx/analysis.js';
import { encodeModel, floatTensor, inlineExternalData, loadOnnx, type LoadedModel } from '../onnx/io.js';
import { ModelProto, type ModelMsg, type TensorMsg } from '../onnx/model.js';
import { openPipeline } from '../open.js';
import { locatePipeline, type Pipeline } from '../pipeline/pipeline.js';
import { sample, type SampleRequest } from '../pipeline/sample.js';
import { Session, type Provider } from '../runtime/onnx.js';
import { sha256File } from '../fsutil.js';
import { formatName, gemmTransB, type Manifest } from './quantize.js';
import { FormatSchema } from './recipe.js';
import { readManifest } from './variant.js';
import { quantizeWeight } from './weights.js';
import type { QuantFormat } from '../../../kernels/quant.js';

/** What a layer becomes: as the variant quantized it, FP, or its weight in another format. */
export type LayerChoice = 'variant' | 'fp' | QuantFormat;

export interface TweakLayer {
  name: string;
  op: string;
  /** The variant's own treatment: its weight format (e.g. 'int4, per channel'), or why it was left in FP. */
  weight: string;
  activation: string | null;
  /** Null when the layer can be changed here; else why not (e.g. it lives in the cached time-only region). */
  fixed: string | null;
}

export interface TweakRun {
  images: Float32Array[];
  /** Layers whose graph changed from the variant's. */
  changed: string[];
  seconds: { graph: number; session: number; sample: number };
}

const ACT_OUT = /^dq_aq\/\d+\/out$/;

export class VariantTweaker {
  private session: Session | null = null;
  /** The variant as quantized: runs the steps outside a range when choices apply to some steps only. */
  private baseSession: Session | null = null;
  /** The choices the session was built with (the changed layers, sorted), and those layers. */
  private key = '';
  private changed: string[] = [];

  private constructor(
    readonly dir: string,
    /** The variant as a pipeline (its own feeds; the edited session replaces its denoiser's). */
    readonly pipeline: Pipeline,
    private readonly base: Uint8Array,
    private readonly fp: LoadedModel,
    private readonly fpInits: Map<string, TensorMsg>,
    private readonly layersByName: Map<string, QuantizableLayer>,
    private readonly nodeIndex: Map<string, number>,
    private readonly fpNodeIndex: Map<string, number>,
    readonly manifest: Manifest,
  ) {}

  /** Layers whose weight is a per-step parameter set (ranged.ts): fed per step, not in the graph. */
  private get ranged(): Set<string> {
    return new Set(this.manifest.layers.filter((l) => l.perStep).map((l) => l.name));
  }

  /** Opens a variant folder; `sourceDir` is its FP pipeline (default: the one its manifest names, checked by hash). */
  static async open(variantDir: string, provider: Provider = 'cpu', sourceDir?: string): Promise<VariantTweaker> {
    const manifest = readManifest(variantDir);
    if (!manifest) throw new DqError('BAD_ARGUMENT', `${variantDir} is not a quantized variant (no manifest.json of kind dq-variant)`);
    if ((manifest as unknown as { export?: unknown }).export) throw new DqError('BAD_ARGUMENT', `${variantDir} is an export: layers can be changed in the simulated variant it came from`);
    const src = locatePipeline(sourceDir ?? manifest.source.pipeline);
    if (sha256File(src.unetPath) !== manifest.source.unetSha256) {
      throw new DqError('BAD_CONFIG', `${src.dir}: its unet is not the one ${variantDir} was made from (hash differs): give the variant's own source pipeline`);
    }
    const { pipeline } = await openPipeline(variantDir, provider);
    const fp = loadOnnx(src.unetPath);
    const map = analyzeGraph(fp.model);
    // the edited graph goes to onnxruntime as bytes: external weights are read in
    const variantPath = locatePipeline(variantDir).unetPath;
    const variant = inlineExternalData(loadOnnx(variantPath).model, dirname(variantPath));
    const indexOf = (m: ModelMsg) => new Map((m.graph!.node ?? []).map((n, i) => [n.name ?? '', i]));
    const fpInits = new Map((fp.model.graph!.initializer ?? []).map((t) => [t.name ?? '', t]));
    return new VariantTweaker(variantDir, pipeline, encodeModel(variant), fp, fpInits, new Map(map.quantizable.map((l) => [l.name, l])), indexOf(variant), indexOf(fp.model), manifest);
  }

  /** The variant's layers and what each can become here. */
  layers(): TweakLayer[] {
    return this.manifest.layers.map((r) => {
      const fixed = !this.nodeIndex.has(r.name) ? (r.spared ?? 'not in the variant\'s denoiser graph') : !this.layersByName.has(r.name) ? 'not a layer of the FP graph' : r.fold ? `${r.fold}: its FP weight alone would not match` : this.ranged.has(r.name) ? 'its weight changes with the timestep range (a per-step parameter set)' : null;
      const weight = r.weight ? `${formatName((r.weight.format ?? this.manifest.recipe.weights.format) as QuantFormat)}, ${r.weight.granularity}` : `FP (${r.spared ?? 'kept'})`;
      return { name: r.name, op: r.op, weight, activation: r.activation, fixed };
    });
  }

  /** A layer's weight shape in the FP graph (undefined for a name that is not a quantizable layer). */
  weightShape(name: string): number[] | undefined {
    return this.layersByName.get(name)?.weightShape;
  }

  /** The variant's graph with the choices applied; the layers that changed. */
  private edit(choices: Record<string, LayerChoice>): { model: ModelMsg; changed: string[] } {
    const model = ModelProto.decode(this.base) as unknown as ModelMsg;
    const graph = model.graph!;
    const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
    const changed: string[] = [];
    for (const [name, choice] of Object.entries(choices)) {
      if (choice === 'variant') continue;
      const layer = this.layersByName.get(name);
      const at = this.nodeIndex.get(name);
      if (!layer || at === undefined) throw new DqError('BAD_ARGUMENT', `layer '${name}' cannot be changed here (${!layer ? 'no such layer' : 'it is not in the variant\'s denoiser graph'})`);
      if (this.ranged.has(name)) throw new DqError('BAD_ARGUMENT', `layer '${name}' cannot be changed here (its weight changes with the timestep range: a per-step parameter set)`);
      const fold = this.manifest.layers.find((r) => r.name === name)?.fold;
      if (fold) throw new DqError('BAD_ARGUMENT', `layer '${name}' cannot be changed here (${fold}: its FP weight alone would not match)`);
      const node = graph.node![at]!;
      const t = inits.get(layer.weight);
      const fpT = this.fpInits.get(layer.weight);
      if (!t || !fpT || t.data_type !== 1 || fpT.data_type !== 1) throw new DqError('BAD_ARGUMENT', `layer '${name}': its weight is not a float32 initializer in both graphs`);
      const w = floatTensor(this.fp, fpT);
      let values: Float32Array;
      if (choice === 'fp') {
        values = w;
        // the layer reads its input before the activation quantizer
        node.input = (node.input ?? []).map((i) => (ACT_OUT.test(i) ? layer.input : i));
      } else {
        const format = FormatSchema.parse(choice) as QuantFormat;
        const spec = { format, granularity: 'channel' as const, rounding: 'nearest' as const, clipping: 'mse' as const, scale: 'float32' as const };
        values = quantizeWeight(w, layer, spec, gemmTransB(this.fp.model, layer, this.fpNodeIndex), null).values;
      }
      (t as { raw_data?: Uint8Array }).raw_data = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      delete (t as { float_data?: unknown }).float_data;
      changed.push(name);
    }
    return { model, changed };
  }

  /**
   * Samples with the choices applied (the session is rebuilt only when the choices change). With `steps`, the choices
   * apply at those step indices only, and the variant as quantized runs the others (sensitivity per timestep range).
   */
  async run(choices: Record<string, LayerChoice>, req: Omit<SampleRequest, 'extraFeeds' | 'tap'>, steps?: ReadonlySet<number>): Promise<TweakRun> {
    const t0 = performance.now();
    const key = JSON.stringify(Object.entries(choices).filter(([, c]) => c !== 'variant').sort(([a], [b]) => a.localeCompare(b)));
    let tGraph = 0;
    let tSession = 0;
    if (!this.session || key !== this.key) {
      const edited = this.edit(choices);
      const bytes = encodeModel(edited.model);
      tGraph = (performance.now() - t0) / 1000;
      const t1 = performance.now();
      const next = await Session.create(bytes, 'cpu', { label: `${this.dir}: unet/model.onnx (changed layers: ${edited.changed.length})` });
      tSession = (performance.now() - t1) / 1000;
      await this.session?.release();
      this.session = next;
      this.key = key;
      this.changed = edited.changed;
    }
    const t2 = performance.now();
    let out;
    if (steps) {
      this.baseSession ??= await Session.create(this.base, 'cpu', { label: `${this.dir}: unet/model.onnx` });
      out = await sample(this.pipeline, this.baseSession, { ...req, tap: { session: this.session, steps, fetch: [], onOutputs: () => {} } });
    } else out = await sample(this.pipeline, this.session, req);
    return { images: out.images, changed: this.changed, seconds: { graph: tGraph, session: tSession, sample: (performance.now() - t2) / 1000 } };
  }

  async release(): Promise<void> {
    await this.session?.release();
    await this.baseSession?.release();
    this.session = null;
    this.baseSession = null;
  }
}
