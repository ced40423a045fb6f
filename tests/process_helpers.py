"""Kill a stock training run with SIGKILL at a chosen point, for the resume tests of both stacks."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

__all__ = ["run_until_killed"]


def run_until_killed(command: Sequence[str], work_dir: Path, read_log: Callable[[], str],
                     ready: Callable[[str], bool], *, cwd: Path, env: Mapping[str, str],
                     timeout: float, poll: float = 0.5) -> str:
    """Start ``command`` (a ``tools/train.py`` run), SIGKILL it once ``ready(read_log())``.

    Args:
        command: The full command line.
        work_dir: Its ``--work-dir``; the process output goes to ``killed_run.out`` there.
        read_log: Returns the run's log text so far (the layout differs by MMPose generation).
        ready: True once the log shows the kill point.
        cwd: Working directory of the run.
        env: Its environment.
        timeout: Seconds to wait for the kill point.
        poll: Seconds between looks at the log.

    Returns:
        The log text at the kill.

    Raises:
        AssertionError: The run ended before the kill point, the point was not
            reached in time, or the run did not die of the SIGKILL.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / "killed_run.out", "w") as out:
        proc = subprocess.Popen(list(command), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env))
        deadline = time.monotonic() + timeout
        try:
            while True:
                text = read_log()
                if ready(text):
                    break
                if proc.poll() is not None:
                    raise AssertionError(f"train.py exited ({proc.returncode}) before the kill "
                                         "point:\n" + (work_dir / "killed_run.out").read_text()[-3000:])
                if time.monotonic() > deadline:
                    raise AssertionError(f"kill point not reached after {timeout} s:\n{text[-3000:]}")
                time.sleep(poll)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"train.py ended by itself ({proc.returncode})"
    return text
