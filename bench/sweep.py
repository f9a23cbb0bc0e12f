"""Sweep cost: what one checkpoint of the 5M Llama shape costs, and whether loading it dominates.

    python bench/sweep.py            # 3 checkpoints of the 5M Llama shape, the 150 prompts, default preset (256 new tokens)
    python bench/sweep.py --quick    # 3 checkpoints, 24 prompts, 48 new tokens: about a minute

It writes a run in the Trainer's layout (`checkpoint-1000/`, ... : random weights of the researcher's 5M shape, one
seed each, with the offline Llama-like tokenizer of `tinyscale.runs`), sweeps it with `tinyscale.sweep` in this
process, and prints for each checkpoint the time to load it and the time to generate its completions. Random weights
never end a text, so every completion runs to the maximum: the generation times are the upper bound a real run's
checkpoints approach early in training. The first load in a process also imports the model's code; it is reported
apart, and the ratio uses the loads after it. It prints what the dry run estimated beside what the
sweep took. It also times hashing the checkpoints' weights, the first time and from
the cache. The target: generation at least 5x the load of a checkpoint. Figures are ratios measured in this run (a
shared CPU varies up to 2x in time). The last line is machine-readable.
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tinyscale.runs import LLAMA_SHAPES, find_run, weights_hash, write_llama_fixture  # before torch (OpenMP wait policy)
from tinyscale.generate import GenerationSettings
from tinyscale.prompts import load_prompts
from tinyscale.sweep import estimate_sweep, plan_sweep, run_sweep
import torch
from transformers.utils import logging as transformers_logging

TARGET = 5.0  # generation time of a checkpoint over its load time


def spread(prompts, n):
    "`n` prompts spread evenly over the set (every category)."
    return prompts if n >= len(prompts) else [prompts[round(i * len(prompts) / n)] for i in range(n)]


def write_run(folder, size, checkpoints):
    "A Trainer-layout run of `checkpoints` random-weight checkpoints of a Llama shape."
    for number in range(1, checkpoints + 1):
        step = 1000 * number
        checkpoint = write_llama_fixture(folder/f"checkpoint-{step}", size, seed=number)
        (checkpoint/"trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": [], "train_batch_size": 8}))
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="24 prompts and 48 new tokens: about a minute")
    parser.add_argument("--size", default="5M", choices=list(LLAMA_SHAPES), help="the Llama shape (default 5M)")
    parser.add_argument("--checkpoints", type=int, default=3, help="checkpoints in the run (default 3)")
    parser.add_argument("--prompts", type=int, help="how many prompts (default 150; 24 with --quick), spread over the set")
    parser.add_argument("--max-new-tokens", type=int, help="maximum new tokens (default: the preset's 256; 48 with --quick)")
    parser.add_argument("--batch-size", type=int, help="prompts per batch (default: the device default)")
    args = parser.parse_args(argv)
    transformers_logging.disable_progress_bar()
    prompts = spread(load_prompts(), args.prompts or (24 if args.quick else 150))
    max_new_tokens = args.max_new_tokens or (48 if args.quick else None)
    scratch = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    os.environ["TINYSCALE_CACHE"] = str(scratch/"cache")
    run = write_run(scratch/f"llama-{args.size}-run", args.size, args.checkpoints)

    started = time.perf_counter()
    for c in find_run(run).checkpoints: weights_hash(c.location)
    hashing = (time.perf_counter() - started) / args.checkpoints
    started = time.perf_counter()
    for c in find_run(run).checkpoints: weights_hash(c.location)
    cached = (time.perf_counter() - started) / args.checkpoints

    settings = GenerationSettings(batch_size=args.batch_size, device="cpu", max_new_tokens=max_new_tokens)
    plan = plan_sweep([run], prompts, scratch/"completions", settings, folder=scratch/"sweeps")
    print(f"{args.size} Llama shape ({LLAMA_SHAPES[args.size][3]:,} parameters), {args.checkpoints} checkpoints x {len(prompts)} "
          f"prompts, default preset, {max_new_tokens or 256} new tokens at most, cpu, {torch.get_num_threads()} threads")
    estimate = estimate_sweep(plan)  # what `tinyscale sweep --dry-run` would say
    started = time.perf_counter()
    results = run_sweep(plan, scratch/"sweeps", progress=False)
    took = time.perf_counter() - started
    warm = [r.load_seconds for r in results[1:]] or [results[0].load_seconds]
    load = sum(warm) / len(warm)
    generation = sum(r.seconds for r in results) / len(results)
    tokens = sum(r.new_tokens for r in results) / len(results)
    ratio = generation / load
    print(f"first load in this process (with imports): {results[0].load_seconds:.2f} s")
    print(f"per checkpoint: load {load:.3f} s, generation {generation:.1f} s ({tokens / generation:.0f} new tokens/s); "
          f"generation / load = {ratio:.0f}x ({'meets' if ratio >= TARGET else 'MISSES'} the {TARGET:.0f}x target)")
    print(f"weights hash per checkpoint: {hashing * 1000:.1f} ms the first time, {cached * 1000:.2f} ms from the cache")
    print(f"the dry run's estimate: at most {estimate.seconds:.0f} s; the sweep took {took:.0f} s "
          f"({took / estimate.seconds:.0%} of the estimate)")
    per_checkpoint = load + generation
    print(f"one checkpoint here: {per_checkpoint:.0f} s; 50 checkpoints x {len(prompts)} prompts: "
          f"{50 * per_checkpoint / 3600:.1f} h in one process")
    print(json.dumps({"size": args.size, "prompts": len(prompts), "max_new_tokens": max_new_tokens or 256,
                      "checkpoints": args.checkpoints, "first_load_s": round(results[0].load_seconds, 3),
                      "load_s": round(load, 4), "generation_s": round(generation, 2), "ratio": round(ratio, 1),
                      "hash_s": round(hashing, 4), "hash_cached_s": round(cached, 5),
                      "new_tokens_per_s": round(tokens / generation, 1),
                      "estimate_s": round(estimate.seconds, 1), "sweep_s": round(took, 1)}))
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
