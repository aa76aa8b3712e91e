import { isMaskedToken, maskedField, normalizeGalleryUrl } from '../token';

describe('token field', () => {
  it('tells the masked display from a pasted token', () => {
    expect(isMaskedToken('nba_Ab3dE9xQ… (stored on the server)')).toBe(true);
    expect(isMaskedToken('')).toBe(true);
    expect(isMaskedToken('nba_Ab3dE9xQrest-of-the-secret')).toBe(false);
  });
  it('shows only the server-made mask', () => {
    expect(maskedField({ set: true, masked: 'nba_Ab3dE9xQ…' })).toBe(
      'nba_Ab3dE9xQ… (stored on the server)'
    );
    expect(maskedField({ set: false, masked: null })).toBe('');
  });
  it('normalizes gallery URLs like the server', () => {
    expect(normalizeGalleryUrl(' https://g.example/base// ')).toBe('https://g.example/base');
  });
});
