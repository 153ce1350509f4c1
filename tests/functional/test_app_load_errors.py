"""An application that raises while it loads: the app's own frames, one line, status 4."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.functional.test_master_settings import run_to_exit
from tests.server import MODELS, ROOT

APP = "tests.apps.raises_at_import:app"
MESSAGE = f"cannot load app {APP!r}: ZeroDivisionError: division by zero"

PROCESS_MODELS = {
    **MODELS,
    "preload-workers": ["--preload", "-w", "2"],
    "sync-workers": ["-w", "2"],
    "thread-workers": ["-w", "2", "-k", "thread", "--threads", "2"],
    "gevent-workers": ["-w", "2", "-k", "gevent"],
}


@pytest.mark.parametrize("options", list(PROCESS_MODELS.values()), ids=list(PROCESS_MODELS))
def test_an_app_raising_at_import_is_told_in_its_own_frames_and_exits_4(
    options: list[str],
) -> None:
    result = run_to_exit(*options, APP)
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    assert MESSAGE in output
    frame = f'{ROOT / "tests" / "apps" / "raises_at_import.py"}", line 7, in read_ratio'
    # Once, even where every worker fails the same way.
    assert output.count(frame) == 1, output
    assert "line 10, in <module>" in output
    assert "importlib" not in output
    assert str(ROOT / "corral") not in output


def test_a_syntax_error_in_the_app_shows_where_it_is(tmp_path: Path) -> None:

    (tmp_path / "unfinished_app.py").write_text("def app(environ, start_response:\n")
    for options in ([], ["-w", "2"]):
        result = run_to_exit(*options, "unfinished_app:app", modules=tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode == 4, output
        assert f'{tmp_path / "unfinished_app.py"}", line 1' in output
        assert "cannot load app 'unfinished_app:app': SyntaxError: " in output
        assert "importlib" not in output
