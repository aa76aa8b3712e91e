/**
 * The parameter contract as table rows. The contract comes from the server
 * (`nbapps.contract.ParameterContract.to_dict()`: a list of parameters, or `{parameters: [...]}`);
 * this module only shapes it for display and never throws on unexpected input.
 */

export interface ContractParameter {
  name: string;
  type?: string;
  default?: unknown;
  help?: string;
  choices?: unknown[] | null;
  min?: number | null;
  max?: number | null;
}

export interface ContractRow {
  name: string;
  type: string;
  default: string;
  allowed: string;
  help: string;
}

/** A value as Python would show it in a parameters cell (strings quoted, None/True/False). */
export function pyLiteral(value: unknown): string {
  if (value === null || value === undefined) {
    return 'None';
  }
  if (value === true) {
    return 'True';
  }
  if (value === false) {
    return 'False';
  }
  if (typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return '[' + value.map(pyLiteral).join(', ') + ']';
  }
  if (typeof value === 'object') {
    const items = Object.entries(value as Record<string, unknown>).map(
      ([k, v]) => `${JSON.stringify(k)}: ${pyLiteral(v)}`
    );
    return '{' + items.join(', ') + '}';
  }
  return String(value);
}

/** "one of a, b" / "≥ 0" / "≤ 10" / "0 … 10" / "" for unconstrained parameters. */
export function describeAllowed(p: ContractParameter): string {
  if (Array.isArray(p.choices)) {
    return 'one of ' + p.choices.map(pyLiteral).join(', ');
  }
  const hasMin = typeof p.min === 'number';
  const hasMax = typeof p.max === 'number';
  if (hasMin && hasMax) {
    return `${p.min} … ${p.max}`;
  }
  if (hasMin) {
    return `≥ ${p.min}`;
  }
  if (hasMax) {
    return `≤ ${p.max}`;
  }
  return '';
}

function parameterList(contract: unknown): unknown[] {
  if (Array.isArray(contract)) {
    return contract;
  }
  if (contract && typeof contract === 'object') {
    const params = (contract as { parameters?: unknown }).parameters;
    if (Array.isArray(params)) {
      return params;
    }
  }
  return [];
}

/** The rows of the contract table, in the order of the parameters cell. */
export function contractRows(contract: unknown): ContractRow[] {
  const rows: ContractRow[] = [];
  for (const item of parameterList(contract)) {
    if (!item || typeof item !== 'object') {
      continue;
    }
    const p = item as ContractParameter;
    if (typeof p.name !== 'string' || !p.name) {
      continue;
    }
    rows.push({
      name: p.name,
      type: typeof p.type === 'string' && p.type !== 'none' ? p.type : 'any',
      default: pyLiteral(p.default),
      allowed: describeAllowed(p),
      help: typeof p.help === 'string' ? p.help : ''
    });
  }
  return rows;
}
