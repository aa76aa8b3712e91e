"""File-system sandbox of app runners (Linux Landlock): app code cannot read the gallery's data.

Runners run as the gallery's OS user, so without this an approved notebook could open the
gallery's cookie secret (and forge sessions), its SQLite catalog or other apps' bundles. Landlock
(Linux 5.13+, unprivileged) restricts a process and all its children to the folders it is
given; it needs no root and no extra package::

    python -m nbapps.sandbox --read DIR ... --write DIR ... -- python -m voila ...

applies the rules, sets ``no_new_privs`` and replaces itself with the command, so Voilà and every
kernel it starts are confined. Readable: the system (``/usr``, ``/etc``, ...), the Python
installation and every ``sys.path`` folder; read-write: the runner's own folder and ``/dev``.
Everything else, the rest of the gallery's data dir included, is refused (``PermissionError``).
Rules hold for the files themselves, so ``/proc/<pid>/cwd/...`` or ``/proc/<pid>/fd/N`` paths
do not get around them.

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
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

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


def restrict(read: Iterable[str | Path], write: Iterable[str | Path]) -> None:
    """Confine this process (and its future children) to ``read`` and ``write`` folders.

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
        rules = [(p, READ) for p in read] + [(p, handled) for p in write]
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


def python_read_paths(python: str | None = None) -> list[str]:
    """What a Python of this installation reads: prefixes, the interpreter's folder, sys.path
    (editable installs included), and ``python``'s own installation if it is another one."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for exe in (sys.executable, python):
        if exe:
            paths.add(str(Path(exe).absolute().parent))
            paths.add(str(Path(exe).resolve().parent.parent))
    paths.update(os.path.abspath(p) for p in sys.path if p and os.path.isdir(p))
    return sorted(paths)


def _contains(parent: str, child: str) -> bool:
    parent, child = os.path.realpath(parent), os.path.realpath(child)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def command(argv: Sequence[str], *, read: Iterable[str | Path], write: Iterable[str | Path],
            protect: Iterable[str | Path] = (), python: str | None = None) -> list[str]:
    """``argv`` wrapped in the sandbox launcher (system and Python folders added).

    A broad folder that contains a ``protect`` one (the gallery's data dir below the working
    directory on ``sys.path``, say) is left out; folders given in ``read``/``write`` are kept
    even inside a protected one (the runner's own folder is in the data dir)."""
    guarded = [str(p) for p in protect]
    broad = [p for p in (*SYSTEM_READ, *python_read_paths(python))
             if not any(_contains(p, g) for g in guarded)]
    cmd = [python or sys.executable, "-m", "nbapps.sandbox"]
    for path in [*broad, *map(str, read)]:
        cmd += ["--read", path]
    for path in [*SYSTEM_WRITE, *map(str, write)]:
        cmd += ["--write", path]
    return [*cmd, "--", *argv]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbapps.sandbox",
                                     description="Run a command confined by Landlock.")
    parser.add_argument("--read", action="append", default=[], metavar="DIR")
    parser.add_argument("--write", action="append", default=[], metavar="DIR")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        parser.error("no command given (put it after --)")
    try:
        restrict(args.read, args.write)
    except OSError as exc:
        print(f"nbapps sandbox: not confined: {exc}", file=sys.stderr)
        return 126
    os.execvp(cmd[0], cmd)
    return 127  # pragma: no cover - execvp does not return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
