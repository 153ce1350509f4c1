"""The one table of settings.

Each setting is declared once here; the command line, the `CORRAL_*` environment
variables, `--print-config`, the `run_simple` keywords and docs/settings.md are all
generated from `SETTINGS`, and a `-c` config file (read by `corral.config_file`) gives
them by name. Precedence: defaults < config file < environment < command line.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# A server hook: a function from a -c config file, or None.
Hook = Callable[..., Any] | None


class ConfigError(Exception):
    """A setting has a value corral cannot use; the message names the setting."""


def positive_int(text: Any) -> int:
    value = _integer(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def thread_count(text: Any) -> int:
    """--threads: a count, or "auto" (returned as 0)."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return 0
    return positive_int(text)


def worker_count(text: Any) -> int:
    """--workers: a count, or "auto": one worker per core this process may run on, the
    sizing advice's (`corral.serving.sizing`) for any application."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        try:
            return len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            return os.cpu_count() or 1
    return non_negative_int(text)


def non_negative_int(text: Any) -> int:
    value = _integer(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def seconds(text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise ValueError("must be 0 or more seconds")
    return value


def health_path(text: Any) -> str | None:
    """--health-path: an absolute path such as /healthz, matched against the request
    target exactly; empty for none."""
    if text is None or text == "":
        return None
    path = string(text)
    if not path.startswith("/") or any(c in path for c in "?# ") or not path.isprintable():
        raise ValueError(f"{path!r} is not a path starting with / (no query or fragment)")
    return path


def string(text: Any) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a string")
    return text


def boolean(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not true or false")


def string_list(text: Any) -> list[str]:
    if isinstance(text, str):
        return [part for part in text.replace(",", " ").split() if part]
    if isinstance(text, (list, tuple)) and all(isinstance(part, str) for part in text):
        return list(text)
    raise ValueError(f"{text!r} is not a list of strings")


def address_list(value: Any) -> list[str]:
    """IP addresses and CIDR networks, or *, as gunicorn's forwarded_allow_ips takes them:
    one string separated by commas, or a list. As in gunicorn, a network with host bits
    set (10.0.0.1/8) is refused as the likely mistake it is; so is an IPv6 zone index.
    `corral.http.trusted_addresses` reads the entries this accepts."""
    entries = string_list(value)
    for entry in entries:
        if entry == "*":
            continue
        try:
            if "%" in entry:
                raise ValueError("a zone index names an interface, not an address")
            ipaddress.ip_network(entry)
        except ValueError as error:
            raise ValueError(f"{entry!r} is not an IP address, a network or *: {error}") from None
    return entries


_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def header_values(value: Any) -> dict[str, str]:
    """Header names and values, as gunicorn's secure_scheme_headers: a dict in a config
    file, or "NAME=value,NAME=value" in an environment variable. Names are upper-cased."""
    if isinstance(value, str):
        pairs = []
        for item in value.split(","):
            if not item.strip():
                continue
            name, equals, text = item.partition("=")
            if not equals:
                raise ValueError(f"{item.strip()!r} is not NAME=value")
            pairs.append((name.strip(), text.strip()))
        value = dict(pairs)
    if not isinstance(value, Mapping):
        raise ValueError(f"{value!r} is not a dict of header names and values")
    headers = {}
    for name, text in value.items():
        if not isinstance(name, str) or _FIELD_NAME.fullmatch(name) is None:
            raise ValueError(f"{name!r} is not a header name")
        if not isinstance(text, str):
            raise ValueError(f"{text!r} (for {name}) is not a string")
        headers[name.upper()] = text
    return headers


def environment_assignments(value: Any) -> list[str]:
    """NAME=value strings; one string is one assignment, as in gunicorn's raw_env."""
    assignments = [value] if isinstance(value, str) else value
    if not isinstance(assignments, (list, tuple)) or not all(
        isinstance(assignment, str) for assignment in assignments
    ):
        raise ValueError(f"{value!r} is not a list of NAME=value strings")
    for assignment in assignments:
        name, equals, _ = assignment.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"{assignment!r} is not NAME=value")
    return list(assignments)


def stats_address(value: Any) -> str | None:
    """HOST:PORT or [IPv6]:PORT; a port alone listens on loopback, so that the stats are
    not offered to the network unless asked for. None (or empty) for no stats."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    host, separator, port = text.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT or a port")
    return text


def log_level(text: Any) -> str:
    lowered = str(text).lower()
    if lowered not in ("debug", "info", "warning", "error", "critical"):
        raise ValueError("must be one of debug, info, warning, error, critical")
    return lowered


def poller_kind(text: Any) -> str:
    if text not in ("auto", "epoll", "poll"):
        raise ValueError("must be auto, epoll or poll")
    return str(text)


def worker_class(text: Any) -> str:
    """sync, thread or gevent; gunicorn's names for the same workers are accepted."""
    lowered = str(text).strip().lower()
    canonical = _WORKER_CLASS_ALIASES.get(lowered, lowered)
    if canonical not in ("sync", "thread", "gevent"):
        raise ValueError(f"{text!r}: must be sync, thread or gevent")
    return canonical


_WORKER_CLASS_ALIASES = {
    "gthread": "thread",
    "gunicorn.workers.sync.syncworker": "sync",
    "gunicorn.workers.gthread.threadworker": "thread",
    "gunicorn.workers.ggevent.geventworker": "gevent",
}


def umask_value(text: Any) -> int | None:
    """A umask such as 0o22, 022 or 18; None leaves the inherited one."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        cleaned = str(text).strip().lower()
        try:
            if cleaned.startswith("0o") or cleaned.startswith("0x"):
                value = int(cleaned, 0)
            elif cleaned.startswith("0") and len(cleaned) > 1:
                value = int(cleaned, 8)
            else:
                value = int(cleaned)
        except ValueError:
            raise ValueError(f"{text!r} is not a umask such as 0o22") from None
    if not 0 <= value <= 0o777:
        raise ValueError("must be between 0 and 0o777")
    return value


def optional_string(text: Any) -> str | None:
    if text is None:
        return None
    return string(text)


def user_or_group(value: Any) -> str | None:
    """A name or a numeric id; gunicorn config files give ids as numbers."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return optional_string(value)


def hook(value: Any) -> Hook:
    """A server hook: a callable, or None for none (given in a -c config file)."""
    if value is None:
        return None
    if not callable(value):
        raise ValueError(f"{value!r} is not callable")
    function: Callable[..., Any] = value
    return function


def readable_file(value: Any) -> str | None:
    """The path of a file this process can read, or None for none."""
    if value is None:
        return None
    path = string(value)
    if not os.path.isfile(path):
        reason = "no such file" if not os.path.exists(path) else "not a file"
        raise ValueError(f"cannot read {path}: {reason}")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    return path


# gunicorn's --cert-reqs takes ssl.CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED by value.
_CERTIFICATE_REQUIREMENTS = {"none": 0, "optional": 1, "required": 2}


def certificate_requirement(value: Any) -> int:
    """0, 1 or 2 (ssl.CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED), or their names."""
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2):
        return int(value)
    lowered = str(value).strip().lower().removeprefix("cert_")
    if lowered in ("0", "1", "2"):
        return int(lowered)
    if lowered in _CERTIFICATE_REQUIREMENTS:
        return _CERTIFICATE_REQUIREMENTS[lowered]
    raise ValueError(f"{value!r}: must be none (0), optional (1) or required (2)")


# gunicorn's --ssl-version names a protocol of the ssl module (PROTOCOL_TLS_SERVER, 17),
# by name or value; each is read as the oldest TLS version it allows. ssl.TLSVersion's
# values (771, 772) are understood too. Matched by value, so that the master need not
# import ssl (gevent must patch it first).
_TLS_VERSIONS = {
    **dict.fromkeys(("tlsv1.2", "tlsv1_2", "1.2", "771", "5"), "TLSv1.2"),
    **dict.fromkeys(("tls", "sslv23", "2", "tls_server", "17"), "TLSv1.2"),
    **dict.fromkeys(("tlsv1.3", "tlsv1_3", "1.3", "772"), "TLSv1.3"),
}
_BROKEN_TLS_VERSIONS = frozenset(
    ("tlsv1", "tlsv1_1", "tlsv1.0", "tlsv1.1", "1.0", "1.1", "sslv3", "3", "4", "769", "770")
)


def tls_version(value: Any) -> str:
    """The oldest TLS version to accept: "TLSv1.2" or "TLSv1.3"."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(int(value))
    else:
        text = str(value).strip().lower().removeprefix("protocol_")
    if text in _TLS_VERSIONS:
        return _TLS_VERSIONS[text]
    if text in _BROKEN_TLS_VERSIONS:
        raise ValueError(
            f"{value!r}: TLS 1.0 and 1.1 are broken (RFC 8996) and not offered; "
            "use TLSv1.2 or TLSv1.3"
        )
    raise ValueError(f"{value!r}: must be TLSv1.2 or TLSv1.3")


def _integer(text: Any) -> int:
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a whole number")
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a whole number") from None


@dataclass(frozen=True)
class Setting:
    name: str
    flags: tuple[str, ...]
    type: Callable[[Any], Any]
    default: Any
    help: str
    section: str = "Serving"
    metavar: str | None = None

    @property
    def is_flag(self) -> bool:
        return self.type is boolean

    @property
    def is_list(self) -> bool:
        """Repeatable on the command line, each use adding one item."""
        return self.type in (string_list, environment_assignments)

    @property
    def is_hook(self) -> bool:
        """Hooks are functions, so only a -c config file can give them."""
        return self.type is hook

    @property
    def environment_name(self) -> str:
        return "CORRAL_" + self.name.upper()


# gunicorn's server hooks, with its names and arguments.
_HOOKS = (
    ("on_starting", "on_starting(server): in the master, before anything is bound."),
    ("on_reload", "on_reload(server): in the master, on HUP, before new workers start."),
    ("when_ready", "when_ready(server): in the master, once the listening sockets are open."),
    ("pre_fork", "pre_fork(server, worker): in the master, just before a worker is forked."),
    ("post_fork", "post_fork(server, worker): in the worker, just after it is forked."),
    ("post_worker_init", "post_worker_init(worker): in the worker, once the app is loaded."),
    ("worker_int", "worker_int(worker): in the worker, on INT or QUIT."),
    (
        "worker_abort",
        "worker_abort(worker): in the worker, when the master aborts it for --timeout.",
    ),
    ("pre_exec", "pre_exec(server): in the master, before USR2 starts the new master."),
    ("pre_request", "pre_request(worker, req): in the worker, before each request."),
    (
        "post_request",
        "post_request(worker, req, environ, resp): in the worker, after each request.",
    ),
    ("child_exit", "child_exit(server, worker): in the master, once a worker has exited."),
    ("worker_exit", "worker_exit(server, worker): in the worker, as it exits."),
    ("nworkers_changed", "nworkers_changed(server, new_value, old_value): in the master."),
    ("on_exit", "on_exit(server): in the master, as it exits."),
    (
        "ssl_context",
        "ssl_context(conf, default_ssl_context_factory): in each serving process, returns "
        "the ssl.SSLContext to serve TLS with (SNI through its sni_callback); the factory "
        "builds the one the TLS settings describe. Used with --certfile, as in "
        "gunicorn; read again on HUP.",
    ),
)

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "config",
        ("-c", "--config"),
        optional_string,
        None,
        "Python file whose names are settings (gunicorn's names too); none is read unless "
        "named, so a file left in the working directory never changes a server.",
        "Config file",
        "FILE",
    ),
    Setting(
        "wsgi_app",
        (),
        optional_string,
        None,
        "The application, MODULE:NAME, when the command line names none; the command line wins.",
        "Config file",
    ),
    Setting(
        "bind",
        ("-b", "--bind"),
        string_list,
        ["127.0.0.1:8000"],
        "Address to listen on: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N; repeatable. A "
        "unix: socket file corral bound is removed when it stops.",
        metavar="ADDRESS",
    ),
    Setting(
        "threads",
        ("--threads",),
        thread_count,
        1,
        "Threads serving requests: 1 serves one request at a time, N a pool of N threads, "
        "auto a pool that starts with one thread per core and grows on demand while the "
        "CPU has room, keeping at least the sizing advice (CPU against wall time of the "
        "requests), up to --max-threads.",
        "Concurrency",
        "N",
    ),
    Setting(
        "thread_per_request",
        ("--thread-per-request",),
        boolean,
        False,
        "Start a thread for each request (Werkzeug threaded=True), up to --max-threads.",
        "Concurrency",
    ),
    Setting(
        "max_threads",
        ("--max-threads",),
        positive_int,
        1000,
        "Ceiling on threads with --thread-per-request and --threads auto; reaching it is logged.",
        "Concurrency",
        "N",
    ),
    Setting(
        "process_per_request",
        ("--process-per-request",),
        non_negative_int,
        0,
        "Fork a process for each request, at most N at once (Werkzeug processes=N).",
        "Concurrency",
        "N",
    ),
    Setting(
        "queue_timeout",
        ("--queue-timeout",),
        seconds,
        0.0,
        "Seconds a request may wait for a free thread, coroutine or process; one that "
        "waited longer gets 503 with Retry-After instead of running late. 0 for no limit.",
        "Concurrency",
        "SECONDS",
    ),
    Setting(
        "workers",
        ("-w", "--workers"),
        worker_count,
        0,
        "Worker processes under a supervising master; 0 serves from this one process, "
        "with no master; auto, one per core.",
        "Worker processes",
        "N",
    ),
    Setting(
        "worker_class",
        ("-k", "--worker-class"),
        worker_class,
        "sync",
        "What runs inside each process: sync (one request at a time), thread (--threads N) "
        "or gevent (--worker-connections N coroutines). --threads above 1 implies thread.",
        "Worker processes",
        "CLASS",
    ),
    Setting(
        "worker_connections",
        ("--worker-connections",),
        positive_int,
        1000,
        "Most requests a gevent worker serves at once.",
        "Worker processes",
        "N",
    ),
    Setting(
        "timeout",
        ("-t", "--timeout"),
        seconds,
        30.0,
        "Seconds a worker may spend on one request before the master dumps its threads' "
        "tracebacks to the error log and kills it, or on booting; 0 for no limit.",
        "Worker processes",
        "SECONDS",
    ),
    Setting(
        "max_requests",
        ("--max-requests",),
        non_negative_int,
        0,
        "Requests a worker serves before it is replaced, gracefully; 0 for no limit.",
        "Worker processes",
        "N",
    ),
    Setting(
        "max_requests_jitter",
        ("--max-requests-jitter",),
        non_negative_int,
        0,
        "A random 0 to N added to --max-requests per worker, so workers do not all "
        "restart together.",
        "Worker processes",
        "N",
    ),
    Setting(
        "max_worker_memory",
        ("--max-worker-memory",),
        non_negative_int,
        0,
        "Resident memory in MiB past which a worker is replaced, gracefully, once its "
        "requests in flight finish; 0 for no limit.",
        "Worker processes",
        "MB",
    ),
    Setting(
        "preload",
        ("--preload",),
        boolean,
        False,
        "Import the application in the master before forking the workers.",
        "Worker processes",
    ),
    Setting(
        "reload",
        ("--reload",),
        boolean,
        False,
        "Serve from a fresh process when a source file of the application changes "
        "(development); pip install 'corral[reload]' for change events instead of polling.",
        "Worker processes",
    ),
    Setting(
        "pid",
        ("-p", "--pid"),
        optional_string,
        None,
        "File the master writes its PID to; none unless named.",
        "Worker processes",
        "FILE",
    ),
    Setting(
        "user",
        ("-u", "--user"),
        user_or_group,
        None,
        "User (name or id) the workers run as, and who owns the unix: sockets corral "
        "binds (as in gunicorn); unset, the one that started corral.",
        "Worker processes",
        "USER",
    ),
    Setting(
        "group",
        ("-g", "--group"),
        user_or_group,
        None,
        "Group (name or id) the workers run as; unset, --user's own groups, else unchanged.",
        "Worker processes",
        "GROUP",
    ),
    Setting(
        "proc_name",
        ("-n", "--name"),
        optional_string,
        None,
        "Name in process titles (when setproctitle is installed); default: the app.",
        "Worker processes",
        "NAME",
    ),
    Setting(
        "umask",
        ("-m", "--umask"),
        umask_value,
        None,
        "umask of the server processes, e.g. 0o117; it sets the mode of unix: sockets. "
        "Default: the one corral was started with.",
        metavar="MASK",
    ),
    Setting(
        "reuse_port",
        ("--reuse-port",),
        boolean,
        False,
        "Set SO_REUSEPORT on listening sockets, so other processes can bind the same port.",
    ),
    Setting(
        "backlog",
        ("--backlog",),
        positive_int,
        2048,
        "Connections the kernel queues before accept.",
        metavar="N",
    ),
    Setting(
        "connection_limit",
        ("--connection-limit",),
        non_negative_int,
        10000,
        "Most connections each process holds open; at the limit it closes the longest-idle "
        "ones, or accepts none until one closes. Lowered to fit the open-file limit, whose "
        "soft value is raised toward the hard one at start. 0 for no limit.",
        metavar="N",
    ),
    Setting(
        "keep_alive",
        ("--keep-alive",),
        seconds,
        5.0,
        "Seconds an idle keep-alive connection stays open.",
        metavar="SECONDS",
    ),
    Setting(
        "client_timeout",
        ("--client-timeout",),
        seconds,
        30.0,
        "Seconds a client may go without taking a byte of its response (or, inside a "
        "body an application reads as it arrives, without sending one) before the "
        "connection is closed.",
        metavar="SECONDS",
    ),
    Setting(
        "header_timeout",
        ("--header-timeout",),
        seconds,
        20.0,
        "Seconds a request head may take to arrive whole, however it trickles in; then "
        "408 Request Timeout and the connection is closed.",
        metavar="SECONDS",
    ),
    Setting(
        "min_request_body_rate",
        ("--min-request-body-rate",),
        non_negative_int,
        240,
        "Bytes per second a request body must average, after a 5 s grace, while it "
        "arrives; slower, it gets 408 Request Timeout and the connection is closed. "
        "0 for no minimum.",
        metavar="BYTES",
    ),
    Setting(
        "poller",
        ("--poller",),
        poller_kind,
        "auto",
        "How idle sockets are watched: auto (epoll on Linux, else poll), epoll or poll.",
        metavar="KIND",
    ),
    Setting(
        "graceful_timeout",
        ("--graceful-timeout",),
        seconds,
        30.0,
        "Seconds requests in flight get to finish after TERM or INT.",
        metavar="SECONDS",
    ),
    Setting(
        "drain_delay",
        ("--drain-delay",),
        seconds,
        0.0,
        "Seconds after TERM during which --health-path answers 503 while every request is "
        "still served and new connections accepted, so that a balancer polling it stops "
        "sending here before the listener closes; then the --graceful-timeout drain. Not "
        "on HUP, whose new workers keep listening. 0 (gunicorn has none) for no delay.",
        metavar="SECONDS",
    ),
    Setting(
        "health_path",
        ("--health-path",),
        health_path,
        None,
        "Path (exactly, no query) whose GET and HEAD corral answers itself, never calling "
        "the app nor waiting behind its requests: 200 while serving, 503 once stopping. "
        "Kept out of the access log.",
        metavar="PATH",
    ),
    Setting(
        "root_path",
        ("--root-path",),
        string,
        "",
        "SCRIPT_NAME for an app mounted below a path, e.g. /api.",
        metavar="PATH",
    ),
    Setting(
        "raw_env",
        ("-e", "--env"),
        environment_assignments,
        [],
        "Environment variable NAME=value set in the serving processes before the app is "
        "imported; repeatable.",
        metavar="NAME=VALUE",
    ),
    Setting(
        "forwarded_allow_ips",
        ("--forwarded-allow-ips",),
        address_list,
        ["127.0.0.1", "::1"],
        "Proxies whose X-Forwarded-* and Forwarded headers set REMOTE_ADDR, the scheme, "
        "host, port and SCRIPT_NAME: IP addresses and CIDR networks separated by commas, "
        "or * for any peer; a unix socket's peer is always trusted. gunicorn's "
        "FORWARDED_ALLOW_IPS variable replaces the default, 127.0.0.1,::1.",
        "Behind a proxy",
        "ADDRESSES",
    ),
    Setting(
        "secure_scheme_headers",
        (),
        header_values,
        {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"},
        "Headers from a trusted proxy that give the scheme: https when one has its "
        "value here, http when it has another (gunicorn's setting and default).",
        "Behind a proxy",
    ),
    Setting(
        "proxy_protocol",
        ("--proxy-protocol",),
        boolean,
        False,
        "Read a PROXY protocol header (HAProxy's, version 1 or 2) at the start of each "
        "connection from --proxy-allow-from; such a peer that sends none is disconnected.",
        "Behind a proxy",
    ),
    Setting(
        "proxy_allow_ips",
        ("--proxy-allow-from",),
        address_list,
        ["127.0.0.1", "::1"],
        "Peers whose PROXY protocol header is read: IP addresses and CIDR networks "
        "separated by commas, or *; a unix socket's peer always is. Others are served "
        "as they are, and a PROXY header from them is answered 400.",
        "Behind a proxy",
        "ADDRESSES",
    ),
    Setting(
        "limit_request_line",
        ("--limit-request-line",),
        positive_int,
        8190,
        "Longest request line in bytes; longer gets 414.",
        "Limits",
        "BYTES",
    ),
    Setting(
        "limit_request_fields",
        ("--limit-request-fields",),
        positive_int,
        100,
        "Most header fields in a request; more gets 431.",
        "Limits",
        "N",
    ),
    Setting(
        "limit_request_field_size",
        ("--limit-request-field-size",),
        positive_int,
        8190,
        "Longest header field line in bytes; longer gets 431.",
        "Limits",
        "BYTES",
    ),
    Setting(
        "limit_request_body",
        ("--limit-request-body",),
        non_negative_int,
        1 << 30,
        "Largest request body in bytes, by its Content-Length or as a chunked body arrives; "
        "larger gets 413 before the app runs. Bodies are gathered (past 1 MiB in a temporary "
        "file) before the app runs, so this bounds the disk one request takes, as waitress's "
        "1 GiB default does; 0 for no limit.",
        "Limits",
        "BYTES",
    ),
    Setting(
        "access_logfile",
        ("--access-logfile",),
        string,
        "",
        "Where the access log goes: '-' for standard output, /dev/stderr for standard "
        "error; none unless named.",
        "Logging",
        "FILE",
    ),
    Setting(
        "access_logformat",
        ("--access-logformat",),
        string,
        '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
        "Access log line, with gunicorn's atoms (%(h)s %(r)s %(s)s %(b)s %(L)s ...).",
        "Logging",
        "FORMAT",
    ),
    Setting(
        "error_logfile",
        ("--error-logfile", "--log-file"),
        string,
        "-",
        "Where the error log goes: '-' for standard error.",
        "Logging",
        "FILE",
    ),
    Setting(
        "log_level",
        ("--log-level",),
        log_level,
        "info",
        "Error log level: debug, info, warning, error or critical.",
        "Logging",
        "LEVEL",
    ),
    Setting(
        "stats",
        ("--stats",),
        stats_address,
        None,
        "Serve the server's own stats at this HOST:PORT (a port alone: on 127.0.0.1): JSON "
        "at /, Prometheus metrics at /metrics (with corral[metrics]); answered by the master "
        "(or a thread of a single process), even when every worker is busy. Off unless given.",
        "Logging",
        "ADDRESS",
    ),
    Setting(
        "certfile",
        ("--certfile",),
        readable_file,
        None,
        "PEM file with the server's certificate, then its chain; given, every address "
        "serves HTTPS. Read by each serving process (as --user), again on HUP.",
        "TLS",
        "FILE",
    ),
    Setting(
        "keyfile",
        ("--keyfile",),
        readable_file,
        None,
        "PEM file with the certificate's private key, unencrypted; default: the key inside "
        "--certfile.",
        "TLS",
        "FILE",
    ),
    Setting(
        "ca_certs",
        ("--ca-certs",),
        readable_file,
        None,
        "PEM file of the certificate authorities that client certificates are checked "
        "against (--cert-reqs); none unless named.",
        "TLS",
        "FILE",
    ),
    Setting(
        "cert_reqs",
        ("--cert-reqs",),
        certificate_requirement,
        0,
        "Client certificates: 0 or none (not asked for), 1 or optional (checked when sent), "
        "2 or required.",
        "TLS",
        "N",
    ),
    Setting(
        "ssl_version",
        ("--ssl-version",),
        tls_version,
        "TLSv1.2",
        "Oldest TLS version accepted: TLSv1.2 or TLSv1.3 (gunicorn's protocol names and "
        "numbers are read as the oldest they allow; TLS 1.0 and 1.1 are refused).",
        "TLS",
        "VERSION",
    ),
    Setting(
        "ciphers",
        ("--ciphers",),
        optional_string,
        None,
        "OpenSSL cipher list for TLS 1.2 (TLS 1.3's suites are OpenSSL's); default: Python's.",
        "TLS",
        "LIST",
    ),
    Setting(
        "ssl_handshake_timeout",
        ("--ssl-handshake-timeout",),
        seconds,
        10.0,
        "Seconds a client has from connecting to finishing the TLS handshake (nginx's "
        "ssl_handshake_timeout); a handshake never holds a worker meanwhile.",
        "TLS",
        "SECONDS",
    ),
    *(Setting(name, (), hook, None, text, "Server hooks") for name, text in _HOOKS),
)

SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Timeouts:
    """The seconds a server waits on its clients and on itself."""

    # An idle keep-alive connection (--keep-alive).
    keep_alive: float
    # A client that takes no byte of its response (--client-timeout).
    client: float
    # Requests in flight after TERM (--graceful-timeout).
    graceful: float
    # A request head from its first byte to its last (--header-timeout).
    header: float = 20.0
    # The least a request body must average, bytes per second (--min-request-body-rate).
    min_body_rate: int = 240
    # After TERM, before the graceful drain: serving on, the health path failing
    # (--drain-delay).
    drain_delay: float = 0.0


@dataclass(frozen=True)
class Config:
    """Validated settings, read-only: one typed attribute per entry of `SETTINGS`, in
    the same order (a test checks that they match). Made by `build_config`; a derived
    copy is `dataclasses.replace(config, workers=4)`, unchecked, for values already
    valid."""

    config: str | None
    wsgi_app: str | None
    bind: list[str]
    threads: int
    thread_per_request: bool
    max_threads: int
    process_per_request: int
    queue_timeout: float
    workers: int
    worker_class: str
    worker_connections: int
    timeout: float
    max_requests: int
    max_requests_jitter: int
    max_worker_memory: int
    preload: bool
    reload: bool
    pid: str | None
    user: str | None
    group: str | None
    proc_name: str | None
    umask: int | None
    reuse_port: bool
    backlog: int
    connection_limit: int
    keep_alive: float
    client_timeout: float
    header_timeout: float
    min_request_body_rate: int
    poller: str
    graceful_timeout: float
    drain_delay: float
    health_path: str | None
    root_path: str
    raw_env: list[str]
    forwarded_allow_ips: list[str]
    secure_scheme_headers: dict[str, str]
    proxy_protocol: bool
    proxy_allow_ips: list[str]
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    limit_request_body: int
    access_logfile: str
    access_logformat: str
    error_logfile: str
    log_level: str
    stats: str | None
    certfile: str | None
    keyfile: str | None
    ca_certs: str | None
    cert_reqs: int
    ssl_version: str
    ciphers: str | None
    ssl_handshake_timeout: float
    on_starting: Hook
    on_reload: Hook
    when_ready: Hook
    pre_fork: Hook
    post_fork: Hook
    post_worker_init: Hook
    worker_int: Hook
    worker_abort: Hook
    pre_exec: Hook
    pre_request: Hook
    post_request: Hook
    child_exit: Hook
    worker_exit: Hook
    nworkers_changed: Hook
    on_exit: Hook
    ssl_context: Hook

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(
            self.keep_alive,
            self.client_timeout,
            self.graceful_timeout,
            self.header_timeout,
            self.min_request_body_rate,
            self.drain_delay,
        )

    @property
    def is_ssl(self) -> bool:
        """True when corral serves TLS: --certfile is given, as in gunicorn (whose name
        this is, and whose hooks may read it). An ssl_context hook alone does not turn
        TLS on: gunicorn's own example configuration defines one. A hook that holds
        the certificate itself (run_simple's SSLContext or "adhoc") does."""
        return self.certfile is not None or bool(
            getattr(self.ssl_context, "provides_certificate", False)
        )

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name, values as they are (not copied)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def build_config(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    file_values: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults (the table's, replaced by `defaults`, a command's own such as the Flask
    command's port 5000, and by gunicorn's FORWARDED_ALLOW_IPS in `environ`), then
    `file_values`, then `CORRAL_*` variables from `environ`,
    then `overrides`; all checked.

    `file_values` are a config file's settings by corral's names, as
    `corral.config_file.read_config_file` returns them; the `config` setting itself is
    only recorded here, never read. Raises ConfigError, naming the setting, for an
    unknown name or a bad value or combination.
    """
    values = {setting.name: setting.default for setting in SETTINGS}
    if environ is not None and _FORWARDED_ALLOW_IPS in environ:
        # gunicorn reads this variable as the setting's default, below a config file.
        values["forwarded_allow_ips"] = convert_value(
            SETTINGS_BY_NAME["forwarded_allow_ips"],
            environ[_FORWARDED_ALLOW_IPS],
            _FORWARDED_ALLOW_IPS,
        )
    for name, value in (defaults or {}).items():
        values[name] = convert_value(_known_setting(name), value, name)
    for name, value in (file_values or {}).items():
        setting = _known_setting(name)
        if setting.name == "config":
            raise ConfigError("config: a config file cannot name another config file")
        values[name] = convert_value(setting, value, name)
    for setting in SETTINGS:
        if setting.is_hook:
            continue
        if environ is not None and setting.environment_name in environ:
            values[setting.name] = convert_value(
                setting, environ[setting.environment_name], setting.environment_name
            )
    for name, value in (overrides or {}).items():
        setting = _known_setting(name)
        values[name] = convert_value(setting, value, setting.flags[-1] if setting.flags else name)
    _check_combination(values)
    return Config(**values)


_FORWARDED_ALLOW_IPS = "FORWARDED_ALLOW_IPS"


def _known_setting(name: str) -> Setting:
    try:
        return SETTINGS_BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown setting {name!r}") from None


def convert_value(setting: Setting, value: Any, source: str) -> Any:
    """`value` checked and converted by `setting`'s type; ConfigError names `source`."""
    try:
        return setting.type(value)
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None


def _check_combination(values: dict[str, Any]) -> None:
    chosen = [
        flag
        for flag, on in (
            ("--threads N", values["threads"] != 1),
            ("--thread-per-request", values["thread_per_request"]),
            ("--process-per-request N", values["process_per_request"] > 0),
        )
        if on
    ]
    if len(chosen) > 1:
        raise ConfigError(f"choose one concurrency model, not {' and '.join(chosen)}")
    if values["worker_class"] == "sync" and values["threads"] != 1:
        # As in gunicorn: asking for threads asks for the threaded worker.
        values["worker_class"] = "thread"
    if values["worker_class"] == "gevent" and chosen:
        raise ConfigError(f"--worker-class gevent runs coroutines; drop {chosen[0]}")
    if values["workers"] and values["process_per_request"]:
        raise ConfigError(
            "--process-per-request forks its own processes; it cannot run inside --workers"
        )
    if not values["bind"]:
        raise ConfigError("--bind: at least one address is needed")
    if values["keyfile"] is not None and values["certfile"] is None:
        raise ConfigError("--keyfile needs --certfile, the certificate the key belongs to")


def settings_markdown() -> str:
    """docs/settings.md, generated: `python -m corral.config > docs/settings.md`."""
    lines = [
        "# Settings",
        "",
        "Every setting can be given in a config file (`-c FILE`, a Python file assigning",
        "settings by name, e.g. `workers = 4`), as an environment variable `CORRAL_<NAME>`,",
        "in `GUNICORN_CMD_ARGS` or `CORRAL_CMD_ARGS` (extra command-line options), or on the",
        "command line; each wins over the ones before it. Server hooks can only be given in",
        "a config file. `corral.run_simple` takes settings as keywords. gunicorn's names are",
        "in [From gunicorn](from-gunicorn.md). This page is generated from `corral/config.py`.",
    ]
    sections = list(dict.fromkeys(setting.section for setting in SETTINGS))
    for section in sections:
        lines += [
            "",
            f"## {section}",
            "",
            "| setting | flags | default | meaning |",
            "|---|---|---|---|",
        ]
        for setting in SETTINGS:
            if setting.section != section:
                continue
            flags = ", ".join(f"`{flag}`" for flag in setting.flags) or "config file only"
            default = f"`{setting.default!r}`".replace("|", "\\|")
            lines.append(f"| `{setting.name}` | {flags} | {default} | {setting.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
