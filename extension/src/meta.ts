/** The app metadata form (`metadata.nbapps` title, description, tags) as pure functions. */

/** `metadata.nbapps` fields edited by the form. */
export interface AppMetaForm {
  title: string;
  description: string;
  tags: string;
}

/** The form's values from `metadata.nbapps` (tolerates wrong types). */
export function formFromMeta(meta: unknown): AppMetaForm {
  const m = (meta && typeof meta === 'object' ? meta : {}) as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  const tags = Array.isArray(m.tags) ? m.tags.filter(t => typeof t === 'string').join(', ') : '';
  return { title: str(m.title), description: str(m.description), tags };
}

/** `metadata.nbapps` with the form applied: other keys kept, empty fields removed. */
export function metaFromForm(meta: unknown, form: AppMetaForm): Record<string, unknown> {
  const out: Record<string, unknown> = {
    ...((meta && typeof meta === 'object' ? meta : {}) as Record<string, unknown>)
  };
  const title = form.title.trim();
  const description = form.description.trim();
  const tags = [
    ...new Set(
      form.tags
        .split(',')
        .map(t => t.trim())
        .filter(Boolean)
    )
  ];
  for (const [key, value] of [
    ['title', title],
    ['description', description]
  ] as const) {
    if (value) {
      out[key] = value;
    } else {
      delete out[key];
    }
  }
  if (tags.length) {
    out.tags = tags;
  } else {
    delete out.tags;
  }
  return out;
}
