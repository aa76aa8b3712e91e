/**
 * The extension's settings (schema/plugin.json) plus the token status kept by the server.
 *
 * The API token is write-only: it is stored by the Jupyter server (`POST /nbapps/settings`,
 * a 0600 file, keyed by gallery URL) and never sent back to the browser. A token pasted into
 * the settings editor's `apiToken` field is moved there at once and the field is overwritten
 * with the masked prefix the server returns (e.g. `nba_Ab3dE9xQ… (stored on the server)`).
 */
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ISignal, Signal } from '@lumino/signaling';

import { TokenStatus, api, errorText, launchGallery } from './api';
import { isMaskedToken, maskedField, normalizeGalleryUrl } from './token';

export class LabConfig {
  constructor(private readonly settings: ISettingRegistry.ISettings | null) {
    settings?.changed.connect(() => void this._onSettings(), this);
    void this._onSettings();
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The user's setting, else the Jupyter server's default (`NbappsLabApp.gallery_url`). */
  get galleryUrl(): string {
    return this._userGalleryUrl() || this._serverGalleryUrl;
  }

  get executeOnValidate(): boolean {
    return (this.settings?.composite.executeOnValidate as boolean) ?? true;
  }

  token: TokenStatus = { set: false, masked: null };
  tokenError: string | null = null;

  async setGalleryUrl(url: string): Promise<void> {
    await this.settings?.set('galleryUrl', normalizeGalleryUrl(url));
  }

  /** Store a token on the server for the current gallery; the browser keeps only the mask. */
  async saveToken(token: string): Promise<void> {
    const answer = await api.saveToken(this.galleryUrl, token.trim());
    this.tokenError = null;
    this._setToken(answer.token);
    await this._syncField(true);
  }

  async forgetToken(): Promise<void> {
    const answer = await api.forgetToken(this.galleryUrl);
    this._setToken(answer.token);
    await this._syncField();
  }

  async refreshToken(): Promise<void> {
    try {
      // with no URL set by the user, the server answers for its own default gallery (if any)
      const answer = await api.settings(this._userGalleryUrl());
      if (!this._userGalleryUrl()) {
        this._serverGalleryUrl = normalizeGalleryUrl(answer.gallery_url ?? '');
        if (answer.launch_path && !this._launched) {
          this._launched = true; // once per page load: the request starts it if it is down
          void launchGallery(answer.launch_path);
        }
      }
      this._setToken(answer.token);
    } catch (err) {
      this.tokenError = errorText(err);
      this._changed.emit();
    }
  }

  private _userGalleryUrl(): string {
    return normalizeGalleryUrl((this.settings?.composite.galleryUrl as string) ?? '');
  }

  private async _onSettings(): Promise<void> {
    const field = ((this.settings?.composite.apiToken as string) ?? '').trim();
    if (field && !isMaskedToken(field)) {
      if (!this.galleryUrl) {
        this.tokenError = 'Set the gallery URL first, then the token.';
      } else {
        try {
          await this.saveToken(field); // moves it to the server and masks the field
          return;
        } catch (err) {
          this.tokenError = errorText(err);
        }
      }
      await this.settings?.set('apiToken', ''); // never leave a clear token in the settings
    }
    await this.refreshToken();
    await this._syncField();
    this._changed.emit();
  }

  /** Show the token status in the settings field; `replace` also overwrites a clear token. */
  private async _syncField(replace = false): Promise<void> {
    if (!this.settings) {
      return;
    }
    const want = maskedField(this.token);
    const field = (this.settings.composite.apiToken as string) ?? '';
    if (field !== want && (replace || isMaskedToken(field))) {
      await this.settings.set('apiToken', want);
    }
  }

  private _setToken(status: TokenStatus): void {
    this.token = status;
    this._changed.emit();
  }

  private _changed = new Signal<this, void>(this);
  private _serverGalleryUrl = '';
  private _launched = false;
}
