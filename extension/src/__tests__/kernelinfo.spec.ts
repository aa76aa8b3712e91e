import { isKernelInfoRefresh } from '../kernelinfo';

describe('kernel info refresh', () => {
  it('the same kernel filling in its display name or language version is a refresh', () => {
    expect(
      isKernelInfoRefresh(
        'kernelspec',
        { name: 'python3', display_name: 'Python 3', language: 'python' },
        { name: 'python3', display_name: 'Python 3 (ipykernel)', language: 'python' }
      )
    ).toBe(true);
    expect(
      isKernelInfoRefresh('language_info', { name: 'python' }, { name: 'python', version: '3.11.7' })
    ).toBe(true);
    expect(isKernelInfoRefresh('language_info', undefined, { name: 'python' })).toBe(true);
    expect(isKernelInfoRefresh('kernelspec', { name: '', display_name: '' }, { name: 'python3' })).toBe(
      true
    );
  });
  it('another kernel, or any other key, is a change', () => {
    expect(isKernelInfoRefresh('kernelspec', { name: 'python3' }, { name: 'ir' })).toBe(false);
    expect(isKernelInfoRefresh('nbapps', {}, { title: 'x' })).toBe(false);
    expect(isKernelInfoRefresh('language_info', { name: 'python' }, { name: 'R' })).toBe(false);
  });
});
