"""`tape up`'s exit status reports a process that fails while it is being stopped."""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.system.processes import Tape

FAILS_ON_STOP = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit({code}))
print("up", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize(("code", "status"), [(0, 0), (3, 3)])
def test_a_process_failing_while_stopped_fails_tape_up(
    tmp_path: Path, code: int, status: int
) -> None:
    """A worker that exits 3 on SIGTERM (a failed final flush) makes `tape up` exit 3
    after Ctrl-C; one that exits 0 leaves it 0 (the router, killed by the SIGTERM it
    does not handle here, counts as stopped)."""
    (tmp_path / "worker.py").write_text(FAILS_ON_STOP.format(code=code))
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(600)\n")
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f"worker: {sys.executable} {tmp_path / 'worker.py'}\n"
        f"router: {sys.executable} {tmp_path / 'sleeper.py'}\n"
    )
    up = Tape("up", ["up", "--procfile", str(procfile), "--data-dir", str(tmp_path / "d"),
                     "--stop-timeout", "5"], tmp_path)  # fmt: skip
    deadline = time.monotonic() + 30
    while not re.search(r"worker\s*\| up$", up.output(), re.M) and time.monotonic() < deadline:
        time.sleep(0.1)
    up.signal(signal.SIGINT)
    assert up.process.wait(30) == status, up.output()[-2000:]
    assert f"worker stopped (rc={code})" in up.output()
