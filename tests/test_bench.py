"The benchmarks run: `bench/generate.py --quick` end to end and `bench/output_layer.py` on a small shape, so the scripts cannot rot between full runs."
import re, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAST_LINE = re.compile(r"^speedup_vs_loop=(?P<loop>[\d.]+) speedup_vs_seed=(?P<seed>[\d.]+) "
                       r"matmul_peak_fraction=(?P<peak>[\d.]+) outputs_match_loop=(?P<match>\d+)/(?P<of>\d+)$")


@pytest.mark.slow
def test_generation_benchmark_quick_runs_and_prints_its_figures(offline_env, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT/"bench"/"generate.py"), "--quick", "--models-dir", str(tmp_path)],
                          env=offline_env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = LAST_LINE.match(done.stdout.strip().splitlines()[-1])
    assert figures, done.stdout[-2000:]
    assert float(figures["loop"]) > 0 and float(figures["seed"]) > 0 and 0 < float(figures["peak"]) < 1.5
    # Random weights give no near-ties worth the name: the quick run's outputs agree with the loop nearly everywhere
    assert int(figures["of"]) == 24 and int(figures["match"]) >= 22
    assert "matmul peak" in done.stdout and "(c) tinyscale" in done.stdout


def test_output_layer_benchmark_prints_both_rates_and_equal_logits(offline_env):
    done = subprocess.run([sys.executable, str(ROOT/"bench"/"output_layer.py"), "--hidden", "64", "--rows", "5,40",
                           "--threads", "1", "--vocab", "5000", "--seconds", "0.05", "--repeats", "1"],
                          env=offline_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if re.match(r"^\s+1\s+64\s", line)]
    assert [r[2] for r in rows] == ["5", "40"], done.stdout
    for r in rows:   # threads hidden rows a GF/s b GF/s b/a sliced equal
        assert float(r[3]) > 0 and float(r[5]) > 0 and r[8] == "yes" and r[9] == "yes", done.stdout
