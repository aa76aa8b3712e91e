/**
 * The right sidebar: the app view of the current notebook (metadata form, parameter contract,
 * validation findings, publish progress, submissions) and the gallery connection.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { SubmissionItem, errorText } from './api';
import { LabConfig } from './config';
import { ContractRow, contractRows } from './contract';
import { h } from './dom';
import { Finding, isError, locateFinding, shownCellNumber, summarize } from './findings';
import { nbappsIcon } from './icons';
import { MetaForm } from './metaform';
import { canCancel, progressOf } from './publish';
import { AppSession } from './session';
import { checkLine, decisionOf, notesOf } from './submissions';

class TokenBody extends Widget {
  constructor(gallery: string) {
    const input = h('input', {
      type: 'password',
      className: 'jp-mod-styled nbapps-token-input',
      placeholder: 'nba_…',
      autocomplete: 'off'
    });
    super({
      node: h(
        'div',
        {},
        h('p', {}, `API token for ${gallery}`),
        h(
          'p',
          { className: 'nbapps-muted' },
          'Create one on the gallery (account page or `nbapps user token NAME`). It is kept by ' +
            'your Jupyter server in a file only you can read, and never shown again.'
        ),
        input
      )
    });
    this._input = input;
  }

  getValue(): string {
    return this._input.value;
  }

  protected onAfterAttach(): void {
    this._input.focus();
  }

  private _input: HTMLInputElement;
}

export class NbappsPanel extends Widget {
  constructor(private readonly config: LabConfig) {
    super();
    this.id = 'nbapps-panel';
    this.addClass('nbapps-Panel');
    this.title.icon = nbappsIcon;
    this.title.caption = 'nbapps: app view of this notebook';
    this.node.append(this._head, this._form.node, this._body);
    config.changed.connect(() => this.render(), this);
  }

  dispose(): void {
    this._form.dispose();
    super.dispose();
  }

  get session(): AppSession | null {
    return this._session;
  }

  /** Show the session of the current notebook (null: no notebook). */
  setSession(session: AppSession | null): void {
    if (session === this._session) {
      return;
    }
    this._session?.changed.disconnect(this.render, this);
    this._session = session;
    session?.changed.connect(this.render, this);
    this._form.bind(session?.panel.content.model ?? null);
    this.render();
  }

  render(): void {
    const s = this._session;
    this._head.replaceChildren(
      h('h2', { className: 'nbapps-title' }, 'App'),
      h('div', { className: 'nbapps-notebook' }, s ? s.path : 'Open a notebook to see its app.')
    );
    if (!s) {
      this._body.replaceChildren(this._gallerySection());
      return;
    }
    if (!this._autoLoaded.has(s) && this.config.galleryUrl && this.config.token.set) {
      this._autoLoaded.add(s); // load this notebook's submissions once, when first shown
      void s.refreshSubmissions();
    }
    const sections = [
      this._actions(s),
      this._publishSection(s),
      this._contractSection(s),
      this._findingsSection(s),
      this._submissionsSection(s),
      this._gallerySection()
    ];
    this._body.replaceChildren(...sections.filter((x): x is HTMLElement => x !== null));
  }

  // -- sections --------------------------------------------------------------------------------

  private _actions(s: AppSession): HTMLElement {
    const v = s.validation;
    const busy = v.running;
    const elapsed = v.startedAt ? Math.round((Date.now() - v.startedAt) / 1000) : 0;
    return h(
      'div',
      { className: 'nbapps-actions' },
      h(
        'button',
        {
          className: 'jp-mod-styled jp-mod-accept nbapps-validate',
          disabled: busy,
          onclick: () => void s.validate()
        },
        'Validate'
      ),
      h(
        'button',
        {
          className: 'jp-mod-styled jp-mod-accept nbapps-publish',
          disabled: canCancel(s.publish) || s.publish.phase === 'cancelling',
          onclick: () => void s.publishApp()
        },
        'Publish app'
      ),
      busy
        ? h(
            'div',
            { className: 'nbapps-running nbapps-validate-status' },
            h('span', { className: 'nbapps-spinner' }),
            `${v.joined ? 'Joined the running validation. ' : ''}${v.message} (${elapsed} s)`,
            v.jobId
              ? h(
                  'button',
                  {
                    className: 'jp-mod-styled jp-mod-reject nbapps-cancel-validate',
                    onclick: () => void s.cancelValidate()
                  },
                  'Cancel'
                )
              : null
          )
        : null,
      !busy && v.message ? h('div', { className: 'nbapps-muted' }, v.message) : null,
      v.error ? h('div', { className: 'nbapps-error nbapps-validate-error' }, v.error) : null
    );
  }

  private _submissionLink(sub: { id: string | number; url?: string | null }): HTMLElement | string {
    return sub.url
      ? h(
          'a',
          {
            href: sub.url,
            target: '_blank',
            rel: 'noopener noreferrer',
            className: 'nbapps-submission-link'
          },
          `#${sub.id}`
        )
      : `#${sub.id}`;
  }

  private _publishSection(s: AppSession): HTMLElement | null {
    const state = s.publish;
    if (state.phase === 'idle') {
      return null;
    }
    const progress = progressOf(state);
    const children: (HTMLElement | null)[] = [
      h('div', { className: 'nbapps-publish-label' }, progress.label)
    ];
    if (progress.fraction !== null && state.phase !== 'submitted') {
      children.push(
        h('progress', {
          className: 'nbapps-progress',
          max: 1,
          value: String(progress.fraction)
        })
      );
    }
    if (canCancel(state)) {
      children.push(
        h(
          'button',
          {
            className: 'jp-mod-styled jp-mod-reject nbapps-cancel-publish',
            onclick: () => void s.cancelPublish()
          },
          'Cancel'
        )
      );
    }
    if (state.phase === 'checking') {
      children.push(
        h(
          'div',
          { className: 'nbapps-publish-result nbapps-muted' },
          'Submission ',
          this._submissionLink(state.submission),
          ' is being run by the gallery; a reviewer sees it once that run passes.'
        ),
        state.pollError
          ? h(
              'div',
              { className: 'nbapps-muted nbapps-poll-error' },
              `Still trying: ${state.pollError}`
            )
          : null
      );
    }
    if (state.phase === 'submitted') {
      const sub = state.submission;
      children.push(
        h(
          'div',
          { className: 'nbapps-publish-result' },
          'Submission ',
          this._submissionLink(sub),
          ` is ${(sub.state ?? 'submitted').replace(/_/g, ' ')}; a reviewer will look at it.`
        )
      );
      if (state.galleryFindings.length) {
        children.push(this._galleryFindings(s, state.galleryFindings));
      } else if (state.warnings.length) {
        children.push(this._findingList(s, state.warnings));
      }
    }
    if (state.phase === 'rejected') {
      children.push(
        h(
          'div',
          { className: 'nbapps-error nbapps-check-failed' },
          state.error
            ? 'The gallery could not run its check of submission '
            : 'The gallery ran submission ',
          this._submissionLink(state.submission),
          state.error
            ? `${state.submission.check?.message ? `: ${state.submission.check.message}` : ''}. ` +
                'Publish again; if it keeps happening, tell the gallery admins.'
            : ' itself and it failed, so it cannot be approved. Fix these, then publish again:'
        ),
        state.findings.length ? this._galleryFindings(s, state.findings) : null
      );
    }
    if (state.phase === 'blocked') {
      children.push(
        h('div', { className: 'nbapps-muted' }, 'Fix these, then publish again:'),
        this._findingList(s, state.findings)
      );
    }
    if (state.phase === 'failed') {
      children.push(h('div', { className: 'nbapps-error' }, state.error));
    }
    if (!canCancel(state) && state.phase !== 'cancelling' && state.phase !== 'checking') {
      children.push(
        h(
          'button',
          { className: 'jp-mod-styled nbapps-dismiss', onclick: () => s.resetPublish() },
          'Dismiss'
        )
      );
    }
    return h(
      'section',
      { className: `nbapps-section nbapps-publish-box nbapps-phase-${state.phase}` },
      h('h3', {}, 'Publish'),
      ...children
    );
  }

  /** Findings of the gallery's own run, marked as such. */
  private _galleryFindings(s: AppSession, findings: readonly Finding[]): HTMLElement {
    return h(
      'div',
      { className: 'nbapps-gallery-findings' },
      h('div', { className: 'nbapps-source-label' }, "The gallery's findings"),
      this._findingList(s, findings, 'gallery')
    );
  }

  private _contractSection(s: AppSession): HTMLElement {
    let body: HTMLElement;
    if (!s.hasParametersCell) {
      body = h(
        'p',
        { className: 'nbapps-muted' },
        'No cell is tagged parameters. Select the code cell that defines the inputs and use ' +
          'the parameters button in its toolbar.'
      );
    } else if (s.contractError) {
      body = h('p', { className: 'nbapps-error' }, s.contractError);
    } else {
      const rows = contractRows(s.contract?.parameters ?? []);
      const problems = [
        ...(s.contract?.problems ?? []).map(p => `line ${p.line}: ${p.message}`),
        ...(s.contract?.constraint_problems ?? [])
      ];
      body = h(
        'div',
        {},
        rows.length
          ? this._contractTable(rows)
          : h('p', { className: 'nbapps-muted' }, 'The parameters cell defines no parameters.'),
        ...problems.map(p => h('p', { className: 'nbapps-error' }, p))
      );
    }
    return h('section', { className: 'nbapps-section' }, h('h3', {}, 'Parameters'), body);
  }

  private _contractTable(rows: ContractRow[]): HTMLElement {
    const head = ['name', 'type', 'default', 'allowed', 'help'].map(c => h('th', {}, c));
    return h(
      'div',
      { className: 'nbapps-contract-box' },
      h(
        'table',
        { className: 'nbapps-contract' },
        h('thead', {}, h('tr', {}, ...head)),
        h(
          'tbody',
          {},
          ...rows.map(r =>
            h(
              'tr',
              { 'data-name': r.name },
              h('td', { className: 'nbapps-mono' }, r.name),
              h('td', {}, r.type),
              h('td', { className: 'nbapps-mono' }, r.default),
              h('td', {}, r.allowed),
              h('td', {}, r.help)
            )
          )
        )
      )
    );
  }

  private _findingList(
    s: AppSession,
    findings: readonly Finding[],
    source: 'local' | 'gallery' = 'local'
  ): HTMLElement {
    const sources = s.cellSources();
    return h(
      'ul',
      { className: `nbapps-findings nbapps-findings-${source}` },
      ...findings.map(f => {
        const at = locateFinding(f, sources);
        const number = shownCellNumber(f, at);
        return h(
          'li',
          {
            className: `nbapps-finding ${isError(f) ? 'nbapps-sev-error' : 'nbapps-sev-warning'}${
              at === null ? '' : ' nbapps-clickable'
            }`,
            'data-code': f.code,
            'data-cell': number === null ? null : String(number),
            'data-cell-index': at === null ? null : String(at),
            'data-source': source,
            title: at === null ? 'About the whole notebook' : `Go to cell ${at + 1}`,
            onclick: () => void s.revealFinding(f)
          },
          h(
            'div',
            { className: 'nbapps-finding-head' },
            h('span', { className: 'nbapps-code' }, f.code),
            number === null ? null : h('span', { className: 'nbapps-cellref' }, `cell ${number}`)
          ),
          h('div', { className: 'nbapps-finding-message' }, f.message),
          f.hint ? h('div', { className: 'nbapps-hint' }, f.hint) : null
        );
      })
    );
  }

  private _findingsSection(s: AppSession): HTMLElement {
    const report = s.report;
    let body: (HTMLElement | null)[];
    if (!report) {
      body = [h('p', { className: 'nbapps-muted' }, 'Not validated yet: press Validate.')];
    } else {
      const sum = summarize(report.findings);
      body = [
        h(
          'p',
          { className: `nbapps-summary ${report.ok ? 'nbapps-ok' : 'nbapps-error'}` },
          `${sum.text} (${report.duration.toFixed(1)} s)`
        ),
        report.findings.length ? this._findingList(s, report.findings) : null,
        ...(report.notes ?? []).map(n => h('p', { className: 'nbapps-muted' }, n))
      ];
    }
    return h('section', { className: 'nbapps-section' }, h('h3', {}, 'Validation'), ...body);
  }

  private _submission(item: SubmissionItem): HTMLElement {
    const decision = decisionOf(item);
    const check = checkLine(item);
    const notes = notesOf(item);
    const when = (at: string | null | undefined) =>
      at
        ? h('span', { className: 'nbapps-muted nbapps-when' }, new Date(at).toLocaleString())
        : null;
    return h(
      'li',
      { className: 'nbapps-submission', 'data-id': String(item.id) },
      h(
        'div',
        { className: 'nbapps-submission-head' },
        item.url
          ? h(
              'a',
              { href: item.url, target: '_blank', rel: 'noopener noreferrer' },
              `#${item.id}${item.number ? ` (v${item.number})` : ''}`
            )
          : `#${item.id}`,
        h(
          'span',
          { className: `nbapps-state nbapps-state-${item.state ?? 'unknown'}` },
          (item.state ?? 'unknown').replace(/_/g, ' ')
        ),
        when(item.created_at)
      ),
      check
        ? h(
            'div',
            {
              className:
                'nbapps-check-line ' + (item.state === 'failed' ? 'nbapps-error' : 'nbapps-muted')
            },
            check
          )
        : null,
      decision
        ? h(
            'div',
            { className: `nbapps-decision nbapps-decision-${decision.action}` },
            h(
              'div',
              { className: 'nbapps-decision-head' },
              h('span', { className: 'nbapps-decision-label' }, decision.label),
              when(decision.at)
            ),
            decision.comment
              ? h('div', { className: 'nbapps-comment nbapps-decision-comment' }, decision.comment)
              : null
          )
        : null,
      ...notes.map(n =>
        h(
          'div',
          { className: 'nbapps-comment' },
          h(
            'span',
            { className: 'nbapps-comment-author' },
            `${n.author}${n.action ? ` (${n.action.toLowerCase()})` : ''}: `
          ),
          n.text
        )
      )
    );
  }

  private _submissionsSection(s: AppSession): HTMLElement {
    const subs = s.submissions;
    const items = subs?.items ?? [];
    return h(
      'section',
      { className: 'nbapps-section nbapps-submissions-box' },
      h(
        'h3',
        {},
        'Submissions',
        h(
          'button',
          {
            className: 'jp-mod-styled nbapps-small nbapps-refresh-submissions',
            disabled: s.submissionsLoading,
            onclick: () => void s.refreshSubmissions()
          },
          s.submissionsLoading ? 'Loading…' : 'Refresh'
        )
      ),
      s.submissionsError ? h('p', { className: 'nbapps-error' }, s.submissionsError) : null,
      !subs && !s.submissionsError
        ? h('p', { className: 'nbapps-muted' }, 'Press Refresh to load them from the gallery.')
        : null,
      subs && !items.length
        ? h(
            'p',
            { className: 'nbapps-muted' },
            subs.app
              ? `Nothing submitted to app ${subs.app} yet.`
              : 'Nothing submitted from this notebook yet.'
          )
        : null,
      items.length
        ? h('ul', { className: 'nbapps-submissions' }, ...items.map(i => this._submission(i)))
        : null
    );
  }

  private _gallerySection(): HTMLElement {
    const c = this.config;
    const token = c.token;
    return h(
      'section',
      { className: 'nbapps-section nbapps-gallery-box' },
      h('h3', {}, 'Gallery'),
      h(
        'div',
        { className: 'nbapps-gallery-url' },
        c.galleryUrl || 'No gallery URL: set it in Settings → Settings Editor → nbapps.'
      ),
      h(
        'div',
        { className: 'nbapps-token-status' },
        'API token: ',
        h('span', { className: 'nbapps-mono' }, token.set ? (token.masked ?? 'set') : 'not set')
      ),
      c.tokenError ? h('p', { className: 'nbapps-error' }, c.tokenError) : null,
      h(
        'div',
        { className: 'nbapps-actions' },
        h(
          'button',
          {
            className: 'jp-mod-styled nbapps-small nbapps-set-gallery',
            onclick: () => void this.askGalleryUrl()
          },
          'Gallery URL…'
        ),
        h(
          'button',
          {
            className: 'jp-mod-styled nbapps-small nbapps-set-token',
            disabled: !c.galleryUrl,
            onclick: () => void this.askToken()
          },
          token.set ? 'Replace token…' : 'Set token…'
        ),
        token.set
          ? h(
              'button',
              {
                className: 'jp-mod-styled nbapps-small nbapps-forget-token',
                onclick: () => void c.forgetToken().catch(err => this._tokenFailed(err))
              },
              'Forget token'
            )
          : null
      )
    );
  }

  async askGalleryUrl(): Promise<void> {
    const input = h('input', {
      className: 'jp-mod-styled nbapps-gallery-input',
      type: 'url',
      placeholder: 'https://gallery.example.org',
      value: this.config.galleryUrl
    });
    const result = await showDialog({
      title: 'Gallery URL',
      body: new Widget({ node: h('div', {}, input) }),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Save' })]
    });
    if (result.button.accept) {
      await this.config.setGalleryUrl(input.value);
    }
  }

  async askToken(): Promise<void> {
    const body = new TokenBody(this.config.galleryUrl);
    const result = await showDialog({
      title: 'Gallery API token',
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Save' })]
    });
    const value = result.value?.trim();
    if (result.button.accept && value) {
      try {
        await this.config.saveToken(value);
      } catch (err) {
        this._tokenFailed(err);
      }
    }
  }

  private _tokenFailed(err: unknown): void {
    this.config.tokenError = errorText(err);
    this.render();
  }

  private _session: AppSession | null = null;
  private _autoLoaded = new WeakSet<AppSession>();
  private _head = h('div', { className: 'nbapps-head' });
  private _form = new MetaForm();
  private _body = h('div', { className: 'nbapps-body' });
}
