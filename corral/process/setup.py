"""Setting up a server process: its error log, environment, user, heap and title.

Each of these runs in the single process, in the master, or in a worker after the fork
(some in all three); none knows HTTP.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.config import Config

if TYPE_CHECKING:
    import pwd


def configure_logging(config: Config) -> None:
    """The error log: one line per event, gunicorn's layout."""
    logger = logging.getLogger("corral")
    for previous in list(logger.handlers):
        logger.removeHandler(previous)
    handler: logging.Handler
    if config.error_logfile in ("-", ""):
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(config.error_logfile)
    handler.setFormatter(
        logging.Formatter(
            "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S %z"
        )
    )
    logger.addHandler(handler)
    logger.setLevel(config.log_level.upper())
    logger.propagate = False


def set_environment(config: Config) -> None:
    """Put --env's NAME=value assignments in this process's environment, which the
    processes it forks inherit."""
    for assignment in config.raw_env:
        name, _, value = assignment.partition("=")
        os.environ[name] = value


def prepare_process(config: Config) -> None:
    """What must happen before the application is imported: --env's variables set, and
    gevent's monkey-patching."""
    # Again in each worker: after a HUP its config may name other variables.
    set_environment(config)
    if config.worker_class == "gevent":
        from corral.workers.coroutines import patch_process

        patch_process()


def _user_entry(user: str) -> pwd.struct_passwd:
    """The password entry of --user, a name or an id. Raises KeyError."""
    import pwd

    return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)


def _group_id(group: str) -> int:
    """The id of --group, a name or an id. Raises KeyError."""
    import grp

    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


def give_unix_sockets_to_user(config: Config, listeners: list[socket.socket]) -> None:
    """Make the unix: socket files corral bound belong to --user and --group (the user's
    own group when only --user is given), so that a proxy running as that user can
    connect whatever the umask, as gunicorn does. Nothing changes without --user or
    --group, or for sockets inherited (systemd, USR2), abstract or on TCP. Raises OSError
    (not permitted: corral is not root) or KeyError (no such user or group)."""
    if config.user is None and config.group is None:
        return
    uid = gid = -1
    if config.user is not None:
        entry = _user_entry(config.user)
        uid, gid = entry.pw_uid, entry.pw_gid
    if config.group is not None:
        gid = _group_id(config.group)
    for sock in listeners:
        if sock.family != socket.AF_UNIX:
            continue
        path = sock.getsockname()
        # An abstract name comes as bytes, and has no file.
        if isinstance(path, str) and path:
            os.chown(path, uid, gid)


def drop_privileges(config: Config) -> None:
    """Become --group and --user (names or ids). Raises OSError or KeyError."""
    if config.group is not None:
        gid = _group_id(config.group)
        os.setgroups([gid])
        os.setgid(gid)
    if config.user is not None:
        entry = _user_entry(config.user)
        if config.group is None:
            os.initgroups(entry.pw_name, entry.pw_gid)
            os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)


_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int) -> bool:
    """Have the kernel send `signum` to this process when the process that forked it
    dies (Linux's PR_SET_PDEATHSIG; 0 clears it): a worker outlives a master killed
    with SIGKILL otherwise, holding the listening sockets, so that a new server cannot
    bind them. False where the call does not exist; raises nothing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def freeze_heap() -> None:
    """Leave what exists now (the app, its framework, corral) out of every cycle
    collection, which otherwise walks all of it again and again under load (measured:
    2-3% of a Flask request); after a fork, it also keeps those pages shared."""
    gc.collect()
    gc.freeze()


def reopen_logs(config: Config, reopen_access_logs: Callable[[], None]) -> None:
    """USR1: open the error log file again, and the access logs through
    `reopen_access_logs`, after a rotation moved them."""
    configure_logging(config)
    reopen_access_logs()


def set_process_title(config: Config, role: str, spec: str | None) -> None:
    """Titles such as `corral: master [myapp:app]` in ps and top, when setproctitle is
    installed; the name is --name, else the application's."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(f"corral: {role} [{config.proc_name or spec or 'corral'}]")
