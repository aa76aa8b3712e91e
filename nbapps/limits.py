"""OS bounds for app runners and their kernels (DESIGN.md decision 9).

What one viewer's app code can make the machine spend is bounded by the OS, not by counting after
the fact. Three mechanisms, used where the machine allows them:

**cgroups** (preferred). Each runner gets a cgroup with a memory and a process (task) limit; each
kernel a leaf below it with its own limits, so one viewer's hog or fork bomb meets its own wall
first and other viewers of the same app keep their kernels::

    <gallery's cgroup>/nbapps-<hash of the runtime dir>/<runner id>/   memory, pids: per runner
        voila/                 the Voilà process and the kernel template (no limit of its own)
        kernels/k<pid>         one leaf per kernel: memory, pids (and memory.oom.group on v2)

cgroup v2 is used when the gallery's cgroup (or ``cgroup_parent``) has the ``memory`` and
``pids`` controllers delegated to it; cgroup v1 when its ``memory`` and ``pids`` hierarchies are
writable (root in a container whose controllers are bound to v1). The runner's own cgroup is
created and joined by the runner's launcher before the Landlock sandbox applies; afterwards the
sandbox lets the runner write only below ``kernels/`` (where the kernel template makes leaves),
and every forked kernel adds a Landlock layer without even that, so app code cannot raise any
limit. Without the sandbox, app code running as the same OS user could rewrite the files.

**rlimits** (always, per kernel). ``RLIMIT_AS`` (the kernel's memory limit plus headroom for
thread stacks and libraries' reserved address space: a large allocation fails with
``MemoryError`` at once instead of an OOM kill), and when there is no cgroup and the gallery
does not run as root, an approximate ``RLIMIT_NPROC`` (it counts all processes of the OS user;
root is never held by it). The runner's launcher drops ``CAP_SYS_RESOURCE`` from the capability
bounding set, so app code running as root cannot raise its hard limits again.

**A private /dev/shm.** With ``CAP_SYS_ADMIN`` (root) the launcher puts the runner in its own
mount namespace with a size-limited tmpfs on ``/dev/shm``; otherwise ``/dev/shm`` stays shared
and writes there count against the runner's memory cgroup (when there is one).

The launcher reads a :class:`LaunchLimits` spec (JSON) named by ``$NBAPPS_LIMITS``
(:func:`apply_from_environment`) and writes what it applied to the spec's ``report`` file.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import resource
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("nbapps.limits")

ENV_VAR = "NBAPPS_LIMITS"
CONTROLLERS = ("memory", "pids")
#: address space a kernel may reserve beyond its memory limit (thread stacks, arenas, libraries)
ADDRESS_SPACE_HEADROOM = 1024 * 1024 * 1024
_CAP_SYS_RESOURCE = 24
_CAP_SYS_ADMIN = 21
_PR_CAPBSET_DROP = 24
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 2, 4, 16384, 1 << 18


# -- values -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CgroupPaths:
    """Where one runner's cgroup lives, per controller (v2: the same folder for both)."""

    version: int
    runner: dict[str, str]

    def dirs(self, *parts: str) -> list[Path]:
        """The folders of ``<runner>/<parts>`` (one per hierarchy, no duplicates)."""
        out: list[Path] = []
        for base in self.runner.values():
            path = Path(base, *parts)
            if path not in out:
                out.append(path)
        return out

    def controller_dirs(self, *parts: str) -> dict[str, Path]:
        return {c: Path(base, *parts) for c, base in self.runner.items()}


@dataclass(frozen=True)
class KernelLimits:
    """Limits of one kernel (0: none)."""

    #: bytes of memory a kernel may hold (cgroup); RLIMIT_AS gets this plus headroom
    memory: int = 0
    #: tasks (processes and threads) of one kernel
    processes: int = 0
    #: the runner's cgroup (kernel leaves go below ``kernels/``); None: rlimits only
    cgroup: CgroupPaths | None = None

    def address_space(self) -> int:
        return self.memory + ADDRESS_SPACE_HEADROOM if self.memory > 0 else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KernelLimits:
        cg = data.get("cgroup")
        return cls(memory=int(data.get("memory", 0)), processes=int(data.get("processes", 0)),
                   cgroup=CgroupPaths(int(cg["version"]), dict(cg["runner"])) if cg else None)


@dataclass(frozen=True)
class LaunchLimits:
    """What a runner's launcher applies to itself before the sandbox and Voilà start."""

    #: memory and tasks of the whole runner (0: none)
    memory: int = 0
    processes: int = 0
    #: size of the runner's private /dev/shm in bytes (0: keep the shared one)
    shm_size: int = 0
    kernel: KernelLimits = field(default_factory=KernelLimits)
    #: where the launcher writes what it applied (JSON)
    report: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LaunchLimits:
        data = json.loads(text)
        return cls(memory=int(data.get("memory", 0)), processes=int(data.get("processes", 0)),
                   shm_size=int(data.get("shm_size", 0)),
                   kernel=KernelLimits.from_dict(data.get("kernel") or {}),
                   report=str(data.get("report", "")))


# -- cgroups ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CgroupSupport:
    """Where this process may create cgroups for runners: ``base`` per controller."""

    version: int
    base: dict[str, str]

    def runner_paths(self, runtime_dir: Path, runner_id: str) -> CgroupPaths:
        group = group_name(runtime_dir)
        return CgroupPaths(self.version,
                           {c: str(Path(b, group, runner_id)) for c, b in self.base.items()})

    def group_dirs(self, runtime_dir: Path) -> list[Path]:
        group = group_name(runtime_dir)
        return sorted({Path(b, group) for b in self.base.values()})


def group_name(runtime_dir: Path) -> str:
    """The cgroup folder of one gallery's runners (two galleries on a machine never share)."""
    digest = hashlib.sha256(str(Path(runtime_dir).resolve()).encode()).hexdigest()[:10]
    return f"nbapps-{digest}"


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(root, mount point, fs type, super options) of the cgroup mounts of this process."""
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if len(parts) < 5 or len(rparts) < 3 or rparts[0] not in ("cgroup", "cgroup2"):
            continue
        out.append((parts[3], parts[4], rparts[0], set(rparts[2].split(","))))
    return out


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and ``""`` for the v2 path."""
    out: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _hid, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        for name in (names.split(",") if names else [""]):
            out[name] = path
    return out


def _under(mount_root: str, mount_point: str, path: str) -> Path | None:
    if path != mount_root and not path.startswith(mount_root.rstrip("/") + "/"):
        return None
    rel = path[len(mount_root):].lstrip("/")
    return Path(mount_point, rel) if rel else Path(mount_point)


def detect_cgroups(parent: str = "") -> tuple[CgroupSupport | None, str]:
    """Whether runners can get cgroups here, and why not.

    ``parent``: a cgroup v2 folder the operator delegated (``memory`` and ``pids`` enabled in
    its ``cgroup.subtree_control``); default: this process's own cgroup.
    """
    if not sys.platform.startswith("linux"):
        return None, "not Linux"
    mounts = _mounts()
    own = _own_cgroups()
    why = []
    v2 = next((m for m in mounts if m[2] == "cgroup2"), None)
    if v2 is not None or parent:
        base = Path(parent) if parent else (_under(v2[0], v2[1], own.get("", "/"))
                                            if v2 else None)
        if base is not None and base.is_dir():
            try:
                have = set((base / "cgroup.controllers").read_text().split())
                enabled = set((base / "cgroup.subtree_control").read_text().split())
            except OSError:
                have, enabled = set(), set()
            if set(CONTROLLERS) <= have and set(CONTROLLERS) <= enabled \
                    and os.access(base, os.W_OK):
                return CgroupSupport(2, {c: str(base) for c in CONTROLLERS}), ""
            why.append(f"cgroup v2 at {base}: controllers {sorted(have) or 'none'}, delegated "
                       f"{sorted(enabled) or 'none'} (memory and pids must be both)")
    bases: dict[str, str] = {}
    for ctl in CONTROLLERS:
        mount = next((m for m in mounts if m[2] == "cgroup" and ctl in m[3]), None)
        if mount is None or ctl not in own:
            break
        path = _under(mount[0], mount[1], own[ctl])
        if path is None or not path.is_dir() or not os.access(path, os.W_OK):
            break
        bases[ctl] = str(path)
    if len(bases) == len(CONTROLLERS):
        return CgroupSupport(1, bases), ""
    why.append("cgroup v1 memory and pids hierarchies not both writable")
    return None, "; ".join(why)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _memory_files(version: int) -> tuple[str, str]:
    return ("memory.max", "memory.swap.max") if version == 2 else \
        ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")


def set_cgroup_limits(paths: dict[str, Path], version: int, memory: int, processes: int,
                      *, oom_group: bool = False) -> None:
    """Write memory and task limits into the cgroup ``paths`` (per controller)."""
    if memory > 0:
        mem_dir = paths["memory"]
        limit_file, swap_file = _memory_files(version)
        _write(mem_dir / limit_file, str(memory))
        if (mem_dir / swap_file).exists():  # no swap beyond the limit
            with contextlib.suppress(OSError):
                _write(mem_dir / swap_file, "0" if version == 2 else str(memory))
        if oom_group and version == 2 and (mem_dir / "memory.oom.group").exists():
            with contextlib.suppress(OSError):
                _write(mem_dir / "memory.oom.group", "1")
    if processes > 0:
        _write(paths["pids"] / "pids.max", str(processes))


def _enable_controllers(folder: Path) -> None:
    """cgroup v2: let ``folder``'s children use the memory and pids controllers."""
    _write(folder / "cgroup.subtree_control", " ".join(f"+{c}" for c in CONTROLLERS))


def create_runner_cgroup(cg: CgroupPaths, memory: int, processes: int) -> None:
    """``<runner>`` with the runner's limits, its ``voila`` leaf and its ``kernels`` folder."""
    for folder in cg.dirs():
        if cg.version == 2:
            folder.parent.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):  # already enabled by an earlier runner
                _enable_controllers(folder.parent)
        folder.mkdir(parents=True, exist_ok=True)
    set_cgroup_limits({c: Path(p) for c, p in cg.runner.items()}, cg.version, memory, processes)
    for folder in cg.dirs():
        if cg.version == 2:
            _enable_controllers(folder)
        (folder / "voila").mkdir(exist_ok=True)
        (folder / "kernels").mkdir(exist_ok=True)
        if cg.version == 2:
            _enable_controllers(folder / "kernels")


def join_cgroup(folders: list[Path], pid: int = 0) -> None:
    """Move process ``pid`` (0: this one) into each of ``folders`` (one per hierarchy)."""
    for folder in folders:
        _write(folder / "cgroup.procs", str(pid or os.getpid()))


def kernel_leaf(cg: CgroupPaths, name: str) -> dict[str, Path]:
    return cg.controller_dirs("kernels", name)


def enter_kernel_leaf(limits: KernelLimits, name: str, pid: int = 0) -> list[Path]:
    """Create the kernel leaf ``name`` with the kernel limits and move ``pid`` into it."""
    cg = limits.cgroup
    if cg is None:
        return []
    paths = kernel_leaf(cg, name)
    folders = sorted(set(paths.values()))
    for folder in folders:
        folder.mkdir(exist_ok=True)
    set_cgroup_limits(paths, cg.version, limits.memory, limits.processes, oom_group=True)
    join_cgroup(folders, pid)
    return folders


def cgroup_pids(folders: list[Path]) -> list[int]:
    """Every process in ``folders`` and the cgroups below them."""
    pids: set[int] = set()
    for top in folders:
        for root, _dirs, _files in os.walk(top):
            try:
                text = Path(root, "cgroup.procs").read_text()
            except OSError:
                continue
            pids.update(int(x) for x in text.split())
    return sorted(pids)


def kill_cgroup(folders: list[Path], timeout: float = 5.0) -> int:
    """SIGKILL every process in ``folders`` (recursively) until none is left; how many."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in cgroup_pids(folders) if p != os.getpid()]
        if not pids or time.monotonic() > deadline:
            return len(killed)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.02)


def remove_cgroup(folders: list[Path]) -> bool:
    """Remove ``folders`` and the cgroups below them (deepest first); False if some stay."""
    ok = True
    for top in folders:
        if not top.is_dir():
            continue
        subdirs = [Path(root) for root, _d, _f in os.walk(top)]
        for folder in sorted(subdirs, key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
    return ok


def release_cgroup(folders: list[Path]) -> bool:
    """Kill what runs in ``folders`` and remove them (a stopped runner, an exited kernel)."""
    kill_cgroup(folders)
    return remove_cgroup(folders)


def reap_groups(support: CgroupSupport | None, runtime_dir: Path, keep: set[str]) -> int:
    """Kill and remove the runner cgroups of ``runtime_dir`` whose runner id is not in ``keep``."""
    if support is None:
        return 0
    removed = 0
    for group in support.group_dirs(runtime_dir):
        if not group.is_dir():
            continue
        for child in group.iterdir():
            if child.is_dir() and child.name not in keep:
                release_cgroup([child])
                removed += 1
    return removed


def remove_groups(support: CgroupSupport | None, runtime_dir: Path) -> bool:
    """Remove the (empty) cgroup folders of ``runtime_dir``'s runners: the gallery stops."""
    if support is None:
        return True
    return remove_cgroup(support.group_dirs(runtime_dir))


# -- rlimits --------------------------------------------------------------------------------------
def _user_tasks(uid: int) -> int:
    """Tasks (threads) of OS user ``uid``: what RLIMIT_NPROC counts."""
    n = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            for line in Path(entry.path, "status").read_text().splitlines():
                if line.startswith("Threads:"):
                    n += int(line.split()[1])
                    break
        except (OSError, ValueError):
            continue
    return n


def kernel_rlimits(limits: KernelLimits) -> list[tuple[int, int]]:
    """The (resource, value) pairs a kernel gets."""
    out = []
    if limits.address_space():
        out.append((resource.RLIMIT_AS, limits.address_space()))
    if limits.processes and limits.cgroup is None and os.getuid() != 0:
        out.append((resource.RLIMIT_NPROC, _user_tasks(os.getuid()) + limits.processes))
    return out


def apply_kernel_rlimits(limits: KernelLimits, pid: int = 0) -> None:
    """Lower the soft and hard limits of ``pid`` (0: this process); never raise them."""
    for res, value in kernel_rlimits(limits):
        soft, hard = resource.prlimit(pid, res) if pid else resource.getrlimit(res)
        value = min(value, hard) if hard != resource.RLIM_INFINITY else value
        if pid:
            resource.prlimit(pid, res, (value, value))
        else:
            resource.setrlimit(res, (value, value))


def confine_kernel(limits: KernelLimits, name: str, pid: int = 0) -> list[Path]:
    """Everything a new kernel gets: its cgroup leaf and rlimits. Returns the leaf folders."""
    folders = enter_kernel_leaf(limits, name, pid)
    apply_kernel_rlimits(limits, pid)
    return folders


# -- the launcher's part ------------------------------------------------------------------------
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def has_capability(cap: int) -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    except (OSError, ValueError):
        pass
    return False


def private_shm(size: int) -> None:
    """A mount namespace of our own with a ``size``-byte tmpfs on /dev/shm (needs CAP_SYS_ADMIN)."""
    libc = _libc()
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "make / private")
    opts = f"size={int(size)},mode=1777".encode()
    if libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", _MS_NOSUID | _MS_NODEV, opts) != 0:
        raise OSError(ctypes.get_errno(), "mount tmpfs on /dev/shm")


def drop_resource_capability() -> bool:
    """Drop CAP_SYS_RESOURCE from the bounding set: after exec, root cannot raise hard limits."""
    if not has_capability(8):  # CAP_SETPCAP is needed to change the bounding set
        return False
    return _libc().prctl(_PR_CAPBSET_DROP, _CAP_SYS_RESOURCE, 0, 0, 0) == 0


def apply_launch(spec: LaunchLimits) -> dict[str, Any]:
    """Apply the runner-wide bounds to this process (the launcher, before the sandbox).

    Each part that cannot be applied is reported (and logged to stderr, the runner log) and
    skipped: a runner without some bound still serves.
    """
    report: dict[str, Any] = {"pid": os.getpid(), "cgroup": None, "shm": None, "errors": []}
    cg = spec.kernel.cgroup
    if cg is not None:
        try:
            create_runner_cgroup(cg, spec.memory, spec.processes)
            join_cgroup(cg.dirs("voila"))
            report["cgroup"] = {"version": cg.version, "runner": cg.runner}
        except OSError as exc:
            report["errors"].append(f"cgroup: {exc}")
    if spec.shm_size > 0:
        if has_capability(_CAP_SYS_ADMIN):
            try:
                private_shm(spec.shm_size)
                report["shm"] = spec.shm_size
            except OSError as exc:
                report["errors"].append(f"/dev/shm: {exc}")
        else:
            report["errors"].append("/dev/shm: no CAP_SYS_ADMIN for a private mount")
    report["cap_sys_resource_dropped"] = drop_resource_capability()
    for err in report["errors"]:
        print(f"nbapps limits: not applied: {err}", file=sys.stderr, flush=True)
    if spec.report:
        with contextlib.suppress(OSError):
            Path(spec.report).write_text(json.dumps(report), encoding="utf-8")
    return report


def apply_from_environment() -> dict[str, Any] | None:
    """The launcher hook: apply the spec file named by ``$NBAPPS_LIMITS`` (and forget it)."""
    path = os.environ.pop(ENV_VAR, "")
    if not path:
        return None
    try:
        spec = LaunchLimits.from_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"nbapps limits: cannot read {path}: {exc}", file=sys.stderr, flush=True)
        return None
    return apply_launch(spec)


__all__ = [
    "ADDRESS_SPACE_HEADROOM", "CgroupPaths", "CgroupSupport", "ENV_VAR", "KernelLimits",
    "LaunchLimits", "apply_from_environment", "apply_kernel_rlimits", "apply_launch",
    "cgroup_pids", "confine_kernel", "detect_cgroups", "kill_cgroup",
    "release_cgroup", "remove_cgroup", "reap_groups",
]
