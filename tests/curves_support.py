"""A planted sweep on disk, for the tests of `tinyscale curves` and of the post "Capabilities over training".

`write_planted_sweep` writes, into a workbook folder, what a sweep and a rater would leave there: one completion run
file per training run whose records carry `training_run`, `checkpoint`, `step` and `tokens` (the sweep's format),
a run file of the released TinyStories-8M (no training fields), rater `ada`'s scores of all of them, and for the
first run a manifest `sweeps/<run>.json` (with a log history) and probes `sweeps/<run>-probes.csv`.

The trend is planted, so every number the curves must show is known here without tinyscale's analysis: at each step a
share of a category's prompts is scored 1 on every criterion and the others 0 (the same prompts first).
"""
import csv, json

from tinyscale.completions import Completion, completion_id
from tinyscale.core import append_jsonl, text_hash
from tinyscale.rubric import load_rubric
from tinyscale.store import ScoreStore

STEPS = (0, 250, 500, 1000, 2000)
TOKENS_PER_STEP = 8192
PROMPTS = 6  # per category
SHARES = {  # share of a category's prompts scored 1 at each of STEPS (run `lr-fast`)
    "Grammar":           (0, 0.5, 1, 1, 1),      # passes 0.5 at 500; half its gain at 250
    "Creativity":        (0, 0, 0, 0.5, 1),      # passes at 2000
    "Plot":              (0, 0, 0.5, 1, 1),      # crosses 0.5 at 500, passes at 1000
    "Factual Knowledge": (0, 0, 0, 0.5, 1),
    "Reasoning":         (0, 0, 0, 0, 0),        # never
    "Context-Tracking":  (0, 0, 0, 0.5, 1),
}
RUNS = {"lr-fast": 0, "lr-slow": 1}  # run: how many checkpoints later it follows SHARES
BASELINE = "roneneldan/TinyStories-8M"  # scored 0.5 on every criterion
RATER = "ada"


def share(category, run, index):
    "The planted share of `category`'s prompts scored 1 at checkpoint `index` of `run`."
    lag = RUNS[run]
    return SHARES[category][index - lag] if index >= lag else 0.0


def prompt_text(category, number): return f"Once upon a time, in a {category.lower()} story number {number},"


def _record(model, category, number, **training):
    prompt = prompt_text(category, number)
    cid = completion_id(model, "rev-planted", text_hash(prompt), "cfg-planted")
    record = Completion(cid, f"{category[:2].lower()}-{number:02d}", category, prompt, f" a story by {model} ({number}).", model,
                        revision="rev-planted", prompt_hash=text_hash(prompt), config_hash="cfg-planted").to_dict()
    return {**record, **training}


def write_planted_sweep(root, runs=tuple(RUNS), with_baseline=True, with_sweep_files=True, tokens=True, rater=RATER):
    "Write the planted sweep into the workbook `root` (its `data/completions/`, `scores/` and `sweeps/`); returns `root`."
    rubric = load_rubric(root/"data"/"criteria.csv")
    folder = root/"data"/"completions"
    scores = []
    for run in runs:
        records = []
        for index, step in enumerate(STEPS):
            for category in rubric.categories:
                for number in range(PROMPTS):
                    record = _record(f"{run}/checkpoint-{step}", category, number, training_run=run, checkpoint=f"checkpoint-{step}",
                                     step=step, tokens=step * TOKENS_PER_STEP if tokens else None)
                    records.append(record)
                    value = 1.0 if number < round(share(category, run, index) * PROMPTS) else 0.0
                    scores += [dict(completion_id=record["completion_id"], criterion=c.label, score=value) for c in rubric.for_category(category)]
        append_jsonl(folder/f"{run}.jsonl", records)
    if with_baseline:
        records = [_record(BASELINE, category, number) for category in rubric.categories for number in range(PROMPTS)]
        append_jsonl(folder/"baseline.jsonl", records)
        scores += [dict(completion_id=r["completion_id"], criterion=c.label, score=0.5) for r in records for c in rubric.for_category(r["category"])]
    from tinyscale.curves import read_completions  # the completions table with the training fields, however load_completions reads them
    store = ScoreStore(root/"scores", completions=read_completions([folder]), rubric=rubric)
    store.set_scores(scores, rater)
    if with_sweep_files: write_sweep_files(root, runs[0], rubric)
    return root


def write_sweep_files(root, run, rubric=None):
    "The manifest (loss falling from 10 to 2) and the probes CSV of `run`, in the sweep's formats."
    rubric = rubric or load_rubric(root/"data"/"criteria.csv")
    (root/"sweeps").mkdir(parents=True, exist_ok=True)
    checkpoints = [dict(checkpoint=f"checkpoint-{s}", step=s, tokens=s * TOKENS_PER_STEP, tokens_source="tokens_per_step", weights_hash="h",
                        train_loss=None, model=f"{run}/checkpoint-{s}", completion_run=run, completions=PROMPTS * 6) for s in STEPS]
    history = [dict(step=s, loss=2 + 8 * (1 - s / STEPS[-1]) ** 3, learning_rate=1e-3) for s in range(50, STEPS[-1] + 1, 50)]
    history.append(dict(step=STEPS[-1], train_loss=4.0, train_runtime=100.0))
    manifest = dict(run=run, source=f"runs/{run}", layout="trainer", updated="2026-12-01T00:00:00Z", checkpoints=checkpoints, log_history=history)
    (root/"sweeps"/f"{run}.json").write_text(json.dumps(manifest))
    with open(root/"sweeps"/f"{run}-probes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "checkpoint", "step", "tokens", "probe", "category", "value", "n"])
        for index, step in enumerate(STEPS):
            at = [run, f"checkpoint-{step}", step, step * TOKENS_PER_STEP]
            for category in rubric.categories: writer.writerow(at + ["expected_logprob", category, -8 + index, PROMPTS])
            for probe, value in (("distinct_1", 0.1 * index), ("distinct_2", 0.15 * index), ("repetition", 0.8 - 0.2 * index),
                                 ("eos_rate", 0.25 * index), ("length", 200 - 20 * index)):
                writer.writerow(at + [probe, "all", value, PROMPTS * 6])
    return root
