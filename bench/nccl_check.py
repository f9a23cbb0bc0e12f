"""The several-process path on a GPU: `tinyscale generate --launch torchrun --device cuda` against one process.

    python bench/nccl_check.py                  # on a CUDA machine: the NCCL branch of tinyscale.distributed
    python bench/nccl_check.py --device cpu     # the same check with gloo on this CPU (2 processes)

It writes a random-weight TinyStories-1M-shaped model, generates a few prompts (default 12, 24 new
tokens, batches of 3) once in one plain process and once under torchrun (`--launch torchrun --nproc
N`), and compares the two completion tables prompt by prompt. The processes' own lines (rank, device,
backend) are shown, so the output says which backend ran. Exit status 0 when every completion is
equal and the launched run reports the expected backend (nccl on CUDA, gloo on CPU); 1 otherwise.

NCCL cannot put two ranks of one communicator on the same GPU (it stops with "Duplicate GPU
detected"), and `start_process_group` gives each rank its local GPU, so on a machine with one GPU
the check runs ONE rank under torchrun: that still exercises the NCCL branch end to end (process
group on `cuda:0`, NCCL barriers and `all_gather_object`, the shards and the merge); with two or
more GPUs it runs two. `--nproc` sets it.

This project's development machine has no GPU: the CUDA path of this script has not been run yet
(the gloo path has: `--device cpu`). Run it on a CUDA machine unchanged.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from tinyscale.cli import main; sys.exit(main(sys.argv[1:]))"


def tinyscale(args, env, timeout):
    "Run `tinyscale <args>` in a fresh process; its return code, stdout and stderr, echoed."
    print("$ tinyscale " + " ".join(args), flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    for line in (done.stdout + done.stderr).strip().splitlines()[-20:]: print("  " + line)
    print(f"  (exit status {done.returncode}, {time.perf_counter() - start:.1f} s)", flush=True)
    return done


def completions(folder):
    rows = [json.loads(line) for path in sorted(Path(folder).glob("*.jsonl")) for line in path.read_text().splitlines() if line]
    return {r["completion_id"]: r["completion"] for r in rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="default: cuda (NCCL); cpu: gloo")
    parser.add_argument("--nproc", type=int, help="processes under torchrun (default: 2 on CPU; min(2, GPUs) on CUDA)")
    parser.add_argument("--prompts", type=int, default=12, help="prompts to generate (default 12)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=600, help="seconds each run may take")
    args = parser.parse_args(argv)
    import torch  # after argument parsing: --help is instant
    if args.device == "cuda" and not torch.cuda.is_available():
        print("nccl_check: no CUDA GPU here; run it on a CUDA machine, or pass --device cpu for the gloo check")
        return 1
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    nproc = args.nproc or (min(2, gpus) if args.device == "cuda" else 2)
    if args.device == "cuda" and nproc > gpus:
        print(f"nccl_check: --nproc {nproc} but {gpus} GPU(s): NCCL needs one GPU per rank")
        return 1
    backend = "nccl" if args.device == "cuda" else "gloo"
    print(f"nccl_check: {args.device} ({', '.join(torch.cuda.get_device_name(i) for i in range(gpus)) or 'no GPU'}), "
          f"{nproc} process(es) under torchrun, expected backend {backend}; torch {torch.__version__}", flush=True)

    scratch = Path(tempfile.mkdtemp(prefix="tinyscale-nccl-check-"))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", HF_HOME=str(scratch/"hf-home"),
               TINYSCALE_CACHE=str(scratch/"cache"), PYTHONPATH=str(ROOT))
    if args.device == "cpu": env.setdefault("OMP_NUM_THREADS", "1")
    from tinyscale.models import write_fixture_models
    from tinyscale.prompts import load_prompts
    model, = write_fixture_models(scratch/"models", sizes=("1M",))
    prompts = load_prompts()[:args.prompts]
    prompt_file = scratch/"prompts.csv"
    import csv
    with open(prompt_file, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "category", "prompt", "expected", "source_id"])
        writer.writerows([(p.id, p.category, p.prompt, p.expected, p.source_id) for p in prompts])
    common = ["generate", "--model", str(model), "--prompts", str(prompt_file), "--device", args.device,
              "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size), "--run", "check", "--no-progress"]
    one = tinyscale([*common, "--out", str(scratch/"one")], env, args.timeout)
    launched = tinyscale([*common, "--out", str(scratch/"launched"), "--launch", "torchrun", "--nproc", str(nproc)],
                         env, args.timeout)
    single, several = completions(scratch/"one"), completions(scratch/"launched")
    equal = sum(several.get(cid) == text for cid, text in single.items())
    backend_seen = f", {backend}," in launched.stderr
    print(f"one process: {len(single)} completions; {nproc} process(es): {len(several)}; equal: {equal}/{len(prompts)}; "
          f"backend {backend} reported by the ranks: {'yes' if backend_seen else 'no'}")
    ok = one.returncode == 0 and launched.returncode == 0 and equal == len(prompts) == len(several) and backend_seen
    print("nccl_check: PASS" if ok else "nccl_check: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
