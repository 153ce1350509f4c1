"""The servers compared, each in the configurations its own documentation gives.

A variant belongs to one or more profiles:
- "cpu": the configuration for fast, CPU-bound apps (scenarios A, B, D);
- "io": the configuration for apps that wait, sized for 200 connections (scenario C);
- "io-workers": as "io", split over two worker processes (scenario C2);
- "memory": one worker serving the Flask app, for the idle memory section (M);
- "mixed": the concurrent configuration for fast requests among slow ones (scenario E);
- "tls": as "cpu", over HTTPS with the run's certificate (scenario T).
In A to E and T each variant runs as one server process (plus its master, where the
server has one) pinned to CPU 0; in C2 its master and two workers share both CPUs.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from harness.certificates import CertificateFiles

CPU = "cpu"
IO = "io"
IO_WORKERS = "io-workers"
MEMORY = "memory"
MIXED = "mixed"
TLS = "tls"


@dataclass(frozen=True)
class ServerVariant:
    family: str
    """What --only matches: corral, gunicorn, waitress, granian, cheroot, uwsgi, bjoern."""
    label: str
    profiles: frozenset[str]
    argv_template: tuple[str, ...]
    """Tokens formatted with python, bin, host, port and app; certfile and keyfile for TLS."""
    import_name: str
    """Module that must import in the bench environment, else the variant is skipped."""
    in_quick: bool = False
    reference: str | None = None
    """Name under which this variant is a ratio reference in the report."""

    def argv(
        self,
        python: Path,
        host: str,
        port: int,
        app: str,
        certificate: CertificateFiles | None = None,
    ) -> list[str]:
        """The command line; raises KeyError for a TLS template given no certificate."""
        values = {
            "python": str(python),
            "bin": str(python.parent),
            "host": host,
            "port": str(port),
            "app": app,
        }
        if certificate is not None:
            values["certfile"] = str(certificate.certificate)
            values["keyfile"] = str(certificate.key)
        return [token.format(**values) for token in self.argv_template]

    def is_installed(self) -> bool:
        # corral is always tried: a broken corral must show as "failed to start".
        return self.family == "corral" or importlib.util.find_spec(self.import_name) is not None


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


def _uwsgi_closing(label: str, profile: str, options: str) -> ServerVariant:
    """uWSGI on --http-socket, adding `Connection: close` to every answer: on
    --http11-socket each process or thread holds one keep-alive connection until it
    closes, and wrk's other connections wait unseen."""
    return ServerVariant(
        family="uwsgi",
        label=label,
        profiles=frozenset({profile}),
        argv_template=(
            *f"{_UWSGI} --http-socket {{host}}:{{port}} {options}".split(),
            "--add-header",
            "Connection: close",
            "--module",
            "apps:{app}",
        ),
        import_name="pyuwsgi",
    )


_CORRAL = "{python} -m corral -b {host}:{port}"
_GUNICORN = "{bin}/gunicorn -w 1 -b {host}:{port} --log-level warning"
_WAITRESS = "{bin}/waitress-serve --listen={host}:{port}"
_GRANIAN = (
    "{bin}/granian --interface wsgi --host {host} --port {port} --workers 1 --log-level warning"
)
_GUNICORN_2 = "{bin}/gunicorn -w 2 -b {host}:{port} --log-level warning"
_GRANIAN_2 = _GRANIAN.replace("--workers 1", "--workers 2")
# --die-on-term because uWSGI treats TERM as "reload" by default.
_UWSGI = "{bin}/uwsgi --processes 1 --disable-logging --die-on-term --listen 1024"
# With more than one process uWSGI's documentation has a master supervise them.
_UWSGI_2 = "{bin}/uwsgi --master --processes 2 --disable-logging --die-on-term --listen 1024"
_CORRAL_TLS = f"{_CORRAL} --certfile {{certfile}} --keyfile {{keyfile}}"
_GUNICORN_TLS = f"{_GUNICORN} --certfile {{certfile}} --keyfile {{keyfile}}"
_GRANIAN_TLS = f"{_GRANIAN} --ssl-certificate {{certfile}} --ssl-keyfile {{keyfile}}"

SERVER_VARIANTS: tuple[ServerVariant, ...] = (
    _variant(
        "corral",
        "corral --threads 1",
        {CPU, MEMORY},
        f"{_CORRAL} --threads 1 apps:{{app}}",
        "corral",
        in_quick=True,
    ),
    # The same two with the slot table written and --stats listening (never scraped
    # during the run): the difference is what seeing the concurrency costs.
    _variant(
        "corral",
        "corral --threads 1 --stats",
        {CPU},
        f"{_CORRAL} --threads 1 --stats {{host}}:0 apps:{{app}}",
        "corral",
        in_quick=True,
    ),
    _variant(
        "corral",
        "corral --threads 8",
        {CPU, MIXED},
        f"{_CORRAL} --threads 8 apps:{{app}}",
        "corral",
    ),
    _variant(
        "corral",
        "corral --threads 8 --stats",
        {CPU},
        f"{_CORRAL} --threads 8 --stats {{host}}:0 apps:{{app}}",
        "corral",
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
        {CPU, IO, MIXED},
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
    _variant(
        "corral",
        "corral -w 1 (sync worker)",
        {MEMORY},
        f"{_CORRAL} -w 1 apps:{{app}}",
        "corral",
    ),
    _variant(
        "corral",
        "corral -w 1 -k thread --threads 8",
        {MEMORY},
        f"{_CORRAL} -w 1 -k thread --threads 8 apps:{{app}}",
        "corral",
    ),
    _variant(
        "corral",
        "corral -w 1 -k gevent",
        {MEMORY},
        f"{_CORRAL} -w 1 -k gevent apps:{{app}}",
        "corral",
    ),
    _variant(
        "corral",
        "corral -w 2 -k thread --threads 100",
        {IO_WORKERS},
        f"{_CORRAL} -w 2 -k thread --threads 100 apps:{{app}}",
        "corral",
    ),
    # --worker-connections left at its default (1000 per worker).
    _variant(
        "corral",
        "corral -w 2 -k gevent",
        {IO_WORKERS},
        f"{_CORRAL} -w 2 -k gevent apps:{{app}}",
        "corral",
    ),
    _variant(
        "gunicorn",
        "gunicorn sync",
        {CPU, MEMORY},
        f"{_GUNICORN} apps:{{app}}",
        "gunicorn",
        reference="gunicorn sync",
    ),
    _variant(
        "gunicorn",
        "gunicorn gthread --threads 8",
        {CPU, MIXED},
        f"{_GUNICORN} -k gthread --threads 8 apps:{{app}}",
        "gunicorn",
        in_quick=True,
        reference="gunicorn gthread",
    ),
    _variant(
        "gunicorn",
        "gunicorn -w 1 gthread --threads 8",
        {MEMORY},
        f"{_GUNICORN} -k gthread --threads 8 apps:{{app}}",
        "gunicorn",
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
        {CPU, IO, MIXED},
        f"{_GUNICORN} -k gevent --worker-connections 1000 apps:{{app}}",
        "gevent",
    ),
    _variant(
        "gunicorn",
        "gunicorn -w 1 gevent",
        {MEMORY},
        f"{_GUNICORN} -k gevent apps:{{app}}",
        "gevent",
    ),
    _variant(
        "gunicorn",
        "gunicorn -w 2 gthread --threads 100",
        {IO_WORKERS},
        f"{_GUNICORN_2} -k gthread --threads 100 apps:{{app}}",
        "gunicorn",
        reference="gunicorn gthread",
    ),
    # --worker-connections left at its default (1000 per worker), as for corral.
    _variant(
        "gunicorn",
        "gunicorn -w 2 gevent",
        {IO_WORKERS},
        f"{_GUNICORN_2} -k gevent apps:{{app}}",
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
    # For WSGI granian's default is a blocking-thread pool that grows on demand up to
    # backpressure / 2 = 512 threads and shrinks after 30 s idle (granian/server/common.py):
    # its concurrent configuration for E as well.
    _variant(
        "granian",
        "granian (default)",
        {CPU, MIXED},
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
    # granian's README: for WSGI, blocking threads are the most threads running
    # the app at once, per worker; backpressure (default backlog / workers = 512)
    # only limits accepted connections, so 100 threads per worker give 200 in flight.
    _variant(
        "granian",
        "granian --workers 2 --blocking-threads 100",
        {IO_WORKERS},
        f"{_GRANIAN_2} --blocking-threads 100 apps:{{app}}",
        "granian",
        reference="granian",
    ),
    _variant(
        "granian",
        "granian --workers 1 (default)",
        {MEMORY},
        f"{_GRANIAN} apps:{{app}}",
        "granian",
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
    _uwsgi_closing("uwsgi (1 process, closes connections)", CPU, ""),
    _variant(
        "uwsgi",
        "uwsgi --threads 200",
        {IO},
        f"{_UWSGI} --http11-socket {{host}}:{{port}} --threads 200 --module apps:{{app}}",
        "pyuwsgi",
    ),
    _variant(
        "uwsgi",
        "uwsgi --master --processes 2 --threads 100",
        {IO_WORKERS},
        f"{_UWSGI_2} --http11-socket {{host}}:{{port}} --threads 100 --module apps:{{app}}",
        "pyuwsgi",
    ),
    _variant(
        "bjoern", "bjoern", {CPU}, "{python} serve_bjoern.py apps:{app} {host} {port}", "bjoern"
    ),
    # Scenario E (fast requests among slow ones) also runs corral --thread-per-request
    # and --threads 8, gunicorn gthread 8 and gevent, and granian's default, above.
    # The fixed pools have 8 threads, 6 of them held by the slow requests. bjoern, uWSGI
    # without threads and single-threaded corral serve one request at a time: every
    # fast request would wait behind 50 ms sleeps, so they take no part.
    _variant(
        "corral",
        "corral --threads auto",
        {MIXED},
        f"{_CORRAL} --threads auto apps:{{app}}",
        "corral",
    ),
    _variant("corral", "corral -k gevent", {MIXED}, f"{_CORRAL} -k gevent apps:{{app}}", "corral"),
    _variant(
        "waitress",
        "waitress --threads=8",
        {MIXED},
        f"{_WAITRESS} --threads=8 apps:{{app}}",
        "waitress",
        reference="waitress",
    ),
    _variant(
        "cheroot",
        "cheroot --threads 8",
        {MIXED},
        "{python} -m cheroot --bind {host}:{port} --threads 8 apps:{app}",
        "cheroot",
    ),
    # On --http11-socket each uWSGI thread holds one keep-alive connection until it
    # closes: 8 threads served 8 of the 64 connections, and the slow wrk got no answer
    # at all. Closing each connection, as in A, lets every connection's requests in.
    _uwsgi_closing("uwsgi --threads 8 (closes connections)", MIXED, "--threads 8"),
    # Scenario T: HTTPS with keep-alive. uWSGI is absent: pyuwsgi has no TLS.
    _variant(
        "corral",
        "corral --threads 1",
        {TLS},
        f"{_CORRAL_TLS} --threads 1 apps:{{app}}",
        "corral",
    ),
    _variant(
        "corral",
        "corral --threads 8",
        {TLS},
        f"{_CORRAL_TLS} --threads 8 apps:{{app}}",
        "corral",
    ),
    _variant(
        "gunicorn",
        "gunicorn gthread --threads 8",
        {TLS},
        f"{_GUNICORN_TLS} -k gthread --threads 8 apps:{{app}}",
        "gunicorn",
        reference="gunicorn gthread",
    ),
    _variant(
        "granian",
        "granian (default)",
        {TLS},
        f"{_GRANIAN_TLS} apps:{{app}}",
        "granian",
        reference="granian",
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
