"""The `corral` command, its options generated from `corral.config.SETTINGS`."""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NoReturn

from corral.app_loading import AppLoadError, check_importable, load_app
from corral.config import SETTINGS, SETTINGS_BY_NAME, Config, ConfigError, Setting, build_config
from corral.config_file import (
    GUNICORN_BY_FLAG,
    gunicorn_flag_aliases,
    read_config_file,
    unsupported_message,
)
from corral.process.exit_codes import APP_LOAD_ERROR, RUNTIME_ERROR, USAGE_ERROR
from corral.process.reloader import reload_channel, report_load_failure
from corral.serving.listeners import BindError
from corral.version import __version__


class _Parser(argparse.ArgumentParser):
    """Usage errors become ConfigError, so the command prints them as one line."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def make_parser(
    prog: str = "corral",
    usage: str | None = None,
    description: str = "Serve a WSGI application. APP is MODULE:NAME or MODULE:FACTORY().",
    epilog: str | None = None,
    app_argument: bool = True,
    help_flags: Sequence[str] = ("-h", "--help"),
    left_out: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> argparse.ArgumentParser:
    """The command line, generated from `SETTINGS`; gunicorn's spellings of flags that
    corral spells differently are accepted too, without cluttering --help.

    A command built on corral's (the Flask command) describes itself with the rest:
    without the APP argument when it names the app itself, with `left_out` flags that
    mean something else there, and `defaults` shown in place of the table's."""
    parser = _Parser(
        prog=prog,
        usage=usage,
        description=description,
        epilog=epilog,
        argument_default=argparse.SUPPRESS,
        add_help=False,
    )
    if app_argument:
        parser.add_argument("app", nargs="?", metavar="APP", help="the WSGI application")
    parser.add_argument(*help_flags, action="help", help="show this help message and exit")
    parser.add_argument("-v", "--version", action="version", version=f"corral {__version__}")
    parser.add_argument(
        "--print-config", action="store_true", help="Print the settings in effect and exit."
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="Check the settings and that APP loads, then exit.",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for setting in SETTINGS:
        flags = [flag for flag in setting.flags if flag not in left_out]
        if not flags:
            continue
        group = groups.get(setting.section)
        if group is None:
            group = groups[setting.section] = parser.add_argument_group(setting.section)
        text = _help_text(setting, (defaults or {}).get(setting.name, setting.default))
        # argparse expands %-atoms in help; the access log format is full of them.
        _add_option(group, setting, flags, text.replace("%", "%%"))
    for flag, name in gunicorn_flag_aliases().items():
        if flag not in left_out:
            _add_option(parser, SETTINGS_BY_NAME[name], (flag,), argparse.SUPPRESS)
    return parser


# The help of a setting that is empty by default ends so; a command that gives it a
# default shows that instead.
_NONE_BY_DEFAULT = "; none unless named."
# Defaults better said in words than as a path.
_DEFAULTS_IN_WORDS = {"/dev/stderr": "standard error", "/dev/stdout": "standard output"}


def _help_text(setting: Setting, default: Any) -> str:
    text = setting.help
    if default != setting.default and text.endswith(_NONE_BY_DEFAULT):
        text = text[: -len(_NONE_BY_DEFAULT)] + "."
    return text + _default_note(setting, default, text)


def _default_note(setting: Setting, default: Any, text: str) -> str:
    """' (default: X)', unless there is nothing to show (a switch, None, empty) or the
    help already says what happens by default."""
    if setting.is_flag or default in (None, "", []) or "default" in text.lower():
        return ""
    if isinstance(default, str) and default in _DEFAULTS_IN_WORDS:
        shown = _DEFAULTS_IN_WORDS[default]
    elif isinstance(default, list):
        shown = ", ".join(default)
    elif isinstance(default, float) and default.is_integer():
        shown = str(int(default))
    else:
        shown = repr(default)
    return f" (default: {shown})"


def _add_option(
    parser: argparse._ActionsContainer, setting: Setting, flags: Sequence[str], text: str
) -> None:
    if setting.is_flag:
        parser.add_argument(*flags, dest=setting.name, action="store_const", const=True, help=text)
    elif setting.is_list:
        parser.add_argument(
            *flags, dest=setting.name, action="append", metavar=setting.metavar, help=text
        )
    else:
        parser.add_argument(*flags, dest=setting.name, metavar=setting.metavar, help=text)


# `corral --help` ends by pointing at the subcommands.
PROBE_EPILOG = (
    "corral probe URL [--max N] [--plot FILE] [--timeout S] measures how many requests "
    "the HTTP server at URL, corral or another, really serves at once (corral probe --help). "
    "corral top ADDRESS [--once] watches the workers and requests in flight of a corral "
    "started with --stats ADDRESS (corral top --help)."
)
# The first words that run `corral probe` or `corral top` instead of serving: an app in a
# module named probe or top is given as probe:app or top:app.
PROBE_COMMAND = "probe"
TOP_COMMAND = "top"


# Extra command-line options from the environment, the later winning: gunicorn's
# variable, read as gunicorn reads it, and corral's own.
_CMD_ARGS_VARIABLES = ("GUNICORN_CMD_ARGS", "CORRAL_CMD_ARGS")


def parse_config(
    argv: Sequence[str],
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[argparse.Namespace, Config]:
    """The command's arguments and the settings in effect, from every source.

    Precedence: defaults < config file < `CORRAL_*` variables < the options in
    `GUNICORN_CMD_ARGS` < those in `CORRAL_CMD_ARGS` < `argv`. The config file is the
    one `--config` names (in `argv`, else `CORRAL_CMD_ARGS`, else `GUNICORN_CMD_ARGS`,
    else `CORRAL_CONFIG`), run afresh on every call: the master calls this again on HUP.
    `environ` defaults to `os.environ`; `defaults` replace the table's defaults (a
    command's own, below everything else). Raises ConfigError, one line, for anything
    wrong in any source, naming the variable when the fault is in one.
    """
    environ = os.environ if environ is None else environ
    parser = make_parser(epilog=PROBE_EPILOG)
    given: dict[str, Any] = {}
    for variable in _CMD_ARGS_VARIABLES:
        try:
            extra = shlex.split(environ.get(variable, ""))
        except ValueError as error:
            raise ConfigError(f"{variable}: {error}") from None
        given.update(vars(_parse_arguments(parser, extra, f"{variable}: ")))
    given.update(vars(_parse_arguments(parser, argv, "")))
    overrides = {setting.name: given[setting.name] for setting in SETTINGS if setting.name in given}
    path = overrides.get("config", environ.get(SETTINGS_BY_NAME["config"].environment_name))
    file_values = read_config_file(path) if path else None
    config = build_config(environ, overrides, file_values, defaults)
    return argparse.Namespace(**given), config


def _parse_arguments(
    parser: argparse.ArgumentParser, argv: Sequence[str], source: str
) -> argparse.Namespace:
    try:
        arguments, unknown = parser.parse_known_args(argv)
    except ConfigError as error:
        raise ConfigError(f"{source}{error}") from None
    # An unknown option comes first: argparse takes the value after it (`--wokers 2`)
    # as the application, so the leftover arguments alone would mislead.
    for argument in unknown:
        if argument.startswith("-") and argument != "-":
            flag = argument.split("=", 1)[0]
            entry = GUNICORN_BY_FLAG.get(flag)
            if entry is not None and entry.corral is None:
                raise ConfigError(f"{source}{unsupported_message(entry, flag)}")
            raise ConfigError(f"{source}{_unknown_option(parser, flag)}")
    if unknown:
        raise ConfigError(f"{source}unexpected argument {unknown[0]!r}: give one APP")
    return arguments


def _unknown_option(parser: argparse.ArgumentParser, flag: str) -> str:
    """One line for an option no setting has, with the closest one there is."""
    # Only the options --help shows: gunicorn's spellings are accepted, not suggested.
    shown = [
        option
        for option, action in parser._option_string_actions.items()
        if action.help != argparse.SUPPRESS
    ]
    if len(flag) == 2 and flag.swapcase() in shown:
        # Too short for difflib: -W for -w.
        close = [flag.swapcase()]
    else:
        known = [option for option in shown if option.startswith("--")]
        close = difflib.get_close_matches(flag, known, n=1)
    if close:
        return f"unknown option {flag}; did you mean {close[0]}?"
    return f"unknown option {flag} (corral --help lists the options)"


def print_config(config: Config) -> None:
    """Each setting and its value; hooks by their function's name."""
    for setting in SETTINGS:
        value = getattr(config, setting.name)
        shown = f"<function {value.__qualname__}>" if setting.is_hook and value else repr(value)
        print(f"{setting.name:28} = {shown}")


def main(
    argv: Sequence[str] | None = None,
    app_loader: Callable[[], Any] | None = None,
    exec_argv: list[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> int:
    """Run the command line; the exit status.

    `app_loader` is given when a caller (the Flask command) knows the application: it
    returns it, or raises `AppLoadError`, and is called only in the process that serves
    (not for --print-config, nor in the --reload supervisor), so a broken app is told in
    short and --reload waits for its fix. `exec_argv` says how to start the same command
    again (USR2, --reload), `defaults` are the caller's own defaults for settings (see
    `parse_config`). `corral probe ...` runs the probe instead (`corral.probe.command`),
    `corral top ...` the live view of a server's stats (`corral.top.command`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if app_loader is None and argv[:1] == [PROBE_COMMAND]:
        from corral.probe.command import main as probe

        return probe(argv[1:])
    if app_loader is None and argv[:1] == [TOP_COMMAND]:
        from corral.top.command import main as top

        return top(argv[1:])
    app: Any = None
    try:
        arguments, config = parse_config(argv, defaults=defaults)
    except ConfigError as error:
        print(f"corral: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    if app_loader is not None and getattr(arguments, "app", None):
        print(
            f"corral: error: unexpected argument {arguments.app!r}: the application is "
            "already given",
            file=sys.stderr,
        )
        return USAGE_ERROR
    if getattr(arguments, "print_config", False):
        try:
            print_config(config)
            sys.stdout.flush()
        except BrokenPipeError:
            # `corral --print-config | head`: the reader has what it wanted. Point
            # stdout at nothing so the interpreter's own flush at exit stays quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    from corral.process.setup import set_environment

    set_environment(config)
    spec = getattr(arguments, "app", None) or config.wsgi_app
    if app_loader is None and not spec:
        print("corral: error: name the application, e.g. corral myapp:app", file=sys.stderr)
        return USAGE_ERROR
    if app_loader is not None and config.worker_class == "gevent":
        print(
            "corral: error: -k gevent must patch before the app is imported; "
            "run: corral -k gevent MODULE:APP",
            file=sys.stderr,
        )
        return USAGE_ERROR
    check_only = getattr(arguments, "check_config", False)
    if config.reload and not check_only and reload_channel() is None:
        from corral.process.reloader import run_with_reloader

        try:
            return run_with_reloader(config, exec_argv or _this_command(argv))
        except BindError as error:
            print(f"corral: error: {error}", file=sys.stderr)
            return RUNTIME_ERROR
    supervised = bool(config.workers)
    try:
        if config.worker_class == "gevent":
            from corral.workers.coroutines import check_gevent_installed

            # Before anything is bound or announced.
            check_gevent_installed()
        if app_loader is not None:
            from corral.process.setup import prepare_process

            prepare_process(config)
            app = app_loader()
        elif check_only or not supervised or config.preload:
            from corral.process.setup import prepare_process

            prepare_process(config)
            app = load_app(str(spec))
        else:
            # Workers import the app; say now, in one line, if it cannot be found.
            check_importable(str(spec))
    except AppLoadError as error:
        print(f"{error.traceback_text}corral: error: {error}", file=sys.stderr)
        report_load_failure(error)
        return APP_LOAD_ERROR
    except ConfigError as error:
        # A setting that cannot be honoured here, such as -k gevent without gevent.
        print(f"corral: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    if check_only:
        if config.is_ssl:
            from corral.serving.assembly import make_server_tls

            try:
                # The certificate and key are read as the server will read them.
                make_server_tls(config)
            except ConfigError as error:
                print(f"corral: error: {error}", file=sys.stderr)
                return USAGE_ERROR
        print("corral: configuration OK")
        return 0
    from corral.entry import serve, serve_with_workers
    from corral.serving.assembly import PidFileError

    try:
        if supervised:

            def reload_config() -> Config:
                return parse_config(argv, defaults=defaults)[1]

            return serve_with_workers(
                spec, app, config, reload_config, exec_argv or _this_command(argv)
            )
        serve(app, config)
    except (BindError, PidFileError) as error:
        print(f"corral: error: {error}", file=sys.stderr)
        return RUNTIME_ERROR
    except ConfigError as error:
        # The TLS settings name files that make no context (a key that is not the
        # certificate's, say): found only once they are read.
        print(f"corral: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    return 0


def _this_command(argv: list[str]) -> list[str]:
    """How to start this same command again: for USR2's new master and --reload's
    fresh process."""
    return [sys.executable, "-m", "corral", *argv]


if __name__ == "__main__":
    sys.exit(main())
