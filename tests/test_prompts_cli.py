"""`tinyscale prompts check` end to end: the shipped set passes, broken copies fail with one clear line each."""
import csv, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINYSCALE = Path(sys.executable).parent / "tinyscale"


def run(*args, cwd=ROOT):
    return subprocess.run([str(TINYSCALE), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def shipped_rows():
    with open(ROOT / "data" / "prompts.csv", newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def write(tmp_path, rows):
    path = tmp_path / "prompts.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def test_shipped_set_is_valid():
    result = run("prompts", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid: 150 prompts" in result.stdout
    assert "hash" in result.stdout
    for category in ["Grammar", "Creativity", "Plot", "Factual Knowledge", "Reasoning", "Context-Tracking"]:
        assert category in result.stdout


def test_check_works_from_a_subfolder():
    assert run("prompts", "check", cwd=ROOT / "nbs").returncode == 0


def test_missing_column(tmp_path):
    rows = [row[:4] for row in shipped_rows()]
    result = run("prompts", "check", str(write(tmp_path, rows)))
    assert result.returncode == 1
    assert result.stderr.strip() == f"tinyscale: error: {tmp_path / 'prompts.csv'}: missing column(s) source_id (expected id,category,prompt,expected,source_id)"
    assert "Traceback" not in result.stderr


def test_unknown_category(tmp_path):
    rows = shipped_rows()
    rows[4][1] = "Poetry"
    result = run("prompts", "check", str(write(tmp_path, rows)))
    assert result.returncode == 1
    assert "row 5: unknown category 'Poetry'" in result.stdout


def test_duplicate_id(tmp_path):
    rows = shipped_rows()
    rows[3][0] = rows[2][0]
    result = run("prompts", "check", str(write(tmp_path, rows)))
    assert result.returncode == 1
    assert f"row 4: duplicate id '{rows[2][0]}' (first on row 3)" in result.stdout


def test_trailing_space(tmp_path):
    rows = shipped_rows()
    rows[10][2] += " "
    result = run("prompts", "check", str(write(tmp_path, rows)))
    assert result.returncode == 1
    assert f"row 11: prompt {rows[10][0]} has leading or trailing whitespace" in result.stdout


def test_24_prompts_in_a_category(tmp_path):
    rows = shipped_rows()
    plot_row = next(i for i, r in enumerate(rows) if r[1] == "Plot" and not any(g[4] == r[0] for g in rows))
    del rows[plot_row]
    result = run("prompts", "check", str(write(tmp_path, rows)))
    assert result.returncode == 1
    assert "category Plot has 24 prompts (expected 25)" in result.stdout
    assert result.stdout.strip().endswith("invalid: 1 problem(s)")


def test_missing_file(tmp_path):
    result = run("prompts", "check", str(tmp_path / "nope.csv"))
    assert result.returncode == 1
    assert "prompt file not found" in result.stderr


def test_unknown_subcommand_is_an_error():
    result = run("prompts", "frobnicate")
    assert result.returncode != 0
