import {
  IDLE,
  PublishEvent,
  PublishState,
  Submission,
  canCancel,
  canStart,
  isBusy,
  progressOf,
  publishReducer
} from '../publish';

function run(events: PublishEvent[], from: PublishState = IDLE): PublishState {
  return events.reduce(publishReducer, from);
}

const running = (step: string, id = 'j1') => ({
  type: 'job' as const,
  job: { id, state: 'running' as const, step, message: `doing ${step}` }
});

describe('publish state machine', () => {
  it('goes save → validate → bundle → submit → submitted (a gallery without checks)', () => {
    const states: PublishState[] = [];
    let s: PublishState = IDLE;
    for (const e of [
      { type: 'start' },
      { type: 'saved' },
      running('validate'),
      running('bundle'),
      running('submit'),
      {
        type: 'job',
        job: {
          id: 'j1',
          state: 'succeeded',
          result: {
            outcome: 'submitted',
            submission: { id: 7, url: 'http://g/review/7', state: 'submitted' },
            report: { findings: [{ code: 'NBA061', message: 'm', severity: 'warning' }] }
          }
        }
      }
    ] as PublishEvent[]) {
      s = publishReducer(s, e);
      states.push(s);
    }
    expect(states.map(x => x.phase)).toEqual([
      'saving', 'starting', 'running', 'running', 'running', 'submitted'
    ]);
    const fractions = states.map(x => progressOf(x).fraction);
    expect(fractions).toEqual([0, 0.2, 0.2, 0.4, 0.6, 1]);
    expect(s).toMatchObject({ submission: { id: 7 }, warnings: [{ code: 'NBA061' }] });
    expect(progressOf(s).label).toBe('Submitted for review');
    expect(isBusy(s)).toBe(false);
  });

  it('ends blocked with only the error findings', () => {
    const s = run([
      { type: 'start' },
      { type: 'saved' },
      {
        type: 'job',
        job: {
          id: 'j1',
          state: 'succeeded',
          result: {
            outcome: 'blocked',
            report: {
              findings: [
                { code: 'NBA031', message: 'no title', severity: 'error' },
                { code: 'NBA061', message: 'shell', severity: 'warning' }
              ]
            }
          }
        }
      }
    ]);
    expect(s).toEqual({ phase: 'blocked', findings: [{ code: 'NBA031', message: 'no title', severity: 'error' }] });
    expect(progressOf(s).label).toBe('Not published: 1 problem to fix');
  });

  it('cancels while running and waits for the job to confirm', () => {
    let s = run([{ type: 'start' }, { type: 'saved' }, running('validate')]);
    expect(canCancel(s)).toBe(true);
    s = publishReducer(s, { type: 'cancel' });
    expect(s).toEqual({ phase: 'cancelling', jobId: 'j1' });
    s = publishReducer(s, running('bundle'));
    expect(s.phase).toBe('cancelling');
    s = publishReducer(s, { type: 'job', job: { id: 'j1', state: 'cancelled' } });
    expect(s.phase).toBe('cancelled');
  });

  it('cancelling during the save never starts a job', () => {
    const s = run([{ type: 'start' }, { type: 'cancel' }, { type: 'saved' }]);
    expect(s.phase).toBe('cancelled');
  });

  it('reports a failed job with its code and hint', () => {
    const s = run([
      { type: 'start' },
      { type: 'saved' },
      { type: 'job', job: { id: 'j1', state: 'failed', error: { error: 'NBA300', message: 'no token', hint: 'set one' } } }
    ]);
    expect(s).toEqual({ phase: 'failed', error: 'NBA300: no token (set one)' });
  });

  it('ignores snapshots of other jobs and stray events', () => {
    const s = run([{ type: 'start' }, { type: 'saved' }, running('validate')]);
    expect(publishReducer(s, running('submit', 'other'))).toBe(s);
    expect(publishReducer(IDLE, { type: 'saved' })).toBe(IDLE);
    expect(publishReducer(IDLE, running('validate'))).toBe(IDLE);
    expect(publishReducer(s, { type: 'start' })).toBe(s);
  });

  it('a network error fails a busy flow, and reset returns to idle', () => {
    const s = run([{ type: 'start' }, { type: 'error', message: 'offline' }]);
    expect(s).toEqual({ phase: 'failed', error: 'offline' });
    expect(publishReducer(s, { type: 'reset' })).toEqual(IDLE);
    expect(publishReducer(s, { type: 'start' }).phase).toBe('saving');
  });

  it('a job error arriving while the gallery checks changes nothing', () => {
    const s = checking();
    expect(publishReducer(s, { type: 'error', message: 'x' })).toBe(s);
  });
});

const findingsOf = (...codes: string[]) =>
  codes.map((code, i) => ({
    code,
    message: `m${i}`,
    severity: code === 'NBA061' ? 'warning' : 'error',
    cell: 2,
    cell_index: 1
  }));

const submitted = (submission: Submission): PublishEvent[] => [
  { type: 'start' },
  { type: 'saved' },
  running('submit'),
  {
    type: 'job',
    job: {
      id: 'j1',
      state: 'succeeded',
      result: { outcome: 'submitted', submission, report: { findings: findingsOf('NBA061') } }
    }
  }
];

function checking(position: number | null = 2): PublishState {
  return run(
    submitted({
      id: 9,
      url: 'http://g/submissions/9',
      state: 'validating',
      check: { state: 'queued', queue_position: position, findings: [] }
    })
  );
}

describe("following the gallery's check", () => {
  it('waits for the verdict after submitting, showing the place in the queue', () => {
    const s = checking();
    expect(s.phase).toBe('checking');
    expect(isBusy(s)).toBe(true);
    expect(canCancel(s)).toBe(false);
    expect(canStart(s)).toBe(true);
    expect(progressOf(s)).toEqual({
      fraction: 0.8,
      label: 'Checking on the gallery — place 2 in the queue'
    });
    const r = publishReducer(s, {
      type: 'check',
      submission: { id: 9, state: 'validating', check: { state: 'running', queue_position: null } }
    });
    expect(progressOf(r).label).toBe('Checking on the gallery — running the notebook');
    expect(r).toMatchObject({ submission: { url: 'http://g/submissions/9' } }); // kept from before
  });

  it('passes: submitted, with the gallery findings beside the local warnings', () => {
    const s = publishReducer(checking(), {
      type: 'check',
      submission: {
        id: 9,
        state: 'submitted',
        check: { state: 'passed', findings: findingsOf('NBA061') }
      }
    });
    expect(s.phase).toBe('submitted');
    expect(isBusy(s)).toBe(false);
    expect(s).toMatchObject({ warnings: [{ code: 'NBA061' }], galleryFindings: [{ code: 'NBA061' }] });
    expect(progressOf(s).label).toBe("Passed the gallery's check: submitted for review");
  });

  it('fails: the gallery findings, and a clear label', () => {
    const s = publishReducer(checking(), {
      type: 'check',
      submission: { id: 9, state: 'failed', check: { state: 'failed', findings: findingsOf('NBA070', 'NBA061') } }
    });
    expect(s).toMatchObject({ phase: 'rejected', error: false });
    expect(progressOf(s).label).toBe("Failed the gallery's check: 1 problem to fix");
    expect(isBusy(s)).toBe(false);
  });

  it('a check that could not run is an error, not findings', () => {
    const s = publishReducer(checking(), {
      type: 'check',
      submission: { id: 9, state: 'validating', check: { state: 'error', findings: [] } }
    });
    expect(s).toMatchObject({ phase: 'rejected', error: true });
    expect(progressOf(s).label).toBe('The gallery could not check this submission');
  });

  it('keeps waiting through poll errors, and ignores answers about other submissions', () => {
    const s = checking();
    const e = publishReducer(s, { type: 'checkError', message: 'offline' });
    expect(e).toMatchObject({ phase: 'checking', pollError: 'offline' });
    const back = publishReducer(e, {
      type: 'check',
      submission: { id: 9, state: 'validating', check: { state: 'queued', queue_position: 1 } }
    });
    expect(back).toMatchObject({ pollError: null });
    expect(publishReducer(s, { type: 'check', submission: { id: 10, state: 'failed' } })).toBe(s);
    expect(publishReducer(IDLE, { type: 'check', submission: { id: 9, state: 'failed' } })).toBe(IDLE);
  });

  it('a new publish may start while the old one is still being checked', () => {
    expect(publishReducer(checking(), { type: 'start' })).toEqual({ phase: 'saving' });
  });

  it('an old gallery (no check, state submitted) goes straight to submitted', () => {
    const s = run(submitted({ id: 3, state: 'submitted' }));
    expect(s).toMatchObject({ phase: 'submitted', galleryFindings: [] });
  });
});
