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

/** Where the studio keeps the user's working state between reloads (this browser profile, this host's origin). */
const STATE_KEY = 'dq-studio:state:v1';

/** What the studio remembers per model: the calibration, comparison and sample run it showed. */
interface ModelMemory {
  calibrationJob: string | null;
  compareJob: string | null;
  sampleJob: string | null;
}

/** The working state saved on every change and restored at load (job ids the host no longer has are dropped). */
interface SavedState {
  view: ViewId;
  model: string | null;
  memory: Record<string, ModelMemory>;
  forms: Record<string, Record<string, unknown>>;
  preset: string;
  recipe: RecipeSpec | null;
  keepLayers: string[];
}

function readSaved(): Partial<SavedState> | null {
  try {
    const raw = globalThis.localStorage?.getItem(STATE_KEY);
    const v: unknown = raw ? JSON.parse(raw) : null;
    return v && typeof v === 'object' ? (v as Partial<SavedState>) : null;
  } catch {
    return null; // unreadable or not JSON: start afresh
  }
}

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
  /** The views' form values (Samples, Calibrate, Ranges, Export...), kept across tab switches and reloads. */
  forms = $state<Record<string, Record<string, unknown>>>({});
  /** What each model other than the open one showed when it was left. */
  memory = $state<Record<string, ModelMemory>>({});
  /** True once the saved state is back (saving starts then, so the defaults never overwrite it). */
  restored = $state(false);
  /** Quantize jobs waiting for their calibration (by the calibration job's id): started when it is done. */
  // not reactive state: nothing shows it
  // eslint-disable-next-line svelte/prefer-svelte-reactivity
  private pendingQuantize = new Map<string, (calibration: string) => JobSpec>();
  /** The quantize job the last "calibrate, then quantize" started (the Recipe view brings it into view). */
  autoQuantizeJob = $state<string | null>(null);

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
    if (j.ok) {
      for (const job of j.value) this.jobs[job.id] = job;
    }
    this.modelsLoading = false;
    try {
      await this.restore();
    } finally {
      this.restored = true;
    }
  }

  /** A view's form values: the saved ones, with any field the view added since filled from its defaults. */
  form<T extends Record<string, unknown>>(key: string, defaults: T): T {
    const f = (this.forms[key] ??= { ...defaults });
    for (const [k, v] of Object.entries(defaults)) if (!(k in f)) f[k] = v;
    return this.forms[key] as T;
  }

  /** The working state to save (see SavedState). */
  snapshot(): SavedState {
    const memory = { ...this.memory };
    if (this.model) memory[this.model] = { calibrationJob: this.calibrationJob, compareJob: this.compareJob, sampleJob: this.sampleJob };
    return { view: this.view, model: this.model, memory, forms: this.forms, preset: this.preset, recipe: this.recipe, keepLayers: this.keepLayers };
  }

  save(): void {
    try {
      globalThis.localStorage?.setItem(STATE_KEY, JSON.stringify(this.snapshot()));
    } catch {
      /* storage full or off: the state lasts until the page goes */
    }
  }

  /** Puts back what was saved: forms, recipe, the model with its calibration and results, the view. */
  private async restore(): Promise<void> {
    const s = readSaved();
    if (!s) return;
    if (s.forms && typeof s.forms === 'object') this.forms = s.forms;
    if (s.memory && typeof s.memory === 'object') this.memory = s.memory;
    if (s.recipe && typeof s.preset === 'string' && this.presets.some((p) => p.name === s.preset)) {
      this.preset = s.preset;
      this.recipe = s.recipe;
      this.keepLayers = Array.isArray(s.keepLayers) ? s.keepLayers.filter((x) => typeof x === 'string') : [];
    }
    if (typeof s.model === 'string') await this.openModel(s.model);
    if (s.view && VIEWS.some((v) => v.id === s.view) && this.model) this.view = s.view;
  }

  /** A job id if the host still has that job of that kind, else null. */
  private known(id: string | null | undefined, kind: JobInfo['kind']): string | null {
    return id && this.jobs[id]?.kind === kind ? id : null;
  }

  /** The model's latest finished calibration (so Quantize finds one after a reload or a model switch). */
  private latestCalibration(model: string): string | null {
    const done = Object.values(this.jobs).filter((j) => j.kind === 'calibrate' && j.state === 'done' && j.model === model);
    return done.sort((a, b) => a.startedAt - b.startedAt).at(-1)?.id ?? null;
  }

  /**
   * Calibrates (the spec the Recipe view builds from the Calibrate form) and, once the calibration is done, starts
   * the quantize job with it; a failed or cancelled calibration starts nothing and says why.
   */
  async calibrateThenQuantize(cal: Extract<JobSpec, { kind: 'calibrate' }>, quantize: (calibration: string) => JobSpec): Promise<string | null> {
    const id = await this.start(cal, 'recipe');
    if (!id) return null;
    this.calibrationJob = id;
    this.calibration = null;
    this.pendingQuantize.set(id, quantize);
    return id;
  }

  /** Makes an earlier calibration of the open model the active one. */
  useCalibration(id: string): void {
    if (this.calibrationJob === id) return;
    this.calibrationJob = id;
    this.calibration = null;
    if (this.jobs[id]?.state === 'done') void this.loadCalibration(id);
  }

  choosePreset(name: string): void {
    const p = this.presets.find((x) => x.name === name);
    if (!p) return;
    this.preset = name;
    this.recipe = JSON.parse(JSON.stringify(p.recipe)) as RecipeSpec;
  }

  /**
   * Opens a model. The open one again changes nothing; another one is read first and, if that fails, the open
   * model stays (with the error shown). Each model gets back the calibration, comparison and samples it showed
   * (or its latest calibration).
   */
  async openModel(ref: string): Promise<void> {
    if (ref === this.model && this.info) {
      delete this.errors.models;
      return;
    }
    // the open model's details go while the new one is read (nothing stale on screen), and come back if it fails
    const before = this.info;
    this.info = null;
    this.infoLoading = true;
    const r = await this.api.modelInfo(ref);
    this.infoLoading = false;
    if (!r.ok) {
      this.info = before;
      this.errors.models = this.model ? `${r.error.message} (${this.model} stays open)` : r.error.message;
      return;
    }
    if (this.model) this.memory[this.model] = { calibrationJob: this.calibrationJob, compareJob: this.compareJob, sampleJob: this.sampleJob };
    const m = this.memory[ref];
    this.model = ref;
    this.info = r.value;
    delete this.errors.models;
    this.calibration = null;
    this.calibrationJob = this.known(m?.calibrationJob, 'calibrate') ?? this.latestCalibration(ref);
    this.compareJob = this.known(m?.compareJob, 'compare');
    this.sampleJob = this.known(m?.sampleJob, 'sample');
    if (this.calibrationJob && this.jobs[this.calibrationJob]?.state === 'done') void this.loadCalibration(this.calibrationJob);
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
      const then = this.pendingQuantize.get(e.jobId);
      if (then) {
        this.pendingQuantize.delete(e.jobId);
        void this.start(then(e.jobId), 'recipe').then((id) => (this.autoQuantizeJob = id));
      }
    } else {
      if (this.pendingQuantize.delete(e.jobId)) this.errors.recipe = `the calibration ${e.error.code === 'CANCELLED' ? 'was cancelled' : `failed (${e.error.message})`}: nothing was quantized`;
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
    this.jobs[r.value.jobId] ??= { id: r.value.jobId, kind: spec.kind, model: spec.model, output: null, label: spec.kind, state: 'running', progress: null, startedAt: Date.now(), endedAt: null, result: null, error: null };
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
      (j): j is JobInfo & { result: QuantizeResult } => j.state === 'done' && j.result?.kind === 'quantize' && (j.model ?? this.model) === this.model,
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

/** The files of a comparison worth downloading: the report first, then the pictures, videos and metrics. */
export function compareFiles(r: CompareResult): string[] {
  const videos = [r.files.trajectory, r.files.walk].flatMap((v) => [v.webp, v.mp4]).filter((f): f is string => f !== null);
  return [r.files.report, r.files.grid, ...Object.values(r.files.diffs), ...videos, r.files.metrics];
}
