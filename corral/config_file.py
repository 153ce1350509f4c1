"""`-c FILE`: a Python file whose module-level names are settings, as with gunicorn.

The file is run, and each top-level name it leaves is a setting: corral's names
(`keep_alive = 10`), gunicorn's names for the same settings (`keepalive = 10`), and the
server hooks as functions (`def post_fork(server, worker): ...`). Names starting with
`_`, imported modules, and functions or classes not named after a setting are the file's
own helpers and are left alone; any other name must be a setting. A gunicorn setting
corral lacks is accepted at gunicorn's default value (`spew = False`), which asks for
nothing corral does not do; any other value is refused with what to do instead, so none
is silently dropped. A value of None leaves any setting at its default, as in gunicorn.

The file is run afresh on every read, so a HUP that reloads the configuration sees the
file as it is now.

`python -m corral.config_file` prints the generated part of docs/from-gunicorn.md.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.config import SETTINGS, SETTINGS_BY_NAME, ConfigError, convert_value


@dataclass(frozen=True)
class GunicornSetting:
    """One gunicorn setting: its config-file name and flags, and corral's equivalent."""

    name: str
    flags: tuple[str, ...]
    # corral's setting, or None when corral has no equivalent.
    corral: str | None
    # For a setting corral lacks: what to do instead.
    instead: str = ""
    # For a setting corral lacks: gunicorn's default, accepted since it asks for nothing.
    default: Any = None


_RAGGED_EOF = (
    "drop it; a client that closes without TLS's close_notify ends its connection as a "
    "plain close does"
)
_HANDSHAKE = (
    "drop it; corral always finishes the TLS handshake in its event loop, before the "
    "connection reaches a worker"
)
_FOREGROUND = "run corral in the foreground under systemd, Docker or supervisord"
_FORWARDER_HEADERS = (
    "corral drops header names holding '_', so no header can set SCRIPT_NAME or "
    "PATH_INFO; a trusted proxy sets SCRIPT_NAME with X-Forwarded-Prefix"
)
_LOGGING = (
    "log with --error-logfile and --access-logfile; for anything else, add handlers to "
    "the 'corral' logger from the app"
)
_SYSLOG = "log to standard error and let journald or the container runtime collect it"
_STATSD = "no StatsD; --stats serves the same metrics for Prometheus to scrape, and JSON"
_PASTE = "load the application from a module: corral MODULE:NAME"
_STRICT = "corral parses requests strictly, with no switch to relax it"

GUNICORN_SETTINGS: tuple[GunicornSetting, ...] = (
    GunicornSetting("config", ("-c", "--config"), "config"),
    GunicornSetting("wsgi_app", (), "wsgi_app"),
    GunicornSetting("bind", ("-b", "--bind"), "bind"),
    GunicornSetting("backlog", ("--backlog",), "backlog"),
    GunicornSetting("workers", ("-w", "--workers"), "workers"),
    GunicornSetting("worker_class", ("-k", "--worker-class"), "worker_class"),
    GunicornSetting("threads", ("--threads",), "threads"),
    GunicornSetting("worker_connections", ("--worker-connections",), "worker_connections"),
    GunicornSetting("max_requests", ("--max-requests",), "max_requests"),
    GunicornSetting("max_requests_jitter", ("--max-requests-jitter",), "max_requests_jitter"),
    GunicornSetting("timeout", ("-t", "--timeout"), "timeout"),
    GunicornSetting("graceful_timeout", ("--graceful-timeout",), "graceful_timeout"),
    GunicornSetting("keepalive", ("--keep-alive",), "keep_alive"),
    GunicornSetting("limit_request_line", ("--limit-request-line",), "limit_request_line"),
    GunicornSetting("limit_request_fields", ("--limit-request-fields",), "limit_request_fields"),
    GunicornSetting(
        "limit_request_field_size", ("--limit-request-field_size",), "limit_request_field_size"
    ),
    GunicornSetting("reload", ("--reload",), "reload"),
    GunicornSetting(
        "reload_engine", ("--reload-engine",), None, "drop it; --reload picks its own way", "auto"
    ),
    GunicornSetting(
        "reload_extra_files",
        ("--reload-extra-file",),
        None,
        "send HUP to the master when those files change",
        [],
    ),
    GunicornSetting("spew", ("--spew",), None, "trace the app with a debugger", False),
    GunicornSetting(
        "check_config",
        ("--check-config",),
        None,
        "give --check-config on the command line",
        False,
    ),
    GunicornSetting(
        "print_config",
        ("--print-config",),
        None,
        "give --print-config on the command line",
        False,
    ),
    GunicornSetting("preload_app", ("--preload",), "preload"),
    GunicornSetting(
        "sendfile",
        ("--no-sendfile",),
        None,
        "drop it; corral sends wsgi.file_wrapper files with sendfile() (copied under TLS)",
    ),
    GunicornSetting("reuse_port", ("--reuse-port",), "reuse_port"),
    GunicornSetting(
        "chdir",
        ("--chdir",),
        None,
        "start corral in that directory (systemd: WorkingDirectory=)",
    ),
    GunicornSetting("daemon", ("-D", "--daemon"), None, _FOREGROUND, False),
    GunicornSetting("raw_env", ("-e", "--env"), "raw_env"),
    GunicornSetting("pidfile", ("-p", "--pid"), "pid"),
    GunicornSetting(
        "worker_tmp_dir",
        ("--worker-tmp-dir",),
        None,
        "drop it; workers report to the master through shared memory, not a file",
    ),
    GunicornSetting("user", ("-u", "--user"), "user"),
    GunicornSetting("group", ("-g", "--group"), "group"),
    GunicornSetting("umask", ("-m", "--umask"), "umask"),
    GunicornSetting(
        "initgroups", ("--initgroups",), None, "give the group to run as with --group", False
    ),
    GunicornSetting("tmp_upload_dir", (), None, "drop it; request bodies are streamed to the app"),
    GunicornSetting("secure_scheme_headers", (), "secure_scheme_headers"),
    GunicornSetting("forwarded_allow_ips", ("--forwarded-allow-ips",), "forwarded_allow_ips"),
    GunicornSetting(
        "forwarder_headers",
        ("--forwarder-headers",),
        None,
        _FORWARDER_HEADERS,
        "SCRIPT_NAME,PATH_INFO",
    ),
    GunicornSetting("accesslog", ("--access-logfile",), "access_logfile"),
    GunicornSetting(
        "disable_redirect_access_to_syslog",
        ("--disable-redirect-access-to-syslog",),
        None,
        _SYSLOG,
        False,
    ),
    GunicornSetting("access_log_format", ("--access-logformat",), "access_logformat"),
    GunicornSetting("errorlog", ("--error-logfile", "--log-file"), "error_logfile"),
    GunicornSetting("loglevel", ("--log-level",), "log_level"),
    GunicornSetting(
        "capture_output",
        ("--capture-output",),
        None,
        "let the service manager collect standard output and error",
        False,
    ),
    GunicornSetting(
        "logger_class", ("--logger-class",), None, _LOGGING, "gunicorn.glogging.Logger"
    ),
    GunicornSetting("logconfig", ("--log-config",), None, _LOGGING),
    GunicornSetting("logconfig_dict", (), None, _LOGGING, {}),
    GunicornSetting("logconfig_json", ("--log-config-json",), None, _LOGGING),
    GunicornSetting("syslog_addr", ("--log-syslog-to",), None, _SYSLOG, "udp://localhost:514"),
    GunicornSetting("syslog", ("--log-syslog",), None, _SYSLOG, False),
    GunicornSetting("syslog_prefix", ("--log-syslog-prefix",), None, _SYSLOG),
    GunicornSetting("syslog_facility", ("--log-syslog-facility",), None, _SYSLOG, "user"),
    GunicornSetting(
        "enable_stdio_inheritance", ("-R", "--enable-stdio-inheritance"), None, _FOREGROUND, False
    ),
    GunicornSetting("statsd_host", ("--statsd-host",), None, _STATSD),
    GunicornSetting("dogstatsd_tags", ("--dogstatsd-tags",), None, _STATSD, ""),
    GunicornSetting("statsd_prefix", ("--statsd-prefix",), None, _STATSD, ""),
    GunicornSetting("proc_name", ("-n", "--name"), "proc_name"),
    GunicornSetting("default_proc_name", (), None, "set proc_name", "gunicorn"),
    GunicornSetting("pythonpath", ("--pythonpath",), None, "set PYTHONPATH"),
    GunicornSetting("paste", ("--paste", "--paster"), None, _PASTE),
    GunicornSetting("raw_paste_global_conf", ("--paste-global",), None, _PASTE, []),
    GunicornSetting("proxy_protocol", ("--proxy-protocol",), "proxy_protocol"),
    GunicornSetting("proxy_allow_ips", ("--proxy-allow-from",), "proxy_allow_ips"),
    GunicornSetting("keyfile", ("--keyfile",), "keyfile"),
    GunicornSetting("certfile", ("--certfile",), "certfile"),
    GunicornSetting("ssl_version", ("--ssl-version",), "ssl_version"),
    GunicornSetting("cert_reqs", ("--cert-reqs",), "cert_reqs"),
    GunicornSetting("ca_certs", ("--ca-certs",), "ca_certs"),
    GunicornSetting("suppress_ragged_eofs", ("--suppress-ragged-eofs",), None, _RAGGED_EOF, True),
    GunicornSetting(
        "do_handshake_on_connect", ("--do-handshake-on-connect",), None, _HANDSHAKE, False
    ),
    GunicornSetting("ciphers", ("--ciphers",), "ciphers"),
    GunicornSetting("strip_header_spaces", ("--strip-header-spaces",), None, _STRICT, False),
    GunicornSetting(
        "permit_unconventional_http_method",
        ("--permit-unconventional-http-method",),
        None,
        _STRICT,
        False,
    ),
    GunicornSetting(
        "permit_unconventional_http_version",
        ("--permit-unconventional-http-version",),
        None,
        _STRICT,
        False,
    ),
    GunicornSetting("casefold_http_method", ("--casefold-http-method",), None, _STRICT, False),
    GunicornSetting("header_map", ("--header-map",), None, _STRICT, "drop"),
)
GUNICORN_BY_NAME = {entry.name: entry for entry in GUNICORN_SETTINGS}
GUNICORN_BY_FLAG = {flag: entry for entry in GUNICORN_SETTINGS for flag in entry.flags}


def gunicorn_flag_aliases() -> dict[str, str]:
    """gunicorn's flags that corral spells differently: flag -> corral's setting."""
    return {
        flag: entry.corral
        for entry in GUNICORN_SETTINGS
        if entry.corral is not None
        for flag in entry.flags
        if flag not in SETTINGS_BY_NAME[entry.corral].flags
    }


def unsupported_message(entry: GunicornSetting, spelled: str) -> str:
    """One line for a gunicorn setting corral lacks, given as `spelled`."""
    return f"{spelled} is a gunicorn setting corral does not support: {entry.instead}"


def read_config_file(path: str) -> dict[str, Any]:
    """Run the config file at `path`; its settings by corral's names, values checked.

    Raises ConfigError, one line naming the file, when it cannot be read, raises while
    running (with the line and the exception), names an unknown setting (with the
    closest known name), a gunicorn setting corral lacks (with what to do instead), the
    same setting twice (by both names), or a value the setting refuses.
    """
    namespace = _run(path)
    values: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for name, value in namespace.items():
        setting_name = _setting_name(path, name, value)
        if setting_name is None or value is None:
            continue
        if setting_name in given_as:
            raise ConfigError(
                f"{path}: {given_as[setting_name]} and {name} both set {setting_name}"
            )
        given_as[setting_name] = name
        if setting_name == "post_request":
            value = _post_request_with_four_arguments(value)
        values[setting_name] = convert_value(
            SETTINGS_BY_NAME[setting_name], value, f"{path}: {name}"
        )
    return values


def _run(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            source = file.read()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    # A fresh namespace on every read: nothing carries over from one read to the next.
    namespace: dict[str, Any] = {"__file__": os.path.abspath(path), "__name__": "__config__"}
    try:
        exec(compile(source, path, "exec"), namespace)
    except Exception as error:
        raise ConfigError(f"{path}{_line_of(error, path)}: {_summary(error)}") from None
    return namespace


def _line_of(error: Exception, path: str) -> str:
    if isinstance(error, SyntaxError) and error.lineno:
        return f", line {error.lineno}"
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename == path
    ]
    return f", line {lines[-1]}" if lines else ""


def _summary(error: Exception) -> str:
    text = error.msg if isinstance(error, SyntaxError) else str(error)
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__


def _setting_name(path: str, name: str, value: Any) -> str | None:
    """corral's name for the setting `name` gives, or None for one of the file's helpers."""
    if name.startswith("_") or inspect.ismodule(value):
        return None
    if name in SETTINGS_BY_NAME:
        if name == "config":
            raise ConfigError(f"{path}: config: a config file cannot name another one")
        return name
    entry = GUNICORN_BY_NAME.get(name)
    if entry is not None:
        if entry.corral is None:
            if value is None or value == entry.default:
                # gunicorn's "not set", or its default: sample configs list every
                # setting so, and neither asks for anything corral does not do.
                return None
            raise ConfigError(f"{path}: {unsupported_message(entry, name)}")
        return entry.corral
    if inspect.isfunction(value) or inspect.isclass(value):
        return None
    known = [*SETTINGS_BY_NAME, *GUNICORN_BY_NAME]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "a helper's name must start with _"
    raise ConfigError(f"{path}: unknown setting {name!r} ({hint})")


def _post_request_with_four_arguments(hook: Any) -> Any:
    """gunicorn also takes post_request(worker, req) and (worker, req, environ)."""
    if not callable(hook):
        return hook
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):
        return hook
    kinds = [parameter.kind for parameter in parameters]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return hook
    positional = sum(
        kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for kind in kinds
    )
    if positional not in (2, 3):
        return hook
    original: Callable[..., Any] = hook

    @functools.wraps(original)
    def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> Any:
        return original(*(worker, req, environ)[:positional])

    return post_request


def gunicorn_markdown() -> str:
    """The generated part of docs/from-gunicorn.md: options side by side, corral's own
    settings, and the hooks."""
    aliases = gunicorn_flag_aliases()
    lines = [
        "| gunicorn config file | gunicorn flags | corral | notes |",
        "|---|---|---|---|",
    ]
    for entry in GUNICORN_SETTINGS:
        flags = ", ".join(f"`{flag}`" for flag in entry.flags) or "config file only"
        if entry.corral is None:
            corral = "not supported"
            notes = entry.instead + "."
            if entry.default is not None:
                shown = f"`{entry.default!r}`".replace("|", "\\|")
                notes += f" gunicorn's default, {shown}, is accepted."
        else:
            setting = SETTINGS_BY_NAME[entry.corral]
            corral = " ".join(f"`{name}`" for name in (setting.name, *setting.flags))
            spellings = [f"`{flag}`" for flag in entry.flags if flag in aliases]
            notes = f"{', '.join(spellings)} is accepted too." if spellings else ""
        lines.append(f"| `{entry.name}` | {flags} | {corral} | {notes} |")
    covered = {entry.corral for entry in GUNICORN_SETTINGS}
    only_corral = [
        setting for setting in SETTINGS if setting.name not in covered and not setting.is_hook
    ]
    lines += [
        "",
        "Settings corral has and gunicorn does not (see [Settings](settings.md)): "
        + ", ".join(f"`{setting.flags[-1]}`" for setting in only_corral)
        + ".",
        "",
        "### Server hooks",
        "",
        "Same names and arguments as gunicorn's, given as functions in the config file:",
        "",
    ]
    for setting in SETTINGS:
        if setting.is_hook:
            call, _, when = setting.help.partition(": ")
            lines.append(f"- `{call}`: {when}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(gunicorn_markdown(), end="")
