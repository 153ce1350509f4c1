"""`corral.run_simple`: the signature and meaning of `werkzeug.serving.run_simple`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from corral.config import build_config
from corral.config_file import read_config_file
from corral.serving.access_log import DEFAULT_FORMAT, WERKZEUG_FORMAT

_RELOADER_CHILD = "WERKZEUG_RUN_MAIN"
_UNIX_PREFIX = "unix://"


def _bind_address(hostname: str, port: int) -> str:
    """The corral bind address for Werkzeug's `hostname` and `port`.

    As `werkzeug.serving.select_address_family` and `get_sockaddr`: `unix://PATH` is a
    unix socket at the absolute form of PATH; an IPv6 address gets its brackets.
    Raises ValueError for `unix://` without a path.
    """
    if hostname.startswith(_UNIX_PREFIX):
        path = hostname[len(_UNIX_PREFIX) :]
        if not path:
            raise ValueError(f"corral.run_simple: {hostname!r} needs a socket path after unix://")
        return "unix:" + os.path.abspath(path)
    if ":" in hostname and not hostname.startswith("["):
        return f"[{hostname}]:{port}"
    return f"{hostname}:{port}"


def run_simple(
    hostname: str,
    port: int,
    application: Any,
    use_reloader: bool = False,
    use_debugger: bool = False,
    use_evalex: bool = True,
    extra_files: Iterable[str] | None = None,
    exclude_patterns: Iterable[str] | None = None,
    reloader_interval: int = 1,
    reloader_type: str = "auto",
    threaded: bool = False,
    processes: int = 1,
    request_handler: Any = None,
    static_files: dict[str, Any] | None = None,
    passthrough_errors: bool = False,
    ssl_context: Any = None,
    **settings: Any,
) -> None:
    """Serve `application` on `hostname:port` until TERM or Ctrl-C, like Werkzeug's.

    `threaded=True` starts a thread per request (`--thread-per-request`); `processes=N`
    forks a process per request, at most N at once (`--process-per-request N`); neither
    serves one request at a time. `use_reloader`, `use_debugger`/`use_evalex` and
    `static_files` use Werkzeug's own reloader and middleware. Any other corral setting
    can be passed by name, e.g. `max_threads=200`, `access_logfile="-"`, `workers=4`
    (worker processes under a master, forked with the app already imported) or
    `config="corral.conf.py"` (a config file, below the keywords in precedence).

    `ssl_context` serves HTTPS, taking what Werkzeug takes: an `ssl.SSLContext` (used as
    it is, with ALPN set to "http/1.1"), a `(certfile, keyfile)` pair of PEM paths (a
    1-tuple when the key is inside the certificate file), or "adhoc" for a throw-away
    self-signed certificate for localhost, made with the `cryptography` package (`pip
    install 'corral[adhoc]'`; without it, one line on standard error and status 1). The
    start-up line then says `Listening at https://...`.

    Each request is logged on standard error as Werkzeug logs it,
    `127.0.0.1 - - [30/Nov/2026 15:20:00] "GET / HTTP/1.1" 200 -` (the target as sent,
    where Werkzeug decodes it), unless `access_logfile` is given: a path, "-" for
    standard output, or "" for no request log.

    A `hostname` of `unix://PATH` serves on a unix socket at PATH (made absolute, as
    Werkzeug does) and ignores `port`; a socket file left there by an earlier run is
    replaced. Unlike Werkzeug, which deletes whatever is at PATH, corral refuses a PATH
    that exists and is not a socket.

    An address that cannot be listened on (in use, not a socket, not allowed) is told on
    standard error in one line and ends the process with status 1, as Werkzeug does,
    rather than with a traceback.

    Raises TypeError for a `port` that is not an int or an `ssl_context` of another
    kind, and ValueError for `threaded` together with `processes > 1` (both as Werkzeug
    does), and for what corral cannot honour: `request_handler` (corral is not built on
    http.server), `passthrough_errors=True` (application errors become a 500 response),
    and for `worker_class="gevent"` and `reload=True`, which need the app not yet
    imported. A bad corral setting raises `corral.config.ConfigError` (a certificate
    file that cannot be read among them); files that make no TLS context (not PEM, a key
    that is not the certificate's) are told in one line with status 1.
    """
    if not isinstance(port, int):
        raise TypeError("port must be an integer")
    if threaded and processes > 1:
        raise ValueError("cannot have a multi-threaded and multi-process server.")
    if request_handler is not None:
        raise ValueError(
            "corral.run_simple cannot use request_handler: corral does not run on http.server"
        )
    if passthrough_errors:
        raise ValueError(
            "corral.run_simple cannot pass errors through: application "
            "errors are logged and answered with 500"
        )
    if processes < 1:
        raise ValueError("processes must be at least 1")
    if static_files:
        from werkzeug.middleware.shared_data import SharedDataMiddleware

        application = SharedDataMiddleware(application, static_files)
    if use_debugger:
        from werkzeug.debug import DebuggedApplication

        application = DebuggedApplication(application, evalex=use_evalex)
    address = _bind_address(hostname, port)
    overrides: dict[str, Any] = {"bind": [address], **_tls_settings(ssl_context), **settings}
    if threaded:
        overrides["thread_per_request"] = True
    elif processes > 1:
        overrides["process_per_request"] = processes
    config_path = settings.get("config")
    file_values = read_config_file(config_path) if config_path else None
    config = build_config(None, overrides, file_values)
    if not config.access_logfile and "access_logfile" not in settings:
        # Werkzeug logs every request on standard error; so does this, in its layout,
        # unless an access log was asked for (access_logfile="" asks for none).
        overrides["access_logfile"] = "/dev/stderr"
        if config.access_logformat == DEFAULT_FORMAT:
            overrides["access_logformat"] = WERKZEUG_FORMAT
        config = build_config(None, overrides, file_values)
    if config.worker_class == "gevent":
        raise ValueError(
            "corral.run_simple cannot run gevent workers: gevent must patch before the "
            "app is imported; use the corral command: corral -k gevent MODULE:APP"
        )
    if config.reload:
        raise ValueError("corral.run_simple restarts on code changes with use_reloader=True")

    from corral.config import ConfigError
    from corral.serving.assembly import PidFileError
    from corral.serving.listeners import BindError

    try:
        _serve(
            application,
            config,
            use_reloader,
            extra_files,
            exclude_patterns,
            reloader_interval,
            reloader_type,
        )
    except (BindError, PidFileError, ConfigError) as error:
        # ConfigError here: TLS files that make no context, found once they are read.
        print(f"corral: error: {error}", file=sys.stderr)
        if "in use" in str(error) and not address.startswith("unix:"):
            print(
                f"Port {port} is in use by another program. Either identify and stop that "
                "program, or start the server with a different port.",
                file=sys.stderr,
            )
        sys.exit(1)


def _tls_settings(ssl_context: Any) -> dict[str, Any]:
    """corral's settings for Werkzeug's `ssl_context`: a pair of paths is --certfile and
    --keyfile, read again by each worker; a context (or the ad-hoc one) is given by an
    `ssl_context` hook returning it."""
    if ssl_context is None:
        return {}
    if isinstance(ssl_context, tuple) and 1 <= len(ssl_context) <= 2:
        certfile, keyfile = (*ssl_context, None)[:2]
        return {
            "certfile": os.fspath(certfile),
            "keyfile": None if keyfile is None else os.fspath(keyfile),
        }
    if ssl_context == "adhoc":
        from corral.compat.adhoc_certificate import CryptographyMissing, make_adhoc_context

        try:
            context = make_adhoc_context()
        except CryptographyMissing as error:
            print(f"corral: error: {error}", file=sys.stderr)
            sys.exit(1)
    else:
        import ssl

        if not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(
                "ssl_context must be an ssl.SSLContext, a (certfile, keyfile) pair or "
                f"'adhoc', not {ssl_context!r}"
            )
        context = ssl_context

    def given_context(conf: Any, default_ssl_context_factory: Any) -> Any:
        return context

    # It holds the certificate itself: TLS is on without --certfile (`Config.is_ssl`).
    given_context.provides_certificate = True  # type: ignore[attr-defined]
    return {"ssl_context": given_context}


def _serve(
    application: Any,
    config: Any,
    use_reloader: bool,
    extra_files: Iterable[str] | None,
    exclude_patterns: Iterable[str] | None,
    reloader_interval: int,
    reloader_type: str,
) -> None:
    from corral.entry import serve, serve_with_workers
    from corral.serving.self_call_guard import RUN_SIMPLE_ADVICE

    if config.workers:
        # The app is already imported here, as with --preload; HUP reloads settings.
        serve_with_workers(None, application, config, lambda: config, [sys.executable, *sys.argv])
        return

    if use_reloader and os.environ.get(_RELOADER_CHILD) != "true":
        from werkzeug._reloader import run_with_reloader

        run_with_reloader(
            lambda: serve(application, config, RUN_SIMPLE_ADVICE),
            extra_files=extra_files,
            exclude_patterns=exclude_patterns,
            interval=reloader_interval,
            reloader_type=reloader_type,
        )
        return
    serve(application, config, RUN_SIMPLE_ADVICE)
