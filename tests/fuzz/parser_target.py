"""Coverage-guided fuzzing of the request parser and the body decoders.

The invariant: any bytes either parse, the same whether they arrive whole, byte by byte or
cut anywhere (`tests.request_stream.check_every_split`: the same heads, the same bodies
with the same boundaries, the same wait at the end), or are refused with a `RequestError`
at the same point. Any other exception, or a difference between two ways of arrival, is
a crash.

    python tests/fuzz/parser_target.py --seconds 60 [CORPUS_DIR ...]
    python tests/fuzz/parser_target.py -max_total_time=60 [libFuzzer flags] [CORPUS_DIR ...]
    python tests/fuzz/parser_target.py crash-0123abcd   # replay one input

The engine is atheris (libFuzzer) where it is installed, hypothesis otherwise or with
`--engine hypothesis`. New inputs go into the first corpus directory, which is seeded with
hand-written requests and, when it is present, the shared request corpus beside the
repository; without one a directory is made in the system's temporary folder and kept,
to be passed again. A crash prints the input and exits non-zero; atheris also writes it
to a `crash-*` file (`-artifact_prefix=DIR/` says where).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    # Run as a script, this file's folder is on the path and the repository is not.
    sys.path.insert(0, str(ROOT))

try:
    import atheris
except ImportError:  # Only some platforms have wheels: hypothesis is the engine there.
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["corral.http"]):
        from corral.http.parser import HeadLimits
else:
    from corral.http.parser import HeadLimits

# After corral.http, so that its first import is the instrumented one.
from tests.conformance.corpus_files import CORPUS, wire_bytes  # noqa: E402
from tests.request_stream import check_every_split  # noqa: E402

# The default limits, and small ones that inputs of a few hundred bytes can reach.
LIMITS = (HeadLimits(), HeadLimits(request_line=40, field_count=4, field_size=40))
# Inputs past this size add time, not paths: every limit is reachable under the small ones.
MAX_LENGTH = 1024
# Pieces of HTTP syntax libFuzzer splices into inputs.
DICTIONARY = Path(__file__).with_name("http.dict")
HAND_WRITTEN = [
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /a?b=c#d HTTP/1.0\r\n\r\n",
    b"\r\nOPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"GET http://u@[::1]:8080/p?q HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 007\r\n\r\n1234567",
    b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5;a=b ; q="x y"\r\nhello\r\n0A\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n',
    b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n"
    b"okGET /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\nHost: h\n\n",
    b"GET / HTTP/2.0\r\n\r\n",
]


def check_input(data: bytes) -> None:
    """The invariant, for one input; the cuts are drawn from the input, so a crash
    file replays the same way."""
    draw = random.Random(data)
    cuts = [draw.randrange(1, len(data)) for _ in range(8)] if len(data) > 1 else []
    for limits in LIMITS:
        check_every_split(data, limits, cuts, every_read=False)


def seeds() -> list[bytes]:
    """Hand-written requests, and the shared corpus's files if it is there."""
    found = list(HAND_WRITTEN)
    if CORPUS.is_dir():
        for path in sorted(CORPUS.glob("*valid/*.http")):
            data = wire_bytes(path.read_bytes())
            # Many corpus heads lack the Host field an HTTP/1.1 request needs; with one
            # they reach the body decoders.
            found += [data, data.replace(b"\r\n", b"\r\nHost: x\r\n", 1)]
    return [seed[:MAX_LENGTH] for seed in found]


def write_seeds(corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds():
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)


def report(data: bytes) -> None:
    sys.stderr.write(f"\ncrashing input ({len(data)} bytes): {data!r}\n")


def check_or_report(data: bytes) -> None:
    try:
        check_input(data)
    except BaseException:
        report(data)
        raise


def run_atheris(arguments: list[str], seconds: float | None) -> None:
    """Hand over to libFuzzer, which exits the process when it is done."""
    assert atheris is not None
    flags = [argument for argument in arguments if argument.startswith("-")]
    paths = [argument for argument in arguments if not argument.startswith("-")]
    if seconds is not None:
        flags.append(f"-max_total_time={round(seconds)}")
    if not any(flag.startswith("-max_len=") for flag in flags):
        flags.append(f"-max_len={MAX_LENGTH}")
    if not any(flag.startswith("-dict=") for flag in flags):
        flags.append(f"-dict={DICTIONARY}")
    if not paths or Path(paths[0]).is_dir() or not Path(paths[0]).exists():
        # Fuzzing, rather than replaying files: seed the corpus new inputs go into.
        if not paths:
            paths = [tempfile.mkdtemp(prefix="corral-fuzz-corpus-")]
            sys.stderr.write(f"corpus: {paths[0]} (pass it again to continue from it)\n")
        write_seeds(Path(paths[0]))

    atheris.Setup([sys.argv[0], *flags, *paths], check_or_report)
    atheris.Fuzz()


def run_hypothesis(seconds: float) -> int:
    """Generated and mutated inputs, in rounds, until `seconds` have passed."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.generated_requests import mutated, mutated_pipelines, token_soup

    inputs = (
        st.sampled_from(seeds()).flatmap(mutated)
        | mutated_pipelines()
        | token_soup()
        | st.binary(max_size=400)
    )
    failed: list[bytes] = []

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(inputs)
    def fuzz_round(data: bytes) -> None:
        try:
            check_input(data)
        except BaseException:
            failed[:] = [data]
            raise

    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        try:
            fuzz_round()
        except Exception:
            # Hypothesis raises the error of the smallest input it found; `failed` holds
            # that input, as the last one to fail.
            if failed:
                report(failed[0])
            raise
        rounds += 1
    sys.stderr.write(f"hypothesis: {rounds * 200} inputs in {seconds:g} s, no crash\n")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Fuzz corral's request parser and body decoders.",
        epilog="Other arguments are libFuzzer's: flags (-max_total_time=N, -runs=N, "
        "-artifact_prefix=DIR/) and corpus directories or input files.",
    )
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--engine",
        choices=["atheris", "hypothesis"],
        default="atheris" if atheris is not None else "hypothesis",
    )
    options, rest = parser.parse_known_args(argv)
    if options.engine == "atheris":
        if atheris is None:
            parser.error("atheris is not installed")
        run_atheris(rest, options.seconds)
    files = [Path(argument) for argument in rest if Path(argument).is_file()]
    if files:
        # Replaying inputs, as libFuzzer does when given files.
        for path in files:
            check_or_report(path.read_bytes())
        return 0
    seconds = options.seconds
    for argument in rest:
        if argument.startswith("-max_total_time="):
            seconds = float(argument.partition("=")[2])
    return run_hypothesis(60.0 if seconds is None else seconds)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
