"""The score store at sweep scale: a million events, opened, viewed, reported and clicked, one run.

    python bench/store.py                       # 1,000,000 events (about 275 MB), 10 raters
    python bench/store.py --events 100000       # a quicker run
    python bench/store.py --baseline HEAD~3     # also measure the tinyscale of a git revision, same store

A scratch workbook in a temporary folder gets 150 prompts x 24 models (the three TinyStories
baselines and 21 checkpoints: 3,600 completions) and 10 raters (two people and eight judges), each
writing a tenth of the events: they score every completion on every criterion of its category (18
criteria, 3 on average per completion) in rounds, changing about 5% of their scores at once (a few
to "cleared"), and the people leave notes. With 1,000,000 events each rater has 100,000 (about nine
rounds), so the panel click is measured on a rater with that many events.

Each figure is measured in a fresh process (`python -c`), so a cache in memory from an earlier step
cannot flatter a later one:

- open: `ScoreStore(folder, completions=table)` and a first read of every event file (`problems()`),
  the completions table loaded beforehand and not counted; time and peak memory (the growth of the
  process's peak RSS over its RSS before the open). "cold" is a store opened for the first time
  (no cache: every line parsed), "warm" the next open.
- current + progress: `current()` of every rater and `progress()` of the panel's rater, after an open.
- report: `tinyscale report --rater ana --no-agreement` (Markdown, default resamples; the blind agreement with
  every judge left out: at this size each judge's blind agreement is a bootstrap over 3,600
  completions, a cost of its own) in a subprocess, wall time; with `--baseline` the two reports are
  compared byte for byte.
- panel click: what `ScorePanel.set_score` calls on the store, after a warm-up: the rater's scores
  of the item, `set_score`, then the refresh's scores of the item, notes and unscored queue; the
  median of 40 clicks.

Figures vary on a shared machine (up to 2x between identical runs, far more when it is busy: the
load average is printed, and CPU seconds next to wall seconds); `--baseline` measures both versions
on the same store in the same run. The last line is machine-readable.
"""
import argparse, json, os, random, resource, shutil, subprocess, sys, tempfile, textwrap, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = dict(open_s=2.0, open_mb=500.0, views_s=0.5, report_s=10.0, click_ms=50.0)
PEOPLE = ("ana", "bo")
JUDGES = tuple(f"judge:model-{i}" for i in range(1, 9))
MODELS = 24


def criteria_by_category():
    import csv
    with open(ROOT/"data"/"criteria.csv", newline="") as f: rows = list(csv.DictReader(f))
    labels = {}
    for row in rows: labels.setdefault(row["category"], []).append(row["label"])
    return labels


def prompt_rows():
    import csv
    with open(ROOT/"data"/"prompts.csv", newline="") as f: return list(csv.DictReader(f))


def make_workbook(folder:Path, events:int, seed:int=0)->dict:
    "Write data/ (rubric, prompts, targets), the completions and the score events; returns counts."
    from tinyscale.completions import Completion, append_completions, completion_id
    from tinyscale.core import config_hash, text_hash
    from tinyscale.store import rater_file_name
    rng = random.Random(seed)
    (folder/"data").mkdir(parents=True)
    for name in ("criteria.csv", "prompts.csv", "paper_targets.csv", "scoring_rules.toml"): shutil.copy(ROOT/"data"/name, folder/"data"/name)
    labels, prompts = criteria_by_category(), prompt_rows()
    raters, models = PEOPLE + JUDGES, MODELS
    names = [f"roneneldan/TinyStories-{size}" for size in ("1M", "8M", "28M")]
    names += [f"runs/llama-{run}/checkpoint-{step}" for run in range(1, 100) for step in range(500, 10001, 500)]
    config = {"num_beams": 5}
    chash = config_hash(config)
    completions = []
    for model_number, model in enumerate(names[:models]):
        records = []
        for p in prompts:
            text = f" {p['prompt'][-40:]} and then the story of model {model_number} went on and on, " * 6
            records.append(Completion(completion_id(model, "rev0", text_hash(p["prompt"]), chash), p["id"], p["category"],
                                      p["prompt"], text, model, revision="rev0", prompt_hash=text_hash(p["prompt"]),
                                      config=config, config_hash=chash, finish_reason="length", params=1000 * (model_number + 1)))
        completions += records
    append_completions(folder/"data"/"completions"/"run.jsonl", completions)
    scores = folder/"scores"
    scores.mkdir()
    written, clock = 0, 1_700_000_000.0
    budget = {r: events // len(raters) + (1 if i < events % len(raters) else 0) for i, r in enumerate(raters)}
    for rater in raters:
        source = rater if rater.startswith("judge:") else "manual"
        lines, count = [], 0
        order = list(range(len(completions)))
        rng.shuffle(order)
        def event(c, criterion, score, note=None, seconds=None):
            nonlocal clock, count
            clock += 0.75
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(clock)) + f".{int(clock * 1e6) % 1_000_000:06d}Z"
            record = dict(completion_id=c.completion_id, prompt_id=c.prompt_id, model=c.model, config_hash=c.config_hash,
                          category=c.category, criterion=criterion, score=score, rater=rater, time=stamp,
                          seconds=seconds, note=note, source=source)
            lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            count += 1
        position = 0
        while count < budget[rater]:
            c = completions[order[position % len(order)]]
            position += 1
            person = source == "manual"
            for label in labels[c.category]:
                if count >= budget[rater]: break
                event(c, label, rng.choice((0.0, 0.5, 1.0)), seconds=round(rng.uniform(5, 90), 3) if person else None)
                if count < budget[rater] and rng.random() < 0.05:  # a change of mind
                    event(c, label, rng.choice((0.0, 0.5, 1.0, None)), seconds=round(rng.uniform(5, 90), 3) if person else None)
            if person and count < budget[rater] and rng.random() < 0.05:
                event(c, "", None, note=f"note {position}: the story loses the thread", seconds=12.0)
        (scores/rater_file_name(rater)).write_text("\n".join(lines) + "\n")
        written += count
    size = sum(p.stat().st_size for p in scores.glob("*.jsonl"))
    return dict(events=written, models=models, completions=len(completions), raters=len(raters), megabytes=size / 2**20)


CHILD = textwrap.dedent('''
    import gc, json, resource, sys, time, warnings
    warnings.simplefilter("ignore")
    from tinyscale.completions import load_completions
    from tinyscale.store import ScoreStore
    step, scores, completions, rater = sys.argv[1:5]
    table = load_completions(completions)
    def rss_mb():
        with open("/proc/self/statm") as f: return int(f.read().split()[1]) * 4096 / 2**20
    gc.collect()
    before, start, cpu = rss_mb(), time.perf_counter(), time.process_time()
    store = ScoreStore(scores, completions=table)
    store.problems()
    opened, opened_cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = dict(open_s=opened, open_cpu_s=opened_cpu, open_mb=peak - before, rss_mb=peak)
    if step == "views":
        start, cpu = time.perf_counter(), time.process_time()
        current = store.current()
        progress = store.progress(rater)
        out.update(views_s=time.perf_counter() - start, views_cpu_s=time.process_time() - cpu, current_rows=len(current),
                   scored=int(progress.scored.sum()))
    if step == "click":
        unscored = store.unscored(rater)
        out["rater_events"] = len(store.events(rater))
        times, cpu = [], time.process_time()
        for i in range(45):
            cid, label = unscored[i], None
            category = store._by_id[cid]["category"]
            label = [c.label for c in store.rubric.for_category(category)][0]
            start = time.perf_counter()
            store.scores_for(cid, rater)
            store.set_score(cid, label, [0, 0.5, 1][i % 3], rater, seconds=1.0)
            store.scores_for(cid, rater); store.notes(rater); store.unscored(rater)
            times.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu
        times = sorted(times[5:])
        out.update(click_ms=1000 * times[len(times) // 2], click_max_ms=1000 * times[-1], click_cpu_ms=1000 * cpu / 45)
    print(json.dumps(out))
''')


def child_env(package:Path|None)->dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TINYSCALE_RATER",)}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if package is not None: env["PYTHONPATH"] = str(package)
    return env


def measure(step, work:Path, package:Path|None, rater="ana")->dict:
    done = subprocess.run([sys.executable, "-c", CHILD, step, str(work/"scores"), str(work/"data"/"completions"), rater],
                          env=child_env(package), capture_output=True, text=True, timeout=1800, cwd=work)
    if done.returncode: raise SystemExit(f"{step} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_of_children()->float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(work:Path, package:Path|None, out:Path)->tuple[float, float]:
    "Wall and CPU seconds of `tinyscale report` in a subprocess; its Markdown goes to `out`."
    env = {**child_env(package), "TINYSCALE_ROOT": str(work)}
    start, cpu = time.perf_counter(), cpu_of_children()
    done = subprocess.run([sys.executable, "-m", "tinyscale", "report", "--rater", "ana", "--no-agreement"], env=env, cwd=work,
                          capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if done.returncode: raise SystemExit(f"report failed:\n{done.stderr[-3000:]}")
    out.write_text(done.stdout)
    return seconds, cpu_of_children() - cpu


def baseline_package(revision:str, into:Path)->Path:
    "The tinyscale package of a git revision, extracted into `into` (for PYTHONPATH)."
    archive = subprocess.run(["git", "archive", revision, "tinyscale"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def clear_caches(work:Path):
    "Remove what any version may have derived from the logs, so that the next open is cold."
    for path in (work/"scores").iterdir():
        if path.is_dir(): shutil.rmtree(path)
        elif not path.name.endswith(".jsonl"): path.unlink()


def run_version(name, work:Path, package:Path|None)->dict:
    "Every figure of one version of tinyscale on the workbook `work` (its scores are restored afterwards)."
    backup = work/"scores-original"
    if not backup.exists(): shutil.copytree(work/"scores", backup)
    else:
        shutil.rmtree(work/"scores"); shutil.copytree(backup, work/"scores")
    figures = {}
    cold = measure("open", work, package)
    figures.update(cold_open_s=cold["open_s"], cold_open_cpu_s=cold["open_cpu_s"], cold_open_mb=cold["open_mb"])
    warm = measure("open", work, package)
    figures.update(open_s=warm["open_s"], open_cpu_s=warm["open_cpu_s"], open_mb=warm["open_mb"], rss_mb=warm["rss_mb"])
    views = measure("views", work, package)
    figures.update(views_s=views["views_s"], views_cpu_s=views["views_cpu_s"], current_rows=views["current_rows"])
    figures["report_s"], figures["report_cpu_s"] = report(work, package, work/f"report-{name}.md")
    click = measure("click", work, package)
    figures.update(click_ms=click["click_ms"], click_max_ms=click["click_max_ms"], click_cpu_ms=click["click_cpu_ms"],
                   rater_events=click["rater_events"])
    return figures


def verdict(value, target): return "PASS" if value < target else "MISS"


def show(name, f:dict):
    print(f"\n{name}")
    print(f"  open, cold (first open, nothing cached) {f['cold_open_s']:7.2f} s  {f['cold_open_mb']:7.0f} MB   "
          f"(CPU {f['cold_open_cpu_s']:.2f} s)")
    print(f"  open (warm)                              {f['open_s']:7.2f} s  {f['open_mb']:7.0f} MB   "
          f"target < {TARGETS['open_s']:g} s and < {TARGETS['open_mb']:g} MB: "
          f"{verdict(f['open_s'], TARGETS['open_s'])} {verdict(f['open_mb'], TARGETS['open_mb'])}  (CPU {f['open_cpu_s']:.2f} s, process peak {f['rss_mb']:.0f} MB)")
    print(f"  current() of everyone + progress()       {f['views_s']:7.2f} s   target < {TARGETS['views_s']:g} s: "
          f"{verdict(f['views_s'], TARGETS['views_s'])}  (CPU {f['views_cpu_s']:.2f} s; {f['current_rows']:,} current rows)")
    print(f"  tinyscale report --rater ana --no-agreement {f['report_s']:7.2f} s   target < {TARGETS['report_s']:g} s: "
          f"{verdict(f['report_s'], TARGETS['report_s'])}  (CPU {f['report_cpu_s']:.2f} s)")
    print(f"  panel click ({f['rater_events']:,} events of ana)        {f['click_ms']:7.1f} ms  target < {TARGETS['click_ms']:g} ms: "
          f"{verdict(f['click_ms'], TARGETS['click_ms'])}  (slowest of 40: {f['click_max_ms']:.1f} ms; CPU {f['click_cpu_ms']:.1f} ms a click)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="score events to generate (default 1,000,000)")
    parser.add_argument("--baseline", default=None, metavar="REV", help="also measure the tinyscale of this git revision")
    parser.add_argument("--keep", default=None, metavar="DIR", help="build the workbook here and keep it")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="tinyscale-bench-store-"))
    work = Path(args.keep) if args.keep else scratch/"workbook"
    try:
        start = time.perf_counter()
        counts = make_workbook(work, args.events)
        print(f"{counts['events']:,} events ({counts['megabytes']:.0f} MB) of {counts['raters']} raters on "
              f"{counts['completions']:,} completions ({counts['models']} models x 150 prompts), written in "
              f"{time.perf_counter() - start:.0f} s")
        print(f"load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
        results = {}
        if args.baseline:
            package = baseline_package(args.baseline, Path(tempfile.mkdtemp(dir=scratch)))
            results[f"baseline ({args.baseline})"] = run_version("baseline", work, package)
        results["this tinyscale"] = run_version("new", work, None)
        print(f"load average (1, 5, 15 min) after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        for name, figures in results.items(): show(name, figures)
        same = None
        if args.baseline:
            same = (work/"report-baseline.md").read_bytes() == (work/"report-new.md").read_bytes()
            print(f"\nreport identical to the baseline's, byte for byte: {'yes' if same else 'NO'}")
        f = results["this tinyscale"]
        passed = all(f[k] < TARGETS[k] for k in TARGETS)
        print(f"events={counts['events']} open_s={f['open_s']:.3f} open_mb={f['open_mb']:.0f} cold_open_s={f['cold_open_s']:.3f} "
              f"views_s={f['views_s']:.3f} report_s={f['report_s']:.2f} report_cpu_s={f['report_cpu_s']:.2f} click_ms={f['click_ms']:.1f} "
              f"report_identical={'na' if same is None else int(same)} targets={'PASS' if passed else 'MISS'}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
