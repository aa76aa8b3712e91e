import { appSlugOf, editMeta, fieldsToRefresh, formFromMeta, metaFromForm, withField } from '../meta';

describe('app metadata form', () => {
  it('reads metadata.nbapps, tolerating wrong types', () => {
    expect(formFromMeta({ title: 'T', description: 5, tags: ['a', 3, 'b'] })).toEqual({
      title: 'T',
      description: '',
      tags: 'a, b'
    });
    expect(formFromMeta(undefined)).toEqual({ title: '', description: '', tags: '' });
  });

  it('writes the form back keeping other keys and dropping empty fields', () => {
    const meta = { title: 'Old', files: ['data.csv'], tags: ['x'] };
    expect(metaFromForm(meta, { title: ' New ', description: '', tags: 'a, b,, a ' })).toEqual({
      title: 'New',
      files: ['data.csv'],
      tags: ['a', 'b']
    });
    expect(metaFromForm(meta, { title: '', description: 'D', tags: '' })).toEqual({
      files: ['data.csv'],
      description: 'D'
    });
    expect(meta).toEqual({ title: 'Old', files: ['data.csv'], tags: ['x'] });
  });

  it('writes one field at a time, keeping the others as the model has them', () => {
    const meta = { title: 'New elsewhere', description: 'Old', slug: 'sales' };
    expect(withField(meta, 'description', ' Fresh ')).toEqual({
      title: 'New elsewhere',
      description: 'Fresh',
      slug: 'sales'
    });
    expect(withField(meta, 'title', '')).toEqual({ description: 'Old', slug: 'sales' });
    expect(withField(meta, 'tags', 'x, y, x')).toMatchObject({ tags: ['x', 'y'] });
    expect(meta.title).toBe('New elsewhere');
  });

  it('a keystroke that changes nothing to store writes nothing', () => {
    const meta = { title: 'Sales', tags: ['a'] };
    expect(editMeta(meta, 'title', 'Sales ')).toBeNull();
    expect(editMeta(meta, 'tags', 'a, ')).toBeNull();
    expect(editMeta(meta, 'title', 'Sales b')).toEqual({ title: 'Sales b', tags: ['a'] });
    expect(editMeta(undefined, 'title', '')).toBeNull();
  });

  it('refreshes only the fields nobody types in, and only when they say something else', () => {
    const meta = { title: 'T2', description: 'D2', tags: ['a', 'b'] };
    // typing in the description: the model's (older or newer) description never replaces it
    expect(fieldsToRefresh({ title: 'T1', description: 'typing…', tags: 'a,b' }, meta, 'description')).toEqual({
      title: 'T2'
    });
    // equivalent text stays (no caret jump)
    expect(fieldsToRefresh({ title: 'T2 ', description: 'D2', tags: 'a,  b' }, meta, null)).toEqual({});
    expect(fieldsToRefresh({ title: 'x', description: 'y', tags: '' }, meta, null)).toEqual({
      title: 'T2',
      description: 'D2',
      tags: 'a, b'
    });
  });

  it('the recorded app slug', () => {
    expect(appSlugOf({ slug: ' sales-board ' })).toBe('sales-board');
    expect(appSlugOf({ slug: '' })).toBeNull();
    expect(appSlugOf({ slug: 3 })).toBeNull();
    expect(appSlugOf(null)).toBeNull();
  });
});
