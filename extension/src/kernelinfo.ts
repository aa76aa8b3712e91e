/**
 * Opening a notebook must not mark it as changed.
 *
 * What wrote on open: JupyterLab itself. When a kernel connects, the notebook panel writes the
 * kernel's spec (`metadata.kernelspec`: name, display_name, language) and its `language_info`
 * into the notebook. Whenever the stored values differ from the running kernel's (another
 * display name such as "Python 3" vs "Python 3 (ipykernel)", a `language_info` without
 * `version`: every notebook written by nbformat, papermill or `nbapps init`, and our demo
 * apps), the notebook shows the unsaved marker right after opening, with no edit at all.
 *
 * `KernelInfoGuard` keeps such a notebook clean: while nothing else changed since it was loaded
 * or saved, a refresh of the kernel info by the same kernel (same `name`) leaves it unmodified.
 * The refreshed values are in the model and are saved with the next real change. Switching to
 * another kernel (another `name`) is a change like any other.
 */
import { NotebookPanel } from '@jupyterlab/notebook';

/** The notebook metadata keys JupyterLab fills from the running kernel. */
export const KERNEL_INFO_KEYS: readonly string[] = ['kernelspec', 'language_info'];

function nameOf(value: unknown): unknown {
  return value && typeof value === 'object' ? (value as { name?: unknown }).name : undefined;
}

/**
 * Is this metadata change JupyterLab refreshing the kernel info of the same kernel (not an
 * edit, not a kernel switch)? Adding missing kernel info counts as a refresh.
 */
export function isKernelInfoRefresh(key: string, oldValue: unknown, newValue: unknown): boolean {
  if (!KERNEL_INFO_KEYS.includes(key)) {
    return false;
  }
  if (oldValue === undefined || oldValue === null) {
    return true;
  }
  const before = nameOf(oldValue);
  return before === undefined || before === '' || before === nameOf(newValue);
}

export class KernelInfoGuard {
  constructor(private readonly panel: NotebookPanel) {
    void panel.context.ready.then(() => this._start());
  }

  dispose(): void {
    const model = this.panel.context.model;
    model.metadataChanged.disconnect(this._onMetadata, this);
    model.contentChanged.disconnect(this._onContent, this);
    model.stateChanged.disconnect(this._onState, this);
  }

  private _start(): void {
    if (this.panel.isDisposed) {
      return;
    }
    const model = this.panel.context.model;
    this._pristine = !model.dirty;
    model.metadataChanged.connect(this._onMetadata, this);
    model.contentChanged.connect(this._onContent, this);
    model.stateChanged.connect(this._onState, this);
  }

  /** Emitted just before the `contentChanged` that every metadata change also causes. */
  private _onMetadata(
    _: unknown,
    change: { key: string; oldValue?: unknown; newValue?: unknown }
  ): void {
    this._kernelInfoChange = isKernelInfoRefresh(change.key, change.oldValue, change.newValue);
  }

  private _onContent(): void {
    if (this._kernelInfoChange) {
      this._kernelInfoChange = false;
      return;
    }
    this._pristine = false; // a real change: the notebook stays dirty until saved
  }

  private _onState(_: unknown, change: { name: string; newValue?: unknown }): void {
    if (change.name !== 'dirty') {
      return;
    }
    const model = this.panel.context.model;
    if (!change.newValue) {
      this._pristine = true; // loaded, saved or reverted
      return;
    }
    if (this._pristine) {
      // the dirty flag is set right after the change signals; decide once they are all out
      queueMicrotask(() => {
        if (this._pristine && model.dirty && !this.panel.isDisposed) {
          model.dirty = false;
        }
      });
    }
  }

  private _pristine = false;
  private _kernelInfoChange = false;
}
