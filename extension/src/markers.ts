/**
 * Visible markers on tagged cells: keeps `nbapps-tag-widget` / `nbapps-tag-parameters` (and
 * `nbapps-finding-error` for cells with error findings) on each cell's node in step with the
 * cell metadata.
 */
import { Notebook } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import { markerClasses } from './tags';

export const FINDING_CLASS = 'nbapps-finding-error';

export class TagMarkers {
  constructor(private readonly notebook: Notebook) {
    notebook.modelChanged.connect(this._onModelChanged, this);
    this._onModelChanged();
  }

  /** Emitted when any cell's tags change (commands refresh their toggled state). */
  get tagsChanged(): ISignal<this, void> {
    return this._tagsChanged;
  }

  /** Mark the cells (by index) that have error findings; others lose the mark. */
  setFindingCells(indices: ReadonlySet<number>): void {
    this._findingCells = indices;
    this.refresh();
  }

  refresh(): void {
    this.notebook.widgets.forEach((cell, index) => {
      const classes = markerClasses(cell.model.getMetadata('tags'));
      classes[FINDING_CLASS] = this._findingCells.has(index);
      for (const [name, on] of Object.entries(classes)) {
        cell.node.classList.toggle(name, on);
      }
    });
  }

  dispose(): void {
    Signal.clearData(this);
  }

  private _onModelChanged(): void {
    const model = this.notebook.model;
    if (!model) {
      return;
    }
    model.cells.changed.connect(this._schedule, this);
    for (let i = 0; i < model.cells.length; i++) {
      this._watch(model.cells.get(i));
    }
    this._schedule();
  }

  private _watch(cell: { metadataChanged: ISignal<any, any> }): void {
    if (!this._watched.has(cell)) {
      this._watched.add(cell);
      cell.metadataChanged.connect(this._onMetadata, this);
    }
  }

  private _onMetadata(_: unknown, change: { key: string }): void {
    if (change.key === 'tags') {
      this._schedule();
      this._tagsChanged.emit();
    }
  }

  /** Cell widgets are created after the model changes; mark them on the next frame. */
  private _schedule(): void {
    const model = this.notebook.model;
    if (model) {
      for (let i = 0; i < model.cells.length; i++) {
        this._watch(model.cells.get(i));
      }
    }
    requestAnimationFrame(() => this.refresh());
  }

  private _findingCells: ReadonlySet<number> = new Set();
  private _watched = new WeakSet<object>();
  private _tagsChanged = new Signal<this, void>(this);
}
