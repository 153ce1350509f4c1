"""Wires a config and an app into listening sockets, a worker model and the dispatcher."""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from corral import __version__
from corral.access_log import AccessLog
from corral.app_loading import load_app
from corral.config import Config
from corral.connection import ServingState
from corral.dispatcher import Dispatcher
from corral.http.parser import HeadLimits
from corral.request_observer import RequestObserver
from corral.sockets import describe, inherited_listeners, listen
from corral.workers import WorkerModel
from corral.wsgi import base_environ

error_log = logging.getLogger("corral.error")


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


def describe_concurrency(config: Config) -> str:
    """The start-up line for worker processes. Building a model starts nothing (nor
    imports gevent), so the master can ask the workers' model to describe itself."""
    return make_worker_model(config).describe(config.workers)


def make_worker_model(config: Config) -> WorkerModel:
    if config.worker_class == "gevent":
        from corral.workers.coroutines import Coroutines

        return Coroutines(config.worker_connections)
    if config.process_per_request:
        from corral.workers.process_per_request import ProcessPerRequest

        return ProcessPerRequest(config.process_per_request)
    if config.thread_per_request:
        from corral.workers.thread_per_request import ThreadPerRequest

        return ThreadPerRequest(config.max_threads)
    if config.worker_class == "thread":
        from corral.workers.thread_pool import ThreadPool

        return ThreadPool(config.threads)
    from corral.workers.one_at_a_time import OneAtATime

    return OneAtATime()


def open_listeners(config: Config) -> list[socket.socket]:
    """The listening sockets: inherited from a previous master (USR2), handed over by
    systemd (LISTEN_FDS), or bound now. Raises `BindError` naming the address."""
    inherited = inherited_listeners()
    if inherited:
        return inherited
    # As in gunicorn, the umask is the process's: it sets the mode of unix: sockets and
    # of any file the application creates.
    if config.umask is not None:
        os.umask(config.umask)
    listeners: list[socket.socket] = []
    try:
        for address in config.bind:
            listeners.append(listen(address, config.backlog, reuse_port=config.reuse_port))
    except Exception:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def build_dispatcher(
    app: Any,
    config: Config,
    listeners: list[socket.socket],
    model: WorkerModel,
    observer: RequestObserver | None = None,
    multiprocess: bool = False,
) -> Dispatcher:
    """The event loop serving `app` on `listeners` with `model`."""
    limits = HeadLimits(
        request_line=config.limit_request_line,
        field_count=config.limit_request_fields,
        field_size=config.limit_request_field_size,
    )
    access_log = (
        AccessLog.open(config.access_logfile, config.access_logformat)
        if config.access_logfile
        else None
    )
    bound = []
    for sock in listeners:
        if sock.family == socket.AF_UNIX:
            server_name, server_port = "localhost", ""
        else:
            server_name, server_port = str(sock.getsockname()[0]), str(sock.getsockname()[1])
        environ = base_environ(
            server_name,
            server_port,
            config.root_path.rstrip("/"),
            model.multithread,
            model.multiprocess or multiprocess,
        )
        state = ServingState(app, limits, environ, config.client_timeout, access_log, observer)
        bound.append((sock, state))
    return Dispatcher(
        bound,
        model,
        config.keep_alive,
        config.client_timeout,
        config.graceful_timeout,
        config.poller,
        accept_only_when_free=multiprocess,
    )


def freeze_heap() -> None:
    """Leave what exists now (the app, its framework, corral) out of every cycle
    collection, which otherwise walks all of it again and again under load (measured:
    2-3% of a Flask request); after a fork, it also keeps those pages shared."""
    gc.collect()
    gc.freeze()


class PidFileError(Exception):
    """The --pid file cannot be written; the message says why."""


def serve(app: Any, config: Config) -> None:
    """Serve `app` from this one process until TERM or INT, then drain and return.

    Raises `corral.sockets.BindError` when an address cannot be listened on, and
    `PidFileError` when the --pid file cannot be written.
    """
    from corral.master import Worker, remove_pidfile, write_pidfile
    from corral.reloader import watch_app_sources

    configure_logging(config)
    model = make_worker_model(config)
    listeners = open_listeners(config)
    if config.pid:
        try:
            write_pidfile(config.pid, os.getpid())
        except OSError as error:
            for sock in listeners:
                sock.close()
            raise PidFileError(f"cannot write the pid file: {error}") from None
    # As a worker does: bound first, then the user and group the config names.
    drop_privileges(config)
    observer = RequestObserver.for_hooks(config, worker=None)
    if observer is not None:
        # The `worker` gunicorn's request hooks get (hooks use worker.log, worker.pid).
        record = Worker(0, 1, config, os.getppid())
        record.pid = os.getpid()
        observer.worker = record
    dispatcher = build_dispatcher(app, config, listeners, model, observer)
    dispatcher.on_reopen = lambda: reopen_logs(config, dispatcher)
    if threading.current_thread() is threading.main_thread():
        dispatcher.install_signal_handlers()
    error_log.info("corral %s (pid %d)", __version__, os.getpid())
    error_log.info("Concurrency: %s", model.describe())
    warn_worker_process_settings(config)
    for sock in listeners:
        error_log.info("Listening at %s", describe(sock))
    watch_app_sources()
    freeze_heap()
    try:
        dispatcher.run()
    finally:
        if config.pid:
            remove_pidfile(config.pid, os.getpid())
    error_log.info("Stopped")


# Settings that only worker processes under a master act on.
_WORKER_PROCESS_SETTINGS = (
    "timeout",
    "max_requests",
    "max_requests_jitter",
    "max_worker_memory",
    "preload",
)
# Server hooks a single process runs; the others belong to a master and its workers.
_SINGLE_PROCESS_HOOKS = frozenset({"pre_request", "post_request", "ssl_context"})


def warn_worker_process_settings(config: Config) -> None:
    """One line naming the settings given that only worker processes use, so none is
    ignored without a word in a single process (--workers 0)."""
    from corral.config import SETTINGS

    ignored = [
        (setting.flags[-1] if setting.flags else setting.name)
        for setting in SETTINGS
        if (
            setting.name in _WORKER_PROCESS_SETTINGS
            or (setting.is_hook and setting.name not in _SINGLE_PROCESS_HOOKS)
        )
        and getattr(config, setting.name) != setting.default
    ]
    if ignored:
        error_log.warning(
            "Ignored in a single process, they need worker processes (-w N): %s",
            ", ".join(ignored),
        )


def drop_privileges(config: Config) -> None:
    """Become --group and --user (names or ids). Raises OSError or KeyError."""
    import grp
    import pwd

    if config.group is not None:
        group = config.group
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        os.setgroups([gid])
        os.setgid(gid)
    if config.user is not None:
        user = config.user
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        if config.group is None:
            os.initgroups(entry.pw_name, entry.pw_gid)
            os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)


def reopen_logs(config: Config, dispatcher: Dispatcher) -> None:
    """USR1: open the error and access log files again, after a rotation moved them."""
    configure_logging(config)
    reopened = set()
    for _, state in dispatcher.listeners.values():
        access_log = state.access_log
        if access_log is not None and id(access_log) not in reopened:
            reopened.add(id(access_log))
            access_log.reopen()


def set_process_title(config: Config, role: str, spec: str | None) -> None:
    """Titles such as `corral: master [myapp:app]` in ps and top, when setproctitle is
    installed; the name is --name, else the application's."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(f"corral: {role} [{config.proc_name or spec or 'corral'}]")


def serve_with_workers(
    spec: str | None,
    app: Any,
    config: Config,
    reload_config: Callable[[], Config],
    exec_argv: list[str],
) -> int:
    """Run the master and its workers until stopped; the command's exit status.

    Raises `BindError` when an address cannot be listened on.
    """
    from corral.master import Master
    from corral.worker_process import WorkerBoot

    configure_logging(config)
    boot = WorkerBoot(spec, app)
    master = Master(
        config, [], boot, reload_config, exec_argv, describe_concurrency, configure_logging
    )
    if config.on_starting is not None:
        config.on_starting(master)
    master.listeners = open_listeners(config)
    for sock in master.listeners:
        error_log.info("Listening at %s", describe(sock))
    if config.preload and boot.app is None:
        assert spec is not None
        prepare_process(config)
        boot.app = load_app(spec)
    elif config.worker_class != "gevent":
        # OpenSSL's start-up allocations, made once here rather than in each worker
        # (where most web frameworks' imports would make them), stay shared by all
        # workers; measured with Flask: 1.5 MiB less resident per worker. (gevent
        # must patch ssl before its first import, so not for -k gevent.)
        import ssl  # noqa: F401
    # Frozen objects are never written by a collection, so the pages the workers
    # inherit stay shared instead of being copied by each worker's first collection.
    freeze_heap()
    set_process_title(config, "master", spec)
    master.app_imported = boot.app is not None
    return master.run()
