"""The environment of a runner and of its kernels: an explicit allowlist.

Voilà hands ``os.environ`` of its own process to every kernel it starts, so the runner process is
started with a filtered environment and nothing of the gallery's (secrets, API tokens, the
database URL) can reach notebook code. Only the names below pass, plus the Jupyter variables the
runner sets itself (:func:`runner_environment`).
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

#: Names passed from the gallery's environment to runners and kernels.
ALLOWED_NAMES: frozenset[str] = frozenset({
    "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME",
    "MPLBACKEND", "PYTHONHASHSEED", "PYTHONIOENCODING", "PYTHONUTF8",
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
})
#: Name patterns passed as well (locale categories).
ALLOWED_PATTERNS: tuple[re.Pattern[str], ...] = (re.compile(r"LC_[A-Z_]+"),)
#: Values set for every runner whatever the gallery has (quiet, deterministic kernels).
FIXED: Mapping[str, str] = {
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # silences debugpy's frozen-modules warning
    "PYTHONDONTWRITEBYTECODE": "1",  # the app folder is read-only
    "JUPYTER_PLATFORM_DIRS": "1",
}


def allowed(name: str, extra_names: Iterable[str] = ()) -> bool:
    """Whether the variable ``name`` may pass from the gallery to a runner."""
    return (name in ALLOWED_NAMES or name in set(extra_names)
            or any(p.fullmatch(name) for p in ALLOWED_PATTERNS))


def filtered_environment(
    source: Mapping[str, str] | None = None, extra_names: Iterable[str] = ()
) -> dict[str, str]:
    """The allowlisted part of ``source`` (default: ``os.environ``)."""
    src = os.environ if source is None else source
    extra = set(extra_names)
    return {k: v for k, v in src.items() if allowed(k, extra)}


def runner_environment(
    *,
    jupyter_path: str,
    config_dir: str,
    runtime_dir: str,
    data_dir: str,
    source: Mapping[str, str] | None = None,
    extra_names: Iterable[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of a runner process (and so of its kernels).

    ``jupyter_path`` goes first on ``JUPYTER_PATH`` so Voilà finds the nbapps template; the
    config, runtime and data dirs are the runner's own so no user-level Jupyter configuration
    changes how an app is served.
    """
    env = filtered_environment(source, extra_names)
    env.setdefault("PATH", os.defpath)
    env.update(FIXED)
    env["JUPYTER_PATH"] = jupyter_path
    env["JUPYTER_CONFIG_DIR"] = config_dir
    env["JUPYTER_RUNTIME_DIR"] = runtime_dir
    env["JUPYTER_DATA_DIR"] = data_dir
    env.update(extra_env or {})
    return env
