/**
 * The nbapps state of one open notebook: its last validation, contract, publish flow (up to the
 * gallery's verdict) and submissions, plus the actions on them. The sidebar renders the session
 * of the current notebook; commands call its actions. Disposing the session (the notebook
 * closes) stops every poll it runs.
 */
import { NotebookPanel } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import {
  ApiError,
  ContractAnswer,
  ReportData,
  SubmissionsAnswer,
  ValidateJob,
  api,
  errorText,
  pollJob
} from './api';
import { checkKey, pollDelay } from './check';
import { Finding, locateFinding } from './findings';
import { KernelInfoGuard } from './kernelinfo';
import { appSlugOf, formFromMeta } from './meta';
import {
  IDLE,
  JobSnapshot,
  PublishEvent,
  PublishState,
  canStart,
  isBusy,
  publishReducer
} from './publish';
import { PARAMETERS_TAG, hasTag } from './tags';

export interface SessionEnv {
  galleryUrl(): string;
  executeOnValidate(): boolean;
  /** Called once when a publish flow ends, with its final state (for notifications). */
  onPublishFinished?(session: AppSession, state: PublishState): void;
}

/** One following of a gallery check (stopped: no more polls). */
interface FollowHandle {
  stopped: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export interface ValidationView {
  running: boolean;
  joined: boolean;
  message: string;
  startedAt: number | null;
  jobId: string | null;
  error: string | null;
}

export class AppSession {
  constructor(
    readonly panel: NotebookPanel,
    private readonly env: SessionEnv
  ) {
    const model = panel.content.model;
    model?.contentChanged.connect(this._scheduleContract, this);
    model?.metadataChanged.connect(this._scheduleContract, this);
    this._kernelGuard = new KernelInfoGuard(panel);
    void panel.context.ready.then(() => this.refreshContract());
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get path(): string {
    return this.panel.context.path;
  }

  report: ReportData | null = null;
  contract: ContractAnswer | null = null;
  contractError: string | null = null;
  hasParametersCell = false;
  validation: ValidationView = {
    running: false,
    joined: false,
    message: '',
    startedAt: null,
    jobId: null,
    error: null
  };
  publish: PublishState = IDLE;
  submissions: SubmissionsAnswer | null = null;
  submissionsError: string | null = null;
  submissionsLoading = false;

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._validatePoll?.stop();
    this._publishPoll?.stop();
    this._stopFollowing();
    this._kernelGuard.dispose();
    clearTimeout(this._contractTimer);
    Signal.clearData(this);
  }

  /** The findings to mark on cells: the last validation's, and a failed gallery check's. */
  markedFindings(): Finding[] {
    const gallery = this.publish.phase === 'rejected' ? this.publish.findings : [];
    return [...(this.report?.findings ?? []), ...gallery];
  }

  /** Current sources of the notebook's cells, for locating findings. */
  cellSources(): string[] {
    const cells = this.panel.content.model?.cells;
    const out: string[] = [];
    if (cells) {
      for (let i = 0; i < cells.length; i++) {
        out.push(cells.get(i).sharedModel.getSource());
      }
    }
    return out;
  }

  /** Select, reveal and briefly highlight the cell a finding points at. */
  async revealFinding(finding: {
    cell?: number | null;
    cell_index?: number | null;
    cell_line?: string | null;
  }): Promise<boolean> {
    const index = locateFinding(finding, this.cellSources());
    if (index === null) {
      return false;
    }
    const nb = this.panel.content;
    nb.deselectAll();
    nb.activeCellIndex = index;
    const cell = nb.widgets[index];
    if (cell) {
      await nb.scrollToCell(cell, 'center');
      cell.node.classList.add('nbapps-flash');
      setTimeout(() => cell.node.classList.remove('nbapps-flash'), 1600);
    }
    return true;
  }

  // -- validation ------------------------------------------------------------------------------

  async validate(): Promise<void> {
    if (this.validation.running) {
      return;
    }
    this.validation = {
      running: true,
      joined: false,
      message: 'Saving…',
      startedAt: Date.now(),
      jobId: null,
      error: null
    };
    this._emit();
    try {
      await this.panel.context.save();
      const { job, joined } = await api.startJob('validate', {
        path: this.path,
        execute: this.env.executeOnValidate()
      });
      this.validation = { ...this.validation, jobId: job.id, joined };
      this._validatePoll = pollJob<ValidateJob>(
        'validate',
        job as ValidateJob,
        snap => this._onValidateSnapshot(snap),
        err => this._validationFailed(errorText(err))
      );
    } catch (err) {
      this._validationFailed(errorText(err));
    }
  }

  async cancelValidate(): Promise<void> {
    const id = this.validation.jobId;
    if (!this.validation.running || !id) {
      return;
    }
    this.validation = { ...this.validation, message: 'Cancelling…' };
    this._emit();
    try {
      await api.cancelJob('validate', id);
    } catch (err) {
      this._validationFailed(errorText(err));
    }
  }

  private _onValidateSnapshot(job: ValidateJob): void {
    if (this._disposed) {
      return;
    }
    if (job.state === 'succeeded' && job.result?.report) {
      this.report = job.result.report;
      this.validation = { ...this.validation, running: false, message: '', error: null };
    } else if (job.state === 'failed') {
      this._validationFailed(jobError(job));
      return;
    } else if (job.state === 'cancelled') {
      this.validation = { ...this.validation, running: false, message: 'Validation cancelled' };
    } else {
      this.validation = { ...this.validation, message: job.message || 'Validating…' };
    }
    this._emit();
  }

  private _validationFailed(message: string): void {
    this.validation = { ...this.validation, running: false, message: '', error: message };
    this._emit();
  }

  // -- publishing ------------------------------------------------------------------------------

  private _dispatch(event: PublishEvent): void {
    const before = this.publish;
    this.publish = publishReducer(this.publish, event);
    if (this.publish === before) {
      return;
    }
    this._emit();
    if (this.publish.phase === 'checking' && before.phase !== 'checking') {
      this._followCheck();
    }
    if (isBusy(before) && !isBusy(this.publish)) {
      this._publishFinished();
    }
  }

  /** The current phase (a method: TypeScript narrows `this.publish` across awaits). */
  private _phase(): PublishState['phase'] {
    return this.publish.phase;
  }

  /** The gallery app recorded in the notebook (`metadata.nbapps.slug`), if any. */
  get appSlug(): string | null {
    return appSlugOf(this.panel.content.model?.getMetadata('nbapps'));
  }

  /**
   * Save, validate, bundle, submit, then follow the gallery's own check; resolves with the final
   * state. The first publish records the gallery app in `metadata.nbapps.slug` before saving,
   * so the submitted notebook carries its identity.
   */
  async publishApp(): Promise<PublishState> {
    if (!canStart(this.publish)) {
      return this.publish;
    }
    this._stopFollowing();
    this._finishRun(); // a publish still waiting for the gallery's verdict is left behind
    const run = ++this._run;
    this._dispatch({ type: 'start' });
    const done = new Promise<PublishState>(resolve => (this._publishResolve = resolve));
    const gallery = this.env.galleryUrl();
    if (!gallery) {
      this._dispatch({
        type: 'error',
        message: 'No gallery URL: set it in Settings → Settings Editor → nbapps.'
      });
      return done;
    }
    try {
      await this._ensureAppSlug(gallery);
    } catch (err) {
      this._dispatch({ type: 'error', message: errorText(err) });
      return done;
    }
    if (run !== this._run) {
      return done;
    }
    if (this.publish.phase !== 'saving') {
      this._dispatch({ type: 'saved' }); // cancelled meanwhile: it never started
      return done;
    }
    try {
      await this.panel.context.save();
    } catch (err) {
      this._dispatch({ type: 'error', message: `Could not save the notebook: ${errorText(err)}` });
      return done;
    }
    this._dispatch({ type: 'saved' });
    if (this._phase() !== 'starting') {
      return done; // cancelled while saving
    }
    api
      .startJob('publish', { path: this.path, gallery_url: gallery })
      .then(({ job }) => {
        if (run !== this._run) {
          return;
        }
        if (this._phase() === 'cancelling') {
          void api.cancelJob('publish', job.id).catch(() => undefined);
        }
        this._publishPoll = pollJob<JobSnapshot>(
          'publish',
          job,
          snap => {
            if (snap.state === 'succeeded') {
              this.adoptReport(snap.result?.report as ReportData | undefined);
            }
            this._dispatch({ type: 'job', job: snap });
          },
          err => this._dispatch({ type: 'error', message: errorText(err) })
        );
      })
      .catch(err => this._dispatch({ type: 'error', message: errorText(err) }));
    return done;
  }

  /**
   * Record the gallery app in the notebook if none is. The lab server proposes it: the app this
   * notebook was published to before, else a name from the title that no other app of the
   * user's has (two notebooks with one title are two apps).
   */
  private async _ensureAppSlug(gallery: string): Promise<void> {
    const model = this.panel.content.model;
    if (!model || this.appSlug) {
      return;
    }
    const title = formFromMeta(model.getMetadata('nbapps')).title;
    const { slug } = await api.appIdentity(this.path, gallery, title);
    if (this.appSlug) {
      return; // recorded meanwhile (another view of the notebook)
    }
    const meta = model.getMetadata('nbapps');
    const base = meta && typeof meta === 'object' && !Array.isArray(meta) ? meta : {};
    model.setMetadata('nbapps', { ...base, slug });
  }

  async cancelPublish(): Promise<void> {
    const before = this.publish;
    this._dispatch({ type: 'cancel' });
    if (before.phase === 'running') {
      try {
        await api.cancelJob('publish', before.jobId);
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) {
          this._dispatch({ type: 'error', message: errorText(err) });
        }
      }
    }
  }

  resetPublish(): void {
    this._dispatch({ type: 'reset' });
  }

  /** Poll the submission until the gallery's check ends: quickly at first, then less often. */
  private _followCheck(): void {
    this._stopFollowing();
    const state = this.publish;
    if (state.phase !== 'checking') {
      return;
    }
    const id = state.submission.id;
    const gallery = this.env.galleryUrl();
    const follow: FollowHandle = { stopped: false, timer: undefined };
    this._follow = follow;
    let attempt = 0;
    let key = checkKey(state.submission);
    const schedule = () => {
      if (!follow.stopped) {
        follow.timer = setTimeout(tick, pollDelay(attempt++));
      }
    };
    const tick = async () => {
      try {
        const sub = await api.submission(gallery, id);
        if (follow.stopped) {
          return;
        }
        if (checkKey(sub) !== key) {
          key = checkKey(sub);
          attempt = 0; // something moved: look again soon
        }
        this._dispatch({ type: 'check', submission: sub });
      } catch (err) {
        if (follow.stopped) {
          return;
        }
        this._dispatch({ type: 'checkError', message: errorText(err) });
      }
      if (this._phase() === 'checking') {
        schedule();
      } else {
        follow.stopped = true;
      }
    };
    schedule();
  }

  private _stopFollowing(): void {
    if (this._follow) {
      this._follow.stopped = true;
      clearTimeout(this._follow.timer);
      this._follow = null;
    }
  }

  private _publishFinished(): void {
    this._publishPoll?.stop();
    this._stopFollowing();
    const state = this.publish;
    if (state.phase === 'submitted' || state.phase === 'blocked' || state.phase === 'rejected') {
      void this.refreshSubmissions();
    }
    this._finishRun();
  }

  /** Tell the environment (once per publish) how it ended, and resolve `publishApp`. */
  private _finishRun(): void {
    if (this._notified === this._run) {
      return;
    }
    this._notified = this._run;
    const state = this.publish;
    if (this._run > 0 && !isBusy(state)) {
      this.env.onPublishFinished?.(this, state);
    }
    this._publishResolve?.(state);
    this._publishResolve = null;
  }

  /** The report a finished publish job carried (so its findings show in the panel). */
  adoptReport(report: ReportData | null | undefined): void {
    if (report) {
      this.report = report;
      this._emit();
    }
  }

  // -- contract and submissions ----------------------------------------------------------------

  private _scheduleContract(): void {
    clearTimeout(this._contractTimer);
    this._contractTimer = setTimeout(() => void this.refreshContract(), 600);
  }

  async refreshContract(): Promise<void> {
    const model = this.panel.content.model;
    if (!model || this._disposed) {
      return;
    }
    let source: string | null = null;
    for (let i = 0; i < model.cells.length; i++) {
      const cell = model.cells.get(i);
      if (hasTag(cell.getMetadata('tags'), PARAMETERS_TAG)) {
        source = cell.sharedModel.getSource();
        break;
      }
    }
    this.hasParametersCell = source !== null;
    if (source === null) {
      this.contract = null;
      this.contractError = null;
      this._lastContractKey = '';
      this._emit();
      return;
    }
    const meta = (model.getMetadata('nbapps') ?? {}) as { parameters?: unknown };
    const constraints = meta.parameters ?? {};
    const key = JSON.stringify([source, constraints]);
    if (key === this._lastContractKey) {
      return;
    }
    this._lastContractKey = key;
    try {
      this.contract = await api.contract(source, constraints);
      this.contractError = null;
    } catch (err) {
      this.contractError = errorText(err);
      this._lastContractKey = '';
    }
    this._emit();
  }

  async refreshSubmissions(): Promise<void> {
    const gallery = this.env.galleryUrl();
    if (!gallery) {
      this.submissions = null;
      this.submissionsError = 'No gallery URL set (Settings → nbapps).';
      this._emit();
      return;
    }
    this.submissionsLoading = true;
    this._emit();
    try {
      this.submissions = await api.submissions(this.path, gallery, this.appSlug);
      this.submissionsError = null;
    } catch (err) {
      this.submissionsError = errorText(err);
    }
    this.submissionsLoading = false;
    this._emit();
  }

  private _emit(): void {
    if (!this._disposed) {
      this._changed.emit();
    }
  }

  private _changed = new Signal<this, void>(this);
  private _disposed = false;
  private _validatePoll: { stop: () => void } | null = null;
  private _publishPoll: { stop: () => void } | null = null;
  private _publishResolve: ((s: PublishState) => void) | null = null;
  private _follow: FollowHandle | null = null;
  /** Publish runs started / notified (one notification per run). */
  private _run = 0;
  private _notified = 0;
  private _kernelGuard: KernelInfoGuard;
  private _contractTimer: ReturnType<typeof setTimeout> | undefined;
  private _lastContractKey = '';
}

function jobError(job: { error?: { error?: string; message?: string; hint?: string } | null }): string {
  const e = job.error ?? {};
  const base = [e.error, e.message].filter(Boolean).join(': ') || 'The job failed.';
  return e.hint ? `${base} — ${e.hint}` : base;
}
