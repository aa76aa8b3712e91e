/**
 * The app metadata form (`metadata.nbapps` title, description, tags) as pure functions.
 *
 * The form writes each field to the notebook model as it is typed (so nothing typed can be lost
 * when focus moves or a toolbar button is clicked without a blur), one field at a time (so a
 * stale value of another field never overwrites a change made elsewhere), and it refreshes from
 * the model only the fields the user is not typing in.
 */

/** `metadata.nbapps` fields edited by the form. */
export interface AppMetaForm {
  title: string;
  description: string;
  tags: string;
}

export type AppMetaField = keyof AppMetaForm;
export const META_FIELDS: readonly AppMetaField[] = ['title', 'description', 'tags'];

type Meta = Record<string, unknown>;

function asMeta(meta: unknown): Meta {
  return (meta && typeof meta === 'object' && !Array.isArray(meta) ? meta : {}) as Meta;
}

/** The form's values from `metadata.nbapps` (tolerates wrong types). */
export function formFromMeta(meta: unknown): AppMetaForm {
  const m = asMeta(meta);
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  const tags = Array.isArray(m.tags) ? m.tags.filter(t => typeof t === 'string').join(', ') : '';
  return { title: str(m.title), description: str(m.description), tags };
}

/** "a, b,, a " → ["a", "b"]. */
export function parseTags(text: string): string[] {
  return [
    ...new Set(
      text
        .split(',')
        .map(t => t.trim())
        .filter(Boolean)
    )
  ];
}

/**
 * `metadata.nbapps` with one field set from its form text (other keys kept, an empty field
 * removed). Returns a new object, never the input.
 */
export function withField(meta: unknown, field: AppMetaField, text: string): Meta {
  const out: Meta = { ...asMeta(meta) };
  if (field === 'tags') {
    const tags = parseTags(text);
    if (tags.length) {
      out.tags = tags;
    } else {
      delete out.tags;
    }
    return out;
  }
  const value = text.trim();
  if (value) {
    out[field] = value;
  } else {
    delete out[field];
  }
  return out;
}

/** `metadata.nbapps` with the whole form applied: other keys kept, empty fields removed. */
export function metaFromForm(meta: unknown, form: AppMetaForm): Meta {
  let out: Meta = { ...asMeta(meta) };
  for (const field of META_FIELDS) {
    out = withField(out, field, form[field]);
  }
  return out;
}

/** Same JSON value (key order ignored)? */
export function sameJSON(a: unknown, b: unknown): boolean {
  if (a === b) {
    return true;
  }
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
    return false;
  }
  if (Array.isArray(a) !== Array.isArray(b)) {
    return false;
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return (
    ka.length === kb.length &&
    ka.every(k => sameJSON((a as Meta)[k], (b as Meta)[k]))
  );
}

/**
 * The new `metadata.nbapps` after the user typed `text` into `field`, or null when the model
 * already says that (typing a trailing space or comma changes nothing to store).
 */
export function editMeta(meta: unknown, field: AppMetaField, text: string): Meta | null {
  const next = withField(meta, field, text);
  return sameJSON(next, asMeta(meta)) ? null : next;
}

/**
 * What to write into the form's inputs after the model changed: every field but the one being
 * typed in (`focused`) whose shown text no longer says what the model holds. A field showing
 * an equivalent text ("a, b" vs "a,b") is left alone, so the caret never jumps.
 */
export function fieldsToRefresh(
  shown: AppMetaForm,
  meta: unknown,
  focused: AppMetaField | null
): Partial<AppMetaForm> {
  const model = formFromMeta(meta);
  const out: Partial<AppMetaForm> = {};
  for (const field of META_FIELDS) {
    if (field === focused) {
      continue;
    }
    if (editMeta(meta, field, shown[field]) !== null) {
      out[field] = model[field];
    }
  }
  return out;
}

/** The gallery app this notebook publishes to (`metadata.nbapps.slug`), if recorded. */
export function appSlugOf(meta: unknown): string | null {
  const slug = asMeta(meta).slug;
  return typeof slug === 'string' && slug.trim() ? slug.trim() : null;
}
