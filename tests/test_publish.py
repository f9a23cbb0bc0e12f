"""Posts and figures fit to publish: the first post with several people, with its `rater` parameter, on imported and on
generated completions, and the figures on realistic data, checked by what they draw (not by comparing images).

The post runs as in `test_posts.py` (nbclient, from its own folder, `TINYSCALE_ROOT` at a scratch workbook). Its
parameter is set the way Quarto and papermill set one: a cell assigning it right after the cell tagged `parameters`.
"""
import io, itertools, json
from contextlib import redirect_stdout

import nbformat
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D
from nbclient import NotebookClient

from agreement_support import add_fake_judge, assert_tables_match
from test_posts import BASELINES, JUDGE_SECTION, execute, outputs, scored_workbook
from tinyscale.analysis import (MIN_INTERVAL_PROMPTS, example_scores, format_cell, markdown_table, meaningful_intervals, model_labels,
                                model_order, model_params, paper_comparison, summary_table, wide_summary)
from tinyscale.cli import main
from tinyscale.completions import append_completions, example_completion, load_completions
from tinyscale.generate import completion_config
from tinyscale.plots import model_colors, report_figures, whiskers
from tinyscale.prompts import load_prompts
from tinyscale.report import build_report, headline, report_markdown, results_from_store
from tinyscale.rubric import load_paper_targets, load_rubric
from tinyscale.store import ScoreStore
from tinyscale.wide import import_wide_csv

RUBRIC, TARGETS = load_rubric(), load_paper_targets()
SETTINGS_WORDS = ("5 beams", "beam search", "no sampling")


def store_of(root):
    return ScoreStore(root/"scores", completions=load_completions(root/"data"/"completions"), rubric=RUBRIC)


def add_second_person(root, person="bo", human="ada"):
    "`person` scores what `human` scored, every 4th score one level higher (a 1 stays 1), every 9th left out."
    store = store_of(root)
    up = {0.0: 0.5, 0.5: 1.0, 1.0: 1.0}
    scores = [dict(completion_id=r.completion_id, criterion=r.criterion, score=up[r.score] if i % 4 == 0 else r.score)
              for i, r in enumerate(store.current(human).itertuples()) if i % 9 != 4]
    store.set_scores(scores, person, source="manual")


def with_parameters(post, tmp_path, **values):
    "A copy of `post` with `values` injected after its `parameters` cell, as Quarto and papermill do."
    notebook = nbformat.read(post, as_version=4)
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a post has one cell tagged parameters"
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in values.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(tagged[0] + 1, injected)
    path = tmp_path/post.name  # the post finds the workbook through TINYSCALE_ROOT, from any folder
    nbformat.write(notebook, path)
    return path


def run_post(root, tmp_path, **parameters):
    "Execute the first post on `root`, with `parameters` injected when given; returns the executed notebook."
    return execute(with_parameters(BASELINES, tmp_path, **parameters) if parameters else BASELINES, root)


def errors(notebook):
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


def agreement_csv(root, a, b):
    with redirect_stdout(io.StringIO()) as out:
        assert main(["agreement", "--a", a, "--b", b, "--store", str(root/"scores"), "--completions", str(root/"data"/"completions"),
                     "--format", "csv"]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def two_people(tmp_path_factory):
    "The fixture scores as `ada`, a second person `bo` who scored most of them, and a fake judge of ada's scores."
    root = scored_workbook(tmp_path_factory.mktemp("two-people"))
    add_second_person(root)
    add_fake_judge(root)
    return root


@pytest.fixture(scope="module")
def everyone(two_people, tmp_path_factory):
    return run_post(two_people, tmp_path_factory.mktemp("everyone"))


def test_a_post_has_a_rater_parameter_meaning_everyone():
    notebook = nbformat.read(BASELINES, as_version=4)
    cell, = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert cell.source.startswith("rater = None")
    assert "TINYSCALE_RATER" not in "".join(c.source for c in notebook.cells)


def test_the_post_shows_every_person_and_their_agreement(everyone, two_people):
    assert not errors(everyone)
    markdown = outputs(everyone, "text/markdown")
    text = "\n".join(markdown)
    assert "--rater" not in text and "pick one" not in text
    assert "All scores are from one rater" not in text
    results = results_from_store(two_people/"scores", two_people/"data"/"completions")
    assert results.raters == ["ada", "bo"]
    for report in results.reports: assert headline(report) in markdown
    assert markdown[0].startswith("2 people scored these completions: ada, bo.")
    overall = next(t for t in markdown if t.startswith("| rater |"))
    assert [line.split(" | ")[0] for line in overall.splitlines()[2:]] == ["| ada", "| bo"]
    # the people's blind agreement, with exactly the numbers of `tinyscale agreement`, before the judge's section
    people, = [t for t in markdown if t.startswith("### Blind agreement of bo with ada\n")]
    assert_tables_match(people, agreement_csv(two_people, "ada", "bo"), level=4)
    # the judge with each person
    for person in ("ada", "bo"):
        section, = [t for t in markdown if t.startswith(f"### Blind agreement of judge:fake with {person}\n")]
        assert_tables_match(section, agreement_csv(two_people, person, "judge:fake"), level=4)
    sources = [c.source.splitlines()[0] if c.source else "" for c in everyone.cells]
    assert sources.index("## Against the paper") < sources.index("## Do the raters agree?") < sources.index(JUDGE_SECTION)
    assert markdown.index(people) < min(i for i, t in enumerate(markdown) if t.startswith("### Blind agreement of judge:fake"))
    assert "**Scores of ada**" in markdown and "**Scores of bo**" in markdown
    assert any(t.startswith("- ") and "These are ada's scores; bo also scored" in t for t in markdown)
    assert len(outputs(everyone, "image/png")) == 2 * 4  # each person's four figures


def test_the_post_says_what_is_known_of_imported_completions(everyone):
    markdown = outputs(everyone, "text/markdown")
    made, = [t for t in markdown if t.startswith("**How the completions were made.**")]
    assert "imported with their scores from a score file; how they were generated (decoding, sampling, lengths) is not recorded" in made
    assert "TinyStories-1M, TinyStories-8M and TinyStories-28M" in made
    prose = "\n".join(c.source for c in everyone.cells if c.cell_type == "markdown") + "\n".join(markdown)
    for words in SETTINGS_WORDS: assert words not in prose, words
    assert any(t.startswith("How some of these completions were decoded is not recorded") for t in markdown)


def test_the_rater_parameter_shows_that_rater_only(two_people, tmp_path):
    notebook = run_post(two_people, tmp_path, rater="bo")
    assert not errors(notebook)
    markdown = outputs(notebook, "text/markdown")
    assert markdown[0].startswith("This post shows the scores of bo only, as its parameter `rater` asks")
    bo = results_from_store(two_people/"scores", two_people/"data"/"completions", "bo").reports[0]
    assert headline(bo) in markdown and not any(t.startswith("Scores by **ada**") for t in markdown)
    assert not any(t.startswith("### Blind agreement of bo with ada") for t in markdown)
    assert any(t.startswith("### Blind agreement of judge:fake with bo\n") for t in markdown)
    assert any("Only bo's scores are shown here (the post's parameter `rater`)" in t for t in markdown)
    assert len(outputs(notebook, "image/png")) == 4


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    "A workbook whose completions were generated here (beam search settings in their records), scored on 2 prompts per category by `cy`."
    root = scored_workbook(tmp_path_factory.mktemp("generated"), with_scores=False)
    prompts = [p for p in load_prompts() if p.id.endswith(("-01", "-02"))]
    records = [example_completion(p.id, p.category, p.prompt, f" a story of {p.id}.", model, "rev1", completion_config("default", p.category),
                                  finish_reason="length")
               for model in ("roneneldan/TinyStories-1M", "roneneldan/TinyStories-8M") for p in prompts]
    append_completions(root/"data"/"completions"/"run.jsonl", records)
    store = store_of(root)
    scores = [dict(completion_id=r.completion_id, criterion=c.label, score=[0.0, 0.5, 1.0][(i + j) % 3])
              for i, r in enumerate(records) for j, c in enumerate(RUBRIC.for_category(r.category))]
    store.set_scores(scores, "cy", source="manual")
    return root


def test_a_partial_rater_gets_no_zero_width_interval(generated, tmp_path):
    notebook = run_post(generated, tmp_path)
    assert not errors(notebook)
    markdown = outputs(notebook, "text/markdown")
    text = "\n".join(markdown)
    report = results_from_store(generated/"scores", generated/"data"/"completions").reports[0]
    assert (report.summary.prompts < MIN_INTERVAL_PROMPTS).any()
    for row in report.summary[report.summary.n > 0].itertuples():
        if row.prompts < MIN_INTERVAL_PROMPTS:
            assert np.isnan(row.ci_low) and format_cell(row.mean, row.ci_low, row.ci_high, row.n, prompts=row.prompts) in text
    assert "interval not meaningful (2 prompts)" in text
    assert not any(f"[{v:.2f}, {v:.2f}]" in text for v in report.summary["mean"].dropna())  # no zero-width interval anywhere
    made, = [t for t in markdown if t.startswith("**How the completions were made.**")]
    assert made.endswith("24 completions of TinyStories-1M and TinyStories-8M: beam search (5 beams, no sampling), at most 256 new tokens.")
    assert any(t.startswith("Beam search returns each model's single most likely continuation") for t in markdown)


def test_counts_are_prompt_slots_not_ids(tmp_path):
    "A wide file whose prompts match no prompt of the set: one prompt's 3 completions share one `import-` id, and the counts are of prompt slots."
    import pandas as pd
    from test_posts import SCORES
    wide = pd.read_csv(SCORES)
    wide["prompt"] = wide["prompt"] + " (as published)"
    path = tmp_path/"published.csv"
    wide.to_csv(path, index=False)
    root = scored_workbook(tmp_path/"workbook", with_scores=False)
    import_wide_csv(path, "ada", store_of(root), root/"data"/"completions", prompts=load_prompts())
    report = build_report(store_of(root).current("ada"), RUBRIC, TARGETS, n_resamples=200)
    ids, slots = report.scores.prompt_id.nunique(), wide.groupby(["category", "prompt"]).ngroups
    assert ids == slots < len(wide)
    assert report.scores.prompt_id.str.startswith("import-").all()
    completions = wide.shape[0]
    assert f"{completions} completions ({slots} prompt slots, 3 models)" in headline(report)
    assert f"scores of {completions} completions of {slots} prompt slots." in report_markdown(report)


# Figures on realistic data: the three TinyStories baselines, a local copy of one of them (random weights, same name) and
# three checkpoints of one small run (all the same size)

MODELS = ("roneneldan/TinyStories-1M", "roneneldan/TinyStories-8M", "roneneldan/TinyStories-28M", "models/TinyStories-8M",
          "runs/llama-5M/checkpoint-500", "runs/llama-5M/checkpoint-2000", "runs/llama-5M/checkpoint-8000")
SIZES = {"models/TinyStories-8M": 19702528, **{m: 5_100_000 for m in MODELS[4:]}}


@pytest.fixture(scope="module")
def realistic():
    scores = example_scores(RUBRIC, models=MODELS, skill=(0.45, 0.65, 0.8, 0.1, 0.3, 0.5, 0.6), prompts_per_category=25)
    scores["params"] = scores.model.map(SIZES)
    params = model_params(scores, TARGETS)
    models = model_order(scores.model.unique(), params)
    summary = meaningful_intervals(summary_table(scores, RUBRIC, models=models, n_resamples=200))
    comparison = paper_comparison(summary, TARGETS, params)
    labels = model_labels(models, params)
    figures, skipped = report_figures(summary, comparison, params, TARGETS, labels, RUBRIC)
    assert skipped == {}
    return dict(figures=figures, labels=labels, models=models, params=params, summary=summary)


def legend_colors(figure):
    found = {}
    for ax in figure.axes:
        legend = ax.get_legend()
        if legend is None: continue
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            color = handle.get_color() if isinstance(handle, Line2D) else handle.get_facecolor()
            found[text.get_text()] = to_rgb(color[0] if np.ndim(color) == 2 else color)
    return found


def test_one_colour_per_model_across_the_figures(realistic):
    colors = {realistic["labels"][m]: to_rgb(c) for m, c in model_colors(realistic["models"]).items()}
    assert len(set(colors.values())) == len(MODELS)  # the local TinyStories-8M is not drawn in the released one's blue
    assert colors["roneneldan/TinyStories-8M (19.7M params)"] == to_rgb("#3182BD")
    figures = realistic["figures"]
    for name in ("category_bars", "scaling_curve", "ours_vs_paper"):
        drawn = {k: v for k, v in legend_colors(figures[name]).items() if k in colors}
        assert drawn and drawn == {k: colors[k] for k in drawn}, name
    assert set(legend_colors(figures["category_bars"])) == set(colors) | {"Paper: GPT-4 grade / 10"}
    heatmap = figures["criterion_heatmap"].axes[0]
    assert [to_rgb(p.get_facecolor()) for p in heatmap.patches] == [colors[realistic["labels"][m]] for m in realistic["models"]]
    bars = figures["category_bars"].axes[0]
    assert [to_rgb(p.get_facecolor()) for p in bars.patches[::6]] == [colors[realistic["labels"][m]] for m in realistic["models"]]


def test_the_scaling_curve_has_one_idea_per_panel(realistic):
    curve = realistic["figures"]["scaling_curve"]
    panels = [ax for ax in curve.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["All criteria", "Grammar", "Creativity", "Plot", "Factual Knowledge", "Reasoning", "Context-Tracking"]
    for ax in panels:
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == (1 if ax.get_title() in ("Grammar", "Creativity", "Plot", "Context-Tracking") else 0)  # the paper's grades
        points = [line for line in ax.get_lines() if line.get_linestyle() == "None" and line.get_marker() == "o"]
        assert len(points) == len(MODELS) and whiskers(ax) == len(MODELS)
        assert len({line.get_xdata()[0] for line in points}) == len(MODELS)  # same-size checkpoints do not hide each other
        assert ax.get_xscale() == "log"
    legend = [t.get_text() for t in curve.axes[len(panels)].get_legend().get_texts()]
    assert legend == [realistic["labels"][m] for m in realistic["models"]] + ["ours: 95% interval over prompts", "Paper: GPT-4 grade / 10"]
    assert {t.get_text() for t in curve.texts} >= {"Mean score against model size", "Parameters (log scale)", "Mean score (0 = fail, 1 = success)"}


def overlaps(texts, renderer):
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_text()]
    return [(a, b) for a, b in itertools.combinations(range(len(boxes)), 2) if boxes[a].overlaps(boxes[b])]


def test_labels_are_complete_and_do_not_collide(realistic):
    figures = realistic["figures"]
    heatmap = figures["criterion_heatmap"]
    renderer = heatmap.canvas.get_renderer()
    ax = heatmap.axes[0]
    rows = [" ".join(t.get_text().split()) for t in ax.get_yticklabels()]
    assert rows == [f"{c.category} {c.label}: {c.text}" for c in RUBRIC.criteria]
    assert not overlaps(ax.get_xticklabels(), renderer) and not overlaps(ax.get_yticklabels(), renderer)
    assert "models/\nTinyStories-8M\n(19.7M params)" in [t.get_text() for t in ax.get_xticklabels()]
    for name, figure in figures.items():
        for axis in figure.axes:
            for text in axis.get_xticklabels() + axis.get_yticklabels(): assert "…" not in text.get_text(), name
    scatter = figures["ours_vs_paper"].axes[0]
    assert scatter.get_xlabel() and scatter.get_ylabel() and "beam" not in scatter.get_ylabel()
    bars = figures["category_bars"].axes[0]
    assert bars.get_ylabel() and not overlaps(bars.get_xticklabels(), figures["category_bars"].canvas.get_renderer())


def test_tables_have_named_row_columns(realistic):
    table = markdown_table(wide_summary(realistic["summary"], "criterion", realistic["labels"], RUBRIC), "criterion")
    header = table.splitlines()[0]
    assert header.startswith("| criterion | TinyStories-1M (3.7M params) |")
    assert "Plot D: The story maintains focus on the central conflict/theme without random diversions" in table


def test_saving_the_post_in_the_lab_keeps_its_parameters_tag(tmp_path, monkeypatch):
    "JupyterLab's save hook cleans a post as nbdev-clean does; the `parameters` tag must survive it (pyproject's allowed_cell_metadata_keys)."
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from test_panel import lab_settings
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path/"jupyter-data"))
    (tmp_path/"project"/"posts"/"a-post").mkdir(parents=True)
    manager = FileContentsManager(root_dir=str(tmp_path/"project"), pre_save_hook=lab_settings().ContentsManager.pre_save_hook)
    committed = BASELINES.read_bytes()
    manager.save({"type": "notebook", "format": "json", "content": json.loads(committed)}, "posts/a-post/index.ipynb")
    saved = tmp_path/"project"/"posts"/"a-post"/"index.ipynb"
    assert saved.read_bytes() == committed
    assert [c.source for c in nbformat.read(saved, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
