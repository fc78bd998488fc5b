"""The run's console: plain lines without a terminal, a bar that fits the terminal on one, and
the one early/late definition shared by the closing table and `dashrl report`."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from dashrl.train.metrics import Progress, first_last, step_text, summarize, window

ROW = {"reward/mean": 0.5123, "accuracy": 0.5, "filter/kept_frac": 0.33, "time/step_s": 128.4,
       "time/sampling_s": 102.1, "time/backprop_s": 25.3, "skipped": ""}  # fmt: skip


def test_non_tty_output_is_one_plain_line_per_step_within_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    progress = Progress(1000, stream=out, first_step=1)
    for step in range(1, 4):
        progress.update({"step": step, **ROW})
    progress.update({"step": 4, **ROW, "skipped": "every group had equal rewards"})
    progress.close()
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert [line.split()[1] for line in lines] == ["1/1000", "2/1000", "3/1000", "4/1000"]
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    assert "reward 0.512" in lines[0] and "eta" in lines[0]
    assert "[skipped: every group had equal rewards]" in lines[3]


def test_step_text_drops_trailing_fields_to_fit():
    full = step_text({"step": 1, **ROW}, 30, width=200, eta=5.0)
    assert full.endswith("backprop 25.3s") and "eta 5s" in full
    for width in (20, 40, 60, 80):
        assert len(step_text({"step": 1, **ROW}, 30, width=width, eta=5.0)) <= width


PTY_SCRIPT = """
import sys
from dashrl.train.metrics import Progress
p = Progress(1000, stream=sys.stderr)
for step in range(1, 6):
    p.update({"step": step, "reward/mean": 0.5, "accuracy": 0.25, "filter/kept_frac": 0.5,
              "time/step_s": 123.4, "time/sampling_s": 100.0, "time/backprop_s": 23.4})
p.close()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_on_an_80_column_terminal_every_redraw_fits():
    import fcntl
    import pty
    import struct
    import termios

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-c", PTY_SCRIPT], stdin=child_fd, stdout=child_fd, stderr=child_fd, env=env
    )
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode())
    frames = [f for f in re.split(r"[\r\n]+", text) if f.strip()]
    assert any("1000" in f and "reward 0.500" in f for f in frames), frames
    assert all(len(f) <= 80 for f in frames), [len(f) for f in frames]
    assert "5/1000" in frames[-1]


def test_one_early_late_definition():
    rows = [{"step": i + 1, "reward/mean": float(i)} for i in range(30)]
    assert window(30) == 5 and window(7) == 3 and window(1) == 1
    assert first_last(rows, "reward/mean") == (2.0, 27.0)
    table = summarize(rows)
    assert "| reward, first 5 steps | 2.000 |" in table and "| reward, last 5 steps | 27.000 |" in table
    assert "first and the last 5 steps" in table
    one = summarize(rows[:1])
    assert "first step |" in one and "1 steps" not in one


def test_a_run_console_turns_off_transformers_own_bars():
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    Progress(3, quiet=True, stream=io.StringIO()).close()
    assert not hf_logging.is_progress_bar_enabled()  # no "Writing model shards" bars in the log


def test_the_cache_rename_notice_of_transformers_is_silenced():
    """Every decode step would print transformers' notice that `past_key_values` is renamed."""
    import logging
    import warnings

    from dashrl.train.metrics import silence_transformers_bars

    silence_transformers_bars()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        silence_transformers_bars()  # its filter goes on top of the default one
        warnings.warn("`past_key_values` is deprecated and will be removed in version 5.40.0", FutureWarning)  # noqa: B028
        warnings.warn("something else is deprecated", FutureWarning)  # noqa: B028
    assert [str(w.message) for w in seen] == ["something else is deprecated"]
    handlers = logging.getLogger("transformers").handlers
    assert handlers

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("transformers.generic", logging.WARNING, __file__, 1, msg, None, None)

    rename = record("`past_key_values`/`cache_params` are deprecated. Use `cache` instead.")
    assert not any(h.filter(rename) for h in handlers)
    assert all(h.filter(record("another notice")) for h in handlers)
