"""File-system sandbox of app runners (Linux Landlock): app code cannot read the gallery's data.

Runners run as the gallery's OS user, so without this an approved notebook could open the
gallery's cookie secret (and forge sessions), its SQLite catalog or other apps' bundles. Landlock
(Linux 5.13+, unprivileged) restricts a process and all its children to the folders it is
given; it needs no root and no extra package::

    python -m nbapps.sandbox --read DIR ... --write DIR ... -- python -m voila ...

applies the rules, sets ``no_new_privs`` and replaces itself with the command, so Voilà and every
kernel it starts are confined. Readable: the system (``/usr``, ``/etc``, ...), the Python
installation and every ``sys.path`` folder of the interpreter that runs; read-write: the runner's
own folder and ``/dev``. Everything else, the rest of the gallery's data dir included, is refused
(``PermissionError``). Rules hold for the files themselves, so ``/proc/<pid>/cwd/...`` or
``/proc/<pid>/fd/N`` paths do not get around them.

**Protected paths inside allowed folders.** Landlock only allows (a rule on a folder covers
everything beneath it; nothing can be carved out), while the data dir may sit inside an allowed
folder: ``make demo`` keeps ``.demo-data`` in the checkout, which is on ``sys.path`` through the
editable install. So :func:`plan` replaces such a folder by rules on each of its entries except
those that are, or lead to, a protected path, recursively down to it (a file can be a rule too).
The most specific path decides: a folder given explicitly inside a protected one (the runner's
own folder in the data dir, a source tree inside it) is allowed again. Symlinked entries get no
rule of their own (the target is checked where it really is), and files with other hard links
are left out of split folders (a rule on a file holds for all its names, so it could open a
protected file under another name). The gallery's configuration files
(``jupyter_nbapps_config.py``/``.json`` in the current folder and on the Jupyter config path,
which may hold database passwords) are always protected. A split folder that Python imports from
keeps the right to *list* it (Python's import system reads the folder's names first), which
Landlock grants for everything beneath it: confined code can see the **names** in the data dir
there, never read a file. Entries created in a split folder after the runner started are not
readable by it.

With Landlock ABI 6 (Linux 6.12+) confined code also cannot signal processes outside the
sandbox (kill the gallery or another app) nor reach their abstract Unix sockets.

Not covered: ``/proc`` stays readable (Python and psutil need it), so another process of the
same user's ``/proc/<pid>/environ`` can be read (the gallery's environment: keep secrets in
files, not variables); network access is not restricted. Where Landlock is missing (other
kernels, containers that block it) :func:`available` is False and the runner starts without it,
logging a warning.
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("nbapps.sandbox")

# syscall numbers: the same on every architecture (the generic syscall table)
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# file-system access rights (ABI 1), then REFER (ABI 2) and TRUNCATE (ABI 3)
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_ABI1_ALL = (1 << 13) - 1
_REFER, _TRUNCATE = 1 << 13, 1 << 14
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1
READ = _EXECUTE | _READ_FILE | _READ_DIR
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE

#: system folders every Python process needs to read (those that exist are used)
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc", "/sys",
               "/run")
SYSTEM_WRITE = ("/dev",)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _RulesetAttrScoped(ctypes.Structure):
    """ABI 6: also ``scoped``: no signals to, and no abstract Unix sockets of, processes
    outside the sandbox (the gallery, other apps). The network stays unrestricted."""

    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is not available."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        version = _libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                                  ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def available() -> bool:
    return abi_version() >= 1


def _handled(abi: int) -> int:
    rights = _ABI1_ALL
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    return rights


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock {what}: {os.strerror(err)}")
    return result


def restrict(read: Iterable[str | Path], write: Iterable[str | Path],
             listable: Iterable[str | Path] = ()) -> None:
    """Confine this process (and its future children) to ``read`` and ``write`` folders (or
    files), plus listing the names beneath ``listable`` folders.

    Irreversible. Paths that do not exist are skipped. OSError if Landlock refuses.
    """
    abi = abi_version()
    if abi < 1:
        raise OSError("Landlock is not available on this system")
    libc = _libc()
    handled = _handled(abi)
    attr: ctypes.Structure = (_RulesetAttrScoped(handled, 0, _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL)
                              if abi >= 6 else _RulesetAttr(handled))
    ruleset = _check(libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr),
                                  ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0)),
                     "create_ruleset")
    try:
        rules = ([(p, READ) for p in read] + [(p, _READ_DIR) for p in listable]
                 + [(p, handled) for p in write])
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if not os.path.isdir(path):
                    access &= _FILE_RIGHTS
                beneath = _PathBeneathAttr(access & handled, fd)
                _check(libc.syscall(_SYS_ADD_RULE, ruleset, ctypes.c_int(_RULE_PATH_BENEATH),
                                    ctypes.byref(beneath), ctypes.c_uint32(0)), f"add_rule {path}")
            finally:
                os.close(fd)
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "restrict_self")
    finally:
        os.close(ruleset)


# -- what a confined process may read ----------------------------------------------------------

_PROBE = ("import json, sys; print(json.dumps({'path': [p for p in sys.path if p], 'prefix': "
          "[sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]}))")


@dataclass(frozen=True)
class PythonPaths:
    """What an interpreter reads: its installation (prefixes, the executable's folders) and
    the folders it imports from (``sys.path`` as it starts, editable installs included)."""

    install: tuple[str, ...]
    imports: tuple[str, ...]


@functools.lru_cache(maxsize=8)
def python_paths(python: str | None = None) -> PythonPaths:
    """:class:`PythonPaths` of ``python`` (default: this interpreter), asked from a fresh
    process as a runner starts it (no ``PYTHON*`` variables, no user site, not from the
    gallery's working folder), so a folder that is on the gallery's ``sys.path`` only (its
    working folder, say) is not given to apps. Cached per interpreter."""
    exe = python or sys.executable
    exe = shutil.which(exe) or exe
    install = {str(Path(exe).absolute().parent), str(Path(exe).resolve().parent.parent)}
    try:
        out = subprocess.run([exe, "-E", "-s", "-c", _PROBE], cwd="/", capture_output=True,
                             text=True, timeout=60, check=True).stdout
        found = json.loads(out.strip().splitlines()[-1])
        prefixes, imports = list(found["prefix"]), list(found["path"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError) as exc:
        log.warning("could not ask %s for its import path (%s); using this process's", exe, exc)
        prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
        imports = [p for p in sys.path[1:] if p]
    install.update(prefixes)
    return PythonPaths(install=tuple(sorted(install)),
                       imports=tuple(sorted({os.path.abspath(p) for p in imports
                                             if os.path.isdir(p)})))


def python_read_paths(python: str | None = None) -> list[str]:
    """Every folder of :func:`python_paths` (installation and import folders)."""
    found = python_paths(python)
    return sorted({*found.install, *found.imports})


def gallery_config_files() -> list[str]:
    """The gallery's configuration files where ``nbapps serve`` looks for them (the current
    folder, then the Jupyter config path), whether they exist or not."""
    from .datadir_lookup import CONFIG_BASENAME, config_paths

    return [os.path.join(folder, CONFIG_BASENAME + ext)
            for folder in config_paths() for ext in (".py", ".json")]


@dataclass
class Plan:
    """The sandbox's rules: read (and execute) beneath ``read``, list the names beneath
    ``listable``, read and write beneath ``write``."""

    read: list[str] = field(default_factory=list)
    listable: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)

    def args(self) -> list[str]:
        """The launcher's options for these rules."""
        out: list[str] = []
        for flag, paths in (("--read", self.read), ("--list", self.listable),
                            ("--write", self.write)):
            for path in paths:
                out += [flag, path]
        return out


def _beneath(parent: str, child: str) -> bool:
    """``child`` strictly inside ``parent`` (both real, absolute paths)."""
    return child.startswith(parent.rstrip(os.sep) + os.sep)


class _Protection:
    """The protected paths that exist (real paths and file identities)."""

    def __init__(self, paths: Iterable[str | Path]) -> None:
        self.paths: set[str] = set()
        self.ids: set[tuple[int, int]] = set()
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue  # nothing there to protect (yet)
            self.paths.add(os.path.realpath(path))
            self.ids.add((st.st_dev, st.st_ino))

    def inside(self, folder: str) -> list[str]:
        return [p for p in self.paths if _beneath(folder, p)]

    def allow(self, path: str, listable: set[str]) -> tuple[list[str], list[str]]:
        """Rules (allowed paths, listable folders) giving ``path`` minus the protected paths:
        ``path`` itself when nothing protected is in it, else its entries, split down to them."""
        if not os.path.exists(path):
            return [path], []  # restrict() skips it; kept for the record
        real = os.path.realpath(path)
        if real in self.paths:
            return [], []
        inside = self.inside(real)
        if not inside:
            return [path], []
        return self._split(real, inside, listable)

    def _split(self, folder: str, inside: list[str], listable: set[str]
               ) -> tuple[list[str], list[str]]:
        allowed: list[str] = []
        lists = [folder] if folder in listable else []
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.debug("sandbox: cannot list %s (%s): nothing of it is allowed", folder, exc)
            return [], lists
        for entry in entries:
            try:
                if entry.is_symlink():
                    continue  # what it points to is allowed (or not) where it really is
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            path = os.path.join(folder, entry.name)
            if path in self.paths or (st.st_dev, st.st_ino) in self.ids:
                continue
            if not entry.is_dir(follow_symlinks=False) and st.st_nlink > 1:
                # a rule on a file holds for the file under all its names: this one might be a
                # protected file (or one in a protected folder) under another name
                log.debug("sandbox: %s has other hard links: left out", path)
                continue
            below = [p for p in inside if _beneath(path, p)]
            if not below:
                allowed.append(path)
            elif entry.is_dir(follow_symlinks=False):
                more, more_lists = self._split(path, below, listable)
                allowed += more
                lists += more_lists
        return allowed, lists


def plan(*, read: Iterable[str | Path], write: Iterable[str | Path],
         protect: Iterable[str | Path] = (), python: str | None = None) -> Plan:
    """The rules of a runner: the system and ``python``'s folders plus ``read`` readable,
    ``SYSTEM_WRITE`` plus ``write`` writable, minus ``protect`` and the gallery's configuration
    files wherever they nest (see the module docstring)."""
    found = python_paths(python)
    guard = _Protection([*protect, *gallery_config_files()])
    listable = {os.path.realpath(p) for p in found.imports}
    out = Plan()
    for path in dict.fromkeys([*SYSTEM_READ, *found.install, *found.imports, *map(str, read)]):
        allowed, lists = guard.allow(path, listable)
        out.read += allowed
        out.listable += lists
    for path in dict.fromkeys([*SYSTEM_WRITE, *map(str, write)]):
        out.write += guard.allow(path, set())[0]
    out.read, out.listable = list(dict.fromkeys(out.read)), list(dict.fromkeys(out.listable))
    return out


def command(argv: Sequence[str], *, read: Iterable[str | Path], write: Iterable[str | Path],
            protect: Iterable[str | Path] = (), python: str | None = None) -> list[str]:
    """``argv`` wrapped in the sandbox launcher (system and Python folders added).

    ``protect`` (the gallery's data dir, say) and the gallery's configuration files stay
    unreadable wherever they nest in an allowed folder; folders given in ``read``/``write``
    inside a protected one are allowed (the runner's own folder is in the data dir). See
    :func:`plan`."""
    return wrap(argv, plan(read=read, write=write, protect=protect, python=python),
                python=python)


def wrap(argv: Sequence[str], rules: Plan, python: str | None = None) -> list[str]:
    """``argv`` wrapped in the sandbox launcher with ``rules`` (from :func:`plan`)."""
    return [python or sys.executable, "-m", "nbapps.sandbox", *rules.args(), "--", *argv]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbapps.sandbox",
                                     description="Run a command confined by Landlock.")
    parser.add_argument("--read", action="append", default=[], metavar="DIR")
    parser.add_argument("--list", action="append", default=[], metavar="DIR",
                        help="list the names beneath DIR (not read its files)")
    parser.add_argument("--write", action="append", default=[], metavar="DIR")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        parser.error("no command given (put it after --)")
    from .limits import apply_from_environment  # bounds that need privileges come first

    apply_from_environment()
    try:
        restrict(args.read, args.write, args.list)
    except OSError as exc:
        print(f"nbapps sandbox: not confined: {exc}", file=sys.stderr)
        return 126
    os.execvp(cmd[0], cmd)
    return 127  # pragma: no cover - execvp does not return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
