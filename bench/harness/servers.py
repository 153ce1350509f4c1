"""The servers compared, each in the configurations its own documentation gives.

A variant belongs to one or both concurrency profiles:
- "cpu": the configuration for fast, CPU-bound apps (scenarios A, B, D);
- "io": the configuration for apps that wait, sized for 200 connections (scenario C).
Each variant runs as one server process (plus its master, where the server has
one) pinned to CPU 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CPU = "cpu"
IO = "io"


@dataclass(frozen=True)
class ServerVariant:
    family: str
    """What --only matches: corral, gunicorn, waitress, granian, cheroot, uwsgi, bjoern."""
    label: str
    profiles: frozenset[str]
    argv_template: tuple[str, ...]
    """Tokens formatted with python, bin, host, port and app."""
    import_name: str
    """Module that must import in the bench environment, else the variant is skipped."""
    in_quick: bool = False
    reference: str | None = None
    """Name under which this variant is a ratio reference in the report."""

    def argv(self, python: Path, host: str, port: int, app: str) -> list[str]:
        values = {
            "python": str(python),
            "bin": str(python.parent),
            "host": host,
            "port": str(port),
            "app": app,
        }
        return [token.format(**values) for token in self.argv_template]


def _variant(
    family: str,
    label: str,
    profiles: set[str],
    argv: str,
    import_name: str,
    *,
    in_quick: bool = False,
    reference: str | None = None,
) -> ServerVariant:
    return ServerVariant(
        family=family,
        label=label,
        profiles=frozenset(profiles),
        argv_template=tuple(argv.split()),
        import_name=import_name,
        in_quick=in_quick,
        reference=reference,
    )


_CORRAL = "{python} -m corral -b {host}:{port}"
_GUNICORN = "{bin}/gunicorn -w 1 -b {host}:{port} --log-level warning"
_WAITRESS = "{bin}/waitress-serve --listen={host}:{port}"
_GRANIAN = (
    "{bin}/granian --interface wsgi --host {host} --port {port} --workers 1 --log-level warning"
)
# --die-on-term because uWSGI treats TERM as "reload" by default.
_UWSGI = "{bin}/uwsgi --processes 1 --disable-logging --die-on-term --listen 1024"

SERVER_VARIANTS: tuple[ServerVariant, ...] = (
    _variant(
        "corral",
        "corral --threads 1",
        {CPU},
        f"{_CORRAL} --threads 1 apps:{{app}}",
        "corral",
        in_quick=True,
    ),
    _variant(
        "corral", "corral --threads 8", {CPU}, f"{_CORRAL} --threads 8 apps:{{app}}", "corral"
    ),
    _variant(
        "corral",
        "corral --threads 200",
        {IO},
        f"{_CORRAL} --threads 200 apps:{{app}}",
        "corral",
        in_quick=True,
    ),
    _variant(
        "corral",
        "corral --thread-per-request",
        {CPU, IO},
        f"{_CORRAL} --thread-per-request apps:{{app}}",
        "corral",
        in_quick=True,
    ),
    _variant(
        "corral",
        "corral --process-per-request 4",
        {CPU},
        f"{_CORRAL} --process-per-request 4 apps:{{app}}",
        "corral",
    ),
    _variant("gunicorn", "gunicorn sync", {CPU}, f"{_GUNICORN} apps:{{app}}", "gunicorn"),
    _variant(
        "gunicorn",
        "gunicorn gthread --threads 8",
        {CPU},
        f"{_GUNICORN} -k gthread --threads 8 apps:{{app}}",
        "gunicorn",
        in_quick=True,
        reference="gunicorn gthread",
    ),
    _variant(
        "gunicorn",
        "gunicorn gthread --threads 200",
        {IO},
        f"{_GUNICORN} -k gthread --threads 200 apps:{{app}}",
        "gunicorn",
        in_quick=True,
        reference="gunicorn gthread",
    ),
    _variant(
        "gunicorn",
        "gunicorn gevent",
        {CPU, IO},
        f"{_GUNICORN} -k gevent --worker-connections 1000 apps:{{app}}",
        "gevent",
    ),
    _variant(
        "waitress",
        "waitress (4 threads, default)",
        {CPU},
        f"{_WAITRESS} apps:{{app}}",
        "waitress",
        in_quick=True,
        reference="waitress",
    ),
    # waitress stops accepting at 100 open connections by default, which alone
    # would cap scenario C at half its ideal whatever the thread count.
    _variant(
        "waitress",
        "waitress --threads=200 --connection-limit=200",
        {IO},
        f"{_WAITRESS} --threads=200 --connection-limit=200 apps:{{app}}",
        "waitress",
        in_quick=True,
        reference="waitress",
    ),
    _variant(
        "granian",
        "granian (default)",
        {CPU},
        f"{_GRANIAN} apps:{{app}}",
        "granian",
        in_quick=True,
        reference="granian",
    ),
    _variant(
        "granian",
        "granian --blocking-threads 200",
        {IO},
        f"{_GRANIAN} --blocking-threads 200 apps:{{app}}",
        "granian",
        in_quick=True,
        reference="granian",
    ),
    _variant(
        "cheroot",
        "cheroot (10 threads, default)",
        {CPU},
        "{python} -m cheroot --bind {host}:{port} apps:{app}",
        "cheroot",
    ),
    _variant(
        "cheroot",
        "cheroot --threads 200",
        {IO},
        "{python} -m cheroot --bind {host}:{port} --threads 200 apps:{app}",
        "cheroot",
    ),
    # One synchronous uWSGI process on --http11-socket serves one keep-alive
    # connection until it closes and starves the other 31 unseen (wrk times only
    # answered requests), so this variant closes each connection, as gunicorn sync does.
    ServerVariant(
        family="uwsgi",
        label="uwsgi (1 process, closes connections)",
        profiles=frozenset({CPU}),
        argv_template=(
            *f"{_UWSGI} --http-socket {{host}}:{{port}}".split(),
            "--add-header",
            "Connection: close",
            "--module",
            "apps:{app}",
        ),
        import_name="pyuwsgi",
    ),
    _variant(
        "uwsgi",
        "uwsgi --threads 200",
        {IO},
        f"{_UWSGI} --http11-socket {{host}}:{{port}} --threads 200 --module apps:{{app}}",
        "pyuwsgi",
    ),
    _variant(
        "bjoern", "bjoern", {CPU}, "{python} serve_bjoern.py apps:{app} {host} {port}", "bjoern"
    ),
)

REFERENCE_NAMES = ("granian", "waitress", "gunicorn gthread")


def select_variants(profile: str, families: set[str] | None, quick: bool) -> list[ServerVariant]:
    """Variants for a profile, limited to the --only families and to the quick subset."""
    return [
        variant
        for variant in SERVER_VARIANTS
        if profile in variant.profiles
        and (families is None or variant.family in families)
        and (variant.in_quick or not quick)
    ]
