"""The parser's fuzz target (`parser_target.py`) run for a minute on every run of the suite.

It runs in a subprocess, as it would by hand: libFuzzer ends the process it runs in. Any
input that breaks the invariant fails the test, which prints that input.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Importing the target here would instrument corral.http for every test in this process.
ATHERIS = importlib.util.find_spec("atheris") is not None
TARGET = Path(__file__).with_name("parser_target.py")
FUZZ_SECONDS = 60


def run_target(arguments: list[str], seconds: float, cwd: Path) -> str:
    """Run the target; fail with the crashing input if it finds one. Returns its output."""
    completed = subprocess.run(
        [sys.executable, str(TARGET), "--seconds", str(seconds), *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=seconds + 90,
    )
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        crashes = [f"{path.name}: {path.read_bytes()!r}" for path in cwd.glob("crash-*")]
        # libFuzzer prints a line per new input; the end holds the exception and input.
        pytest.fail(
            f"the fuzz target failed (exit {completed.returncode})\n"
            + "\n".join(crashes)
            + "\n"
            + output[-6000:],
            pytrace=False,
        )
    return output


@pytest.mark.timeout(FUZZ_SECONDS + 120)
def test_parser_survives_a_minute_of_fuzzing(tmp_path: Path) -> None:
    output = run_target([str(tmp_path / "corpus")], FUZZ_SECONDS, tmp_path)
    if ATHERIS:
        done = re.search(r"Done (\d+) runs in (\d+) second", output)
        assert done is not None, output[-3000:]
        runs, seconds = int(done[1]), int(done[2])
    else:
        done = re.search(r"hypothesis: (\d+) inputs in ([0-9.]+) s", output)
        assert done is not None, output[-3000:]
        runs, seconds = int(done[1]), round(float(done[2]))
    assert seconds >= FUZZ_SECONDS
    assert runs >= 1000, f"only {runs} inputs in {seconds} s"


@pytest.mark.timeout(100)
def test_hypothesis_engine_runs_where_atheris_is_missing(tmp_path: Path) -> None:
    output = run_target(["--engine", "hypothesis"], 3, tmp_path)
    assert re.search(r"hypothesis: [1-9]\d* inputs in 3 s, no crash", output), output[-3000:]
