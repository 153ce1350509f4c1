"""The `corral` command, its options generated from `corral.config.SETTINGS`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from corral import __version__
from corral.app_loading import AppLoadError, load_app
from corral.config import SETTINGS, Config, ConfigError, build_config
from corral.sockets import BindError

USAGE_ERROR = 2
APP_LOAD_ERROR = 4


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Serve a WSGI application. APP is MODULE:NAME or MODULE:FACTORY().",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("app", nargs="?", metavar="APP", help="the WSGI application")
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
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
        if not setting.flags:
            continue
        group = groups.get(setting.section)
        if group is None:
            group = groups[setting.section] = parser.add_argument_group(setting.section)
        # argparse expands %-atoms in help; the access log format is full of them.
        text = setting.help.replace("%", "%%")
        default = f" (default: {setting.default!r})".replace("%", "%%")
        if setting.is_flag:
            group.add_argument(
                *setting.flags, dest=setting.name, action="store_const", const=True, help=text
            )
        elif setting.is_list:
            group.add_argument(
                *setting.flags,
                dest=setting.name,
                action="append",
                metavar=setting.metavar,
                help=text + default,
            )
        else:
            group.add_argument(
                *setting.flags, dest=setting.name, metavar=setting.metavar, help=text + default
            )
    return parser


def parse_config(argv: Sequence[str]) -> tuple[argparse.Namespace, Config]:
    parser = make_parser()
    arguments = parser.parse_args(argv)
    overrides = {
        setting.name: getattr(arguments, setting.name)
        for setting in SETTINGS
        if hasattr(arguments, setting.name)
    }
    return arguments, build_config(os.environ, overrides)


def print_config(config: Config) -> None:
    for setting in SETTINGS:
        print(f"{setting.name:28} = {getattr(config, setting.name)!r}")


def main(argv: Sequence[str] | None = None, app: Any = None) -> int:
    """Run the command line; `app` is given when a caller (the Flask command) loaded it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        arguments, config = parse_config(argv)
    except ConfigError as error:
        print(f"corral: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    if getattr(arguments, "print_config", False):
        print_config(config)
        return 0
    spec = getattr(arguments, "app", None)
    if app is None:
        if not spec:
            print("corral: error: name the application, e.g. corral myapp:app", file=sys.stderr)
            return USAGE_ERROR
        try:
            app = load_app(spec)
        except AppLoadError as error:
            print(f"corral: error: {error}", file=sys.stderr)
            return APP_LOAD_ERROR
    if getattr(arguments, "check_config", False):
        print("corral: configuration OK")
        return 0
    from corral.server import serve

    try:
        serve(app, config)
    except BindError as error:
        print(f"corral: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
