import {
  cellIndexOf,
  findingsByCell,
  firstLine,
  locateFinding,
  shownCellNumber,
  summarize
} from '../findings';

const sources = ['# Title', 'n = 3  # how many', 'import os\nprint(n)', '', 'print(n)'];

describe('firstLine', () => {
  it('matches nbapps.findings.first_line', () => {
    expect(firstLine('\n   \n  x = 1  \ny')).toBe('x = 1');
    expect(firstLine(['a', 'b\nc'])).toBe('ab');
    expect(firstLine('x'.repeat(100))).toBe('x'.repeat(79) + '…');
    expect(firstLine('')).toBe('');
  });
});

describe('locateFinding', () => {
  it('uses the index when the line still matches', () => {
    expect(locateFinding({ cell: 3, cell_index: 2, cell_line: 'import os' }, sources)).toBe(2);
  });
  it('follows the cell when cells were inserted above it', () => {
    const moved = ['# new cell', ...sources];
    expect(locateFinding({ cell: 3, cell_index: 2, cell_line: 'import os' }, moved)).toBe(3);
  });
  it('picks the nearest of several matching cells', () => {
    const dup = ['print(n)', 'a', 'b', 'c', 'print(n)', 'd'];
    expect(locateFinding({ cell: 6, cell_index: 5, cell_line: 'print(n)' }, dup)).toBe(4);
  });
  it('falls back to the index when the line is gone', () => {
    expect(locateFinding({ cell: 2, cell_index: 1, cell_line: 'gone = 1' }, sources)).toBe(1);
  });
  it('returns null for notebook findings and vanished cells', () => {
    expect(locateFinding({ cell: null }, sources)).toBeNull();
    expect(locateFinding({}, sources)).toBeNull();
    expect(locateFinding({ cell: 10, cell_index: 9, cell_line: 'nowhere' }, sources)).toBeNull();
    expect(locateFinding({ cell: 10, cell_index: 9 }, sources)).toBeNull();
  });
  it('jumps with cell_index; without it (an older server), with the 1-based cell - 1', () => {
    expect(cellIndexOf({ cell: 3, cell_index: 2 })).toBe(2);
    expect(cellIndexOf({ cell: 3 })).toBe(2);
    expect(cellIndexOf({ cell: null, cell_index: null })).toBeNull();
    expect(locateFinding({ cell: 2 }, sources)).toBe(1);
  });
  it('shows where the cell is now, else the number the finding states', () => {
    expect(shownCellNumber({ cell: 3, cell_index: 2 }, 3)).toBe(4);
    expect(shownCellNumber({ cell: 3, cell_index: 2 }, null)).toBe(3);
    expect(shownCellNumber({}, null)).toBeNull();
  });
});

describe('grouping and summary', () => {
  const findings = [
    { code: 'NBA061', message: 'shell', cell: 3, cell_index: 2, cell_line: 'import os', severity: 'warning' },
    { code: 'NBA031', message: 'no title', cell: null, severity: 'error' },
    { code: 'NBA070', message: 'boom', cell: 3, cell_index: 2, cell_line: 'import os', severity: 'error' }
  ];
  it('groups by current cell, errors first', () => {
    const groups = findingsByCell(findings, sources);
    expect([...groups.keys()].sort()).toEqual([2, null]);
    expect(groups.get(2)!.map(f => f.code)).toEqual(['NBA070', 'NBA061']);
  });
  it('summarizes', () => {
    expect(summarize(findings).text).toBe('2 errors, 1 warning');
    expect(summarize([]).text).toBe('No problems found');
  });
});
