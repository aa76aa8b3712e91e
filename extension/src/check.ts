/**
 * The gallery's own check of a submission (it validates and runs the submitted source itself)
 * as the analyst sees it, plus the polite polling schedule used to follow it. Pure functions
 * over `GET /api/submissions/<id>` answers (relayed by `/nbapps/submissions/<id>`).
 *
 * A version is `validating` while the gallery's run is queued or running, then `submitted`
 * (passed: it waits for a reviewer) or `failed` (it cannot be approved). A gallery older than
 * these checks answers `submitted` at once and sends no `check`.
 */
import { Finding } from './findings';

export type CheckState = 'none' | 'queued' | 'running' | 'passed' | 'failed' | 'error';

export interface GalleryCheck {
  state: CheckState | string;
  queue_position?: number | null;
  findings?: Finding[] | null;
  runs?: unknown[] | null;
  started_at?: string | null;
  finished_at?: string | null;
  /** Some galleries say what went wrong for `error`. */
  message?: string | null;
}

/** The fields of a submission the check flow reads. */
export interface CheckedSubmission {
  id: string | number;
  state?: string | null;
  check?: GalleryCheck | null;
}

export type CheckOutcome = 'pending' | 'passed' | 'failed' | 'error';

/** Where the gallery's check of this submission stands. */
export function checkOutcome(sub: CheckedSubmission): CheckOutcome {
  const version = sub.state ?? '';
  const check = sub.check?.state ?? '';
  if (check === 'error') {
    return 'error';
  }
  if (version === 'failed' || check === 'failed') {
    return 'failed';
  }
  return version === 'validating' ? 'pending' : 'passed';
}

/** Does this answer of `POST /api/submissions` still have a gallery check to wait for? */
export function needsFollowing(sub: CheckedSubmission): boolean {
  return checkOutcome(sub) === 'pending';
}

function seconds(fromIso: string | null | undefined, now: number): number | null {
  if (!fromIso) {
    return null;
  }
  // the gallery's times are UTC; one without a zone designator is read as UTC too
  const zoned = /(Z|[+-]\d\d:?\d\d)$/.test(fromIso) ? fromIso : `${fromIso}Z`;
  const t = Date.parse(zoned);
  return Number.isNaN(t) ? null : Math.max(0, Math.round((now - t) / 1000));
}

/** One line for the publish box while the gallery checks the submission. */
export function checkLabel(check: GalleryCheck | null | undefined, now = Date.now()): string {
  const head = 'Checking on the gallery';
  switch (check?.state) {
    case 'queued': {
      const k = check.queue_position;
      return typeof k === 'number' && k > 0
        ? `${head} — place ${k} in the queue`
        : `${head} — waiting in the queue`;
    }
    case 'running': {
      const s = seconds(check.started_at, now);
      const running = `${head} — running the notebook`;
      return s === null ? running : `${running} (${s} s)`;
    }
    case 'passed':
      return `${head} — passed`;
    default:
      return `${head} — waiting for a worker`;
  }
}

/** The gallery's findings of a check (never null). */
export function checkFindings(sub: CheckedSubmission): Finding[] {
  const list = sub.check?.findings;
  return Array.isArray(list) ? list.filter(f => f && typeof f.code === 'string') : [];
}

/**
 * Polling delays: `first` ms, growing by `factor` up to `max`; `attempt` counts polls since the
 * check last changed state (a change makes the next poll quick again).
 */
export function pollDelay(attempt: number, first = 1000, factor = 1.6, max = 15000): number {
  return Math.round(Math.min(max, first * Math.pow(factor, Math.max(0, attempt))));
}

/** A key that changes when what the analyst sees of a check changes. */
export function checkKey(sub: CheckedSubmission): string {
  return `${sub.state ?? ''}|${sub.check?.state ?? ''}|${sub.check?.queue_position ?? ''}`;
}
