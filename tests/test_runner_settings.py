"""The app runtime's one configuration object: config files, command line, --help-all, README."""
from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nbapps.runner.config import RunnerSettings
from nbapps.runner.settings import RUNNER_FIELDS, SUPERVISOR_FIELDS, RuntimeConfiguration
from nbapps.runner.supervisor import SupervisorSettings
from nbapps.server.app import DEPRECATED_RUNTIME_ALIASES, NbappsServer

REPO = Path(__file__).resolve().parents[1]


def trait_names() -> list[str]:
    return sorted(RuntimeConfiguration.class_trait_names(config=True))


def test_every_trait_reaches_the_runtime_and_defaults_agree(tmp_path):
    """No setting is lost on the way, and the internal values' defaults are the same."""
    config = RuntimeConfiguration()
    runner, default_runner = config.runner_settings(), RunnerSettings()
    for name in RUNNER_FIELDS:
        assert getattr(runner, name) == getattr(default_runner, name), name
    sup = config.supervisor_settings(tmp_path)
    default_sup = SupervisorSettings(runtime_dir=tmp_path)
    for name in (*SUPERVISOR_FIELDS, "restart_backoff"):
        assert getattr(sup, name) == getattr(default_sup, name), name
    # the jupyterhub backend's traits reach the supervisor together, as its ``hub`` settings
    hub_traits = {"backend", "hub_api_url", "hub_api_token", "hub_account", "hub_spawn_timeout",
                  "hub_runner_files"}
    assert sup.hub is None  # local runners by default
    hub = RuntimeConfiguration(backend="jupyterhub", hub_api_url="http://hub:8081/hub/api",
                               hub_api_token="t0k3n", hub_account="apps",
                               hub_spawn_timeout=30.0,
                               hub_runner_files="fetch").supervisor_settings(tmp_path).hub
    assert hub is not None and (hub.api_url, hub.api_token, hub.account, hub.spawn_timeout,
                                hub.files) == ("http://hub:8081/hub/api", "t0k3n", "apps", 30.0,
                                               "fetch")
    used = set(RUNNER_FIELDS) | set(SUPERVISOR_FIELDS) | hub_traits | {
        "restart_backoff", "extra_env", "extra_env_names"}
    assert set(trait_names()) == used, set(trait_names()) ^ used


def test_hub_runners_reuse_the_hub_named_for_login(monkeypatch):
    """A Hub is named once: the jupyterhub backend takes HubConfiguration's API URL and token
    when the gallery's login is configured with them, else the Hub's service variables; its
    own settings win over both."""
    from traitlets.config import Config

    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://env-hub:8081/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "env-token")
    assert (RuntimeConfiguration().hub_api_url, RuntimeConfiguration().hub_api_token) == (
        "http://env-hub:8081/hub/api", "env-token")
    config = Config()
    config.HubConfiguration.api_url = "http://login-hub:8081/hub/api"
    config.HubConfiguration.api_token = "login-token"
    runtime = RuntimeConfiguration(config=config)
    assert (runtime.hub_api_url, runtime.hub_api_token) == (
        "http://login-hub:8081/hub/api", "login-token")
    config.RuntimeConfiguration.hub_api_token = "runner-token"
    assert RuntimeConfiguration(config=config).hub_api_token == "runner-token"


def test_config_file_and_command_line_set_the_runtime(tmp_path, monkeypatch):
    (tmp_path / "jupyter_nbapps_config.py").write_text(
        "c.RuntimeConfiguration.pool_size = 5\n"
        "c.RuntimeConfiguration.kernel_memory_limit = 3 * 1024**3\n"
        "c.RuntimeConfiguration.max_kernels_per_app = 12\n"
        "c.RuntimeConfiguration.idle_timeout = 60.0\n"
        "c.RuntimeConfiguration.fork_kernels = False\n")
    monkeypatch.chdir(tmp_path)
    server = NbappsServer()
    server.initialize(["--port=0", "--RuntimeConfiguration.max_message_size=2048"])
    config = server.runtime_configuration()
    sup = config.supervisor_settings(tmp_path / "rt", runner=config.runner_settings(
        url_prefix="/x/apps/"))
    assert sup.runner.pool_size == 5 and sup.runner.kernel_memory_limit == 3 * 1024 ** 3
    assert sup.runner.fork_kernels is False and sup.runner.max_message_size == 2048
    assert sup.max_kernels_per_app == 12 and sup.idle_timeout == 60.0
    assert sup.runner.url_prefix == "/x/apps/"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_old_names_still_work_with_a_warning():
    server = NbappsServer()
    server.initialize(["--port=0", "--NbappsServer.app_pool_size=4",
                       "--NbappsServer.app_custom_pool_size=3",
                       "--RuntimeConfiguration.custom_pool_size=0",
                       "--NbappsServer.app_sandbox=False"])
    seen = _Records()
    logger = logging.getLogger("nbapps.server")  # the CLI's logging set-up may not propagate
    logger.addHandler(seen)
    try:
        config = server.runtime_configuration()
    finally:
        logger.removeHandler(seen)
    assert config.pool_size == 4
    assert config.custom_pool_size == 0, "the new name wins over the deprecated one"
    assert config.sandbox is False and server.app_sandbox is False
    warned = " ".join(r.getMessage() for r in seen.records)
    for old in ("app_pool_size", "app_custom_pool_size", "app_sandbox"):
        assert f"NbappsServer.{old} is deprecated" in warned
    assert set(DEPRECATED_RUNTIME_ALIASES.values()) <= set(trait_names())


def test_new_sandbox_setting_also_confines_the_check_workers():
    server = NbappsServer()
    server.initialize(["--port=0", "--RuntimeConfiguration.sandbox=False"])
    assert server.runtime_configuration().sandbox is False and server.app_sandbox is False


def test_serve_help_all_lists_every_setting():
    out = subprocess.run([sys.executable, "-m", "nbapps.cli.main", "serve", "--help-all"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    for name in trait_names():
        assert f"--RuntimeConfiguration.{name}=" in out.stdout, name


@pytest.mark.parametrize("name", trait_names())
def test_operator_guide_documents_every_setting_with_its_default(name):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", readme, flags=re.M))
    assert name in rows, f"README operator guide has no row for {name}"
    default = RuntimeConfiguration.class_traits()[name].default_value
    shown = rows[name]
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        value = eval(shown, {"__builtins__": {}}, {"MiB": 2**20, "GiB": 2**30})  # noqa: S307
        assert value == default, (name, shown, default)
    else:
        assert shown == repr(default).replace("'", '"'), (name, shown, default)
