import { formFromMeta, metaFromForm } from '../meta';

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
});
