"""Every blog post executes (with nbclient, as Quarto would run it) on a small fixture score set and shows its figures.

Quarto is not needed: each `posts/*/index.ipynb` is run in a kernel whose `TINYSCALE_ROOT` points at a
temporary workbook holding the rubric, the prompts, the paper targets and one rater's scores imported
from `tests/fixtures/analysis_wide_scores.csv`. The same post is run again on a workbook with no
scores, where it must say so instead of failing, and the first post once more with a fake LLM judge's
scores next to `ada`'s, where it must show the judge's blind agreement exactly as `tinyscale agreement`
computes it. The post "Capabilities over training" runs on a workbook that also holds a planted sweep (see
`curves_support`), and once more on the fixture scores alone, where it must say plainly that there is no sweep yet. With a
judge calibrated on `ada` (`tinyscale judge calibrate --write`), the first post sets the calibrated rater's held-out agreement
next to the raw judge's and the baseline, and says plainly when no judge is calibrated.
"""
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from agreement_support import add_fake_judge, assert_tables_match
from curves_support import write_planted_sweep
from support import make_workbook, offline_environment
from tinyscale.completions import load_completions
from tinyscale.rubric import load_rubric
from tinyscale.store import ScoreStore
from tinyscale.wide import import_wide_csv
from tinyscale.prompts import load_prompts
from tinyscale.analysis import format_cell
from tinyscale.report import CALIBRATION_NOTE, headline, report_from_store, watch_notes

REPO = Path(__file__).resolve().parents[1]
POSTS = sorted((REPO/"posts").glob("*/index.ipynb"))
BASELINES = REPO/"posts"/"2026-11-29-tinystories-baselines"/"index.ipynb"
CURVES = REPO/"posts"/"2026-12-01-capabilities-over-training"/"index.ipynb"
JUDGE_SECTION = "## How far can an LLM judge be trusted?"
SCORES = REPO/"tests"/"fixtures"/"analysis_wide_scores.csv"


def scored_workbook(folder, with_scores=True):
    "A temporary workbook root: the data files, and (optionally) the fixture scores imported as rater `ada`."
    make_workbook(folder)
    (folder/"scores").mkdir()
    if with_scores:
        store = ScoreStore(folder/"scores", completions=load_completions(folder/"data"/"completions"), rubric=load_rubric())
        import_wide_csv(SCORES, "ada", store, folder/"data"/"completions", prompts=load_prompts())
    return folder


def execute(post, root):
    "Run a post as Quarto would (from its own folder) with the workbook root at `root`; returns the executed notebook."
    env = offline_environment(root, TINYSCALE_ROOT=root, MPLBACKEND="Agg")
    notebook = nbformat.read(post, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(post.parent)}}).execute(env=env)
    return notebook


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    "Each post executed once on the fixture scores: {post: (notebook, workbook root)}."
    runs = {}
    for post in POSTS:
        root = scored_workbook(tmp_path_factory.mktemp("workbook"))
        if post == CURVES: write_planted_sweep(root, with_baseline=False)  # the fixture's released models are the reference lines
        runs[post] = execute(post, root), root
    return runs


def outputs(notebook, mime):
    return [o["data"][mime] for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if mime in o.get("data", {})]


def test_there_is_a_post():
    assert POSTS, "no posts/*/index.ipynb found"


@pytest.mark.parametrize("post", POSTS, ids=lambda p: p.parent.name)
def test_post_front_matter(post):
    notebook = nbformat.read(post, as_version=4)
    first = notebook.cells[0]
    assert first.cell_type == "raw" and first.source.startswith("---\n") and first.source.rstrip().endswith("---")
    for key in ("title:", "date:", "categories:"): assert key in first.source
    assert not any(c.get("outputs") for c in notebook.cells if c.cell_type == "code"), "posts are committed without outputs"


@pytest.mark.parametrize("post", POSTS, ids=lambda p: p.parent.name)
def test_post_runs_on_fixture_scores(post, executed):
    notebook, _ = executed[post]
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    pictures = outputs(notebook, "image/png")
    assert len(pictures) >= 1, "a post shows its figures"
    assert not any(text.startswith("**No scores yet.**") for text in outputs(notebook, "text/markdown"))


def test_baselines_post_shows_the_report(executed):
    "The first post shows the four figures, and its sentences and tables hold the report's numbers for the fixture scores."
    notebook, root = executed[BASELINES]
    report = report_from_store(root/"scores", root/"data"/"completions")
    assert report.rater == "ada" and len(report.models) == 3
    markdown = outputs(notebook, "text/markdown")
    assert headline(report) in markdown
    assert "\n".join(f"- {note}" for note in watch_notes(report)) in markdown
    assert CALIBRATION_NOTE in markdown
    tables = "\n".join(markdown)
    for row in report.summary[report.summary.level != "criterion"].itertuples():  # each cell as the report formats it
        if row.n: assert format_cell(row.mean, row.ci_low, row.ci_high, row.n, prompts=row.prompts) in tables
    assert "interval not meaningful (4 prompts)" in tables  # the fixture has 4 prompts per category: no interval from so few
    assert "| category | TinyStories-1M (3.7M params) |" in tables  # row names in a named column, not a pandas index
    assert not outputs(notebook, "text/html")
    assert "—" in tables  # the fixture's TinyStories-28M has no Reasoning scores
    assert len(outputs(notebook, "image/png")) == 4


@pytest.mark.parametrize("post", POSTS, ids=lambda p: p.parent.name)
def test_post_without_scores_says_so(post, tmp_path):
    notebook = execute(post, scored_workbook(tmp_path/"empty", with_scores=False))
    assert not [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert any(text.startswith("**No scores yet.**") for text in outputs(notebook, "text/markdown"))
    assert not outputs(notebook, "image/png")


def test_baselines_post_says_plainly_that_no_judge_has_scored(executed):
    notebook, _ = executed[BASELINES]
    assert any(c.cell_type == "markdown" and c.source.startswith(JUDGE_SECTION) for c in notebook.cells)
    markdown = outputs(notebook, "text/markdown")
    assert any(text.startswith("**No judge scores yet.** No LLM judge has scored the completions that ada scored") for text in markdown)
    assert not any("Blind agreement of" in text for text in markdown)


def test_baselines_post_shows_the_judges_blind_agreement(cli, tmp_path):
    "With a judge's scores next to ada's, the section holds the numbers of `tinyscale agreement --format csv`, per category and criterion."
    root = scored_workbook(tmp_path/"judged")
    add_fake_judge(root)
    notebook = execute(BASELINES, root)
    assert not [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    markdown = outputs(notebook, "text/markdown")
    assert not any(text.startswith("**No judge scores yet.**") for text in markdown)
    section, = [text for text in markdown if text.startswith("### Blind agreement of judge:fake with ada\n")]
    def agreement(format):
        result = cli("agreement", "--a", "ada", "--b", "judge:fake", "--store", root/"scores",
                     "--completions", root/"data"/"completions", "--format", format)
        assert result.status == 0
        return result.out
    assert section.split("\n\n")[1] == json.loads(agreement("json"))["headline"]  # the blind headline, first
    assert_tables_match(section, agreement("csv"), level=4)
    assert "Reviewed agreement" not in section
    assert any(text.startswith("**No calibrated judge yet.** No judge has been calibrated on ada's scores") for text in markdown)
    # the section sits under its heading, after the paper comparison and before what to watch for
    sources = [c.source.splitlines()[0] if c.source else "" for c in notebook.cells]
    judge_cell = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code" for o in c.get("outputs", [])
                      if section in o.get("data", {}).get("text/markdown", ""))
    assert sources.index("## Against the paper") < sources.index(JUDGE_SECTION) < judge_cell < sources.index("## What to watch for")


def test_baselines_post_sets_the_calibrated_judge_next_to_the_raw_one(cli, tmp_path):
    "After `tinyscale judge calibrate --write`, the judge section holds the calibrated rater's held-out agreement next to the raw judge's."
    root = scored_workbook(tmp_path/"calibrated")
    add_fake_judge(root)
    where = ("--store", root/"scores", "--completions", root/"data"/"completions")
    calibrated = cli("judge", "calibrate", "--a", "ada", "--b", "judge:fake", "--write", "--resamples", "199", *where, root=root)
    assert calibrated.status == 0, calibrated.err
    assert list((root/"data"/"judge"/"calibration").glob("*.json"))  # the saved mapping, for --calibration FILE
    notebook = execute(BASELINES, root)
    assert not [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    markdown = outputs(notebook, "text/markdown")
    assert not any(text.startswith("**No calibrated judge yet.**") for text in markdown)
    side, = [text for text in markdown if text.startswith("**judge:fake+cal** is judge:fake calibrated on ada's scores.")]
    assert "its agreement with ada is held out" in side
    for rater, label in (("judge:fake", "judge:fake (raw)"), ("judge:fake+cal", "judge:fake+cal (held out)")):
        result = cli("agreement", "--a", "ada", "--b", rater, *where, "--format", "json", root=root)
        first = json.loads(result.out)["blind_agreement"][0]  # the overall row, as `tinyscale agreement` measures it
        row = (f"| All criteria | {label} | {first['n']} | {first['exact']:.0%} [{first['exact_ci_low']:.0%}, {first['exact_ci_high']:.0%}] "
               f"| {first['baseline_exact']:.0%} |")
        assert row in side, (row, side)
    assert any(text.startswith("### Blind agreement of judge:fake+cal with ada\n") for text in markdown)  # and its own section


def test_baselines_post_says_plainly_that_self_agreement_is_not_measured(executed):
    "Imported scores were never shown again: the raters' section says so in one sentence, under its own heading."
    notebook, root = executed[BASELINES]
    report = report_from_store(root/"scores", root/"data"/"completions")
    assert not report.self_agreement.measured
    markdown = outputs(notebook, "text/markdown")
    assert f"### Self-agreement of ada\n\n{report.self_agreement.headline()}" in markdown
    assert report.self_agreement.headline().startswith("ada's agreement with themselves is not measured yet: no item was shown to ada")


def test_baselines_post_sets_the_raters_self_agreement_next_to_the_judges(tmp_path):
    "ada shown a fifth of her items again (one score in six changed) and a fake judge: the post holds the report's sentences."
    root = scored_workbook(tmp_path/"shown-again")
    store = ScoreStore(root/"scores", completions=load_completions(root/"data"/"completions"), rubric=load_rubric())
    scores = store.current("ada")
    again = scores[scores.completion_id.isin(scores.completion_id.unique()[::5])].reset_index(drop=True)
    away = {0.0: 0.5, 0.5: 1.0, 1.0: 0.5}
    store.set_scores([dict(completion_id=r.completion_id, criterion=r.criterion, score=away[r.score] if i % 6 == 0 else r.score)
                      for i, r in enumerate(again.itertuples())], "ada", repeat=True)
    add_fake_judge(root)
    notebook = execute(BASELINES, root)
    assert not [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    report = report_from_store(root/"scores", root/"data"/"completions")
    own = report.self_agreement
    assert own.measured and len(own.pairs) == len(again) and own.table.exact[0] < 1
    markdown = outputs(notebook, "text/markdown")
    section, = [text for text in markdown if text.startswith("### Blind agreement of judge:fake with ada\n")]
    assert section.split("\n\n")[2] == own.ceiling(report.agreements[0])
    assert "; ada agrees with themselves " in section.split("\n\n")[2]
    mine, = [text for text in markdown if text.startswith("### Self-agreement of ada\n")]
    assert mine.split("\n\n")[1:3] == [own.headline(), own.note()]
    assert markdown.index(mine) < markdown.index(section)  # with the raters, before the judge's section


def test_curves_post_shows_the_curves_and_the_order_of_emergence(executed):
    "The curves post shows its three figures, and its sentences and tables hold the numbers of `tinyscale curves` for the planted sweep."
    from tinyscale.curves import emergence_sentence
    from tinyscale.curve_report import curves_from_store, curves_headline, curves_watch_notes
    notebook, root = executed[CURVES]
    result = curves_from_store(root/"scores", [root/"data"/"completions"], root/"sweeps")
    assert result.runs == ["lr-fast", "lr-slow"]
    markdown = outputs(notebook, "text/markdown")
    assert curves_headline(result) in markdown
    assert "Reference lines: TinyStories-1M, TinyStories-8M and TinyStories-28M" in curves_headline(result)
    sentences = "\n".join(f"- {emergence_sentence(result.emergence, run)}" for run in result.runs)
    assert sentences in markdown and "Grammar is the first category whose lower 95% bound passes 0.5 (step 500)" in sentences
    assert "\n".join(f"- {note}" for note in curves_watch_notes(result)) in markdown
    html = "\n".join(outputs(notebook, "text/html"))
    grammar = result.curves[(result.curves.run == "lr-slow") & (result.curves.category == "Grammar") & (result.curves.level == "category")]
    for row in grammar.itertuples(): assert f"{row.mean:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}] n={row.n}" in html
    assert "step 500 (4.1M tokens)" in html  # the emergence table: Grammar of lr-fast
    assert len(outputs(notebook, "image/png")) == 3


def test_curves_post_without_a_sweep_says_so(tmp_path):
    "Scores of the released models but no checkpoint: the post says plainly that there is no sweep yet, and draws nothing."
    notebook = execute(CURVES, scored_workbook(tmp_path/"no-sweep"))
    assert not [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    markdown = outputs(notebook, "text/markdown")
    assert any(text.startswith("**No sweep yet.** none of ada's scores") and "no training axis" in text for text in markdown)
    assert not outputs(notebook, "image/png") and not outputs(notebook, "text/html")
