/**
 * nbapps for JupyterLab: tag cells, edit the app metadata, validate and publish the current
 * notebook to the gallery. The work is done by the server extension `nbapps.labserver`.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { LabConfig } from './config';
import { isError, locateFinding } from './findings';
import { nbappsIcon, parametersTagIcon, publishIcon, widgetTagIcon } from './icons';
import { TagMarkers } from './markers';
import { NbappsPanel } from './panel';
import { PublishState } from './publish';
import { AppSession } from './session';
import { PARAMETERS_TAG, WIDGET_TAG, hasTag, planToggle } from './tags';

const PLUGIN_ID = '@nbapps/jupyterlab:plugin';

export namespace CommandIDs {
  export const toggleWidget = 'nbapps:toggle-widget-tag';
  export const toggleParameters = 'nbapps:toggle-parameters-tag';
  export const validate = 'nbapps:validate';
  export const publish = 'nbapps:publish';
  export const showPanel = 'nbapps:show-panel';
  export const setToken = 'nbapps:set-token';
}

/** Toggle `tag` on the active cell (and, for `widget`, every selected cell). */
function toggleTagCommand(panel: NotebookPanel, tag: string): void {
  const nb = panel.content;
  const model = nb.model;
  const active = nb.activeCell;
  if (!model || !active) {
    return;
  }
  const raw: unknown[] = [];
  for (let i = 0; i < model.cells.length; i++) {
    raw.push(model.cells.get(i).getMetadata('tags'));
  }
  const on = !hasTag(active.model.getMetadata('tags'), tag);
  const targets =
    tag === WIDGET_TAG
      ? nb.widgets.map((c, i) => (nb.isSelectedOrActive(c) ? i : -1)).filter(i => i >= 0)
      : [nb.activeCellIndex];
  const changes = new Map<number, string[] | undefined>();
  for (const index of targets) {
    for (const change of planToggle(raw, index, tag, on)) {
      changes.set(change.index, change.tags);
      raw[change.index] = change.tags;
    }
  }
  model.sharedModel.transact(() => {
    for (const [index, tags] of changes) {
      const cell = model.cells.get(index);
      if (tags) {
        cell.setMetadata('tags', tags);
      } else {
        cell.deleteMetadata('tags');
      }
    }
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Tag, validate and publish notebooks as nbapps apps.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ISettingRegistry, ICommandPalette, ILabShell],
  activate: async (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null,
    labShell: ILabShell | null
  ) => {
    let settings: ISettingRegistry.ISettings | null = null;
    if (settingRegistry) {
      try {
        settings = await settingRegistry.load(PLUGIN_ID);
      } catch (err) {
        console.warn('nbapps: settings not loaded', err);
      }
    }
    const config = new LabConfig(settings);
    const sessions = new Map<NotebookPanel, AppSession>();
    const markers = new Map<NotebookPanel, TagMarkers>();
    const panel = new NbappsPanel(config);
    app.shell.add(panel, 'right', { rank: 650 });

    const refreshToggles = () => {
      app.commands.notifyCommandChanged(CommandIDs.toggleWidget);
      app.commands.notifyCommandChanged(CommandIDs.toggleParameters);
    };

    /** One notification per publish, for the state it ended in (the session calls it once). */
    const onPublishFinished = (session: AppSession, state: PublishState) => {
      const name = session.panel.context.path;
      const show = { label: 'Show', callback: () => app.shell.activateById(panel.id) };
      if (state.phase === 'submitted') {
        const url = state.submission.url;
        const checked =
          state.submission.check?.state === 'passed' ? " and passed the gallery's check" : '';
        Notification.success(
          `${name}: submitted for review (#${state.submission.id})${checked}.`,
          {
            autoClose: 8000,
            actions: url ? [{ label: 'Open', callback: () => window.open(url, '_blank') }] : []
          }
        );
      } else if (state.phase === 'blocked') {
        Notification.warning(
          `${name}: not published, ${state.findings.length} problem(s) to fix.`,
          { autoClose: 8000, actions: [show] }
        );
      } else if (state.phase === 'rejected') {
        Notification.error(
          state.error
            ? `${name}: the gallery could not check submission #${state.submission.id}.`
            : `${name}: submission #${state.submission.id} failed the gallery's check.`,
          { autoClose: false, actions: [show] }
        );
      } else if (state.phase === 'failed') {
        Notification.error(`${name}: publishing failed. ${state.error}`, { autoClose: false });
      }
    };

    const sessionFor = (nbPanel: NotebookPanel): AppSession => {
      let session = sessions.get(nbPanel);
      if (!session) {
        session = new AppSession(nbPanel, {
          galleryUrl: () => config.galleryUrl,
          executeOnValidate: () => config.executeOnValidate,
          onPublishFinished
        });
        const m = new TagMarkers(nbPanel.content);
        m.tagsChanged.connect(refreshToggles);
        markers.set(nbPanel, m);
        // error findings (local, or of a failed gallery check) get a mark on their cell
        session.changed.connect(s => {
          const sources = s.cellSources();
          const cells = new Set<number>();
          for (const f of s.markedFindings()) {
            const at = isError(f) ? locateFinding(f, sources) : null;
            if (at !== null) {
              cells.add(at);
            }
          }
          m.setFindingCells(cells);
        });
        sessions.set(nbPanel, session);
        nbPanel.disposed.connect(() => {
          session?.dispose();
          m.dispose();
          sessions.delete(nbPanel);
          markers.delete(nbPanel);
        });
      }
      return session;
    };

    tracker.widgetAdded.connect((_, nbPanel) => void sessionFor(nbPanel));
    tracker.forEach(nbPanel => void sessionFor(nbPanel));
    tracker.currentChanged.connect((_, nbPanel) => {
      panel.setSession(nbPanel ? sessionFor(nbPanel) : null);
      refreshToggles();
    });
    tracker.activeCellChanged.connect(refreshToggles);
    panel.setSession(tracker.currentWidget ? sessionFor(tracker.currentWidget) : null);

    const current = (): NotebookPanel | null => {
      const w = tracker.currentWidget;
      return w && (!labShell || tracker.has(w)) ? w : null;
    };
    const activeCellHas = (tag: string) =>
      hasTag(tracker.activeCell?.model.getMetadata('tags'), tag);

    app.commands.addCommand(CommandIDs.toggleWidget, {
      label: args => (args.toolbar ? '' : 'Toggle App Tag: widget'),
      caption: 'Show this cell in the app (nbapps `widget` tag)',
      icon: widgetTagIcon,
      isEnabled: () => !!tracker.activeCell,
      isToggled: () => activeCellHas(WIDGET_TAG),
      execute: () => {
        const w = current();
        if (w) {
          toggleTagCommand(w, WIDGET_TAG);
          refreshToggles();
        }
      }
    });
    app.commands.addCommand(CommandIDs.toggleParameters, {
      label: args => (args.toolbar ? '' : 'Toggle App Tag: parameters'),
      caption: "This cell holds the app's parameters (nbapps `parameters` tag)",
      icon: parametersTagIcon,
      isEnabled: () => tracker.activeCell?.model.type === 'code',
      isToggled: () => activeCellHas(PARAMETERS_TAG),
      execute: () => {
        const w = current();
        if (w) {
          toggleTagCommand(w, PARAMETERS_TAG);
          refreshToggles();
        }
      }
    });
    app.commands.addCommand(CommandIDs.validate, {
      label: 'Validate App',
      caption: 'Check and run this notebook as an app',
      icon: nbappsIcon,
      isEnabled: () => !!current(),
      execute: async () => {
        const w = current();
        if (w) {
          app.shell.activateById(panel.id);
          await sessionFor(w).validate();
        }
      }
    });
    app.commands.addCommand(CommandIDs.publish, {
      label: args => (args.toolbar ? 'Publish' : 'Publish App'),
      caption: 'Save, validate, bundle and submit this notebook to the gallery for review',
      icon: publishIcon,
      isEnabled: () => !!current(),
      execute: async () => {
        const w = current();
        if (!w) {
          return;
        }
        app.shell.activateById(panel.id);
        return (await sessionFor(w).publishApp()).phase;
      }
    });
    app.commands.addCommand(CommandIDs.showPanel, {
      label: 'Show App Panel',
      icon: nbappsIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.setToken, {
      label: 'Set Gallery API Token…',
      execute: () => panel.askToken()
    });
    if (palette) {
      const category = 'nbapps';
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category });
      }
    }
  }
};

export default plugin;
