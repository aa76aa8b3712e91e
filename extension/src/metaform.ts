/**
 * The "App details" form of the sidebar: `metadata.nbapps` title, description and tags.
 *
 * Built once and bound to one notebook model at a time; its inputs are never re-created while
 * someone may be typing. Each keystroke is written to the model at once (one field at a time),
 * so what is typed is in the notebook whatever happens next: Tab, a click on a toolbar button
 * that takes no focus, a save, a publish. Model changes (from elsewhere, or the kernel) refresh
 * only the fields nobody is typing in.
 *
 * (The form used to be rebuilt from the model on every metadata change unless focus was inside
 * it; on Tab, Chromium fires `change` after focus has left the old field and before it reaches
 * the next one, so the rebuild replaced the field being tabbed into and what was typed next went
 * nowhere.)
 */
import { INotebookModel } from '@jupyterlab/notebook';

import { h } from './dom';
import {
  AppMetaField,
  AppMetaForm,
  META_FIELDS,
  appSlugOf,
  editMeta,
  fieldsToRefresh
} from './meta';

const META_KEY = 'nbapps';

type Input = HTMLInputElement | HTMLTextAreaElement;

export class MetaForm {
  constructor() {
    this._inputs = {
      title: h('input', {
        className: 'jp-mod-styled nbapps-meta-title',
        placeholder: 'Sales by region',
        'data-field': 'title'
      }),
      description: h('textarea', {
        className: 'jp-mod-styled nbapps-meta-description',
        rows: 3,
        placeholder: 'What the app shows and for whom.',
        'data-field': 'description'
      }),
      tags: h('input', {
        className: 'jp-mod-styled nbapps-meta-tags',
        placeholder: 'sales, weekly',
        'data-field': 'tags'
      })
    };
    for (const field of META_FIELDS) {
      const input = this._inputs[field];
      input.addEventListener('input', () => this._commit(field));
      input.addEventListener('blur', () => this.refresh());
    }
    this.node = h(
      'section',
      { className: 'nbapps-section nbapps-meta' },
      h('h3', {}, 'App details'),
      h('label', {}, 'Title', this._inputs.title),
      h('label', {}, 'Description', this._inputs.description),
      h('label', {}, 'Tags (comma-separated)', this._inputs.tags),
      this._app
    );
    this.node.hidden = true;
  }

  readonly node: HTMLElement;

  get model(): INotebookModel | null {
    return this._model;
  }

  /** Show (and edit) this notebook's metadata; null hides the form. */
  bind(model: INotebookModel | null): void {
    if (model === this._model) {
      return;
    }
    this._model?.metadataChanged.disconnect(this._onMetadata, this);
    this._model = model;
    model?.metadataChanged.connect(this._onMetadata, this);
    this.node.hidden = model === null;
    this.refresh(true);
  }

  dispose(): void {
    this.bind(null);
  }

  /** Bring the fields in line with the model (`all`: the focused one too). */
  refresh(all = false): void {
    const model = this._model;
    if (!model) {
      return;
    }
    const meta = model.getMetadata(META_KEY);
    const updates = fieldsToRefresh(this._shown(), meta, all ? null : this._focused());
    for (const [field, value] of Object.entries(updates) as [AppMetaField, string][]) {
      this._inputs[field].value = value;
    }
    for (const field of META_FIELDS) {
      this._inputs[field].disabled = model.readOnly;
    }
    const slug = appSlugOf(meta);
    this._app.replaceChildren(
      'Gallery app: ',
      slug
        ? h('span', { className: 'nbapps-mono nbapps-meta-slug' }, slug)
        : h('span', { className: 'nbapps-muted' }, 'named at the first publish')
    );
  }

  private _commit(field: AppMetaField): void {
    const model = this._model;
    if (!model || model.readOnly) {
      return;
    }
    const next = editMeta(model.getMetadata(META_KEY), field, this._inputs[field].value);
    if (next !== null) {
      model.setMetadata(META_KEY, next);
    }
  }

  private _onMetadata(_: INotebookModel, change: { key: string }): void {
    if (change.key === META_KEY) {
      this.refresh();
    }
  }

  private _shown(): AppMetaForm {
    const i = this._inputs;
    return { title: i.title.value, description: i.description.value, tags: i.tags.value };
  }

  private _focused(): AppMetaField | null {
    const active = document.activeElement;
    return META_FIELDS.find(f => this._inputs[f] === active) ?? null;
  }

  private _model: INotebookModel | null = null;
  private _inputs: Record<AppMetaField, Input>;
  private _app = h('div', { className: 'nbapps-meta-app nbapps-muted' });
}
