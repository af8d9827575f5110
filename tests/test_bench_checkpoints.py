import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_checkpoints_prints_one_row_per_interval(tiny_fakes):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_checkpoints.py"), str(tiny_fakes), "-e", "2",
                             "--intervals", "0", "60", "--device", "cpu"],
                            capture_output=True, text=True, check=True)
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    header, *rows = rows
    assert header[0].strip() == "--checkpoint-interval s"
    assert [row[0].strip() for row in rows] == ["0", "60"]
    for row in rows:
        new_bests = float(row[3])
        wall, busy, other = (float(cell) for cell in row[4:7])
        assert 1 <= new_bests <= 2  # epoch 1 is always a new best
        assert wall > busy > 0 and other == pytest.approx(wall - busy, abs=0.011)


def test_bench_checkpoints_shows_a_failed_runs_command_and_output(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_checkpoints.py"), str(tmp_path), "--device", "cpu"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "a training run failed (exit 2): " in result.stderr and "the end of its output:" in result.stderr
    assert "missing split folder(s) train, val, test" in result.stderr
