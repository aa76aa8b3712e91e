/**
 * The "Publish app" flow as a pure state machine: save → validate → bundle → submit (the
 * server's publish job, `/nbapps/publish/<id>`, with cancel) → check (the gallery runs the
 * submission itself; followed through `/nbapps/submissions/<id>`). The local validation is the
 * fast first check; the gallery's verdict is the one that counts.
 * The UI renders `PublishState`; the controller feeds it events and acts on the new state.
 */
import {
  CheckedSubmission,
  GalleryCheck,
  checkFindings,
  checkLabel,
  checkOutcome
} from './check';
import { Finding, isError } from './findings';

/** Steps as the server's publish job reports them (`step`), the local save, the gallery check. */
export const PUBLISH_STEPS = ['save', 'validate', 'bundle', 'submit', 'check'] as const;
export type PublishStep = (typeof PUBLISH_STEPS)[number];

export const STEP_LABELS: Record<PublishStep, string> = {
  save: 'Saving the notebook',
  validate: 'Validating and running the notebook',
  bundle: 'Building the bundle',
  submit: 'Submitting to the gallery',
  check: 'Checking on the gallery'
};

/** The job's own steps (a job never reports `save` or `check`). */
const JOB_STEPS: readonly string[] = ['validate', 'bundle', 'submit'];

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** What `GET /nbapps/publish/<id>` returns (only the fields the flow reads). */
export interface JobSnapshot {
  id: string;
  state: JobState;
  step?: string | null;
  message?: string | null;
  result?: PublishResult | null;
  error?: { message?: string; error?: string; hint?: string } | null;
}

export interface Submission extends CheckedSubmission {
  id: string | number;
  url?: string | null;
  state?: string | null;
  /** The gallery app (slug) the submission belongs to. */
  app?: string | null;
  number?: number | null;
  check?: GalleryCheck | null;
  [key: string]: unknown;
}

export interface PublishResult {
  outcome: 'submitted' | 'blocked';
  submission?: Submission | null;
  report?: { findings?: Finding[]; ok?: boolean } | null;
}

export type PublishState =
  | { phase: 'idle' }
  | { phase: 'saving' }
  | { phase: 'starting' }
  | { phase: 'running'; jobId: string; step: PublishStep; message: string }
  | { phase: 'cancelling'; jobId: string | null }
  /** Submitted; the gallery is running its own check (`pollError`: the last poll failed). */
  | {
      phase: 'checking';
      submission: Submission;
      warnings: Finding[];
      pollError: string | null;
    }
  /** Waiting for review. `galleryFindings`: warnings of the gallery's check, if it ran one. */
  | { phase: 'submitted'; submission: Submission; warnings: Finding[]; galleryFindings: Finding[] }
  | { phase: 'blocked'; findings: Finding[] }
  /** The gallery's check failed (`error`: it could not run its check at all). */
  | { phase: 'rejected'; submission: Submission; findings: Finding[]; error: boolean }
  | { phase: 'failed'; error: string }
  | { phase: 'cancelled' };

export type PublishEvent =
  | { type: 'start' }
  | { type: 'saved' }
  | { type: 'job'; job: JobSnapshot }
  | { type: 'cancel' }
  | { type: 'error'; message: string }
  /** A fresh answer of `GET /api/submissions/<id>` for the submission being checked. */
  | { type: 'check'; submission: Submission }
  | { type: 'checkError'; message: string }
  | { type: 'reset' };

export const IDLE: PublishState = { phase: 'idle' };

const TERMINAL = new Set(['idle', 'submitted', 'blocked', 'rejected', 'failed', 'cancelled']);

/** A publish is under way (a new one cannot start; ending it notifies once). */
export function isBusy(state: PublishState): boolean {
  return !TERMINAL.has(state.phase);
}

/** A new publish may start: nothing runs, or only the gallery check is being followed. */
export function canStart(state: PublishState): boolean {
  return !isBusy(state) || state.phase === 'checking';
}

export function canCancel(state: PublishState): boolean {
  return state.phase === 'saving' || state.phase === 'starting' || state.phase === 'running';
}

function asStep(step: string | null | undefined): PublishStep {
  return JOB_STEPS.includes(step ?? '') ? (step as PublishStep) : 'validate';
}

function errorText(job: JobSnapshot): string {
  const e = job.error;
  if (!e) {
    return 'The publish job failed.';
  }
  const base = [e.error, e.message].filter(Boolean).join(': ') || 'The publish job failed.';
  return e.hint ? `${base} (${e.hint})` : base;
}

/** The state a finished job leads to. */
function finished(job: JobSnapshot): PublishState {
  if (job.state === 'cancelled') {
    return { phase: 'cancelled' };
  }
  if (job.state === 'failed') {
    return { phase: 'failed', error: errorText(job) };
  }
  const result = job.result;
  const findings = result?.report?.findings ?? [];
  if (result?.outcome === 'submitted' && result.submission) {
    return checked(result.submission, findings.filter(f => !isError(f)));
  }
  if (result?.outcome === 'blocked') {
    return { phase: 'blocked', findings: findings.filter(isError) };
  }
  return { phase: 'failed', error: 'The server sent a result this version does not understand.' };
}

/** The state a submission (new, or polled again) leads to, by the gallery's check. */
function checked(submission: Submission, warnings: Finding[]): PublishState {
  switch (checkOutcome(submission)) {
    case 'pending':
      return { phase: 'checking', submission, warnings, pollError: null };
    case 'failed':
      return { phase: 'rejected', submission, findings: checkFindings(submission), error: false };
    case 'error':
      return { phase: 'rejected', submission, findings: checkFindings(submission), error: true };
    default:
      return {
        phase: 'submitted',
        submission,
        warnings,
        galleryFindings: checkFindings(submission)
      };
  }
}

function jobIdOf(state: PublishState): string | null {
  return state.phase === 'running' || state.phase === 'cancelling' ? state.jobId : null;
}

/** The next state. Events that make no sense in a state leave it unchanged. */
export function publishReducer(state: PublishState, event: PublishEvent): PublishState {
  switch (event.type) {
    case 'start':
      return canStart(state) ? { phase: 'saving' } : state;
    case 'reset':
      return isBusy(state) ? state : IDLE;
    case 'saved':
      if (state.phase === 'saving') {
        return { phase: 'starting' };
      }
      if (state.phase === 'cancelling' && state.jobId === null) {
        return { phase: 'cancelled' }; // cancelled while saving: never started
      }
      return state;
    case 'cancel':
      return canCancel(state) ? { phase: 'cancelling', jobId: jobIdOf(state) } : state;
    case 'error':
      return isBusy(state) && state.phase !== 'checking'
        ? { phase: 'failed', error: event.message }
        : state;
    case 'check':
      if (
        state.phase !== 'checking' ||
        String(event.submission.id) !== String(state.submission.id)
      ) {
        return state; // not following this one (any more)
      }
      return checked({ ...state.submission, ...event.submission }, state.warnings);
    case 'checkError':
      return state.phase === 'checking' ? { ...state, pollError: event.message } : state;
    case 'job': {
      const job = event.job;
      const ours = jobIdOf(state);
      if (ours !== null && job.id !== ours) {
        return state; // a late snapshot of some other job
      }
      const done = job.state === 'succeeded' || job.state === 'failed' || job.state === 'cancelled';
      if (state.phase === 'cancelling') {
        return done ? finished(job) : { phase: 'cancelling', jobId: job.id };
      }
      if (state.phase !== 'starting' && state.phase !== 'running') {
        return state;
      }
      if (done) {
        return finished(job);
      }
      const step = asStep(job.step);
      return {
        phase: 'running',
        jobId: job.id,
        step,
        message: job.message || STEP_LABELS[step]
      };
    }
  }
  return state;
}

export interface Progress {
  /** 0…1, or null when not publishing. */
  fraction: number | null;
  label: string;
}

/** The progress bar and line of text for a state. */
export function progressOf(state: PublishState): Progress {
  const of = (step: PublishStep) => PUBLISH_STEPS.indexOf(step) / PUBLISH_STEPS.length;
  switch (state.phase) {
    case 'saving':
      return { fraction: of('save'), label: STEP_LABELS.save };
    case 'starting':
      return { fraction: of('validate'), label: 'Starting…' };
    case 'running':
      return { fraction: of(state.step), label: state.message };
    case 'checking':
      return { fraction: of('check'), label: checkLabel(state.submission.check) };
    case 'cancelling':
      return { fraction: null, label: 'Cancelling…' };
    case 'submitted':
      return {
        fraction: 1,
        label: state.submission.check?.state === 'passed'
          ? "Passed the gallery's check: submitted for review"
          : 'Submitted for review'
      };
    case 'rejected': {
      if (state.error) {
        return { fraction: null, label: 'The gallery could not check this submission' };
      }
      const n = state.findings.filter(isError).length;
      return {
        fraction: null,
        label: `Failed the gallery's check${n ? `: ${n} problem${n === 1 ? '' : 's'} to fix` : ''}`
      };
    }
    case 'blocked': {
      const n = state.findings.length;
      return { fraction: null, label: `Not published: ${n} problem${n === 1 ? '' : 's'} to fix` };
    }
    case 'failed':
      return { fraction: null, label: `Publishing failed: ${state.error}` };
    case 'cancelled':
      return { fraction: null, label: 'Publishing cancelled' };
    default:
      return { fraction: null, label: '' };
  }
}
