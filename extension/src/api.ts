/**
 * Calls to the nbapps endpoints of the user's Jupyter server (`nbapps.labserver`).
 * `ServerConnection.makeRequest` adds the server's auth and XSRF headers.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ContractParameter } from './contract';
import { Finding } from './findings';
import { JobSnapshot, PublishResult, Submission } from './publish';
import { SubmissionRecord } from './submissions';

/** An error answer of the nbapps endpoints: `{error: "NBA…", message, hint}`. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
    readonly hint?: string
  ) {
    super(message);
  }

  /** One line for the UI: "NBA381: message (hint)". */
  get text(): string {
    const base = this.code ? `${this.code}: ${this.message}` : this.message;
    return this.hint ? `${base} — ${this.hint}` : base;
  }
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) {
    return err.text;
  }
  return err instanceof Error ? err.message : String(err);
}

export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  query: Record<string, string | undefined> = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== '') {
      params.set(k, v);
    }
  }
  const qs = params.toString();
  const url = URLExt.join(settings.baseUrl, 'nbapps', endPoint) + (qs ? `?${qs}` : '');
  if (init.body && !init.headers) {
    init = { ...init, headers: { 'Content-Type': 'application/json' } };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = {};
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text.slice(0, 200) };
    }
  }
  if (!response.ok) {
    throw new ApiError(
      data.message || data.reason || response.statusText || `HTTP ${response.status}`,
      response.status,
      data.error,
      data.hint
    );
  }
  return data as T;
}

export interface TokenStatus {
  set: boolean;
  masked: string | null;
}

export interface ServerSettings {
  gallery_url: string;
  token: TokenStatus;
  execute: boolean;
  version: string;
  /** For the server's default gallery: a path of this Jupyter server that starts it. */
  launch_path?: string;
}

export interface ContractAnswer {
  parameters: ContractParameter[];
  problems: { line: number; message: string }[];
  constraint_problems: string[];
}

export interface ReportData {
  ok: boolean;
  errors: number;
  warnings: number;
  duration: number;
  findings: Finding[];
  parameters: ContractParameter[] | null;
  notes?: string[];
}

export interface ValidateJob extends Omit<JobSnapshot, 'result'> {
  result?: { report: ReportData } | null;
}

export type SubmissionItem = SubmissionRecord & Submission;

export interface SubmissionsAnswer {
  gallery_url: string;
  /** The gallery app (slug) the list is of; null: this notebook was never published. */
  app: string | null;
  items: SubmissionItem[];
}

export interface AppIdentity {
  /** The app slug to record in `metadata.nbapps.slug` before the first submission. */
  slug: string;
  /** Where it comes from: `notebook` (already recorded), `record` (this server published the
   * notebook before), `gallery` (an app of the user's published from a file of this name),
   * `new` (a free name derived from the title). */
  source: 'notebook' | 'record' | 'gallery' | 'new';
}

export type JobKind = 'validate' | 'publish';

/**
 * Request a path of this Jupyter server that starts the gallery (a jupyter-server-proxy entry
 * starts its process on the first request and answers once it is up). Errors are ignored: a
 * gallery that cannot start shows up as NBA335 when it is used.
 */
export async function launchGallery(path: string): Promise<void> {
  const settings = ServerConnection.makeSettings();
  try {
    const response = await ServerConnection.makeRequest(
      URLExt.join(settings.baseUrl, path),
      {},
      settings
    );
    await response.text();
  } catch {
    // reported when the gallery is used
  }
}

export const api = {
  settings(galleryUrl: string): Promise<ServerSettings> {
    return requestAPI('settings', {}, { gallery: galleryUrl });
  },
  saveToken(galleryUrl: string, token: string): Promise<ServerSettings> {
    return requestAPI('settings', {
      method: 'POST',
      body: JSON.stringify({ gallery_url: galleryUrl, token })
    });
  },
  forgetToken(galleryUrl: string): Promise<ServerSettings> {
    return requestAPI('settings', { method: 'DELETE' }, { gallery: galleryUrl });
  },
  contract(source: string, constraints: unknown): Promise<ContractAnswer> {
    return requestAPI('contract', {
      method: 'POST',
      body: JSON.stringify({ source, constraints: constraints ?? {} })
    });
  },
  startJob(
    kind: JobKind,
    body: { path: string; gallery_url?: string; execute?: boolean }
  ): Promise<{ job: JobSnapshot; joined: boolean }> {
    return requestAPI(kind, { method: 'POST', body: JSON.stringify(body) });
  },
  job<T = JobSnapshot>(kind: JobKind, id: string): Promise<T> {
    return requestAPI(`${kind}/${encodeURIComponent(id)}`);
  },
  cancelJob(kind: JobKind, id: string): Promise<JobSnapshot> {
    return requestAPI(`${kind}/${encodeURIComponent(id)}`, { method: 'DELETE' });
  },
  /** This notebook's submissions (of app `app`, the notebook's recorded slug, when given). */
  submissions(path: string, galleryUrl: string, app?: string | null): Promise<SubmissionsAnswer> {
    return requestAPI('submissions', {}, { path, gallery: galleryUrl, app: app ?? undefined });
  },
  /** One submission as the gallery shows it now (state, check, reviews, comments). */
  submission(galleryUrl: string, id: string | number): Promise<SubmissionItem> {
    return requestAPI(`submissions/${encodeURIComponent(String(id))}`, {}, { gallery: galleryUrl });
  },
  /** The gallery app a notebook without a recorded slug will publish to. */
  appIdentity(path: string, galleryUrl: string, title: string): Promise<AppIdentity> {
    return requestAPI('app', {}, { path, gallery: galleryUrl, title });
  }
};

export type { PublishResult };

const FINISHED = new Set(['succeeded', 'failed', 'cancelled']);

/**
 * Poll a job until it finishes, calling `onSnapshot` with every snapshot (the first one
 * immediately). `stop()` ends polling early.
 */
export function pollJob<T extends { id: string; state: string }>(
  kind: JobKind,
  first: T,
  onSnapshot: (job: T) => void,
  onError: (err: unknown) => void,
  intervalMs = 700
): { stop: () => void } {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = async (job: T) => {
    if (stopped) {
      return;
    }
    onSnapshot(job);
    if (FINISHED.has(job.state)) {
      return;
    }
    timer = setTimeout(async () => {
      try {
        await tick(await api.job<T>(kind, job.id));
      } catch (err) {
        if (!stopped) {
          onError(err);
        }
      }
    }, intervalMs);
  };
  void tick(first);
  return {
    stop: () => {
      stopped = true;
      if (timer) {
        clearTimeout(timer);
      }
    }
  };
}
