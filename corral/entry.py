"""The two ways to serve an app: `serve` in this one process, `serve_with_workers` as a
master with worker processes. The command line and the compat drop-ins call these."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from corral import compiled
from corral.app_loading import load_app
from corral.config import Config, ConfigError
from corral.process.sd_notify import ServiceNotifier
from corral.process.setup import (
    configure_logging,
    drop_privileges,
    freeze_heap,
    give_unix_sockets_to_user,
    prepare_process,
    reopen_logs,
    set_process_title,
)
from corral.process.signals import install_single_process_handlers
from corral.serving.assembly import (
    PidFileError,
    build_dispatcher,
    describe_concurrency,
    make_server_tls,
    make_worker_model,
    open_listeners,
    raise_open_file_limit,
    reopen_access_logs,
    requests_per_worker,
    warn_queue_timeout_without_queue,
    warn_worker_process_settings,
)
from corral.serving.listeners import describe, remove_socket_files, socket_files
from corral.serving.request_observer import RequestHooks, RequestObserver
from corral.version import __version__

if TYPE_CHECKING:
    from corral.process.slot_table import SlotTable
    from corral.process.slot_writer import SlotPublisher, SlotWriter
    from corral.process.stats_server import StatsServer
    from corral.serving.dispatcher import Dispatcher
    from corral.workers import WorkerModel

error_log = logging.getLogger("corral.error")


def serve(app: Any, config: Config, self_call_advice: str | None = None) -> None:
    """Serve `app` from this one process until TERM or INT, then drain and return.

    `self_call_advice` replaces the fix the self-call guard logs (in the command's words)
    for a caller whose users spell settings otherwise (`corral.run_simple`).

    Raises `corral.serving.listeners.BindError` when an address (or --stats) cannot be
    listened on, `corral.serving.assembly.PidFileError` when the --pid file cannot be
    written, and
    `corral.serving.tls.TLSSetupError` (a `ConfigError`) when the TLS settings cannot make
    a context.
    """
    from corral.process.master import Worker, remove_pidfile, write_pidfile
    from corral.process.reloader import watch_app_sources

    configure_logging(config)
    raise_open_file_limit(config)
    model = make_worker_model(config)
    listeners = open_listeners(config, partial(give_unix_sockets_to_user, config))
    stats: StatsServer | None = None
    table: SlotTable | None = None
    if config.stats:
        table = _single_process_table(config)
        try:
            stats = _open_stats(config.stats, table)
        except Exception:
            for sock in listeners:
                sock.close()
            raise
    if config.pid:
        try:
            write_pidfile(config.pid, os.getpid())
        except OSError as error:
            for sock in listeners:
                sock.close()
            raise PidFileError(f"cannot write the pid file: {error}") from None
    # As a worker does: bound first, then the user and group the config names, then
    # the TLS files read as that user.
    drop_privileges(config)
    try:
        tls = make_server_tls(config)
    except ConfigError:
        for sock in listeners:
            sock.close()
        if config.pid:
            remove_pidfile(config.pid, os.getpid())
        raise
    hooks = RequestHooks.from_config(config, worker=None)
    if hooks is not None:
        # The `worker` gunicorn's request hooks get (hooks use worker.log, worker.pid).
        record = Worker(0, 1, config, os.getppid())
        record.pid = os.getpid()
        hooks.worker = record
    observers: list[RequestObserver] = [hooks] if hooks is not None else []
    slot = _single_process_slot(config, model, table) if table is not None else None
    dispatcher = build_dispatcher(
        app,
        config,
        listeners,
        model,
        observers,
        tls=tls,
        refused=slot.refused if slot is not None else None,
        counts=slot.counts if slot is not None else None,
        # A request process writes its counts as each request ends: it has no loop.
        counted=slot.write_counts if slot is not None and config.process_per_request else None,
    )
    if slot is not None:
        dispatcher.on_tick = _beat_of(slot)
    dispatcher.on_reopen = lambda: reopen_logs(config, lambda: reopen_access_logs(dispatcher))
    dispatcher.self_call_advice = self_call_advice
    # The process is systemd's service only when corral owns its main thread and its
    # signals; a server run on another thread leaves notifying to whoever owns them.
    notifier = ServiceNotifier(None)
    if threading.current_thread() is threading.main_thread():
        notifier = ServiceNotifier.from_environment()
        reload_tls = None
        if tls is not None:
            from corral.serving.tls import make_reload_trigger

            reload_tls = make_reload_trigger(tls, dispatcher.watch, notifier.ready_again)
        install_single_process_handlers(dispatcher, reload_tls, notifier)
    error_log.info("corral %s (pid %d), %s", __version__, os.getpid(), compiled.DESCRIPTION)
    error_log.info("Concurrency: %s", model.describe())
    warn_worker_process_settings(config)
    warn_queue_timeout_without_queue(config)
    for sock in listeners:
        error_log.info("Listening at %s", describe(sock, "http" if tls is None else "https"))
    if stats is not None and slot is not None:
        _publisher_of(slot, dispatcher).start()
        stats.start()
        error_log.info("Stats at %s", stats.url)
    watch_app_sources()
    freeze_heap()
    notifier.ready(model.describe())
    try:
        dispatcher.run()
    finally:
        if config.pid:
            remove_pidfile(config.pid, os.getpid())
        remove_socket_files(socket_files(listeners))
    error_log.info("Stopped")


def serve_with_workers(
    spec: str | None,
    app: Any,
    config: Config,
    reload_config: Callable[[], Config],
    exec_argv: list[str],
) -> int:
    """Run the master and its workers until stopped; the command's exit status.

    Raises `BindError` when an address cannot be listened on, and `TLSSetupError` when
    the TLS settings cannot make a context.
    """
    from corral.process.master import Master
    from corral.process.worker_process import WorkerBoot

    configure_logging(config)
    if config.is_ssl and config.worker_class != "gevent":
        # Each worker makes its own context (HUP's new workers read the files again);
        # this one only tells a bad certificate at once, in one line, before anything
        # is bound. Not under gevent, which must patch ssl before its first import: its
        # workers fail to boot instead, and the master stops with their reason.
        make_server_tls(config)
    raise_open_file_limit(config)
    boot = WorkerBoot(spec, app)
    master = Master(
        config,
        [],
        boot,
        reload_config,
        exec_argv,
        describe_concurrency,
        configure_logging,
        requests_per_worker,
    )
    if config.on_starting is not None:
        config.on_starting(master)
    master.listeners = open_listeners(config, partial(give_unix_sockets_to_user, config))
    if config.stats:
        try:
            master.stats = _open_stats(config.stats, master.slots)
        except Exception:
            for sock in master.listeners:
                sock.close()
            raise
    for sock in master.listeners:
        error_log.info("Listening at %s", describe(sock, "https" if config.is_ssl else "http"))
    if master.stats is not None:
        # Served from the master's loop start on; the address is known now.
        error_log.info("Stats at %s", master.stats.url)
    warn_queue_timeout_without_queue(config)
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
    master.notifier = ServiceNotifier.from_environment()
    files = socket_files(master.listeners)
    code = master.run()
    if not master.successor_pid:
        # Not while a new master (USR2) serves on the same sockets.
        remove_socket_files(files)
    return code


def _open_stats(address: str, table: SlotTable) -> StatsServer:
    """The --stats listener, serving what `table` holds once started."""
    from corral.process.stats_server import StatsServer, open_stats_listener

    return StatsServer(open_stats_listener(address), table)


def _single_process_table(config: Config) -> SlotTable:
    """A single process's table: its own slot, and one more for each request process
    --process-per-request may run at once."""
    from corral.process.slot_table import SlotTable

    return SlotTable(1 + config.process_per_request)


def _single_process_slot(config: Config, model: WorkerModel, table: SlotTable) -> SlotWriter:
    """This process's writer of its slot in `table`, which the stats listener reads."""
    from corral.process.slot_table import READY
    from corral.process.slot_writer import SlotWriter

    table.describe(os.getpid(), 0, model.concurrency(), model.describe(), started=time.time())
    slot = SlotWriter(table, table.claim())
    slot.set_capacity(model.concurrency())
    if config.process_per_request:
        slot.write_request_processes_to(list(range(1, 1 + config.process_per_request)))
    slot.beat(READY, 0)
    return slot


def _publisher_of(slot: SlotWriter, dispatcher: Dispatcher) -> SlotPublisher:
    """The thread that writes the requests in the app and the counts into `slot`."""
    from corral.process.slot_writer import SlotPublisher

    return SlotPublisher(
        slot,
        dispatcher.connections_now,
        dispatcher.served_elsewhere,
        dispatcher.requests_waiting,
        None if dispatcher.sizing is None else dispatcher.sizing.advice,
    )


def _beat_of(slot: SlotWriter) -> Callable[[], None]:
    """What the serving loop calls twice a second: the process's state into its slot."""
    from corral.process.slot_table import READY
    from corral.process.slot_writer import resident_bytes

    def beat() -> None:
        slot.beat(READY, resident_bytes())

    return beat
