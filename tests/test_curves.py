"""`tinyscale curves` end to end on a planted sweep (see `curves_support`): the curves, the baselines, the emergence steps
and order, several runs overlaid, the files written, and the errors.

Every expected number comes from the planted shares, not from tinyscale's analysis.
"""
import io, json, os, shutil, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest

from curves_support import BASELINE, PROMPTS, RATER, RUNS, SHARES, STEPS, TOKENS_PER_STEP, share, write_planted_sweep
from tinyscale.cli import main
from tinyscale.rubric import load_rubric

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent/"tinyscale"
HEADER = "run,checkpoint,step,tokens,level,category,criterion,rater,mean,n,ci_low,ci_high"
RESAMPLES = "200"


def new_workbook(folder):
    (folder/"data").mkdir(parents=True)
    for name in ("criteria.csv", "prompts.csv", "paper_targets.csv", "scoring_rules.toml"): shutil.copy(REPO/"data"/name, folder/"data"/name)
    return folder


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    "A workbook with the planted sweep of both runs, the baseline, and the first run's manifest and probes."
    return write_planted_sweep(new_workbook(tmp_path_factory.mktemp("planted")))


def curves(capsys, root, *argv, completions=None):
    "Run `tinyscale curves` in-process on the workbook `root`: (status, stdout, stderr)."
    status = main(["curves", "--store", str(root/"scores"), "--completions", *(completions or [str(root/"data"/"completions")]),
                   "--sweeps", str(root/"sweeps"), "--resamples", RESAMPLES, *argv])
    out, err = capsys.readouterr()
    return status, out, err


def read_table(text):
    return pd.read_csv(io.StringIO(text), keep_default_na=False, dtype={"category": str, "criterion": str, "checkpoint": str},
                       na_values={c: [""] for c in ("step", "tokens", "mean", "ci_low", "ci_high", "threshold_step", "half_gain_step",
                                                    "half_gain_ci_low", "half_gain_ci_high", "order", "threshold_tokens")})


def test_csv_has_exactly_the_columns_and_the_planted_means(capsys, planted):
    status, out, err = curves(capsys, planted, "--format", "csv")
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == HEADER
    table = read_table(out)
    rubric = load_rubric()
    trained = table[table.step.notna()]
    assert sorted(trained.run.unique()) == sorted(RUNS)
    assert set(table.rater) == {RATER}
    for run in RUNS:
        for category in rubric.categories:
            line = trained[(trained.run == run) & (trained.level == "category") & (trained.category == category)].sort_values("step")
            assert line.step.astype(int).tolist() == list(STEPS)
            assert line.checkpoint.tolist() == [f"checkpoint-{s}" for s in STEPS]
            assert line.tokens.astype(int).tolist() == [s * TOKENS_PER_STEP for s in STEPS]
            assert line["mean"].tolist() == pytest.approx([share(category, run, i) for i in range(len(STEPS))])
            assert set(line.n) == {PROMPTS * len(rubric.for_category(category))}
            assert ((line.ci_low <= line["mean"] + 1e-9) & (line["mean"] <= line.ci_high + 1e-9)).all()
            criteria = trained[(trained.run == run) & (trained.level == "criterion") & (trained.category == category)]
            assert sorted(criteria.criterion.unique()) == sorted(c.label for c in rubric.for_category(category))
    overall = trained[trained.level == "overall"]
    assert set(overall.category) == {""} and set(overall.criterion) == {""}
    assert set(trained[trained.level == "category"].criterion) == {""}
    # a cell where every prompt scores alike has a single-point interval
    grammar_end = trained[(trained.run == "lr-fast") & (trained.category == "Grammar") & (trained.level == "category") & (trained.step == 2000)].iloc[0]
    assert (grammar_end.ci_low, grammar_end.ci_high) == (1.0, 1.0)
    # the released baseline: rows of the same columns without a step
    baseline = table[table.step.isna()]
    assert baseline.run.unique().tolist() == [BASELINE]
    assert set(baseline.checkpoint) == {""}
    assert baseline[baseline.level == "category"]["mean"].tolist() == pytest.approx([0.5] * 6)


def test_emergence_steps_and_order_are_as_planted(capsys, planted):
    status, out, _ = curves(capsys, planted, "--format", "csv", "--table", "emergence")
    assert status == 0
    table = read_table(out)
    fast = table[(table.run == "lr-fast") & (table.level == "category")].set_index("category")
    assert fast.threshold_step.to_dict() == pytest.approx({"Grammar": 500, "Creativity": 2000, "Plot": 1000, "Factual Knowledge": 2000,
                                                           "Reasoning": float("nan"), "Context-Tracking": 2000}, nan_ok=True)
    assert fast.threshold_tokens["Grammar"] == 500 * TOKENS_PER_STEP
    assert fast.order.to_dict() == pytest.approx({"Grammar": 1, "Plot": 2, "Creativity": 3, "Factual Knowledge": 3, "Context-Tracking": 3,
                                                  "Reasoning": float("nan")}, nan_ok=True)
    assert fast.half_gain_step["Grammar"] == 250 and fast.half_gain_step["Plot"] == 500
    assert pd.isna(fast.half_gain_step["Reasoning"])  # no gain, no half-gain step
    assert fast.half_gain_ci_low["Grammar"] <= 250 <= fast.half_gain_ci_high["Grammar"]
    assert set(fast.half_gain_ci_low.dropna()) <= set(STEPS) and set(fast.half_gain_ci_high.dropna()) <= set(STEPS)
    assert fast.stays_above["Grammar"] in (True, "True")
    slow = table[(table.run == "lr-slow") & (table.level == "category")].set_index("category")
    assert slow.threshold_step["Grammar"] == 1000 and slow.threshold_step["Plot"] == 2000
    assert slow.threshold_step.isna().sum() == 4  # the others have not passed by the last checkpoint
    assert (table[table.level == "overall"].order.isna()).all()


def test_markdown_states_the_order_of_emergence(capsys, planted):
    status, out, _ = curves(capsys, planted)
    assert status == 0
    assert out.startswith(f"# Capabilities over training: scores of {RATER}")
    assert ("- In run lr-fast, Grammar is the first category whose lower 95% bound passes 0.5 (step 500), then Plot (step 1,000), then "
            "Creativity, Factual Knowledge and Context-Tracking (step 2,000); Reasoning has not passed it by the last checkpoint "
            "(step 2,000). Grammar comes first, as the TinyStories paper found.") in out
    assert "## Curve of run lr-fast" in out and "## Curve of run lr-slow" in out
    assert "## Released baselines" in out and "| Grammar | 0.50 [0.50, 0.50] n=30 |" in out
    assert "Run lr-slow has no manifest (" in out and "lr-slow.json" in out  # said plainly: the slower run has no sweep files


def test_one_run_and_a_higher_threshold(capsys, planted):
    status, out, _ = curves(capsys, planted, "--format", "json", "--run", "lr-slow", "--threshold", "0.9")
    assert status == 0
    data = json.loads(out)
    assert data["runs"] == ["lr-slow"] and {r["run"] for r in data["curves"]} == {"lr-slow"}
    assert data["threshold"] == 0.9
    assert data["order"]["lr-slow"] == [["Grammar"], ["Plot"]]
    assert data["loss"] == [] and data["probes"] == []


def test_runs_overlaid_in_the_figures(planted):
    from tinyscale.curve_report import capability_curves, curves_from_store, emergence_figure, training_panels
    result = curves_from_store(planted/"scores", [planted/"data"/"completions"], planted/"sweeps", n_resamples=200)
    figure = capability_curves(result.curves, result.baselines)
    panels = [ax for ax in figure.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["All criteria", "Grammar", "Creativity", "Plot", "Factual Knowledge", "Reasoning", "Context-Tracking"]
    plot = panels[3]
    runs = [line for line in plot.get_lines() if line.get_label() in RUNS]
    assert [line.get_label() for line in runs] == ["lr-fast", "lr-slow"]
    assert list(runs[0].get_xdata()) == list(STEPS)
    assert list(runs[0].get_ydata()) == pytest.approx(list(SHARES["Plot"]))
    assert runs[0].get_linestyle() != runs[1].get_linestyle()
    assert [t.get_text() for t in plot.texts] == ["TinyStories-8M"]
    assert [l.get_ydata()[0] for l in plot.get_lines() if l.get_label().startswith("_child")] == [0.5]  # the baseline's reference line
    legend = [t.get_text() for ax in figure.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert legend == ["run lr-fast", "run lr-slow", "95% interval over prompts", "TinyStories-8M (released)"]
    stacked = training_panels(result.curves, result.loss, result.probes)
    assert [ax.get_title() for ax in stacked.axes[:2]] == ["run lr-fast", "run lr-slow"]
    assert [t.get_text() for t in stacked.axes[3].texts] == ["no manifest log history for this run"]
    assert [l.get_label() for l in stacked.axes[2].get_lines()] == ["training loss"]
    timing = emergence_figure(result.emergence, result.curves).axes[0]
    assert [t.get_text() for t in timing.get_yticklabels()][:2] == ["Grammar", "Plot"]


def test_out_writes_the_report_and_figures(capsys, planted, tmp_path):
    status, out, err = curves(capsys, planted, "--out", str(tmp_path/"md"))
    assert status == 0
    names = sorted(p.name for p in (tmp_path/"md").iterdir())
    assert names == sorted(["curves.md"] + [f"{s}.{k}" for s in ("capability_curves", "training_panels", "emergence") for k in ("png", "svg")])
    assert (tmp_path/"md"/"capability_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "![emergence](emergence.png)" in (tmp_path/"md"/"curves.md").read_text()
    assert "tinyscale: note: Run lr-slow has no manifest" in err
    status, _, _ = curves(capsys, planted, "--out", str(tmp_path/"csv"), "--format", "csv", "--x", "tokens", "--x-scale", "linear")
    assert status == 0
    assert (tmp_path/"csv"/"curves.csv").read_text().splitlines()[0] == HEADER
    assert (tmp_path/"csv"/"emergence.csv").read_text().startswith("run,level,category,criterion,rater,threshold,threshold_step")


def test_completions_as_run_files(capsys, planted):
    files = [str(planted/"data"/"completions"/f"{name}.jsonl") for name in ("lr-fast", "baseline")]
    status, out, _ = curves(capsys, planted, "--format", "csv", completions=files)
    assert status == 0
    table = read_table(out)
    assert table.run.unique().tolist() == ["lr-fast", BASELINE]


@pytest.mark.parametrize("argv, message", [
    (["--run", "lr-9"], "run 'lr-9' has no scores of ada (runs: lr-fast, lr-slow)"),
    (["--rater", "cy"], "rater 'cy' has no scores in {scores} (raters: ada)"),
    (["--resamples", "10"], "--resamples 10: use at least 100 resamples"),
    (["--threshold", "2"], "--threshold 2.0: a score threshold lies between 0 and 1"),
])
def test_bad_input_is_one_line_and_writes_nothing(capsys, planted, tmp_path, argv, message):
    status, out, err = curves(capsys, planted, *argv, "--out", str(tmp_path/"never"))
    assert (status, out) == (1, "")
    assert err == f"tinyscale: error: {message.format(scores=planted/'scores')}\n"
    assert not (tmp_path/"never").exists()


def test_no_training_axis_says_so(capsys, tmp_path):
    root = write_planted_sweep(new_workbook(tmp_path/"baseline-only"), runs=(), with_sweep_files=False)
    status, out, err = curves(capsys, root, "--out", str(tmp_path/"never"))
    assert (status, out) == (1, "")
    assert err.startswith("tinyscale: error: none of ada's scores in") and "so there is no training axis" in err and err.count("\n") == 1
    assert not (tmp_path/"never").exists()
    empty = new_workbook(tmp_path/"empty")
    (empty/"data"/"completions").mkdir()
    status, _, err = curves(capsys, empty)
    assert status == 1 and "no scores yet in" in err
    status, _, err = curves(capsys, empty, completions=[str(empty/"missing.jsonl")])
    assert status == 1 and err == f"tinyscale: error: --completions {empty/'missing.jsonl'}: no such file or folder\n"


def test_unknown_tokens_leave_the_token_figures_out(capsys, tmp_path):
    root = write_planted_sweep(new_workbook(tmp_path/"no-tokens"), runs=("lr-fast",), tokens=False, with_sweep_files=False)
    status, out, err = curves(capsys, root, "--out", str(tmp_path/"out"), "--x", "tokens")
    assert status == 0
    assert "tinyscale: warning: figure capability_curves left out: tokens are not known for every checkpoint of run(s) lr-fast; use the step axis (--x step)" in err
    assert sorted(p.name for p in (tmp_path/"out").iterdir()) == ["curves.md"]


def test_installed_script(planted):
    env = {**os.environ, "TINYSCALE_ROOT": str(planted), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([str(SCRIPT), "curves", "--format", "csv", "--resamples", RESAMPLES, "--run", "lr-fast"], cwd=planted, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == HEADER
    assert "lr-slow" not in result.stdout
