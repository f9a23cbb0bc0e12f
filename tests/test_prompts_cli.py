"""`tinyscale prompts check` end to end: the shipped set passes, broken copies fail with one clear line each."""
import csv

from support import ROOT


def shipped_rows():
    with open(ROOT / "data" / "prompts.csv", newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def write(tmp_path, rows):
    path = tmp_path / "prompts.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def test_shipped_set_is_valid(cli_process):
    result = cli_process("prompts", "check", cwd=ROOT, timeout=120)
    assert result.status == 0, result.out + result.err
    assert "valid: 150 prompts" in result.out
    assert "hash" in result.out
    for category in ["Grammar", "Creativity", "Plot", "Factual Knowledge", "Reasoning", "Context-Tracking"]:
        assert category in result.out


def test_check_works_from_a_subfolder(cli_process):
    assert cli_process("prompts", "check", cwd=ROOT / "nbs", timeout=120).status == 0


def test_missing_column(cli_process, tmp_path):
    rows = [row[:4] for row in shipped_rows()]
    result = cli_process("prompts", "check", write(tmp_path, rows), cwd=ROOT, timeout=120)
    assert result.status == 1
    assert result.err.strip() == f"tinyscale: error: {tmp_path / 'prompts.csv'}: missing column(s) source_id (expected id,category,prompt,expected,source_id)"
    assert "Traceback" not in result.err


def test_unknown_category(cli_process, tmp_path):
    rows = shipped_rows()
    rows[4][1] = "Poetry"
    result = cli_process("prompts", "check", write(tmp_path, rows), cwd=ROOT, timeout=120)
    assert result.status == 1
    assert "row 5: unknown category 'Poetry'" in result.out


def test_duplicate_id(cli_process, tmp_path):
    rows = shipped_rows()
    rows[3][0] = rows[2][0]
    result = cli_process("prompts", "check", write(tmp_path, rows), cwd=ROOT, timeout=120)
    assert result.status == 1
    assert f"row 4: duplicate id '{rows[2][0]}' (first on row 3)" in result.out


def test_trailing_space(cli_process, tmp_path):
    rows = shipped_rows()
    rows[10][2] += " "
    result = cli_process("prompts", "check", write(tmp_path, rows), cwd=ROOT, timeout=120)
    assert result.status == 1
    assert f"row 11: prompt {rows[10][0]} has leading or trailing whitespace" in result.out


def test_24_prompts_in_a_category(cli_process, tmp_path):
    rows = shipped_rows()
    plot_row = next(i for i, r in enumerate(rows) if r[1] == "Plot" and not any(g[4] == r[0] for g in rows))
    del rows[plot_row]
    result = cli_process("prompts", "check", write(tmp_path, rows), cwd=ROOT, timeout=120)
    assert result.status == 1
    assert "category Plot has 24 prompts (expected 25)" in result.out
    assert result.out.strip().endswith("invalid: 1 problem(s)")


def test_missing_file(cli_process, tmp_path):
    result = cli_process("prompts", "check", tmp_path / "nope.csv", cwd=ROOT, timeout=120)
    assert result.status == 1
    assert "prompt file not found" in result.err


def test_unknown_subcommand_is_an_error(cli_process):
    result = cli_process("prompts", "frobnicate", cwd=ROOT, timeout=120)
    assert result.status != 0
