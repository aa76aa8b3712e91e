/**
 * Validation findings (from `nbapps.findings.Finding.to_dict()`) and where they point in the
 * open notebook. A finding names its cell twice: `cell`, the 1-based number people see (as
 * JupyterLab counts), and `cell_index`, the 0-based index tools use; plus that cell's first
 * non-empty line. The notebook may have changed since validation, so the line is used to find
 * the cell again when the index no longer matches.
 */

export type Severity = 'error' | 'warning';

export interface Finding {
  code: string;
  message: string;
  /** 1-based cell number, as JupyterLab shows it. */
  cell?: number | null;
  /** 0-based cell index (missing from servers older than the 1-based numbering). */
  cell_index?: number | null;
  cell_line?: string | null;
  severity?: Severity | string;
  hint?: string;
  path?: string | null;
}

/** The first non-blank line of a cell's source, shortened like `nbapps.findings.first_line`. */
export function firstLine(source: string | readonly string[], limit = 80): string {
  const text = Array.isArray(source) ? source.join('') : (source as string);
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line) {
      return line.length <= limit ? line : line.slice(0, limit - 1) + '…';
    }
  }
  return '';
}

/**
 * The 0-based index a finding states: `cell_index`, else `cell` - 1 (a server that sends only
 * the 1-based number); null for whole-notebook findings.
 */
export function cellIndexOf(finding: Pick<Finding, 'cell' | 'cell_index'>): number | null {
  if (typeof finding.cell_index === 'number' && Number.isInteger(finding.cell_index)) {
    return finding.cell_index;
  }
  if (typeof finding.cell === 'number' && Number.isInteger(finding.cell)) {
    return finding.cell - 1;
  }
  return null;
}

/**
 * The index of the cell a finding points at in a notebook whose cells have these sources, or
 * null for whole-notebook findings and findings whose cell is gone.
 *
 * Order: the stated index when its first line still matches (or no line was recorded); else
 * the matching cell nearest to the stated index; else the stated index if it still exists.
 */
export function locateFinding(
  finding: Pick<Finding, 'cell' | 'cell_index' | 'cell_line'>,
  sources: readonly string[]
): number | null {
  const index = cellIndexOf(finding);
  if (index === null) {
    return null;
  }
  const inRange = index >= 0 && index < sources.length;
  const line = finding.cell_line ?? '';
  if (!line) {
    return inRange ? index : null;
  }
  if (inRange && firstLine(sources[index]) === line) {
    return index;
  }
  let best: number | null = null;
  sources.forEach((src, i) => {
    if (firstLine(src) === line && (best === null || Math.abs(i - index) < Math.abs(best - index))) {
      best = i;
    }
  });
  if (best !== null) {
    return best;
  }
  return inRange ? index : null;
}

/**
 * The cell number to show beside a finding: where its cell is now (1-based), else the number
 * the finding states (its cell is gone or moved beyond recognition), else null.
 */
export function shownCellNumber(
  finding: Pick<Finding, 'cell' | 'cell_index'>,
  located: number | null
): number | null {
  if (located !== null) {
    return located + 1;
  }
  const index = cellIndexOf(finding);
  return index === null ? null : index + 1;
}

export function isError(f: Pick<Finding, 'severity'>): boolean {
  return (f.severity ?? 'error') === 'error';
}

export interface FindingsSummary {
  errors: number;
  warnings: number;
  text: string;
}

export function summarize(findings: readonly Finding[]): FindingsSummary {
  const errors = findings.filter(isError).length;
  const warnings = findings.length - errors;
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const text =
    findings.length === 0
      ? 'No problems found'
      : [errors ? plural(errors, 'error') : '', warnings ? plural(warnings, 'warning') : '']
          .filter(Boolean)
          .join(', ');
  return { errors, warnings, text };
}

/** Findings grouped by the cell they point at now (`null` key: whole notebook), errors first. */
export function findingsByCell(
  findings: readonly Finding[],
  sources: readonly string[]
): Map<number | null, Finding[]> {
  const out = new Map<number | null, Finding[]>();
  for (const f of findings) {
    const at = locateFinding(f, sources);
    const list = out.get(at) ?? [];
    list.push(f);
    out.set(at, list);
  }
  for (const list of out.values()) {
    list.sort((a, b) => Number(isError(b)) - Number(isError(a)));
  }
  return out;
}
