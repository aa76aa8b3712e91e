import { checkFindings, checkLabel, checkOutcome, needsFollowing, pollDelay } from '../check';

describe('gallery check outcome', () => {
  it('is pending while the version validates, whatever the check says so far', () => {
    for (const state of ['none', 'queued', 'running', 'passed']) {
      expect(checkOutcome({ id: 1, state: 'validating', check: { state } })).toBe('pending');
    }
    expect(needsFollowing({ id: 1, state: 'validating' })).toBe(true);
  });
  it('follows the version state once it leaves validating', () => {
    expect(checkOutcome({ id: 1, state: 'submitted', check: { state: 'passed' } })).toBe('passed');
    expect(checkOutcome({ id: 1, state: 'failed', check: { state: 'failed' } })).toBe('failed');
    expect(checkOutcome({ id: 1, state: 'failed' })).toBe('failed');
    expect(checkOutcome({ id: 1, state: 'approved', check: { state: 'passed' } })).toBe('passed');
  });
  it('an error of the check itself is its own outcome', () => {
    expect(checkOutcome({ id: 1, state: 'validating', check: { state: 'error' } })).toBe('error');
  });
  it('a gallery without checks: submitted is passed, nothing to follow', () => {
    expect(checkOutcome({ id: 1, state: 'submitted' })).toBe('passed');
    expect(needsFollowing({ id: 1, state: 'submitted' })).toBe(false);
  });
});

describe('gallery check label', () => {
  it('names the place in the queue, or the run with its time', () => {
    expect(checkLabel({ state: 'queued', queue_position: 3 })).toBe(
      'Checking on the gallery — place 3 in the queue'
    );
    expect(checkLabel({ state: 'queued', queue_position: null })).toBe(
      'Checking on the gallery — waiting in the queue'
    );
    const now = Date.parse('2026-01-01T10:00:12Z');
    expect(checkLabel({ state: 'running', started_at: '2026-01-01T10:00:00Z' }, now)).toBe(
      'Checking on the gallery — running the notebook (12 s)'
    );
    expect(checkLabel({ state: 'running', started_at: 'garbage' }, now)).toBe(
      'Checking on the gallery — running the notebook'
    );
    expect(checkLabel({ state: 'none' })).toBe('Checking on the gallery — waiting for a worker');
    expect(checkLabel(null)).toBe('Checking on the gallery — waiting for a worker');
  });
  it('findings: only well-formed ones, never null', () => {
    const f = { code: 'NBA070', message: 'boom' };
    expect(checkFindings({ id: 1, check: { state: 'failed', findings: [f, null as any, {} as any] } })).toEqual([f]);
    expect(checkFindings({ id: 1 })).toEqual([]);
  });
});

describe('poll delay', () => {
  it('starts at a second and backs off to a ceiling', () => {
    const delays = [0, 1, 2, 3, 4, 5, 6, 7, 8, 20].map(n => pollDelay(n));
    expect(delays[0]).toBe(1000);
    for (let i = 1; i < delays.length; i++) {
      expect(delays[i]).toBeGreaterThanOrEqual(delays[i - 1]);
    }
    expect(delays[delays.length - 1]).toBe(15000);
    expect(pollDelay(-3)).toBe(1000);
  });
});
