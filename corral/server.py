"""Wires a config and an app into listening sockets, a worker model and the dispatcher."""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys
from typing import Any

from corral import __version__
from corral.access_log import AccessLog
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


def prepare_process(config: Config) -> None:
    """What must happen before the application is imported: gevent's monkey-patching."""
    if config.worker_class == "gevent":
        from corral.workers.coroutines import patch_process

        patch_process()


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


def serve(app: Any, config: Config) -> None:
    """Serve `app` from this one process until TERM or INT, then drain and return.

    Raises `corral.sockets.BindError` when an address cannot be listened on.
    """
    configure_logging(config)
    model = make_worker_model(config)
    listeners = open_listeners(config)
    observer = RequestObserver.for_hooks(config, worker=None)
    dispatcher = build_dispatcher(app, config, listeners, model, observer)
    error_log.info("corral %s (pid %d)", __version__, os.getpid())
    error_log.info("Concurrency: %s", model.describe())
    for sock in listeners:
        error_log.info("Listening at %s", describe(sock))
    freeze_heap()
    dispatcher.run()
    error_log.info("Stopped")
