"""The gallery server: a plain tornado application (pages, JSON API, review workflow).

Entry point :class:`nbapps.server.app.NbappsServer` (``nbapps serve``). Modules: ``identity``
(who is asking), ``authz`` (what they may do), ``routes`` (the one route table), ``pages_*``
(HTML) and ``api_*`` (JSON) handlers, ``submissions`` (upload pipeline and decisions),
``notebook_view`` (what reviewers see), ``templates/`` and ``static/``.
"""
