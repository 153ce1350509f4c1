"""Wiring a config and an app into listening sockets, a worker model and the dispatcher.

What both entry points and the worker process build from the config: the model that runs
connections, the listening sockets, and the dispatcher that serves them; and the warning
naming settings a single process ignores.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import resource
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from corral.config import Config
from corral.http.parser import HeadLimits
from corral.http.trusted_addresses import TrustedAddresses
from corral.serving.access_log import AccessLog
from corral.serving.connection import OpeningStep, ServingState
from corral.serving.dispatcher import Dispatcher
from corral.serving.listeners import BindError, inherited_listeners, listen, listener_info
from corral.serving.proxy_preamble import ProxyPreamble
from corral.serving.refusals import RefusalLog
from corral.serving.request_observer import RequestObserver
from corral.serving.sizing import SizingObserver
from corral.workers import WorkerModel, make_model, model_name
from corral.workers.thread_pool import ThreadPool
from corral.wsgi.environ import base_environ
from corral.wsgi.forwarded import ForwardedHeaders

if TYPE_CHECKING:
    from corral.serving.tls import ServerTLS

error_log = logging.getLogger("corral.error")


def describe_concurrency(config: Config) -> str:
    """The start-up line for worker processes. Building a model starts nothing (nor
    imports gevent), so the master can ask the workers' model to describe itself."""
    return make_worker_model(config).describe(config.workers)


def requests_per_worker(config: Config) -> int:
    """How many requests one worker process (or the single process) serves at once."""
    return make_worker_model(config).concurrency()


def make_worker_model(config: Config) -> WorkerModel:
    """The concurrency model the config chooses, from the registry in corral.workers."""
    name = model_name(config.worker_class, config.thread_per_request, config.process_per_request)
    return make_model(name, lambda setting: getattr(config, setting))


# Descriptors a serving process needs besides its connections: listening sockets, the
# readiness set and its wake pipe, log files, a child's pipe per --process-per-request
# child, and the application's own files and database connections.
_RESERVED_DESCRIPTORS = 100


def raise_open_file_limit(config: Config) -> None:
    """Raise this process's soft RLIMIT_NOFILE toward its hard limit, as far as
    --connection-limit needs; at start, before any worker is forked (they inherit it).

    The soft limit is often 1024, which would stop a server at about a thousand
    connections, while the hard limit, which only root can raise, is usually far higher
    (524288 under systemd). Logs a warning when the hard limit leaves room for fewer
    connections than --connection-limit; a system refusing the raise (macOS caps it at
    OPEN_MAX) leaves the limit as it was.
    """
    if not config.connection_limit:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = config.connection_limit + _RESERVED_DESCRIPTORS
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError) as error:
            error_log.debug("cannot raise the open-file limit to %d: %s", wanted, error)
    ceiling = connection_ceiling(config)
    if ceiling < config.connection_limit:
        error_log.warning(
            "--connection-limit %d lowered to %d: the open-file limit is %d (raise the hard "
            "limit: ulimit -Hn, or LimitNOFILE= for a systemd service)",
            config.connection_limit,
            ceiling,
            resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        )


def connection_ceiling(config: Config) -> int:
    """--connection-limit, lowered to what this process's open-file limit leaves for
    connections; 0 for no limit."""
    limit = config.connection_limit
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if not limit or soft == resource.RLIM_INFINITY:
        return limit
    return max(1, min(limit, max(soft - _RESERVED_DESCRIPTORS, soft // 2)))


def open_listeners(
    config: Config, bound: Callable[[list[socket.socket]], None] | None = None
) -> list[socket.socket]:
    """The listening sockets: inherited from a previous master (USR2), handed over by
    systemd (LISTEN_FDS), or bound now, and then given to `bound` (which may raise
    OSError or KeyError). Raises `BindError` naming the address, or what `bound` raised."""
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
        if bound is not None:
            try:
                bound(listeners)
            except (OSError, KeyError) as error:
                message = f"cannot give the unix: sockets to --user/--group: {error}"
                raise BindError(message) from None
    except Exception:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def make_server_tls(config: Config) -> ServerTLS | None:
    """The TLS context and handshake for a serving process, when the config asks for
    TLS; None otherwise, without importing ssl. Raises `TLSSetupError` in one line."""
    if not config.is_ssl:
        return None
    from corral.serving.tls import ServerTLS

    return ServerTLS(config)


def build_dispatcher(
    app: Any,
    config: Config,
    listeners: list[socket.socket],
    model: WorkerModel,
    observers: Sequence[RequestObserver] = (),
    multiprocess: bool = False,
    tls: ServerTLS | None = None,
    refused: Callable[[int], None] | None = None,
    counts: list[float] | None = None,
    counted: Callable[[], None] | None = None,
) -> Dispatcher:
    """The event loop serving `app` on `listeners` with `model`; the access log the
    config names is the first of the request observers, `observers` follow it. With
    `tls` every listener serves HTTPS: each new connection's handshake is its opening
    step. `refused`, `counts` and `counted` are `ServingState`'s."""
    limits = HeadLimits(
        request_line=config.limit_request_line,
        field_count=config.limit_request_fields,
        field_size=config.limit_request_field_size,
        body_size=config.limit_request_body,
    )
    script_name = config.root_path.rstrip("/")
    access_log = (
        AccessLog.open(config.access_logfile, config.access_logformat, script_name)
        if config.access_logfile
        else None
    )
    every_observer = ((access_log,) if access_log is not None else ()) + tuple(observers)
    # Greenlets share their thread's CPU clock, so it cannot tell one request's CPU time;
    # a process per request measures in children that exit.
    sizing = None
    if not model.cooperative_sockets and not model.multiprocess:
        sizing = SizingObserver(config.workers, model.concurrency())
        if isinstance(model, ThreadPool) and model.auto:
            sizing.adapt(model.resize)
    refusals = RefusalLog()
    forwarded = ForwardedHeaders.from_settings(
        config.forwarded_allow_ips, config.secure_scheme_headers
    )
    # What opens a connection, in order; a PROXY protocol header comes first of all.
    opening: tuple[OpeningStep, ...] = ()
    if config.proxy_protocol:
        opening += (ProxyPreamble(TrustedAddresses(config.proxy_allow_ips)),)
    if tls is not None:
        # After the PROXY header, which a proxy sends in the clear before the handshake.
        opening += (tls.open,)
    bound = []
    for sock in listeners:
        listener = listener_info(sock)
        if tls is not None:
            listener = dataclasses.replace(listener, scheme="https")
        environ = base_environ(
            listener.name,
            listener.port,
            listener.scheme,
            script_name,
            model.multithread,
            model.multiprocess or multiprocess,
        )
        state = ServingState(
            app,
            limits,
            listener,
            environ,
            config.client_timeout,
            access_log,
            every_observer,
            queue_timeout=config.queue_timeout,
            refusals=refusals,
            opening=opening,
            forwarded=forwarded,
            refused=refused,
            counts=counts,
            sizing=sizing,
            counted=counted,
            opening_timeout=None if tls is None else config.ssl_handshake_timeout,
        )
        bound.append((sock, state))
    dispatcher = Dispatcher(
        bound,
        model,
        config.timeouts,
        config.poller,
        accept_only_when_free=multiprocess,
        connection_limit=connection_ceiling(config),
    )
    dispatcher.sizing = sizing
    dispatcher.health_path = config.health_path
    return dispatcher


class PidFileError(Exception):
    """The --pid file cannot be written; the message says why."""


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


def warn_queue_timeout_without_queue(config: Config) -> None:
    """One line when --queue-timeout is given to a model that serves one request at a
    time on the thread that reads the sockets: its requests wait in the kernel, where no
    wait is measured, so the setting would do nothing unsaid."""
    if config.queue_timeout and make_worker_model(config).serves_inline:
        error_log.warning(
            "--queue-timeout has no effect with one request at a time per process: requests "
            "wait in the kernel, unmeasured; it applies with --threads N, "
            "--thread-per-request, --process-per-request or -k gevent"
        )


def reopen_access_logs(dispatcher: Dispatcher) -> None:
    """USR1: open the access log files again, after a rotation moved them."""
    reopened = set()
    for _, state in dispatcher.listeners.values():
        access_log = state.access_log
        if access_log is not None and id(access_log) not in reopened:
            reopened.add(id(access_log))
            access_log.reopen()
