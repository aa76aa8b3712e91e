# The demo gallery's settings on Binder (installed by binder/postBuild into
# <env>/share/nbapps-binder/ and passed to `nbapps serve --config`).
from nbapps.binder_proxy import TEMPLATES_SUBDIR, demo_data_dir

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file
c.NbappsServer.site_name = "nbapps demo gallery"
# the login page lists the demo accounts (written by `python -m nbapps.binder_proxy setup`)
c.NbappsServer.template_paths = [str(demo_data_dir() / TEMPLATES_SUBDIR)]
c.NbappsServer.tornado_settings = {
    # Jupyter's own XSRF cookie is also `_xsrf`, on the same origin: keep them apart
    "xsrf_cookie_name": "_nbapps_xsrf",
}
