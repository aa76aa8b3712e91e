/**
 * A notebook's submissions as the panel lists them: state, the gallery's check, the reviewer's
 * decision with its reason, and the comment thread. Pure functions over what
 * `/nbapps/submissions` relays from the gallery (`GET /api/submissions/<id>`: `reviews`
 * [action, actor, comment, at] and `comments` [author, comment, at]).
 */
import { CheckedSubmission, checkFindings, checkLabel, checkOutcome } from './check';
import { isError } from './findings';

export interface Review {
  action?: string | null;
  actor?: string | null;
  comment?: string | null;
  at?: string | null;
}

export interface Comment {
  author?: string | null;
  comment?: string | null;
  at?: string | null;
}

export interface SubmissionRecord extends CheckedSubmission {
  id: number | string;
  url?: string | null;
  number?: number | null;
  title?: string | null;
  created_at?: string | null;
  decided_by?: string | null;
  decided_at?: string | null;
  /** The latest decision's comment (also in `reviews`). */
  comment?: string | null;
  reviews?: Review[] | null;
  comments?: Comment[] | null;
}

/** Review actions that decide a submission, with how the panel says them. */
const DECISIONS: Record<string, string> = {
  approve: 'Approved',
  request_changes: 'Changes requested',
  reject: 'Rejected',
  withdraw: 'Withdrawn'
};

/** The decision a version state stands for (galleries that send no `reviews`). */
const STATE_DECISION: Record<string, string> = {
  approved: 'approve',
  changes_requested: 'request_changes',
  rejected: 'reject',
  withdrawn: 'withdraw'
};

export interface Decision {
  action: string;
  /** "Changes requested by rita" */
  label: string;
  actor: string | null;
  comment: string;
  at: string | null;
}

export interface Note {
  author: string;
  /** "Changes requested" for an earlier decision, null for a plain comment. */
  action: string | null;
  text: string;
  at: string | null;
}

function text(value: unknown): string {
  return typeof value === 'string' ? value.trim() : '';
}

function decision(
  action: string,
  actor: string | null,
  comment: string,
  at: string | null
): Decision {
  const said = DECISIONS[action] ?? action.replace(/_/g, ' ');
  return { action, label: actor ? `${said} by ${actor}` : said, actor, comment, at };
}

/** The decision that gave the submission its current state, with its reason; null if none. */
export function decisionOf(item: SubmissionRecord): Decision | null {
  const reviews = (item.reviews ?? []).filter(r => r && DECISIONS[text(r.action)]);
  const last = reviews[reviews.length - 1];
  if (last) {
    const actor = text(last.actor) || null;
    return decision(text(last.action), actor, text(last.comment), last.at ?? null);
  }
  const action = STATE_DECISION[item.state ?? ''];
  if (action && (item.decided_by || item.comment)) {
    return decision(action, item.decided_by ?? null, text(item.comment), item.decided_at ?? null);
  }
  return null;
}

/**
 * Everything said about a submission apart from the decision shown on top: earlier decisions
 * with a comment and plain comments, oldest first.
 */
export function notesOf(item: SubmissionRecord): Note[] {
  const reviews = (item.reviews ?? []).filter(r => r && DECISIONS[text(r.action)]);
  const earlier = reviews.slice(0, -1);
  const notes: Note[] = [
    ...earlier
      .filter(r => text(r.comment))
      .map(r => ({
        author: text(r.actor) || 'someone',
        action: DECISIONS[text(r.action)],
        text: text(r.comment),
        at: r.at ?? null
      })),
    ...(item.comments ?? [])
      .filter(c => c && text(c.comment))
      .map(c => ({
        author: text(c.author) || 'someone',
        action: null,
        text: text(c.comment),
        at: c.at ?? null
      }))
  ];
  return notes.sort((a, b) => String(a.at ?? '').localeCompare(String(b.at ?? '')));
}

/** One line about the gallery's check of a listed submission, or null when there is none. */
export function checkLine(item: SubmissionRecord): string | null {
  if (!item.check && item.state !== 'validating' && item.state !== 'failed') {
    return null;
  }
  switch (checkOutcome(item)) {
    case 'pending':
      return checkLabel(item.check);
    case 'error':
      return 'The gallery could not run its check';
    case 'failed': {
      const n = checkFindings(item).filter(isError).length;
      return `Failed the gallery's check${n ? `: ${n} problem${n === 1 ? '' : 's'}` : ''}`;
    }
    default:
      return item.check?.state === 'passed' ? "Passed the gallery's check" : null;
  }
}
