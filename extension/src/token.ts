/** How the write-only API token appears in the settings field (pure helpers). */

export const MASK_SUFFIX = ' (stored on the server)';

/** True for values the extension itself wrote into the token field (masked, not a token). */
export function isMaskedToken(value: string): boolean {
  return value === '' || value.endsWith(MASK_SUFFIX);
}

export function maskedField(status: { set: boolean; masked: string | null }): string {
  return status.set && status.masked ? status.masked + MASK_SUFFIX : '';
}

/** A gallery URL as the server keys it: trimmed, no trailing slash. */
export function normalizeGalleryUrl(url: string): string {
  return url.trim().replace(/\/+$/, '');
}
