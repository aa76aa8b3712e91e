import { IDLE, PublishEvent, PublishState, canCancel, isBusy, progressOf, publishReducer } from '../publish';

function run(events: PublishEvent[], from: PublishState = IDLE): PublishState {
  return events.reduce(publishReducer, from);
}

const running = (step: string, id = 'j1') => ({
  type: 'job' as const,
  job: { id, state: 'running' as const, step, message: `doing ${step}` }
});

describe('publish state machine', () => {
  it('goes save → validate → bundle → submit → submitted', () => {
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
    expect(fractions).toEqual([0, 0.25, 0.25, 0.5, 0.75, 1]);
    expect(s).toMatchObject({ submission: { id: 7 }, warnings: [{ code: 'NBA061' }] });
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
});
