"""The scoring panel's logic, through the plain methods its widgets call (no browser needed)."""
import json
from pathlib import Path

import pandas as pd
import pytest

from tinyscale.completions import load_completions
from tinyscale.core import TinyscaleError
from tinyscale.panel import PANEL_KEYS, ScorePanel, ScoringSession, remember_rater, remembered_rater, scoring_order, widget_texts
from tinyscale.rubric import load_rubric
from tinyscale.store import ScoreStore

FIXTURE = Path(__file__).resolve().parent/"fixtures"/"panel"
MODELS = ("roneneldan/TinyStories-1M", "roneneldan/TinyStories-8M")


class Clock:
    "A clock the test moves by hand."
    def __init__(self): self.now = 100.0
    def __call__(self): return self.now


@pytest.fixture
def completions(): return load_completions(FIXTURE)

@pytest.fixture
def rubric(): return load_rubric()

@pytest.fixture
def store(tmp_path, completions, rubric): return ScoreStore(tmp_path/"scores", completions=completions, rubric=rubric)

@pytest.fixture
def panel(completions, rubric, store): return ScorePanel(completions, rubric, store, "ana", clock=Clock())


def events_on_disk(store, rater="ana"):
    path = store.rater_path(rater)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def score_all(panel, position, level=1.0):
    panel.go_to(position)
    for criterion in panel.criteria: panel.set_score(criterion.label, level)


# Order

def test_interleaved_order_is_seeded_and_independent_of_row_order(completions):
    order = scoring_order(completions, seed=0)
    assert sorted(order) == sorted(completions.completion_id)
    assert scoring_order(completions.iloc[::-1], seed=0) == order
    assert scoring_order(completions.sample(frac=1, random_state=1), seed=0) == order
    assert len({tuple(scoring_order(completions, seed=s)) for s in range(6)}) > 1


def test_interleaved_order_spreads_models_and_categories():
    rows = [dict(completion_id=f"{m}-{c}-{i}", prompt_id=f"{c}-{i}", category=c, model=m)
            for m, n in (("small", 40), ("medium", 40), ("large", 20)) for c in ("Grammar", "Plot", "Reasoning") for i in range(n // 2)]
    table = pd.DataFrame(rows)
    share = table.model.value_counts() / len(table)
    for seed in range(3):
        models = [cid.split("-")[0] for cid in scoring_order(table, seed=seed)]
        for k in range(1, len(models) + 1):
            for model in share.index: assert abs(models[:k].count(model) - k * share[model]) <= 1.5, (seed, k, model)
        categories = [cid.split("-")[1] for cid in scoring_order(table, seed=seed)]
        assert all(abs(categories[:len(categories) // 2].count(c) - len(categories) / 6) <= 4 for c in ("Grammar", "Plot", "Reasoning"))


def test_sequential_order_is_model_by_model_then_category(completions):
    table = completions.set_index("completion_id")
    order = scoring_order(completions, "sequential")
    assert [table.model[c] for c in order] == [MODELS[0]] * 4 + [MODELS[1]] * 4
    assert [table.category[c] for c in order][:4] == ["Grammar", "Grammar", "Context-Tracking", "Context-Tracking"]
    with pytest.raises(TinyscaleError, match="order 'shuffled'"): scoring_order(completions, "shuffled")


def test_panel_follows_its_order(completions, rubric, store):
    blind = ScorePanel(completions, rubric, store, "ana", seed=3)
    assert blind.order == scoring_order(completions, seed=3)
    sequential = ScorePanel(completions, rubric, store, "ana", order="sequential")
    assert sequential.order == scoring_order(completions, "sequential")


# Blind mode

def test_blind_panel_never_shows_a_model_name(panel):
    seen = []
    for position in range(len(panel.order)):
        panel.go_to(position)
        panel.set_score(0, 1)
        panel.set_note(f"note {position}")
        seen += widget_texts(panel.ui)
    assert seen and not [text for text in seen if any(m in text or m.split("/")[1] in text for m in MODELS)]
    assert "TinyStories" not in repr(panel)


def test_unblinded_panel_shows_the_model(completions, rubric, store):
    panel = ScorePanel(completions, rubric, store, "ana", blind=False)
    assert panel.item.model in panel.header.value


# Scoring and persistence

def test_every_score_is_on_disk_when_set_score_returns(panel, store):
    event = panel.set_score("A", 1)
    on_disk = events_on_disk(store)
    assert len(on_disk) == 1 and on_disk[0]["completion_id"] == panel.completion_id
    assert (on_disk[0]["criterion"], on_disk[0]["score"], on_disk[0]["source"]) == ("A", 1.0, "manual")
    assert on_disk[0] == event
    panel.set_score("A", 0.5)
    panel.set_score("A", None)
    assert [e["score"] for e in events_on_disk(store)] == [1.0, 0.5, None]
    assert panel.scores() == {}


def test_setting_the_same_score_writes_nothing(panel, store):
    panel.set_score("A", 1)
    assert panel.set_score("A", 1.0) is None
    assert panel.set_score("B", None) is None
    assert len(events_on_disk(store)) == 1


def test_invalid_scores_are_refused_before_writing(panel, store):
    for bad in (0.3, 2, "good"):
        with pytest.raises(TinyscaleError): panel.set_score("A", bad)
    with pytest.raises(TinyscaleError, match="'Q' is not a criterion"): panel.set_score("Q", 1)
    with pytest.raises(TinyscaleError, match="row 9 does not exist"): panel.set_score(9, 1)
    assert events_on_disk(store) == []


def test_buttons_show_the_current_value(panel):
    panel.set_score(1, 0.5)
    row = panel.rows[1]
    assert row.buttons[0.5].description == "✓ 0.5" and row.buttons[0.5].button_style == "warning"
    assert row.buttons[1.0].description == "1" and row.buttons[1.0].button_style == ""
    assert not row.clear.disabled and panel.rows[0].clear.disabled
    panel.rows[1].buttons[0.0].click()
    assert panel.scores()[panel.criteria[1].label] == 0.0 and row.buttons[0.0].button_style == "danger"
    panel.rows[1].clear.click()
    assert panel.criteria[1].label not in panel.scores()


def test_unused_criterion_rows_are_hidden(panel):
    for position, cid in enumerate(panel.order):
        panel.go_to(position)
        shown = [row.box.layout.display != "none" for row in panel.rows]
        assert shown == [i < len(panel.criteria) for i in range(len(panel.rows))]


def test_time_on_the_item_is_recorded_with_each_event(completions, rubric, store):
    clock = Clock()
    panel = ScorePanel(completions, rubric, store, "ana", clock=clock)
    clock.now += 12
    assert panel.set_score("A", 1)["seconds"] == 12
    clock.now += 3
    assert panel.set_note("hm")["seconds"] == 15
    panel.go_next()
    clock.now += 100                                   # on another item
    panel.go_previous()
    clock.now += 5                                     # back again: the visits add up
    assert panel.set_score("B", 0)["seconds"] == 20


# Navigation and resuming

def test_navigation_stops_at_the_ends(panel):
    panel.go_to(0)
    assert panel.go_previous() == 0 and "first item" in panel.status.value
    assert panel.go_next() == 1
    panel.go_to(len(panel.order) - 1)
    assert panel.go_next() == len(panel.order) - 1 and "last item" in panel.status.value
    assert panel.go_to(panel.order[3]) == 3
    with pytest.raises(TinyscaleError, match="item 9 does not exist"): panel.go_to(8)
    with pytest.raises(TinyscaleError, match="not in this panel"): panel.go_to("0000000000000000")


def test_jump_box_goes_to_the_item(panel):
    panel.jump.value = 5                               # typed, then Enter or leaving the box
    assert panel.position == 4 and "Item 5 of 8" in panel.header.value
    panel.go_to(1)
    assert panel.jump.value == 2 and panel.position == 1
    panel.jump_button.click()
    assert panel.position == 1


def test_next_unscored_skips_scored_items_and_wraps(panel):
    for position in (1, 2, 5): score_all(panel, position)
    panel.go_to(0)
    assert panel.next_unscored() == 3
    panel.go_to(6)
    assert panel.next_unscored() == 7
    assert panel.next_unscored() == 0                  # wraps around
    for position in (0, 3, 4, 6, 7): score_all(panel, position)
    assert panel.next_unscored() == 7 and "All 8 items are scored" in panel.status.value


def test_focus_starts_at_the_first_unscored_criterion(panel):
    panel.set_score(0, 1)
    panel.go_next()
    panel.go_previous()
    assert panel.criterion_index == 1
    assert panel.focus_criterion(99) == len(panel.criteria) - 1
    assert panel.focus_criterion(-4) == 0


def test_a_new_panel_resumes_at_the_first_unscored_item_with_its_scores(completions, rubric, store, tmp_path):
    panel = ScorePanel(completions, rubric, store, "ana")
    score_all(panel, 0)
    panel.go_to(1)
    panel.set_score(0, 0.5)
    panel.set_note("half done")
    panel.go_to(6)
    # A kernel restart: a fresh store and panel over the same folder.
    reopened = ScorePanel(completions, rubric, ScoreStore(tmp_path/"scores", completions=completions, rubric=rubric), "ana")
    assert reopened.position == 1 and reopened.completion_id == panel.order[1]
    assert reopened.scores() == {reopened.criteria[0].label: 0.5}
    assert reopened.rows[0].buttons[0.5].description == "✓ 0.5"
    assert reopened.notes.value == "half done"
    assert reopened.criterion_index == 1
    assert reopened.progress_text().startswith("1 / 8 scored")


def test_a_fully_scored_panel_opens_at_the_first_item(panel, completions, rubric, store):
    for position in range(len(panel.order)): score_all(panel, position, 0)
    assert ScorePanel(completions, rubric, store, "ana").position == 0


# Progress and notes

def test_progress_counts_fully_scored_items_per_category(panel):
    assert panel.progress().to_dict("records") == [dict(category="Grammar", scored=0, total=4),
                                                   dict(category="Context-Tracking", scored=0, total=4)]
    grammar = [i for i, cid in enumerate(panel.order) if panel.table.category[cid] == "Grammar"]
    score_all(panel, grammar[0])
    panel.go_to(grammar[1])
    panel.set_score(0, 1)                              # partly scored: not counted
    assert panel.progress().scored.tolist() == [1, 0]
    assert panel.progress_text() == "1 / 8 scored · Grammar 1 / 4 · Context-Tracking 0 / 4"
    assert panel.progress_bar.value == 1
    assert "1 / 8 scored" in panel.progress_line.value


def test_notes_are_saved_per_item_and_only_when_changed(panel, store):
    panel.notes.value = "odd ending"                   # what the browser does when the box loses focus
    first = panel.completion_id
    panel.go_next()
    assert panel.notes.value == ""
    assert panel.set_note("") is None
    panel.go_previous()
    assert panel.notes.value == "odd ending" and panel.note(first) == "odd ending"
    panel.notes.value = ""
    notes = [(e["criterion"], e["note"]) for e in events_on_disk(store)]
    assert notes == [("", "odd ending"), ("", "")]


def test_several_raters_score_into_their_own_files(completions, rubric, store):
    ana, bo = (ScorePanel(completions, rubric, store, name) for name in ("ana", "bo"))
    ana.set_score("A", 1)
    bo.set_score("A", 0)
    assert sorted(p.name for p in store.folder.iterdir()) == ["ana.jsonl", "bo.jsonl"]
    assert ana.scores() == {"A": 1.0} and bo.scores() == {"A": 0.0}
    assert [e["rater"] for e in events_on_disk(store, "bo")] == ["bo"]


# Keys

def test_keys_score_the_focused_criterion_and_move(panel):
    grammar = next(i for i, cid in enumerate(panel.order) if panel.table.category[cid] == "Grammar")
    panel.go_to(grammar)
    for key in ("1", "5", "0"): assert panel.handle_key(key)
    assert panel.scores() == {"A": 1.0, "B": 0.5, "C": 0.0} and panel.criterion_index == 3
    panel.handle_key("ArrowUp")
    panel.handle_key("Backspace")
    assert panel.scores() == {"A": 1.0, "B": 0.5}
    panel.handle_key("ArrowDown")
    assert panel.criterion_index == 3
    panel.handle_key("j"); assert panel.position == grammar + 1
    panel.handle_key("k"); assert panel.position == grammar
    panel.handle_key("ArrowRight"); panel.handle_key("ArrowLeft"); assert panel.position == grammar
    assert panel.handle_key("q") is False


def test_every_key_the_browser_sends_is_handled(panel):
    assert set(panel.keys.panel_keys) == set(PANEL_KEYS)
    for key in PANEL_KEYS: assert panel.handle_key(key), key


def test_a_key_message_from_the_browser_reaches_handle_key(panel):
    panel.keys._handle_custom_msg({"key": "1"}, [])
    assert panel.scores() == {panel.criteria[0].label: 1.0}


# Errors in callbacks

class FailingStore(ScoreStore):
    def set_score(self, *args, **kwargs): raise RuntimeError("the disk went away")


def test_an_exception_in_a_callback_shows_in_the_output_widget(tmp_path, completions, rubric):
    panel = ScorePanel(completions, rubric, FailingStore(tmp_path, completions=completions, rubric=rubric), "ana")
    panel.rows[0].buttons[1.0].click()                 # a mouse click
    panel.keys._handle_custom_msg({"key": "5"}, [])    # a key
    texts = [o["text"] for o in panel.errors.outputs]
    assert len(texts) == 2 and all("RuntimeError: the disk went away" in t and "Traceback" in t for t in texts)
    assert "RuntimeError" in panel.status.value and isinstance(panel.last_error, RuntimeError)
    assert panel.rows[0].buttons[1.0].description == "1"
    panel.next_button.click()                          # the panel keeps working
    assert panel.position == 1


def test_bad_arguments_are_refused(completions, rubric, store, tmp_path):
    with pytest.raises(TinyscaleError, match="non-empty rater"): ScorePanel(completions, rubric, store, " ")
    with pytest.raises(TinyscaleError, match="no completions"): ScorePanel(completions.iloc[:0], rubric, store, "ana")
    with pytest.raises(TinyscaleError, match="missing column"): ScorePanel(completions.drop(columns="prompt"), rubric, store, "ana")
    other = ScoreStore(tmp_path/"other", completions=completions.iloc[:2], rubric=rubric)
    with pytest.raises(TinyscaleError, match="not in the store's completions table"): ScorePanel(completions, rubric, other, "ana")


# The scoring notebook's session

def test_session_remembers_the_rater(tmp_path, completions, store, monkeypatch):
    monkeypatch.delenv("TINYSCALE_RATER", raising=False)
    name_file = tmp_path/".tinyscale-rater"
    session = ScoringSession(completions=completions, store=store, rater_path=name_file)
    assert session.panel is None and "Type your name" in session.message.value
    session.name.value = "ana"
    session.start_button.click()
    assert session.panel.rater == "ana" and remembered_rater(name_file) == "ana"
    assert session.panel.ui in session.holder.children
    assert ScoringSession(completions=completions, store=store, rater_path=name_file).panel.rater == "ana"
    monkeypatch.setenv("TINYSCALE_RATER", "bo")
    assert ScoringSession(completions=completions, store=store, rater_path=name_file).panel.rater == "bo"


def test_session_reports_a_bad_name_and_no_completions(tmp_path, completions, store, monkeypatch):
    monkeypatch.delenv("TINYSCALE_RATER", raising=False)
    session = ScoringSession(completions=completions, store=store, rater_path=tmp_path/"name")
    session.start_button.click()
    assert "type your name" in session.errors.outputs[0]["text"] and session.panel is None
    empty = ScoringSession(completions=completions.iloc[:0], rater_path=tmp_path/"name")
    assert "no completions to score yet" in empty.message.value and empty.panel is None
    with pytest.raises(TinyscaleError): remember_rater("two\nlines", tmp_path/"name")


# The scoring notebook itself

ROOT = Path(__file__).resolve().parents[1]


def run_scoring_notebook(project:Path, tmp_path:Path, monkeypatch)->str:
    "Execute nbs/score.ipynb with `project` as the workbook root; returns the widget state it showed, as JSON."
    import nbformat
    from nbclient import NotebookClient
    for name, value in dict(TINYSCALE_ROOT=project, TINYSCALE_RATER="ana", JUPYTER_RUNTIME_DIR=tmp_path/"runtime",
                            JUPYTER_DATA_DIR=tmp_path/"data", JUPYTER_CONFIG_DIR=tmp_path/"config", IPYTHONDIR=tmp_path/"ipython").items():
        monkeypatch.setenv(name, str(value))
    notebook = nbformat.read(ROOT/"nbs"/"score.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(project)}}).execute()
    return json.dumps(notebook.metadata.get("widgets", {}), ensure_ascii=False)


def test_the_scoring_notebook_opens_a_panel_and_writes_nothing(tmp_path, monkeypatch):
    project = tmp_path/"project"
    (project/"data"/"completions").mkdir(parents=True)
    for name in ("criteria.csv", "scoring_rules.toml"): (project/"data"/name).write_bytes((ROOT/"data"/name).read_bytes())
    (project/"data"/"completions"/"fixture.jsonl").write_bytes((FIXTURE/"completions.jsonl").read_bytes())
    before = sorted(project.rglob("*"))
    shown = run_scoring_notebook(project, tmp_path, monkeypatch)
    assert "Scoring as <b>ana</b>" in shown and "Item 1 of 8" in shown and "0 / 8 scored" in shown
    assert not any(m in shown for m in MODELS)
    assert sorted(project.rglob("*")) == before


def test_the_scoring_notebook_says_when_there_is_nothing_to_score(tmp_path, monkeypatch):
    project = tmp_path/"project"
    (project/"data").mkdir(parents=True)
    (project/"data"/"criteria.csv").write_bytes((ROOT/"data"/"criteria.csv").read_bytes())
    shown = run_scoring_notebook(project, tmp_path, monkeypatch)
    assert "There are no completions to score yet" in shown
    assert sorted(p.name for p in project.rglob("*")) == ["criteria.csv", "data"]


# The project's JupyterLab settings (jupyter_server_config.py), which `make lab` uses

def lab_settings():
    from traitlets.config.loader import PyFileConfigLoader
    return PyFileConfigLoader("jupyter_server_config.py", path=str(ROOT)).load_config()


def test_make_lab_serves_the_project_and_opens_the_index():
    settings = lab_settings()
    assert settings.ServerApp.root_dir == str(ROOT)
    assert settings.LabApp.default_url == "/lab/tree/nbs/index.ipynb"
    assert "jupyter lab --config=$(CURDIR)/jupyter_server_config.py" in (ROOT/"Makefile").read_text()


def after_a_scoring_session(notebook:dict)->dict:
    "What JupyterLab sends when it saves the scoring notebook after a session."
    notebook = json.loads(json.dumps(notebook))
    for cell in notebook["cells"]: cell["source"] = "".join(cell["source"])   # the browser sends one string
    notebook["cells"][-1].update(execution_count=2, outputs=[{"output_type": "display_data", "metadata": {},
                                 "data": {"text/plain": "VBox(... Scoring as <b>ana</b> ...)",
                                          "application/vnd.jupyter.widget-view+json": {"model_id": "ab12", "version_major": 2, "version_minor": 0}}}])
    notebook["cells"][-1]["metadata"]["scrolled"] = True
    notebook["cells"].append({"cell_type": "code", "execution_count": None, "id": "0a1b2c3d", "metadata": {}, "outputs": [], "source": ""})
    notebook["metadata"]["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    notebook["metadata"].update(language_info={"name": "python", "version": "3.11.2"},
                                widgets={"application/vnd.jupyter.widget-state+json": {"state": {"ab12": {"state": {"value": "ana"}}}}})
    return notebook


@pytest.fixture
def contents_manager(tmp_path, monkeypatch):
    "A Jupyter contents manager over a scratch project, with the project's pre-save hook (saving signs: keep that under tmp)."
    from jupyter_server.services.contents.filemanager import FileContentsManager
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path/"jupyter-data"))
    for folder in ("nbs", "posts/a-post", "elsewhere"): (tmp_path/"project"/folder).mkdir(parents=True)
    return FileContentsManager(root_dir=str(tmp_path/"project"), pre_save_hook=lab_settings().ContentsManager.pre_save_hook)


def test_saving_the_scoring_notebook_after_a_session_leaves_it_as_committed(contents_manager):
    committed = (ROOT/"nbs"/"score.ipynb").read_bytes()
    model = {"type": "notebook", "format": "json", "content": after_a_scoring_session(json.loads(committed))}
    contents_manager.save(model, "nbs/score.ipynb")
    saved = Path(contents_manager.root_dir)/"nbs"/"score.ipynb"
    assert saved.read_bytes() == committed
    assert "ana" not in saved.read_text(encoding="utf-8")


def test_other_notebooks_lose_only_what_their_folder_does_not_commit(contents_manager):
    session = after_a_scoring_session(json.loads((ROOT/"nbs"/"score.ipynb").read_text(encoding="utf-8")))
    for path in ("posts/a-post/index.ipynb", "elsewhere/scratch.ipynb"):
        contents_manager.save({"type": "notebook", "format": "json", "content": json.loads(json.dumps(session))}, path)
    post, scratch = (json.loads((Path(contents_manager.root_dir)/p).read_text()) for p in ("posts/a-post/index.ipynb", "elsewhere/scratch.ipynb"))
    assert all(cell.get("outputs", []) == [] for cell in post["cells"]) and set(post["metadata"]) == {"kernelspec"}
    assert scratch["cells"][-2]["outputs"] and "widgets" not in scratch["metadata"] and "language_info" in scratch["metadata"]
    contents_manager.save({"type": "file", "format": "text", "content": "not a notebook"}, "nbs/notes.txt")
    assert (Path(contents_manager.root_dir)/"nbs"/"notes.txt").read_text() == "not a notebook"


def test_the_panel_and_the_judge_read_one_rules_file(tmp_path, monkeypatch, completions, rubric, store):
    "A workbook's own `data/scoring_rules.toml` changes what the panel shows and what the judge is told, alike."
    import shutil
    from tinyscale.core import data_path
    from tinyscale.judge_templates import load_templates
    root = tmp_path/"workbook"
    shutil.copytree(data_path(), root/"data", ignore=shutil.ignore_patterns("completions"))
    rules = (root/"data"/"scoring_rules.toml").read_text()
    rules = rules.replace('"0.5" = "partly meets the criterion"', '"0.5" = "halfway there"')
    rules = rules.replace("faults = [", 'faults = [\n  "it copies the opening word for word",')
    (root/"data"/"scoring_rules.toml").write_text(rules)
    monkeypatch.setenv("TINYSCALE_ROOT", str(root))
    panel = ScorePanel(completions, rubric, store, "ana", clock=Clock())
    item = panel.item
    prompt = load_templates()[item.category].render(dict(prompt=item.prompt, completion=item.completion))
    assert "it copies the opening word for word" in panel.penalties.value and "- it copies the opening word for word;" in prompt
    assert panel.rows[0].buttons[0.5].tooltip == "0.5: halfway there" and "- 0.5: halfway there;" in prompt
    assert panel.levels.children[2].value.endswith(">halfway</div>")
    for fault in panel.rules.faults: assert fault in prompt


def many_completions(n=20):
    "`n` prompts × the two models, one Grammar completion each: enough items for second showings."
    from tinyscale.completions import Completion, completion_id
    from tinyscale.core import config_hash, text_hash
    config = {"num_beams": 5}
    rows = [Completion(completion_id(model, "rev0", text_hash(f"prompt {i}"), config_hash(config)), f"gr-{i:02d}", "Grammar",
                       f"prompt {i}", f" story {i} by {model[-2:]}", model, revision="rev0", prompt_hash=text_hash(f"prompt {i}"),
                       config=config, config_hash=config_hash(config), finish_reason="eos").to_dict()
            for model in MODELS for i in range(n)]
    return pd.DataFrame(rows)


def test_second_showings_are_scored_as_repeats_and_change_no_current_score(tmp_path, rubric):
    many = many_completions()
    store = ScoreStore(tmp_path/"scores", completions=many, rubric=rubric)
    session = ScoringSession(rater="ana", completions=many, store=store, rater_path=tmp_path/"name", reshow=0.1, clock=Clock())
    panel = session.panel
    assert (len(panel.order), len(panel.reshows)) == (44, 4)
    assert len(ScoringSession(rater="ana", completions=many, store=store, rater_path=tmp_path/"name", reshow=0).panel.order) == 40
    for position in range(len(panel.order)):
        panel.go_to(position)
        assert panel.scores() == {} and panel.notes.value == ""  # a second showing shows none of the first scores
        for criterion in panel.criteria: panel.set_score(criterion.label, 0.0 if panel.is_repeat else 1.0)
    assert {p for p in range(len(panel.order)) if panel._repeat_mode.get(p)} == set(panel.reshows)
    assert store.current("ana").score.unique().tolist() == [1.0] and len(store.current("ana")) == 40 * 5
    records = events_on_disk(store)
    assert sum(r.get("repeat", False) for r in records) == 4 * 5
    assert all(r["score"] == 0.0 for r in records if r.get("repeat")) and all("repeat" not in r for r in records if r["score"] == 1.0)
    assert panel.progress_text().startswith("40 / 40 scored") and panel.progress_text().endswith("4 / 4 shown again")
    assert ScorePanel(many, rubric, ScoreStore(tmp_path/"scores", completions=many, rubric=rubric), "ana", reshow=0.1).first_unscored() is None


def test_next_unscored_stays_on_the_one_item_left_even_with_its_second_showing_waiting(tmp_path, rubric):
    many = many_completions()
    store = ScoreStore(tmp_path/"scores", completions=many, rubric=rubric)
    panel = ScorePanel(many, rubric, store, "ana", reshow=0.1, clock=Clock())
    last_again = max(panel.reshows)
    item = panel.order[last_again]
    store.set_scores([dict(completion_id=cid, criterion=c.label, score=1) for cid in many.completion_id if cid != item
                      for c in rubric.for_category("Grammar")], "ana")
    for q in panel.reshows - {last_again}: panel.go_to(q); [panel.set_score(c.label, 1) for c in panel.criteria]
    panel.go_to(item)  # its first showing: the one item not fully scored
    assert panel.next_unscored() == panel.order.index(item) and "All" not in panel.status.value
