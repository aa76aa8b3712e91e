"""Every stable error and finding code nbapps emits, with its severity and fix.

This table is the single source for messages' hints, the README's error table (a test checks that
the README lists every code) and the JSON API's ``error`` field. Codes are never renumbered or
reused; a retired code stays here marked as such.

Ranges: NBA0xx notebook findings (validate), NBA1xx parameters and command-line usage,
NBA2xx bundles, NBA3xx gallery server and API, NBA4xx app runners.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Code:
    code: str
    severity: Severity
    title: str
    fix: str


E, W = Severity.ERROR, Severity.WARNING

_TABLE: list[Code] = [
    # -- reading the notebook ------------------------------------------------------------------
    Code("NBA001", E, "File cannot be read", "Check that the path exists and is readable."),
    Code("NBA002", E, "File is not valid JSON",
         "The file is damaged or not a notebook; re-save it from JupyterLab."),
    Code("NBA003", E, "JSON is not a Jupyter notebook",
         "The file needs `cells`, `metadata`, `nbformat` and `nbformat_minor` keys."),
    Code("NBA004", E, "Notebook violates the nbformat schema",
         "Open and re-save the notebook in JupyterLab, or fix the field named in the message."),
    Code("NBA005", W, "Old notebook format upgraded",
         "Re-save the notebook with a current JupyterLab so it is stored as nbformat 4.5."),
    Code("NBA006", E, "File is empty", "Save the notebook again; the file has no content."),
    # -- kernel ----------------------------------------------------------------------------------
    Code("NBA010", E, "No kernelspec in the notebook metadata",
         "Open the notebook in JupyterLab, pick a kernel (e.g. Python 3) and save."),
    Code("NBA011", E, "Kernel not installed here",
         "Install the kernel (`python -m ipykernel install --user --name NAME`) or switch the "
         "notebook to an installed one (`jupyter kernelspec list`)."),
    # -- parameters ------------------------------------------------------------------------------
    Code("NBA020", E, "No cell tagged `parameters`",
         "Put the app's inputs in one code cell and give it the `parameters` tag."),
    Code("NBA021", E, "More than one cell tagged `parameters`",
         "Keep the `parameters` tag on exactly one cell; merge the others into it."),
    Code("NBA022", E, "Parameters cell is not plain literal assignments",
         "Use only `name = literal  # help` lines (numbers, strings, booleans, None, lists, "
         "dicts); move computations to the next cell."),
    Code("NBA023", W, "Cell uses the reserved `injected-parameters` tag",
         "Remove the tag: papermill adds that cell itself when it runs the notebook."),
    Code("NBA024", E, "Parameter constraint in metadata is invalid",
         "Fix `metadata.nbapps.parameters.NAME`: only `choices`, `min`, `max` for a known "
         "parameter, of the parameter's type, with the default allowed."),
    # -- app metadata ----------------------------------------------------------------------------
    Code("NBA030", E, "No cell tagged `widget`",
         "Tag the cells that make up the app (widgets, charts, markdown) with `widget`."),
    Code("NBA031", E, "App title missing", "Set `metadata.nbapps.title`."),
    Code("NBA032", E, "App description missing", "Set `metadata.nbapps.description`."),
    Code("NBA033", E, "`metadata.nbapps` has a field of the wrong type",
         "Fix the field named in the message (see the README's metadata table)."),
    Code("NBA034", W, "Unknown field in `metadata.nbapps`",
         "Fix the field's name (a typo is ignored silently otherwise) or remove it."),
    Code("NBA035", W, "Starter text of `nbapps init` still in the notebook",
         "Replace the starter description, introduction and `draft` tag with what your app does "
         "and who it is for."),
    Code("NBA036", W, "The app's first heading differs from its title",
         "Make the app's first heading (a `# ...` line in a `widget` markdown cell) and "
         "`metadata.nbapps.title` the same: the gallery and the app's frame show the title."),
    # -- test parameters -------------------------------------------------------------------------
    Code("NBA040", E, "Test parameters name an unknown parameter",
         "Use only names defined in the `parameters` cell."),
    Code("NBA041", E, "Test parameter value has the wrong type",
         "Give a value of the parameter's type (from its default in the `parameters` cell)."),
    Code("NBA042", E, "Test parameter value outside the allowed values",
         "Pick a value within the parameter's `choices` or `min`/`max`."),
    # -- content ---------------------------------------------------------------------------------
    Code("NBA050", E, "Secret in a cell's source",
         "Remove the secret; read it at run time from an environment variable or a secrets "
         "store, and rotate it since it was saved."),
    Code("NBA051", E, "Secret in a stored output",
         "Clear the outputs (Edit > Clear Outputs of All Cells), remove what printed the secret "
         "and rotate it."),
    Code("NBA060", E, "Stored outputs too large",
         "Clear large outputs before publishing; the app recomputes them when it runs."),
    Code("NBA061", W, "Shell escape or system magic",
         "Apps should not run shell commands (`!cmd`, `%system`, `%%bash`); use Python instead."),
    Code("NBA062", E, "Declared data file missing",
         "Fix the path in `metadata.nbapps.files` (relative to the notebook) or add the file."),
    Code("NBA063", E, "Declared thumbnail missing",
         "Fix `metadata.nbapps.thumbnail` (a PNG path relative to the notebook)."),
    # -- execution -------------------------------------------------------------------------------
    Code("NBA070", E, "A cell raised an exception",
         "Run the notebook top to bottom (Kernel > Restart and Run All) and fix the cell named."),
    Code("NBA071", E, "A cell ran longer than the cell timeout",
         "Make the cell faster or raise `metadata.nbapps.timeout`."),
    Code("NBA072", E, "The notebook ran longer than the total timeout",
         "Make the notebook faster or raise the total timeout (`--timeout`)."),
    Code("NBA073", E, "The kernel died while running",
         "The cell named crashed the kernel (memory, a native library, `os._exit`); fix it."),
    Code("NBA074", E, "A `widget` cell produced no display output",
         "End the cell with a widget or `display(...)`, or remove its `widget` tag."),
    Code("NBA075", E, "Unknown magic or error printed on stderr",
         "Remove or fix the magic named in the message."),
    Code("NBA076", E, "The kernel could not be started", "Check the kernel named in the message."),
    Code("NBA077", E, "An exception was captured in a widget output",
         "An `Output.capture()` swallowed an exception at start; fix the code it names."),
    # -- variants (nbapps.variants) --------------------------------------------------------------
    Code("NBA090", E, "`metadata.nbapps.variants` is malformed",
         'Write a list of `{"name": "EU 2024", "parameters": {"region": "EU"}}` objects, each '
         "with a non-empty name of at most 80 characters."),
    Code("NBA091", E, "A variant names an unknown parameter",
         "Use only names defined in the `parameters` cell."),
    Code("NBA092", E, "A variant's parameter value is of the wrong type or not allowed",
         "Give a value of the parameter's type within its `choices` or `min`/`max`."),
    Code("NBA093", E, "Two variants have the same name",
         "Give every variant its own name (names that differ only in case or punctuation "
         "get the same link key)."),
    Code("NBA094", E, "Too many variants", "Keep at most 20 variants; remove the least used."),
    # -- declared outputs (metadata.nbapps.outputs; nbapps.runs) -------------------------------
    Code("NBA080", E, "A declared output is not a plain relative file name",
         "List files the notebook writes into its working folder, e.g. `summary.csv` or "
         "`out/chart.png`: no absolute paths, `..`, hidden names or the reserved names "
         "executed.ipynb, report.html, report.pdf, result.json, run.json."),
    Code("NBA081", E, "Too many declared outputs",
         "Declare at most 50 output files (`metadata.nbapps.outputs`); zip several together."),
    Code("NBA082", W, "A declared output is declared twice",
         "List each output file once in `metadata.nbapps.outputs`."),
    # -- schedules (metadata.nbapps.schedules; nbapps.schedules) --------------------------------
    Code("NBA085", E, "A schedule in `metadata.nbapps.schedules` is malformed",
         "Give a list of mappings with a unique slug-like `name` (lowercase letters, digits, "
         "'-'), a `cron` string and optionally `timezone` and `parameters` (README, "
         "'Schedules')."),
    Code("NBA086", W, "A schedule uses a seconds field (6-field cron)",
         "Use a 5-field cron expression (minute hour day month weekday); galleries run "
         "seconds schedules only with `c.NbappsServer.schedule_allow_seconds` (meant for "
         "tests)."),
    Code("NBA087", E, "A schedule's cron expression is invalid",
         "Write 5 fields: minute hour day-of-month month day-of-week, e.g. `0 6 * * *` for "
         "06:00 every day."),
    Code("NBA088", E, "A schedule's time zone is unknown",
         "Use an IANA time zone name such as `Europe/Paris` or `UTC` (the default)."),
    Code("NBA089", E, "A schedule's parameters do not fit the parameter contract",
         "Use only names of the `parameters` cell, with values of their type and within "
         "their choices or min/max."),
    # -- parameters given on the command line or the URL ----------------------------------------
    Code("NBA100", E, "Command-line usage error", "See `nbapps COMMAND --help`."),
    Code("NBA101", E, "Unknown parameter", "Use one of the parameters listed in the message."),
    Code("NBA102", E, "Parameter value has the wrong type",
         "Give a value of the type listed for that parameter."),
    Code("NBA103", E, "Parameter value outside the allowed values",
         "Pick one of the choices or a value within min/max."),
    Code("NBA104", E, "Parameter file unreadable", "Give a YAML or JSON mapping of name: value."),
    Code("NBA105", E, "Path not found", "Check the path."),
    Code("NBA106", E, "File already exists",
         "Pick another name or `--dir`, or move the existing file away first; nbapps never "
         "overwrites it."),
    # -- bundles ---------------------------------------------------------------------------------
    Code("NBA200", E, "Notebook has errors; not bundled", "Fix the findings listed, then retry."),
    Code("NBA201", E, "Bundle manifest missing or invalid",
         "Rebuild the bundle with `nbapps bundle`; do not edit bundles by hand."),
    Code("NBA202", E, "Bundle content does not match its hash",
         "The bundle was modified after it was built; rebuild it with `nbapps bundle`."),
    Code("NBA203", E, "Bundle too large",
         "Ship smaller data files or ask an admin to raise the limit."),
    Code("NBA204", E, "Bundle archive unsafe or unreadable",
         "Rebuild the bundle; archives may not contain links or paths outside the bundle."),
    Code("NBA205", E, "Output folder exists and holds something else",
         "Pick another output folder or empty it."),
    Code("NBA206", E, "Submission has no app notebook",
         "Upload the archive `nbapps publish` or `nbapps bundle` makes: it holds the notebook "
         "as `app.ipynb` at its root."),
    Code("NBA207", E, "App has no title",
         "Set `metadata.nbapps.title` in the notebook, or give the app a slug (`--slug`)."),
    # -- gallery server, catalog, accounts -------------------------------------------------------
    Code("NBA300", E, "Authentication required",
         "Log in, or send an API token as `Authorization: Bearer <token>`."),
    Code("NBA301", E, "Permission denied",
         "Your role does not allow this; ask an admin (`nbapps user set-role`)."),
    Code("NBA302", E, "Not found",
         "Check the name or id; it may have been removed or never existed."),
    Code("NBA303", E, "Conflict with the current state",
         "Someone changed this at the same moment; reload and try again."),
    Code("NBA304", E, "Four-eyes rule: you cannot decide on your own submission",
         "Ask another reviewer to review it."),
    Code("NBA305", E, "Action not allowed in the submission's current state",
         "Reload the submission to see its state; only submitted versions can be decided."),
    Code("NBA306", E, "Catalog schema is newer than this nbapps",
         "Upgrade nbapps to the version that last migrated this database, or use another "
         "`--db-url`/`--data-dir`."),
    Code("NBA307", E, "User already exists", "Pick another name, or change the existing user."),
    Code("NBA308", E, "Wrong user name or password", "Check both and try again."),
    Code("NBA309", E, "Too many failed logins", "Wait a few minutes before trying again."),
    Code("NBA310", E, "API token invalid or revoked",
         "Create a new token (`nbapps user token NAME`) and use it."),
    Code("NBA311", E, "Invalid user name, role or password",
         "User names are 1-64 visible characters without spaces, ':' or '/'; roles are viewer, "
         "analyst, reviewer, admin."),
    Code("NBA312", E, "Bundle store error",
         "Check the store URL and its permissions; an object of the same hash with other "
         "content means the store was tampered with."),
    Code("NBA313", E, "Catalog database unavailable",
         "Check `--db-url` (or the data dir) and that the database server is running."),
    Code("NBA314", E, "Cookie secret is not usable",
         "Give at least 32 random bytes as hex (`openssl rand -hex 32`) in "
         "`c.NbappsServer.cookie_secret`, `$NBAPPS_COOKIE_SECRET` or a file only its owner can "
         "read named by `c.NbappsServer.cookie_secret_file`; the same on every replica."),
    Code("NBA315", E, "Object the catalog names is missing from the bundle store",
         "Restore it from a backup of the store (same key), or check that `store_url` and "
         "`store_options` point at the gallery's store; `nbapps store check` lists them all."),
    Code("NBA316", E, "Stored object does not hold what its address says",
         "The object was changed outside nbapps: restore the original from a backup of the "
         "store; for a source, the analyst can also submit the notebook again."),
    # -- the gallery's own check of submissions (NBA320-329) -------------------------------------
    Code("NBA320", E, "The gallery's check of this version failed: it cannot be approved",
         "Read the check's findings; the author fixes the notebook and submits again, or a "
         "reviewer sends it back, rejects it or re-queues the check."),
    Code("NBA321", E, "The gallery is still checking this version",
         "Wait for the check to finish (the submission shows its place in the queue), then "
         "decide."),
    Code("NBA322", E, "The check queue is full",
         "Try again in a few minutes; operators raise `c.NbappsServer.check_queue_max` or "
         "`check_workers`."),
    Code("NBA323", E, "The check ran past its time limit and was stopped",
         "Make the notebook faster (or its data smaller); operators raise "
         "`c.NbappsServer.check_total_timeout`."),
    Code("NBA324", E, "The gallery could not check this version",
         "A reviewer or admin re-queues the check; if it fails again, the operator finds the "
         "cause in the server log."),
    Code("NBA325", E, "No verdict from the gallery in time",
         "The check is still queued or running: follow it on the submission page, or wait "
         "longer (`--wait-timeout`)."),
    # -- gallery web layer and its clients (NBA330-349) ------------------------------------------
    Code("NBA330", E, "Request refused: XSRF token missing or wrong, or cross-site origin",
         "Reload the page and submit the form again; API clients send `Authorization: Bearer` "
         "or the `_xsrf` cookie's value in an `X-XSRFToken` header."),
    Code("NBA331", E, "Invalid request", "Fix the field named in the message and retry."),
    Code("NBA332", E, "Method not allowed", "See /api/openapi.json for the methods of each URL."),
    Code("NBA333", E, "Internal server error",
         "Retry; if it persists, the operator finds the details in the server's debug log."),
    Code("NBA334", E, "App runtime not available",
         "This server cannot run apps yet; ask the operator to enable the app runners."),
    Code("NBA335", E, "Gallery server unreachable or not an nbapps gallery",
         "Check `--gallery` / `NBAPPS_GALLERY` (e.g. http://127.0.0.1:8866) and that the "
         "server runs."),
    Code("NBA336", E, "No gallery or token configured",
         "Set `NBAPPS_GALLERY` and `NBAPPS_TOKEN`, or `gallery` and `token` in "
         "~/.config/nbapps/config.toml (a token comes from your account page)."),
    # -- app isolation, frame and start-up (NBA340-349) ------------------------------------------
    Code("NBA340", E, "App page expired or its ticket is not valid",
         "Reload the app's page (its ticket lasts `c.NbappsServer.app_ticket_lifetime` "
         "seconds); a ticket is only valid for the app and the viewer it was made for, and "
         "ends with the login session it was opened in (after a logout, sign in again)."),
    Code("NBA341", E, "App not available (reference number shown)",
         "Tell the operator the reference: the server log has the details under it (search "
         "for `ref <number>`); the app is restarted by itself."),
    # -- JupyterHub login (nbapps.server.hub_auth, NBA342-349) ----------------------------------
    Code("NBA342", E, "JupyterHub login is not configured correctly",
         "Run the gallery as a Hub service (the Hub sets JUPYTERHUB_API_TOKEN, _API_URL, "
         "_CLIENT_ID) or set `c.HubConfiguration.api_url`, `api_token` and `client_id`; "
         "`role_map` keys are `admin`, `group:<name>`, `role:<name>` or `user:<name>` and its "
         "values gallery roles (docs/deploy.md, 'JupyterHub login')."),
    Code("NBA343", E, "JupyterHub login state missing, expired or not matching",
         "Start the login again from the gallery's login page (within 10 minutes, in the same "
         "browser, with cookies allowed)."),
    Code("NBA344", E, "JupyterHub did not answer",
         "Try again in a moment; if it persists, the operator checks that the Hub runs and "
         "that `c.HubConfiguration.api_url` reaches its API from the gallery."),
    Code("NBA345", E, "JupyterHub refused the login",
         "Log in to JupyterHub again and retry; the operator checks that the service's "
         "`oauth_redirect_uri` is the gallery's callback URL and its API token is current."),
    Code("NBA346", E, "This JupyterHub user or token may not use the gallery",
         "Ask the Hub admin for the `access:services!service=<gallery service>` scope (a role "
         "in `load_roles`); for a server's token, add that scope to "
         "`c.Spawner.server_token_scopes`."),
    Code("NBA347", E, "This account signs in through JupyterHub",
         "Use 'Sign in with JupyterHub' on the login page; accounts made by the Hub have no "
         "gallery password."),
    Code("NBA348", E, "This JupyterHub user cannot be a gallery user",
         "The Hub user name must be 1-64 visible characters without spaces, ':' or '/', and "
         "the gallery account must not be disabled: ask a gallery admin."),
    Code("NBA349", E, "JupyterHub login is not enabled on this gallery",
         "Log in with your gallery account, or ask the operator to set "
         "`c.NbappsServer.auth = \"jupyterhub\"`."),
    # -- review pages and decisions (NBA350-359) -------------------------------------------------
    Code("NBA350", E, "A reason is required to reject or request changes",
         "Write the reason in the comment (what to change, or why it is rejected): the author "
         "sees it in the gallery and in JupyterLab."),
    # -- live previews of submitted versions (NBA360-369) ----------------------------------------
    Code("NBA360", E, "The preview of this version has ended",
         "The version was decided or withdrawn: its preview runner is stopped. Open the live "
         "app, or the submission page of the newer version."),
    Code("NBA361", E, "This version cannot be previewed",
         "Only a submitted version whose gallery check passed can run as a preview: wait for "
         "the check (the submission page shows its place in the queue) or fix its findings."),
    # -- runs of approved versions (NBA370-379) --------------------------------------------------
    Code("NBA370", E, "The run queue is full",
         "Try again in a few minutes (the message gives the queue length); operators raise "
         "`c.NbappsServer.run_queue_max` or `run_workers`."),
    Code("NBA371", E, "This version cannot be run: it is not approved",
         "Run the app's live version (leave out `version`) or an approved one; a submission "
         "runs only after its approval."),
    Code("NBA372", E, "The run ran past its time limit and was stopped",
         "Make the notebook faster or its data smaller; operators raise "
         "`c.NbappsServer.run_timeout`."),
    Code("NBA373", E, "The gallery could not complete this run",
         "Run it again; if it fails again, the operator finds the cause in the server log."),
    Code("NBA374", W, "A declared output file is missing or too large",
         "Write every file listed in `metadata.nbapps.outputs` into the notebook's working "
         "folder (relative names), within the size limit, or remove it from the list."),
    Code("NBA375", E, "This run has no such output (yet)",
         "Wait until the run has finished (`nbapps runs show ID`); its artifacts are listed "
         "in its `artifacts`."),
    Code("NBA376", E, "Only the run's owner or an admin may cancel it",
         "Ask the person who started the run, or an admin."),
    Code("NBA377", E, "This run has already finished",
         "Nothing to cancel: a finished run keeps its outputs until retention removes it."),
    Code("NBA378", E, "Invalid run request",
         'Send `{"parameters": {...}}` or `{"batch": [{...}, ...]}` (at most the batch limit), '
         'optionally with `"version": N`.'),
    Code("NBA379", W, "A recorded result value was left out",
         "Record JSON values (`nbapps.record(name, value)`) with a name of at most 100 "
         "characters; keep all results together under the size limit."),
    # -- JupyterLab extension (nbapps.labserver) -------------------------------------------------
    Code("NBA380", E, "No usable gallery URL",
         "Set the gallery's http(s) address in Settings > Settings Editor > nbapps."),
    Code("NBA381", E, "No API token stored for this gallery",
         "Use 'Set token…' in the nbapps panel (or the settings' API token field) with a token "
         "from your gallery account page."),
    Code("NBA382", E, "No free gallery app name for this notebook",
         "Set `metadata.nbapps.slug` (Property Inspector > Notebook metadata) to a name of "
         "your own (lowercase letters, digits, hyphens), then publish again."),
    Code("NBA383", E, "You have too many runs queued or running",
         "Wait for your runs to finish or cancel some (`nbapps runs list`, `runs cancel`); a "
         "batch counts one per set. Operators raise `c.NbappsServer.run_user_max`."),
    Code("NBA385", E, "A lab job failed unexpectedly",
         "See the Jupyter server log for the details, then retry; report it if it persists."),
    # -- PDF reports (nbapps.report_pdf) --------------------------------------------------------
    Code("NBA386", E, "The HTML report to print cannot be read",
         "Give the path of an existing, readable HTML report (a run's `report.html`)."),
    Code("NBA387", E, "Printing the report to PDF ran past its time limit",
         "The report is very large or kept the browser busy; make its outputs smaller or "
         "raise the PDF timeout."),
    Code("NBA388", E, "Chromium could not print the report to PDF",
         "Install Debian's `chromium` (scripts/install-system-deps.sh) and Python Playwright; "
         "the message names the cause."),
    Code("NBA389", W, "The report's widgets did not render before printing",
         "The PDF shows the widgets' text fallback: install the widget renderer "
         "(`make widgets`) and keep custom widget libraries out of reports."),
    # -- apps on origins of their own (nbapps.server.app_origins) ------------------------------
    Code("NBA390", E, "app_subdomain_host cannot be used as set",
         "Give a host name such as apps.example-apps.org (wildcard DNS and certificate pointing "
         "at the gallery) and set public_url to the gallery's URL, or use 'auto' or ''."),
    # -- replicas forwarding kernel requests (nbapps.server.peers) ------------------------------
    Code("NBA391", E, "internal_url cannot be used as set",
         "Give where the other replicas reach this one as http://host:port (no path, no "
         "user), e.g. http://$(POD_IP):8866 in Kubernetes, or '' for the address it listens on."),
    # -- store clean-up (nbapps.store_gc) -------------------------------------------------------
    Code("NBA398", E, "Store clean-up refused: a check or run is running",
         "Run `nbapps store gc --delete` again when no job runs (a running job may be storing "
         "an object it has not recorded yet); `--force` only when the gallery is stopped and "
         "the catalog still shows jobs running from before."),
    Code("NBA399", W, "An unreferenced store object could not be deleted",
         "Check that the store's credentials may delete objects (the message names the "
         "cause), then run `nbapps store gc --delete` again."),
    # -- app runners (NBA400-) --------------------------------------------------------------------
    Code("NBA400", E, "App runner could not be prepared",
         "Check that the approved bundle is complete; see the runner log named in the message."),
    Code("NBA401", E, "App runner failed to start",
         "See the runner log named in the message; the app is restarted with backoff."),
    Code("NBA402", E, "App busy: kernel or memory limit reached",
         "Try again later, or ask an admin to raise the per-app kernel cap or memory budget."),
    Code("NBA403", E, "Another gallery uses this data folder",
         "Stop the other `nbapps serve` or give this one its own data folder."),
    # -- app runners on JupyterHub (NBA410-NBA419) ----------------------------------------------
    Code("NBA410", E, "JupyterHub runner backend not configured",
         "Set RuntimeConfiguration.hub_api_url, hub_api_token and hub_account (or "
         "$JUPYTERHUB_API_URL and $JUPYTERHUB_API_TOKEN) when backend is jupyterhub."),
    Code("NBA411", E, "JupyterHub refused an app server request",
         "Give the gallery's Hub token servers!user=<hub_account>, allow named servers and "
         "install nbapps' pre_spawn_hook in the Hub (docs/deploy.md, Runners on the Hub)."),
    Code("NBA412", E, "JupyterHub did not answer an app server request",
         "Check that the Hub is running and hub_api_url reaches it; the app is restarted with "
         "backoff."),
    Code("NBA413", E, "JupyterHub app server stopped or timed out while starting",
         "See the Hub's log and the runner log; raise hub_spawn_timeout and the spawner's "
         "http_timeout/start_timeout on a slow machine."),
]

CODES: dict[str, Code] = {c.code: c for c in _TABLE}


def register(code: Code) -> None:
    """Add a code (used by modules that own a range); refuses to redefine an existing code."""
    if code.code in CODES and CODES[code.code] != code:
        raise ValueError(f"code {code.code} already defined differently")
    CODES[code.code] = code


def lookup(code: str) -> Code:
    return CODES[code]


def markdown_table() -> str:
    """The README's table of codes (regenerate with ``python -m nbapps.codes``)."""
    rows = ["| code | severity | what it means | how to fix it |", "|---|---|---|---|"]
    for code in sorted(CODES):
        c = CODES[code]
        fix = c.fix.replace("|", "\\|")
        rows.append(f"| {c.code} | {c.severity.value} | {c.title} | {fix} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
