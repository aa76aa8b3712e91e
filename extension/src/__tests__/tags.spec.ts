import { hasTag, markerClasses, planToggle, readTags, toggleTag } from '../tags';

describe('readTags', () => {
  it('accepts only arrays of strings and drops duplicates', () => {
    expect(readTags(undefined)).toEqual([]);
    expect(readTags('widget')).toEqual([]);
    expect(readTags(['a', 1, 'b', 'a', null])).toEqual(['a', 'b']);
  });
});

describe('toggleTag', () => {
  it('adds a missing tag at the end and keeps the others in order', () => {
    expect(toggleTag(['hide-input', 'x'], 'widget')).toEqual(['hide-input', 'x', 'widget']);
  });
  it('removes a present tag', () => {
    expect(toggleTag(['widget', 'x'], 'widget')).toEqual(['x']);
  });
  it('honours force and never duplicates', () => {
    expect(toggleTag(['widget'], 'widget', true)).toEqual(['widget']);
    expect(toggleTag([], 'widget', false)).toEqual([]);
  });
  it('does not mutate its input', () => {
    const tags = ['a'];
    toggleTag(tags, 'widget');
    expect(tags).toEqual(['a']);
  });
});

describe('planToggle', () => {
  it('toggles widget on one cell only', () => {
    expect(planToggle([undefined, ['widget'], ['widget']], 0, 'widget')).toEqual([
      { index: 0, tags: ['widget'] }
    ]);
  });
  it('removes the tags key when the last tag goes', () => {
    expect(planToggle([['widget']], 0, 'widget')).toEqual([{ index: 0, tags: undefined }]);
  });
  it('moves the parameters tag: exactly one parameters cell', () => {
    const cells = [['parameters'], ['x'], ['parameters', 'y']];
    expect(planToggle(cells, 1, 'parameters')).toEqual([
      { index: 1, tags: ['x', 'parameters'] },
      { index: 0, tags: undefined },
      { index: 2, tags: ['y'] }
    ]);
  });
  it('turning parameters off touches only that cell', () => {
    expect(planToggle([['parameters'], ['parameters']], 0, 'parameters')).toEqual([
      { index: 0, tags: undefined }
    ]);
  });
  it('forcing a tag that is already there changes nothing', () => {
    expect(planToggle([['widget']], 0, 'widget', true)).toEqual([]);
  });
  it('ignores out-of-range cells', () => {
    expect(planToggle([[]], 3, 'widget')).toEqual([]);
  });
});

describe('markers', () => {
  it('maps tags to marker classes', () => {
    expect(markerClasses(['parameters'])).toEqual({
      'nbapps-tag-widget': false,
      'nbapps-tag-parameters': true
    });
    expect(hasTag(['widget'], 'widget')).toBe(true);
  });
});
