import { checkLine, decisionOf, notesOf } from '../submissions';

const reviews = [
  { action: 'request_changes', actor: 'rita', comment: 'Add a legend', at: '2026-01-01T10:00:00Z' },
  { action: 'request_changes', actor: 'rob', comment: 'And units', at: '2026-01-02T10:00:00Z' }
];

describe('decision and reasons', () => {
  it('shows the latest decision with its comment', () => {
    const d = decisionOf({ id: 1, state: 'changes_requested', reviews });
    expect(d).toEqual({
      action: 'request_changes',
      label: 'Changes requested by rob',
      actor: 'rob',
      comment: 'And units',
      at: '2026-01-02T10:00:00Z'
    });
  });
  it('a rejection', () => {
    const d = decisionOf({
      id: 1,
      state: 'rejected',
      reviews: [{ action: 'reject', actor: 'rita', comment: 'Duplicate of sales-board', at: null }]
    });
    expect(d?.label).toBe('Rejected by rita');
    expect(d?.comment).toBe('Duplicate of sales-board');
  });
  it('falls back to decided_by and comment of galleries without reviews', () => {
    const d = decisionOf({ id: 1, state: 'rejected', decided_by: 'rita', comment: ' no ' });
    expect(d).toMatchObject({ action: 'reject', label: 'Rejected by rita', comment: 'no' });
    expect(decisionOf({ id: 1, state: 'submitted' })).toBeNull();
    expect(decisionOf({ id: 1, state: 'submitted', reviews: [{ action: 'submit' }] })).toBeNull();
  });
  it('lists earlier decisions and plain comments, oldest first', () => {
    const notes = notesOf({
      id: 1,
      reviews,
      comments: [
        { author: 'ana', comment: 'Legend added?', at: '2026-01-01T12:00:00Z' },
        { author: 'ana', comment: '   ', at: '2026-01-01T13:00:00Z' }
      ]
    });
    expect(notes).toEqual([
      { author: 'rita', action: 'Changes requested', text: 'Add a legend', at: '2026-01-01T10:00:00Z' },
      { author: 'ana', action: null, text: 'Legend added?', at: '2026-01-01T12:00:00Z' }
    ]);
  });
});

describe('check line of a listed submission', () => {
  it('says where the check stands', () => {
    expect(checkLine({ id: 1, state: 'validating', check: { state: 'queued', queue_position: 1 } })).toBe(
      'Checking on the gallery — place 1 in the queue'
    );
    expect(
      checkLine({
        id: 1,
        state: 'failed',
        check: { state: 'failed', findings: [{ code: 'NBA070', message: 'x', severity: 'error' }] }
      })
    ).toBe("Failed the gallery's check: 1 problem");
    expect(checkLine({ id: 1, state: 'submitted', check: { state: 'passed' } })).toBe(
      "Passed the gallery's check"
    );
    expect(checkLine({ id: 1, state: 'submitted' })).toBeNull();
  });
});
