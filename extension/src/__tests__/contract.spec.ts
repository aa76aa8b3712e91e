import { contractRows, describeAllowed, pyLiteral } from '../contract';

describe('contractRows', () => {
  const contract = [
    { name: 'n', type: 'int', default: 3, help: 'how many', choices: null, min: 0, max: 10 },
    { name: 'region', type: 'str', default: 'EU', help: '', choices: ['EU', 'US'] },
    { name: 'limit', type: 'none', default: null },
    { name: 'flags', type: 'list', default: [true, 'a'], help: 'x', max: 5 }
  ];

  it('keeps the order of the parameters cell and formats like Python', () => {
    expect(contractRows(contract)).toEqual([
      { name: 'n', type: 'int', default: '3', allowed: '0 … 10', help: 'how many' },
      { name: 'region', type: 'str', default: '"EU"', allowed: 'one of "EU", "US"', help: '' },
      { name: 'limit', type: 'any', default: 'None', allowed: '', help: '' },
      { name: 'flags', type: 'list', default: '[True, "a"]', allowed: '≤ 5', help: 'x' }
    ]);
  });

  it('accepts the {parameters: [...]} form and skips junk', () => {
    expect(contractRows({ parameters: [null, 7, { type: 'int' }, { name: 'a', default: 1 }] }))
      .toEqual([{ name: 'a', type: 'any', default: '1', allowed: '', help: '' }]);
    expect(contractRows(undefined)).toEqual([]);
    expect(contractRows('nope')).toEqual([]);
  });
});

describe('formatting', () => {
  it('writes Python literals', () => {
    expect(pyLiteral({ a: [false, null] })).toBe('{"a": [False, None]}');
    expect(pyLiteral(1.5)).toBe('1.5');
  });
  it('describes lower bounds alone', () => {
    expect(describeAllowed({ name: 'x', min: 1 })).toBe('≥ 1');
  });
});
