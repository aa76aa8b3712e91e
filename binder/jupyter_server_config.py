# Installed by binder/postBuild into <env>/etc/jupyter/: the nbapps demo gallery runs beside
# JupyterLab, started on first use by jupyter-server-proxy at <base_url>nbapps-gallery/
# (Launcher tile "App gallery"). Details: nbapps/binder_proxy.py, docs/binder.md.
from nbapps.binder_proxy import NAME, gallery_server, internal_url, lab_token_path

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file
c.ServerProxy.servers = {NAME: gallery_server()}
# app pages run sandboxed, without cookies: their ticket URLs (and only those) pass Jupyter's
# login on their way to the gallery, which checks the ticket itself (nbapps/jupyter_tickets.py)
c.ServerApp.jpserver_extensions.update({"nbapps.jupyter_tickets": True})
# the nbapps panel in JupyterLab publishes to the gallery inside the container, directly; the
# extension fills in {base_url} at start and stores the analyst's token postBuild wrote
c.NbappsLabApp.gallery_url = internal_url()
c.NbappsLabApp.gallery_token_file = str(lab_token_path())
# opening JupyterLab starts the gallery (through the proxy entry), so publishing works before
# anyone has opened the "App gallery" tile
c.NbappsLabApp.gallery_launch_path = f"{NAME}/healthz"
