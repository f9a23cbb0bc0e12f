"""The scoring panel in a real JupyterLab, driven by headless Debian Chromium through Playwright.

A scoring notebook over a small fixture (4 prompts x 2 models, 2 categories) is opened in JupyterLab and
run from the Run menu. Criteria are scored with the mouse and with the keyboard, a note is typed, and the
rater's JSONL file must then hold exactly those events. The kernel is restarted and the notebook rerun:
the panel must resume at the first item not fully scored, with the earlier scores and the note shown.
Screenshots go to test-output/browser/ (ignored by git).
"""
import json, os, re, secrets, socket, subprocess, sys, time, urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from tinyscale.completions import load_completions
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


@contextmanager
def jupyter_lab(root:Path, home:Path):
    "Run JupyterLab on `root` with every Jupyter and IPython folder under `home`; always stopped by its PID."
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home/"config"), "JUPYTER_DATA_DIR": str(home/"data"),
           "JUPYTER_RUNTIME_DIR": str(home/"runtime"), "IPYTHONDIR": str(home/"ipython"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # What `jupyter labextension disable --level=user` writes: no news pop-up over the widgets.
    labconfig = home/"config"/"labconfig"
    labconfig.mkdir(parents=True)
    (labconfig/"page_config.json").write_text(json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    port, token = free_port(), secrets.token_hex(16)
    log = open(home/"lab.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
                               "--port", str(port), f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
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
        server.terminate()
        try: server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


@contextmanager
def chromium_page(profile:Path):
    "A page of a fresh headless Chromium profile."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM), headless=True,
                                                       args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1100})
        context.set_default_timeout(TIMEOUT_MS)
        try: yield context.pages[0] if context.pages else context.new_page()
        finally: context.close()


def menu(page, top:str, item:str):
    "Click a JupyterLab menu item, e.g. Run > Run All Cells."
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def criterion_row(page, index:int):
    "The widgets row of the item's criterion `index` (rows are the boxes holding a clear button)."
    rows = page.locator(".tinyscale-panel .widget-hbox").filter(has=page.locator("button", has_text=re.compile("^clear$")))
    return rows.nth(index)


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
def test_score_by_mouse_and_keys_then_resume_after_restart(tmp_path, capsys):
    require_browser()
    from playwright.sync_api import expect
    expect.set_options(timeout=TIMEOUT_MS)             # the kernel shares two cores with everything else
    OUTPUT.mkdir(parents=True, exist_ok=True)
    lab_root, scores = tmp_path/"lab", tmp_path/"lab"/"scores"
    lab_root.mkdir()
    scoring_notebook(lab_root/"score.ipynb", FIXTURE, scores)
    completions, rubric = load_completions(FIXTURE), load_rubric()
    order = scoring_order(completions, seed=0)
    labels = {cid: [c.label for c in rubric.for_category(category)] for cid, category in zip(completions.completion_id, completions.category)}
    first, second = order[0], order[1]
    events_file = scores/f"{RATER}.jsonl"

    with jupyter_lab(lab_root, tmp_path/"home") as (url, token), chromium_page(tmp_path/"chromium") as page:
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
