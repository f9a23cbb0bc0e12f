"""Shared pieces of the report and post tests of the blind agreement: a fake judge's scores next to a person's, the rows
of a Markdown table, and the rows that `tinyscale agreement --format csv` says such a table must hold."""
import io, math, re

import pandas as pd

from tinyscale.completions import load_completions
from tinyscale.rubric import load_rubric
from tinyscale.store import ScoreStore

LOWER = {0.0: 0.5, 0.5: 0.0, 1.0: 0.5}     # one level away
OPPOSITE = {0.0: 1.0, 0.5: 1.0, 1.0: 0.0}  # as far away as the scale allows


def add_fake_judge(root, human="ada", judge="judge:fake"):
    """Write `judge`'s scores into the workbook `root`: `human`'s current scores, every 3rd one level away, every 7th at the
    other end of the scale, every 11th left unscored. Returns the store (reopened, so it reads both raters)."""
    store = ScoreStore(root/"scores", completions=load_completions(root/"data"/"completions"), rubric=load_rubric())
    scores = []
    for i, row in enumerate(store.current(human).itertuples()):
        if i % 11 == 5: continue
        score = OPPOSITE[row.score] if i % 7 == 0 else LOWER[row.score] if i % 3 == 0 else row.score
        scores.append(dict(completion_id=row.completion_id, criterion=row.criterion, score=score, note=f"fake judgment {i}"))
    store.set_scores(scores, judge, source=judge)
    return ScoreStore(root/"scores", completions=load_completions(root/"data"/"completions"), rubric=load_rubric())


def markdown_rows(text, heading):
    "The rows (lists of cell texts) of the first Markdown table after the line `heading` in `text`."
    lines = text[re.search(f"^{re.escape(heading)}$", text, re.M).start():].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"): break
        rows.append([cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def _percent(value): return "—" if math.isnan(value) else f"{value:.0%}"
def _number(value): return "—" if math.isnan(value) else f"{value:.2f}"


def expected_rows(agreement_csv):
    """From the output of `tinyscale agreement --format csv`: {'Per category': rows, 'Per criterion': rows}, each row
    [name, n, exact [low, high], baseline exact, within one, kappa_w [low, high], alpha] as the report writes it. A criterion's name is
    `<category> <label>` (the report adds the criterion's text after a colon)."""
    table = pd.read_csv(io.StringIO(agreement_csv), keep_default_na=False, na_values={c: [""] for c in (
        "exact", "within_one", "kappa_w", "alpha", "exact_ci_low", "exact_ci_high", "kappa_w_ci_low", "kappa_w_ci_high", "baseline_exact")})
    rows = {"Per category": [], "Per criterion": []}
    for r in table.itertuples():
        name = "All criteria" if r.level == "overall" else r.category if r.level == "category" else f"{r.category} {r.criterion}"
        rows["Per criterion" if r.level == "criterion" else "Per category"].append(
            [name, str(r.n), f"{_percent(r.exact)} [{_percent(r.exact_ci_low)}, {_percent(r.exact_ci_high)}]", _percent(r.baseline_exact), _percent(r.within_one),
             f"{_number(r.kappa_w)} [{_number(r.kappa_w_ci_low)}, {_number(r.kappa_w_ci_high)}]", _number(r.alpha)])
    return rows


def assert_tables_match(markdown, agreement_csv, level=3):
    "The Markdown's per-category and per-criterion agreement tables (headings of `level`) hold exactly the CSV's numbers, row for row."
    for heading, expected in expected_rows(agreement_csv).items():
        found = markdown_rows(markdown, f"{'#' * level} {heading}")
        assert len(found) == len(expected), heading
        for got, want in zip(found, expected):
            assert got[0] == want[0] or got[0].startswith(want[0] + ": "), (got, want)
            assert got[1:] == want[1:], (got, want)
