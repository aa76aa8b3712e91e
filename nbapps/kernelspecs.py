"""Which kernel runs a notebook: names resolved exactly as jupyter_client (and so papermill and
Voila) resolves them, so validation never disagrees with the run.

jupyter_client's ``KernelManager`` runs the name ``python`` as its native kernel ``python3``,
and its ``KernelSpecManager`` finds kernel folders case-insensitively; the native kernel exists
whenever ipykernel is importable, even without a kernelspec folder.
"""
from __future__ import annotations

import logging

log = logging.getLogger("nbapps.kernelspecs")


def installed_kernels() -> list[str]:
    """Names of the kernels installed here (jupyter_client's kernelspec search path)."""
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager

    manager = KernelSpecManager()
    names = set(manager.find_kernel_specs())
    if manager.ensure_native_kernel:
        try:
            import ipykernel  # noqa: F401
        except ImportError:  # pragma: no cover - ipykernel is a dependency
            pass
        else:
            names.add(NATIVE_KERNEL_NAME)
    return sorted(names)


def resolve_kernel_name(name: str) -> str | None:
    """The installed kernel that jupyter_client starts for ``name``, or None if it has none.

    ``python`` becomes ``python3`` (``KernelManager``'s rule), then the kernelspec is looked up
    as ``KernelSpecManager.get_kernel_spec`` does (case-insensitive; the native kernel without
    a folder; a kernel whose provisioner is missing does not count).
    """
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager, NoSuchKernel

    wanted = NATIVE_KERNEL_NAME if name == "python" else name
    try:
        KernelSpecManager().get_kernel_spec(wanted)
    except NoSuchKernel:
        return None
    except Exception:  # noqa: BLE001 - a broken kernel.json: not usable here
        log.debug("kernelspec %r unreadable", wanted, exc_info=True)
        return None
    return wanted.lower()
