/**
 * The studio's shared state: the open model, the jobs the host reports (progress, results), and what each view
 * reads (the calibration record, the quantized variants, the comparison). Views call the host through here.
 */
import type {
  CalibrationView,
  CompareResult,
  EmbeddedModel,
  HostInfo,
  JobEvent,
  JobInfo,
  JobSpec,
  ModelInfo,
  PresetInfo,
  QuantizeResult,
  RecipeSpec,
  Result,
  SampleResult,
  StudioClient,
} from '../../src-main/contract/api';

export type ViewId = 'models' | 'calibrate' | 'ranges' | 'recipe' | 'samples' | 'temporal' | 'export';

export const VIEWS: { id: ViewId; title: string }[] = [
  { id: 'models', title: 'Models' },
  { id: 'calibrate', title: 'Calibrate' },
  { id: 'ranges', title: 'Ranges' },
  { id: 'recipe', title: 'Recipe' },
  { id: 'samples', title: 'Samples' },
  { id: 'temporal', title: 'Temporal features' },
  { id: 'export', title: 'Export' },
];

export class Studio {
  view = $state<ViewId>('models');
  host = $state<HostInfo | null>(null);
  models = $state<EmbeddedModel[]>([]);
  modelsLoading = $state(true);
  /** The open pipeline: an embedded model id or a folder path. */
  model = $state<string | null>(null);
  info = $state<ModelInfo | null>(null);
  infoLoading = $state(false);
  presets = $state<PresetInfo[]>([]);
  jobs = $state<Record<string, JobInfo>>({});
  /** The model each job of this page was started on (jobs listed at load, from before, are not known). */
  jobModels = $state<Record<string, string>>({});
  calibrationJob = $state<string | null>(null);
  calibration = $state<CalibrationView | null>(null);
  compareJob = $state<string | null>(null);
  /** The text-to-image sample job the Samples view shows. */
  sampleJob = $state<string | null>(null);
  /** The recipe being edited (Recipe view), from a preset. */
  recipe = $state<RecipeSpec | null>(null);
  preset = $state<string>('');
  /** Layers kept in FP beyond the recipe's groups. */
  keepLayers = $state<string[]>([]);
  /** The last error a view should show, by view. */
  errors = $state<Partial<Record<ViewId, string>>>({});

  constructor(readonly api: StudioClient) {
    api.onEvent((e) => this.onEvent(e));
  }

  async load(): Promise<void> {
    const [m, h, p, j] = await Promise.all([this.api.listModels(), this.api.hostInfo(), this.api.listPresets(), this.api.listJobs()]);
    if (m.ok) this.models = m.value;
    else this.errors.models = m.error.message;
    if (h.ok) this.host = h.value;
    if (p.ok) {
      this.presets = p.value;
      if (!this.recipe && p.value.length) this.choosePreset(p.value.find((x) => x.name === 'int8-w8a8')?.name ?? p.value[0]!.name);
    }
    if (j.ok) for (const job of j.value) this.jobs[job.id] = job;
    this.modelsLoading = false;
  }

  choosePreset(name: string): void {
    const p = this.presets.find((x) => x.name === name);
    if (!p) return;
    this.preset = name;
    this.recipe = JSON.parse(JSON.stringify(p.recipe)) as RecipeSpec;
  }

  async openModel(ref: string): Promise<void> {
    this.model = ref;
    this.info = null;
    this.infoLoading = true;
    this.calibrationJob = null;
    this.calibration = null;
    this.compareJob = null;
    this.sampleJob = null;
    const r = await this.api.modelInfo(ref);
    this.infoLoading = false;
    if (r.ok) {
      this.info = r.value;
      delete this.errors.models;
    } else this.errors.models = r.error.message;
  }

  private onEvent(e: JobEvent): void {
    if (e.kind === 'started') {
      this.jobs[e.jobId] = e.job;
      return;
    }
    const job = this.jobs[e.jobId];
    if (!job) return;
    if (e.kind === 'progress') job.progress = e.progress;
    else if (e.kind === 'done') {
      job.state = 'done';
      job.result = e.result;
      job.endedAt = Date.now();
      if (e.jobId === this.calibrationJob) void this.loadCalibration(e.jobId);
    } else {
      job.state = e.error.code === 'CANCELLED' ? 'cancelled' : 'error';
      job.error = e.error;
      job.endedAt = Date.now();
    }
  }

  private async loadCalibration(id: string): Promise<void> {
    const r = await this.api.getCalibration(id);
    if (r.ok && id === this.calibrationJob) this.calibration = r.value;
    else if (!r.ok) this.errors.ranges = r.error.message;
  }

  /** Starts a job; the host's `started` event may come before or after the reply. */
  async start(spec: JobSpec, view: ViewId): Promise<string | null> {
    const r: Result<{ jobId: string }> = await this.api.startJob(spec);
    if (!r.ok) {
      this.errors[view] = r.error.message;
      return null;
    }
    delete this.errors[view];
    this.jobModels[r.value.jobId] = spec.model;
    this.jobs[r.value.jobId] ??= { id: r.value.jobId, kind: spec.kind, label: spec.kind, state: 'running', progress: null, startedAt: Date.now(), endedAt: null, result: null, error: null };
    return r.value.jobId;
  }

  async cancel(id: string): Promise<void> {
    await this.api.cancelJob(id);
  }

  job(id: string | null): JobInfo | null {
    return id ? (this.jobs[id] ?? null) : null;
  }

  /** Quantize jobs of this session, newest last. */
  get variantJobs(): JobInfo[] {
    return Object.values(this.jobs).filter((j) => j.kind === 'quantize');
  }

  /** Finished variants of the open model (a variant of another pipeline cannot sample or compare beside it). */
  get doneVariants(): (JobInfo & { result: QuantizeResult })[] {
    return this.variantJobs.filter(
      (j): j is JobInfo & { result: QuantizeResult } => j.state === 'done' && j.result?.kind === 'quantize' && (this.jobModels[j.id] ?? this.model) === this.model,
    );
  }

  /** Export jobs of this session, newest last. */
  get exportJobs(): JobInfo[] {
    return Object.values(this.jobs).filter((j) => j.kind === 'export');
  }

  get comparison(): CompareResult | null {
    const r = this.job(this.compareJob)?.result;
    return r?.kind === 'compare' ? r : null;
  }

  get sampleResult(): SampleResult | null {
    const r = this.job(this.sampleJob)?.result;
    return r?.kind === 'sample' ? r : null;
  }

  /** Why calibrate, quantize and export are not offered for the open model (a latent text-to-image pipeline). */
  get quantizeUnavailable(): string | null {
    return this.info?.quantizeUnavailable ?? null;
  }

  /** A job's file as a data: URL (the CSP allows data: images and media). */
  async artifactUrl(jobId: string, file: string): Promise<string | null> {
    const r = await this.api.readArtifact(jobId, file);
    return r.ok ? `data:${r.value.mime};base64,${r.value.base64}` : null;
  }
}

export function fmtSeconds(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '…';
  if (s < 60) return `${Math.round(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export function fmtBytes(b: number | null): string {
  if (b === null) return '–';
  if (b < 1024) return `${b} B`;
  if (b < 1 << 20) return `${(b / 1024).toFixed(1)} KiB`;
  return `${(b / (1 << 20)).toFixed(2)} MiB`;
}

/** "0-3,7" -> [0,1,2,3,7]; null when malformed. */
export function parseList(s: string): number[] | null {
  const out: number[] = [];
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return null;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b - a > 256) return null;
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}
