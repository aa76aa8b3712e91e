"""How a runner's kernels are made and bounded: the launcher's limits, the template, Voilà's part.

One function, :func:`kernel_setup`, turns a runner's settings into the three pieces the runner
process needs, so that :class:`~nbapps.runner.process.Runner` only writes them down:

- the :class:`~nbapps.limits.LaunchLimits` its launcher applies (runner cgroup, private
  /dev/shm), and the kernel limits every kernel gets (cgroup leaf, rlimits);
- the kernel template's :class:`~nbapps.runner.forkserver.TemplateConfig` (when forking is on);
- the lines of Voilà's configuration that make the kernel provisioner fork from that template
  and bound the kernels it has to spawn, plus the unconnected-page cull.
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import limits, sandbox
from .config import RunnerSettings
from .forkserver import TemplateConfig
from .launch import TEMPLATE_FD

log = logging.getLogger("nbapps.runner")

PROVISIONER = "nbapps-fork"
#: tasks a runner needs besides its kernels (Voilà's threads, the template, a spawn or two)
RUNNER_TASKS = 256


@dataclass(frozen=True)
class KernelSetup:
    launch: limits.LaunchLimits
    template: TemplateConfig | None
    voila: list[tuple[str, Any]]
    #: folders the runner's sandbox must let it write (where the template makes kernel leaves)
    write: list[str]


def provisioner_installed() -> bool:
    """Whether jupyter_client can find our provisioner (the package's entry point is installed)."""
    try:
        eps = importlib.metadata.entry_points(group="jupyter_client.kernel_provisioners")
    except Exception:  # noqa: BLE001 - broken metadata: behave as without it
        return False
    return any(ep.name == PROVISIONER for ep in eps)


def kernel_setup(
    settings: RunnerSettings,
    *,
    runner_dir: Path,
    app_dir: Path,
    python: str,
    cgroup: limits.CgroupPaths | None,
    memory_budget: int,
    kernel_cap: int,
    template_imports: list[str],
    sandboxed: bool,
) -> KernelSetup:
    """The kernel side of one runner (see the module docstring)."""
    kernel = limits.KernelLimits(memory=max(settings.kernel_memory_limit, 0),
                                 processes=max(settings.kernel_max_processes, 0), cgroup=cgroup)
    pools = max(settings.pool_size, 0) + max(settings.custom_pool_size, 0)
    processes = settings.runner_max_processes or (
        kernel.processes * (kernel_cap + pools) + RUNNER_TASKS if kernel.processes else 0)
    launch = limits.LaunchLimits(
        memory=settings.runner_memory_limit or memory_budget, processes=processes,
        shm_size=max(settings.shm_size, 0), kernel=kernel,
        report=str(runner_dir / "limits-applied.json"))
    # a forked or spawned kernel keeps the runner's rules minus writing below its cgroup
    kernel_write = [str(runner_dir), *sandbox.SYSTEM_WRITE] if sandboxed else None
    has_provisioner = provisioner_installed()
    if not has_provisioner:
        log.warning("the %s kernel provisioner is not installed (reinstall nbapps): kernels "
                    "are spawned without their limits", PROVISIONER)
    fork = settings.fork_kernels and has_provisioner
    template = None
    if fork:
        template = TemplateConfig(app_dir=str(app_dir), preload=list(template_imports),
                                  kernel_limits=kernel.to_dict(), kernel_write=kernel_write)
    voila: list[tuple[str, Any]] = [
        ("RunnerKernelManager.unconnected_cull_timeout", max(settings.unconnected_cull_timeout,
                                                             0)),
    ]
    if has_provisioner:
        spawn_prefix: list[str] = []
        if kernel_write is not None:
            spawn_prefix = [python, "-m", "nbapps.sandbox", "--read", "/"]
            for folder in kernel_write:
                spawn_prefix += ["--write", folder]
            spawn_prefix.append("--")
        voila += [
            ("KernelProvisionerFactory.default_provisioner_name", PROVISIONER),
            ("ForkProvisioner.template_fd", TEMPLATE_FD if fork else -1),
            ("ForkProvisioner.fork_timeout", float(settings.fork_timeout)),
            ("ForkProvisioner.kernel_limits", json.dumps(kernel.to_dict())),
            ("ForkProvisioner.spawn_prefix", spawn_prefix),
            # no IPython history: a viewer's inputs are not kept in a file every kernel of the
            # runner writes to (and 50 kernels do not queue on its lock)
            ("ForkProvisioner.kernel_arguments", ["--HistoryManager.enabled=False"]),
        ]
    write = [str(p) for p in cgroup.dirs("kernels")] if cgroup is not None else []
    return KernelSetup(launch=launch, template=template, voila=voila, write=write)
