"""Waiting for one of the application's source files to change, for --reload.

The files are those of the modules loaded from outside the standard library,
site-packages and corral itself. With `watchfiles` (`pip install 'corral[reload]'`) the
kernel reports changes in their directories; without it, their modification times are
polled once a second.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import site
import sys
import sysconfig
import time
from collections.abc import Callable, Collection

error_log = logging.getLogger("corral.error")

# A file's identity for change detection: the modification time alone misses a change
# within one tick of a coarse clock (1 s on some file systems) that keeps it.
Stamp = tuple[int, int, int]
_POLL_SECONDS = 1.0


def _library_directories() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    directories = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    directories.update(site.getsitepackages())
    if site.ENABLE_USER_SITE and site.USER_SITE:
        directories.add(site.USER_SITE)
    directories.add(os.path.dirname(os.path.abspath(__file__)))
    return tuple(os.path.join(os.path.realpath(path), "") for path in directories if path)


def app_source_files() -> set[str]:
    """The files of the loaded modules that belong to the application."""
    libraries = _library_directories()
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str):
            continue
        path = os.path.realpath(path)
        if not path.startswith(libraries) and os.path.isfile(path):
            files.add(path)
    return files


def stamps(files: Collection[str]) -> dict[str, Stamp]:
    """Each file's modification time, size and inode now; a missing file is left out."""
    found = {}
    for path in files:
        try:
            status = os.stat(path)
        except OSError:
            continue
        found[path] = (status.st_mtime_ns, status.st_size, status.st_ino)
    return found


def change_events_available() -> bool:
    """Whether watchfiles is installed; imported here, on the caller's thread."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    # Its log lines would take logging's locks from the watching thread, which under
    # gevent are the hub's.
    logging.getLogger("watchfiles").disabled = True
    return True


def wait_for_change(files: Callable[[], Collection[str]], baseline: dict[str, Stamp]) -> str:
    """Block until one of `files()` differs from `baseline`; the changed file's path.

    Runs on a thread of its own (`start_watching`)."""
    sleep = _native_functions()[1]
    if "watchfiles" not in sys.modules:
        while True:
            changed = _first_changed(files(), baseline)
            if changed:
                return changed
            sleep(_POLL_SECONDS)
    import watchfiles

    directories = sorted({os.path.dirname(path) for path in files()})
    # The timeout's empty answers let the stamps catch a change made before the
    # directories were watched.
    for changes in watchfiles.watch(
        *directories,
        watch_filter=lambda _change, path: path in files(),
        recursive=False,
        raise_interrupt=False,
        rust_timeout=int(_POLL_SECONDS * 1000),
        yield_on_timeout=True,
    ):
        if changes:
            return sorted(path for _, path in changes)[0]
        changed = _first_changed(files(), baseline)
        if changed:
            return changed
    return _first_changed(files(), baseline) or ""


def _first_changed(files: Collection[str], baseline: dict[str, Stamp]) -> str:
    now = stamps(files)
    for path, stamp in now.items():
        if baseline.setdefault(path, stamp) != stamp:
            return path
    return ""


def start_watching(
    files: Callable[[], Collection[str]], report: Callable[[str], None]
) -> dict[str, Stamp]:
    """Call `report(path)` once, from a thread of the operating system's (not a greenlet,
    which a blocking wait would stall), when one of `files()` changes after now.

    Returns the stamps taken now, before the thread starts, so a change made once this
    returns is never missed."""
    baseline = stamps(files())

    def watch() -> None:
        # Nothing can be logged from this thread under gevent; on a failure the process
        # serves on, and only the restart on a change is lost.
        with contextlib.suppress(Exception):
            report(wait_for_change(files, baseline))

    _native_functions()[0](watch, ())
    return baseline


def _native_functions() -> tuple[Callable[..., object], Callable[[float], None]]:
    if "gevent.monkey" in sys.modules:
        from gevent.monkey import get_original

        return get_original("_thread", "start_new_thread"), get_original("time", "sleep")
    return _thread.start_new_thread, time.sleep
