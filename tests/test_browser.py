"""The scoring panel in a real JupyterLab, driven by headless Debian Chromium through Playwright.

JupyterLab is started by `make lab` (the project's jupyter_server_config.py) in a scratch copy of the
workbook, so the test uses the settings a researcher gets.

The first test opens a scoring notebook over a small fixture (4 prompts x 2 models, 2 categories) and runs
it from the Run menu. Criteria are scored with the mouse and with the keyboard, a note is typed, and the
rater's JSONL file must then hold exactly those events. The kernel is restarted and the notebook rerun:
the panel must resume at the first item not fully scored, with the earlier scores and the note shown.

The second test is a researcher's first session in a 1280x720 window: JupyterLab opens on nbs/index.ipynb,
its link opens nbs/score.ipynb, the rater types a name and scores. On the longest completion (real-data
text: `\r\n\r\n` paragraphs, smart quotes, cut at the length limit) every criterion button must lie inside
the window while the completion scrolls in its own box, at 1280x720 and at 1400x1000. After scoring and
Ctrl+S, nbs/score.ipynb on disk must be byte for byte the committed one.
Screenshots go to test-output/browser/ (ignored by git).
"""
import json, os, re, secrets, shutil, signal, socket, subprocess, sys, time, urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from tinyscale.completions import Completion, completion_id, load_completions
from tinyscale.core import config_hash, text_hash
from tinyscale.panel import scoring_order
from tinyscale.rubric import load_rubric

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT/"tests"/"fixtures"/"panel"
OUTPUT = ROOT/"test-output"/"browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
RATER = "tester"
TIMEOUT_MS = 30_000

def require_browser():
    "Skip when Chromium or Playwright is missing, except under CI, where the test must run."
    problem = None
    if not CHROMIUM.exists(): problem = f"{CHROMIUM} is missing (install it with: apt-get install -y chromium)"
    else:
        try: import playwright.sync_api  # noqa: F401
        except ImportError: problem = "the playwright package is not installed"
    if problem is None: return
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"CI is set but {problem}; .ci/run installs Chromium so that this test runs in CI")
    pytest.skip(f"{problem}; the real-browser test of the scoring panel needs it")


def scoring_notebook(path:Path, completions:Path, scores:Path):
    "Write a two-cell notebook: a panel over the fixture, then a plain cell that keys must not disturb."
    panel_cell = "\n".join([
        "from tinyscale.completions import load_completions",
        "from tinyscale.panel import ScorePanel",
        "from tinyscale.rubric import load_rubric",
        "from tinyscale.store import ScoreStore",
        f"completions, rubric = load_completions({str(completions)!r}), load_rubric({str(ROOT/'data'/'criteria.csv')!r})",
        f"store = ScoreStore({str(scores)!r}, completions=completions, rubric=rubric)",
        f"panel = ScorePanel(completions, rubric, store, {RATER!r})",
        "panel"])
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    notebook.cells = [nbformat.v4.new_code_cell(panel_cell), nbformat.v4.new_code_cell("print('the cell after the panel')")]
    nbformat.write(notebook, path)


def free_port()->int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_project(folder:Path, *completion_files:Path)->Path:
    "A scratch copy of the workbook: what `make lab` and the scoring notebook need, and these completions."
    for name in ("Makefile", "jupyter_server_config.py", "pyproject.toml", "nbs/index.ipynb", "nbs/score.ipynb", "data/criteria.csv", "data/scoring_rules.toml"):
        (folder/name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT/name, folder/name)
    (folder/"data"/"completions").mkdir()
    for i, path in enumerate(completion_files): shutil.copy(path, folder/"data"/"completions"/f"{i}-{path.name}")
    return folder


@contextmanager
def jupyter_lab(project:Path, home:Path, env:dict):
    "Run `make lab` in `project` with every Jupyter and IPython folder under `home`; always stopped (its process group)."
    env = {**env, "JUPYTER_CONFIG_DIR": str(home/"config"), "JUPYTER_DATA_DIR": str(home/"data"),
           "JUPYTER_RUNTIME_DIR": str(home/"runtime"), "IPYTHONDIR": str(home/"ipython")}
    env.pop("TINYSCALE_ROOT", None)
    # What `jupyter labextension disable --level=user` writes: no news pop-up over the widgets.
    labconfig = home/"config"/"labconfig"
    labconfig.mkdir(parents=True)
    (labconfig/"page_config.json").write_text(json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    port, token = free_port(), secrets.token_hex(16)
    venv = Path(sys.prefix)                           # this interpreter's environment, as `make lab`'s .venv
    log = open(home/"lab.log", "w")
    server = subprocess.Popen(["make", "-s", "-C", str(project), "lab", f"VENV={venv}", "-o", f"{venv}/.installed", f"PORT={port}",
                               f"LAB_OPTIONS=--no-browser --ip 127.0.0.1 --IdentityProvider.token={token}"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; its log:\n{(home/'lab.log').read_text()[-3000:]}")
                time.sleep(0.25)
        yield f"http://127.0.0.1:{port}", token
    finally:
        os.killpg(server.pid, signal.SIGTERM)         # make and the JupyterLab it started
        try: server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


@contextmanager
def chromium_page(profile:Path, width:int=1280, height:int=1100):
    "A page of a fresh headless Chromium profile."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM), headless=True,
                                                       args=CHROMIUM_ARGS, viewport={"width": width, "height": height})
        context.set_default_timeout(TIMEOUT_MS)
        try: yield context.pages[0] if context.pages else context.new_page()
        finally: context.close()


def menu(page, top:str, item:str):
    "Click a JupyterLab menu item, e.g. Run > Run All Cells."
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def criterion_row(page, index:int):
    "The widgets row of the item's criterion `index`."
    return page.locator(".tinyscale-panel .tinyscale-criterion").nth(index)


def score_button(page, index:int, level:str):
    "The `level` button (0, 0.5 or 1) of criterion row `index`; a chosen one reads `✓ level`."
    return criterion_row(page, index).locator("button", has_text=re.compile(f"^(✓ )?{re.escape(level)}$"))


def test_without_chromium_the_test_skips_locally_but_fails_under_ci(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is missing"): require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set but /nonexistent/chromium is missing"): require_browser()


@pytest.mark.browser
def test_score_by_mouse_and_keys_then_resume_after_restart(tmp_path, offline_env, capsys):
    require_browser()
    from playwright.sync_api import expect
    expect.set_options(timeout=TIMEOUT_MS)             # the kernel shares two cores with everything else
    OUTPUT.mkdir(parents=True, exist_ok=True)
    lab_root = make_project(tmp_path/"lab")
    scores = lab_root/"scores"
    scoring_notebook(lab_root/"score.ipynb", FIXTURE, scores)
    completions, rubric = load_completions(FIXTURE), load_rubric()
    order = scoring_order(completions, seed=0)
    labels = {cid: [c.label for c in rubric.for_category(category)] for cid, category in zip(completions.completion_id, completions.category)}
    first, second = order[0], order[1]
    events_file = scores/f"{RATER}.jsonl"

    with jupyter_lab(lab_root, tmp_path/"home", offline_env) as (url, token), chromium_page(tmp_path/"chromium") as page:
        page.goto(f"{url}/lab/tree/score.ipynb?token={token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=60_000)  # Run All waits for a kernel
        menu(page, "Run", "Run All Cells")
        panel = page.locator(".tinyscale-panel")
        expect(panel).to_contain_text(f"Item 1 of {len(order)}")
        expect(panel).to_contain_text("0 / 8 scored")
        expected = []

        # Mouse: 1 for the first criterion, 0.5 for the second.
        score_button(page, 0, "1").click()
        expect(score_button(page, 0, "1")).to_have_text("✓ 1")
        score_button(page, 1, "0.5").click()
        expect(score_button(page, 1, "0.5")).to_have_text("✓ 0.5")
        expected += [(first, labels[first][0], 1.0), (first, labels[first][1], 0.5)]

        # Keys: the clicked button has the focus; ↓ marks the next criterion, and each score moves the mark on.
        page.keyboard.press("ArrowDown")
        levels = {"0": 0.0, "5": 0.5, "1": 1.0}
        keys = ["0", "5", "1", "0", "5"][:len(labels[first]) - 2]
        for key in keys: page.keyboard.press(key)
        expected += [(first, label, levels[key]) for label, key in zip(labels[first][2:], keys)]
        expect(panel).to_contain_text("✓ fully scored")
        expect(score_button(page, len(labels[first]) - 1, "0.5" if keys[-1] == "5" else keys[-1])).to_have_text(re.compile("^✓"))

        # n: next unscored; 1 scores there; j / k and → / ← move between items.
        page.keyboard.press("n")
        expect(panel).to_contain_text(f"Item 2 of {len(order)}")
        page.keyboard.press("1")
        expect(score_button(page, 0, "1")).to_have_text("✓ 1")
        expected.append((second, labels[second][0], 1.0))
        for key, item in [("j", 3), ("k", 2), ("ArrowRight", 3), ("ArrowLeft", 2)]:
            page.keyboard.press(key)
            expect(panel).to_contain_text(f"Item {item} of {len(order)}")

        # ↑ back to the first criterion, Backspace clears it, 5 scores it again.
        page.keyboard.press("ArrowUp")
        page.keyboard.press("Backspace")
        expect(score_button(page, 0, "1")).to_have_text("1")
        page.keyboard.press("5")
        expect(score_button(page, 0, "0.5")).to_have_text("✓ 0.5")
        expected += [(second, labels[second][0], None), (second, labels[second][0], 0.5)]

        # Typing a note: the panel's keys go into the box, not to the panel; leaving the box saves it.
        note = "kite 1 j n 0"
        panel.locator("textarea").click()
        page.keyboard.type(note)
        page.locator(".tinyscale-keys").click()
        expect(panel).to_contain_text("Saved the note")
        expect(panel).to_contain_text(f"Item 2 of {len(order)}")

        # None of those keys reached JupyterLab: still two code cells (1 would make a heading, 0 0 restart the kernel).
        test_cells = page.locator(".jp-Notebook .jp-Cell")
        assert test_cells.count() == 2
        assert page.locator(".jp-Notebook .jp-MarkdownCell").count() == 0
        expect(page.locator(".jp-Notebook .jp-Cell").nth(1)).to_contain_text("the cell after the panel")

        written = [json.loads(line) for line in events_file.read_text().splitlines()]
        assert [(e["completion_id"], e["criterion"], e["score"]) for e in written] == expected + [(second, "", None)]
        assert written[-1]["note"] == note
        assert {e["rater"] for e in written} == {RATER} and {e["source"] for e in written} == {"manual"}
        assert all(isinstance(e["seconds"], float) and e["seconds"] >= 0 for e in written)
        panel.screenshot(path=str(OUTPUT/"panel.png"))

        # Jump to an item cut at the length limit, then restart the kernel and rerun: the panel resumes at
        # item 2 with its scores and note.
        cut = 1 + next(i for i, cid in enumerate(order) if not completions.set_index("completion_id").ended_with_eos[cid])
        panel.locator("input[type=number]").fill(str(cut))
        panel.locator("input[type=number]").press("Enter")
        expect(panel).to_contain_text(f"Item {cut} of {len(order)}")
        expect(panel).to_contain_text("cut at the length limit")
        panel.screenshot(path=str(OUTPUT/"jumped.png"))
        menu(page, "Kernel", "Restart Kernel and Run All Cells")
        page.locator(".jp-Dialog .jp-mod-accept").click()
        expect(panel).to_contain_text(f"Item 2 of {len(order)}")
        expect(panel).to_contain_text("1 / 8 scored")
        expect(score_button(page, 0, "0.5")).to_have_text("✓ 0.5")
        expect(panel.locator("textarea")).to_have_value(note)
        page.keyboard.press("Escape")
        panel.screenshot(path=str(OUTPUT/"resumed.png"))
        page.screenshot(path=str(OUTPUT/"lab.png"))
        assert len(events_file.read_text().splitlines()) == len(written), "reopening the panel wrote events"

    with capsys.disabled(): print(f"\nscreenshots in {OUTPUT}: panel.png, jumped.png, resumed.png, lab.png")


# Real data, as scorers meet it: Windows line breaks with a blank line after every line, smart quotes, long stories.
_PARAGRAPHS = ["Once upon a time, in a little town by the sea, there lived a girl named Mia. She loved to collect shells "
               "and put them in a big blue box under her bed.",
               "One day, Mia’s mom said, “Mia, we are going to the beach today! Do you want to come?” Mia jumped up and "
               "down. “Yes, yes, yes!” she said, and she ran to get her bucket.",
               "At the beach, the sun was warm and the sand was soft. Mia found a pink shell, a white shell and a shell "
               "that looked like a tiny hat. She showed them to her mom, who smiled and said, “That one is very special.”",
               "Then a big wave came and took the tiny hat shell away. Mia was sad. She sat down on the sand and cried. "
               "A crab came out from behind a rock and looked at her.",
               "“Why are you sad?” asked the crab. Mia told him about the shell. The crab said, “I can help you. I know "
               "where the waves take the shells.” He walked sideways to a small pool between the rocks."]


def long_completions(path:Path)->Path:
    "Two Grammar items (five criteria) with long real-looking completions, the longest one cut at the length limit."
    prompt = "Once upon a time, there was a girl who loved the sea. Every morning she"
    texts = {"story-model-a": " " + "\r\n\r\n".join(_PARAGRAPHS * 3) + " In the pool",
             "story-model-b": " " + "\r\n\r\n".join(_PARAGRAPHS[:3])}
    config = {"num_beams": 5}
    rows = [Completion(completion_id(model, "rev0", text_hash(prompt), config_hash(config)), "gr-90", "Grammar", prompt, text, model,
                       revision="rev0", prompt_hash=text_hash(prompt), config=config, config_hash=config_hash(config),
                       finish_reason="length" if model.endswith("a") else "eos", ended_with_eos=not model.endswith("a"),
                       new_story=False).to_dict() for model, text in texts.items()]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def save_with_ctrl_s(page, path:Path):
    "Press Ctrl+S in JupyterLab and wait until `path` is written."
    before = path.stat().st_mtime_ns
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline: time.sleep(0.2)
    assert path.stat().st_mtime_ns != before, f"JupyterLab did not save {path.name}"
    time.sleep(0.5)                                    # let the write finish


def boxes_outside(page, locator, bottom:float)->list:
    "The bounding boxes of `locator`'s elements that are not wholly inside the window above `bottom`."
    width = page.viewport_size["width"]
    boxes = [locator.nth(i).bounding_box() for i in range(locator.count())]
    return [b for b in boxes if b is None or b["y"] < 0 or b["x"] < 0 or b["y"] + b["height"] > bottom or b["x"] + b["width"] > width]


def check_layout(page, panel, name:str)->dict:
    "On the item shown: every criterion's buttons and the completion's box lie inside the notebook's visible area."
    from playwright.sync_api import expect
    expect(panel).to_contain_text("cut at the length limit")
    # The notebook's visible area ends above JupyterLab's status bar.
    bottom = min(page.viewport_size["height"], page.locator("#jp-main-statusbar").bounding_box()["y"])
    buttons = panel.locator(".tinyscale-criterion button")
    assert buttons.count() == 5 * 4, "five criteria with 0, 0.5, 1 and clear"
    assert boxes_outside(page, buttons, bottom) == [], f"{name}: criterion buttons outside the window"
    assert boxes_outside(page, panel.locator(".tinyscale-story"), bottom) == [], f"{name}: the story box is outside the window"
    story = panel.locator(".tinyscale-story").evaluate("e => ({scrolls: e.scrollHeight > e.clientHeight + 20, text: e.innerText})")
    assert story["scrolls"], f"{name}: the long completion should scroll inside its box"
    assert "\n\n" not in story["text"] and "\r" not in story["text"], f"{name}: blank lines drawn between paragraphs"
    assert "“Why are you sad?” asked the crab." in story["text"]
    page.screenshot(path=str(OUTPUT/f"layout-{name}.png"))
    return story


@pytest.mark.browser
def test_first_session_fits_1280x720_and_leaves_the_scoring_notebook_clean(tmp_path, offline_env, capsys):
    require_browser()
    from playwright.sync_api import expect
    expect.set_options(timeout=TIMEOUT_MS)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    project = make_project(tmp_path/"project", FIXTURE/"completions.jsonl", long_completions(tmp_path/"long.jsonl"))
    committed = (ROOT/"nbs"/"score.ipynb").read_bytes()
    saved = project/"nbs"/"score.ipynb"
    completions = load_completions(project/"data"/"completions")
    order = scoring_order(completions, seed=0)         # the scoring notebook's order
    longest = completions.loc[completions.completion.str.len().idxmax()]
    longest_item = order.index(longest.completion_id) + 1

    with jupyter_lab(project, tmp_path/"home", offline_env) as (url, token), \
         chromium_page(tmp_path/"chromium", 1280, 720) as page:
        # The server's root is the project, and its front page is the index notebook.
        listing = json.load(urllib.request.urlopen(f"{url}/api/contents/?token={token}"))
        assert {"nbs", "data", "Makefile"} <= {entry["name"] for entry in listing["content"]}
        page.goto(f"{url}/?token={token}")
        expect(page).to_have_url(re.compile(r"/lab/tree/nbs/index\.ipynb"))
        index = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        index.get_by_role("link", name="nbs/score.ipynb").first.click()
        expect(page.locator(".lm-TabBar-tab.jp-mod-current[data-type=document-title]")).to_have_text("score.ipynb")
        expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=60_000)
        menu(page, "Run", "Run All Cells")

        # First time: type a name, start; the panel takes the keyboard focus, so a key scores at once.
        page.get_by_placeholder("your name").fill(RATER)
        page.get_by_role("button", name="start scoring").click()
        panel = page.locator(".tinyscale-panel")
        expect(panel).to_contain_text(f"Item 1 of {len(order)}")
        expect(page.locator(".tinyscale-keys")).to_be_focused()
        expect(page.locator(".tinyscale-keys")).to_contain_text("Keys on")
        page.keyboard.press("1")
        expect(score_button(page, 0, "1")).to_have_text("✓ 1")

        # The longest completion, in a 1280x720 window and then in a 1400x1000 one.
        panel.locator("input[type=number]").fill(str(longest_item))
        panel.locator("input[type=number]").press("Enter")
        expect(panel).to_contain_text(f"Item {longest_item} of {len(order)}")
        expect(page.locator(".tinyscale-keys")).to_contain_text("Typing in a box")
        check_layout(page, panel, "1280x720")
        score_button(page, 4, "0.5").click()           # the last criterion's button, without scrolling
        expect(score_button(page, 4, "0.5")).to_have_text("✓ 0.5")
        expect(page.locator(".tinyscale-keys")).to_contain_text("Keys on")
        panel.locator(".tinyscale-story").evaluate("e => e.scrollTo(0, e.scrollHeight)")   # read to the end
        assert boxes_outside(page, panel.locator(".tinyscale-criterion button"), 720) == []
        page.screenshot(path=str(OUTPUT/"layout-1280x720-scrolled.png"))
        for key in ("ArrowUp", "ArrowUp", "ArrowUp", "ArrowUp", "0", "5", "1", "1", "ArrowUp", "Backspace"): page.keyboard.press(key)
        expect(panel).to_contain_text("Cleared Grammar D at")
        page.set_viewport_size({"width": 1400, "height": 1000})
        check_layout(page, panel, "1400x1000")
        events = [json.loads(line) for line in (project/"scores"/f"{RATER}.jsonl").read_text().splitlines()]
        assert [(e["criterion"], e["score"]) for e in events] == [("A", 1.0), ("E", 0.5), ("A", 0.0), ("B", 0.5), ("C", 1.0), ("D", 1.0), ("D", None)]

        # Save (Ctrl+S, as a rater would; JupyterLab also autosaves): the file on disk stays the committed one.
        save_with_ctrl_s(page, saved)
        page.screenshot(path=str(OUTPUT/"saved.png"))
        # So does the index, which JupyterLab marks as changed as soon as it opens it (kernel metadata).
        page.locator(".lm-TabBar-tab[data-type=document-title]", has_text="index.ipynb").click()
        save_with_ctrl_s(page, project/"nbs"/"index.ipynb")

    assert (project/"nbs"/"index.ipynb").read_bytes() == (ROOT/"nbs"/"index.ipynb").read_bytes()
    on_disk = json.loads(saved.read_text(encoding="utf-8"))
    assert all(cell.get("outputs", []) == [] for cell in on_disk["cells"]) and "widgets" not in on_disk["metadata"]
    assert RATER not in saved.read_text(encoding="utf-8")
    assert saved.read_bytes() == committed, "saving changed nbs/score.ipynb (the equivalent of a git diff)"
    assert (project/".tinyscale-rater").read_text() == f"{RATER}\n"
    with capsys.disabled(): print(f"\nscreenshots in {OUTPUT}: layout-1280x720.png, layout-1280x720-scrolled.png, layout-1400x1000.png, saved.png")
