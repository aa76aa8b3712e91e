/**
 * Cell tags of the nbapps authoring contract, as pure functions over metadata values.
 *
 * `parameters` (papermill's tag) marks the one cell of plain literal assignments; `widget` marks
 * the cells that make up the app. Metadata read from a notebook may be anything, so every reader
 * here accepts `unknown` and never throws.
 */

export const WIDGET_TAG = 'widget';
export const PARAMETERS_TAG = 'parameters';
export type AppTag = typeof WIDGET_TAG | typeof PARAMETERS_TAG;
export const APP_TAGS: readonly AppTag[] = [WIDGET_TAG, PARAMETERS_TAG];

/** CSS class put on a cell's node for each app tag it carries. */
export const TAG_CLASS: Record<AppTag, string> = {
  widget: 'nbapps-tag-widget',
  parameters: 'nbapps-tag-parameters'
};

/** The tags of a cell from its raw `tags` metadata (non-strings and duplicates dropped). */
export function readTags(value: unknown): string[] {
  if (!Array.isArray(value)) {
    return [];
  }
  const out: string[] = [];
  for (const item of value) {
    if (typeof item === 'string' && !out.includes(item)) {
      out.push(item);
    }
  }
  return out;
}

export function hasTag(value: unknown, tag: string): boolean {
  return readTags(value).includes(tag);
}

/**
 * The tags after toggling `tag` (or forcing it on/off with `force`). Other tags keep their order;
 * a new tag is appended. Returns a new array, never the input.
 */
export function toggleTag(value: unknown, tag: string, force?: boolean): string[] {
  const tags = readTags(value);
  const on = force ?? !tags.includes(tag);
  const without = tags.filter(t => t !== tag);
  return on ? [...without, tag] : without;
}

/** One cell's tags to write back (`undefined` = remove the `tags` key, as JupyterLab does). */
export interface TagChange {
  index: number;
  tags: string[] | undefined;
}

function change(index: number, tags: string[]): TagChange {
  return { index, tags: tags.length ? tags : undefined };
}

/**
 * The metadata changes that toggle `tag` on cell `index` of a notebook whose cells have the
 * given raw tags. `parameters` is exclusive (papermill wants exactly one such cell): putting it
 * on a cell removes it from every other cell. Only cells whose tags change are listed.
 */
export function planToggle(
  cellTags: readonly unknown[],
  index: number,
  tag: string,
  force?: boolean
): TagChange[] {
  if (index < 0 || index >= cellTags.length) {
    return [];
  }
  const current = readTags(cellTags[index]);
  const on = force ?? !current.includes(tag);
  const changes: TagChange[] = [];
  if (on !== current.includes(tag)) {
    changes.push(change(index, toggleTag(current, tag, on)));
  }
  if (on && tag === PARAMETERS_TAG) {
    cellTags.forEach((raw, i) => {
      if (i !== index && hasTag(raw, PARAMETERS_TAG)) {
        changes.push(change(i, toggleTag(raw, PARAMETERS_TAG, false)));
      }
    });
  }
  return changes;
}

/** Which marker classes a cell with these tags should carry (true = add, false = remove). */
export function markerClasses(value: unknown): Record<string, boolean> {
  const tags = readTags(value);
  const out: Record<string, boolean> = {};
  for (const tag of APP_TAGS) {
    out[TAG_CLASS[tag]] = tags.includes(tag);
  }
  return out;
}
