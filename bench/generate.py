"""Generation speed: three batching strategies, same settings, same prompts, one run.

    python bench/generate.py                      # TinyStories-28M shape, the 150 prompts of data/prompts.csv
    python bench/generate.py --quick              # TinyStories-1M shape, 24 prompts, under a minute
    python bench/generate.py --size 8M            # any TinyStories shape (1M 3M 8M 28M 33M) or Llama-5M, Llama-25M
    python bench/generate.py --sizes 1M,8M,28M,Llama-5M,Llama-25M   # one block and one last line per size
    python bench/generate.py --device cuda [--dtype bfloat16]       # the same on a GPU (bf16 matched against fp32)
    python bench/generate.py --skip-loop --skip-seed                # (c) alone: its speed and share of the peak, no ratios

(a) loop: one prompt at a time; (b) seed: all prompts in one left-padded batch (how the published
baseline was generated); both call `model.generate` with transformers' own cache, as a plain script
would. (c) tinyscale: `tinyscale.generate.generate`, length-sorted batches of the device's default
size with `BeamCache`, written to a scratch completions folder; the batch size and the batches run at
once (`streams`, on a CPU) are `batch_size_for`'s default (measured once per model shape and cached;
the probe's time is printed, not counted) unless `--batch-size` / `--streams` are given. All three use the default preset
(5 beams, greedy, per-category minimum lengths) with the same maximum of new tokens.

Figures are ratios measured in this run (identical runs on a shared CPU vary up to 2x in time).
Achieved GFLOP/s counts the model FLOPs each strategy executed (every row of every forward pass,
padding and all 5 beams included; (c) runs each prompt's positions but the last once per prompt,
not once per beam, and counts them so): the matrix products of the layers and the output layer, and
attention's two products over the whole cached context. The peak is the best fp32 matmul rate
(square matrices, 1024-2048) measured in the same run, before and after the three strategies (the
better of the two: on a shared CPU either can be depressed). When (c) reaches less than 40% of
the peak, the benchmark then profiles one batch of (c) (torch.profiler) and prints where its time
goes. The last line of each size's block is machine-readable; with `--sizes` a table of all sizes
and then those lines again, each led by `size=...`, end the output. The header prints the load
average: on a shared CPU, read the figures with it.

The Llama shapes (8 heads, 512 positions, rope_theta 1e4, MLP bias, untied output layer; 5M =
hidden 64 x 13 layers, 25M = 256 x 8) use GPT-2's tokenizer and so a 50,257-token vocabulary
rather than Llama's 32,000 (GPT-2's ids do not fit 32,000): their output layers are larger than
the real models'. On CUDA every timing is bracketed by `torch.cuda.synchronize()`, the peak is
measured on the GPU in the run's dtype, and the absolute new tokens/s are printed.
"""
import argparse, os, sys, tempfile, time, warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tinyscale.models import (DTYPES, EOS_TOKEN_ID, TINYSTORIES_SHAPES, load_model, write_fixture_models,
                              write_tokenizer)  # before torch, as in tinyscale itself (OpenMP wait policy)
from tinyscale.generate import (batch_size_for, completion_config, form_batches, generate, generate_batch,
                                trim_padding)
import tinyscale.generate as generation
from tinyscale.completions import load_completions
from tinyscale.prompts import load_prompts
import torch
from torch.profiler import ProfilerActivity, profile
from transformers.utils import logging as transformers_logging

PEAK_TARGET = 0.40
TIME_GROUPS = {  # operators by what they do in a beam-search step of a GPT-Neo / Llama-style model
    "matrix products of the layers and the output layer": ("aten::mm", "aten::addmm"),
    "attention's products over the cache": ("aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
                                            "aten::_scaled_dot_product_efficient_attention", "aten::_scaled_dot_product_flash_attention",
                                            "aten::_scaled_dot_product_cudnn_attention"),  # eager (GPT-Neo) or SDPA (Llama)
    "beam reorder of the cache": ("aten::index_select", "aten::index_copy_"),
    "elementwise (GELU, residual adds, masks, softmax, layer norm)": (
        "aten::add", "aten::mul", "aten::tanh", "aten::pow", "aten::where", "aten::_softmax",
        "aten::native_layer_norm", "aten::silu", "aten::rsqrt", "aten::mean", "aten::neg"),
    "copies (cache writes, casts)": ("aten::copy_",),
    "beam scores (log-softmax, top-k)": ("aten::_log_softmax", "aten::topk"),
}


LLAMA_SHAPES = {"Llama-5M": (64, 256, 13), "Llama-25M": (256, 1024, 8)}  # hidden, intermediate, layers


def synchronize(device):
    if device == "cuda": torch.cuda.synchronize()


def matmul_peak(device="cpu", dtype=torch.float32, seconds_each=1.0):
    "Best GFLOP/s of square matrix products (1024, 1536, 2048; also 4096 and 8192 on CUDA) on this device, now."
    best, sizes = 0.0, (1024, 1536, 2048) + ((4096, 8192) if device == "cuda" else ())
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        a @ b; synchronize(device)
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < seconds_each:
            a @ b; runs += 1
            if device == "cuda" and runs % 10 == 0: synchronize(device)
        synchronize(device)
        best = max(best, 2 * n**3 * runs / (time.perf_counter() - start) / 1e9)
    return best


def write_llama_fixture(folder, size):
    "A random-weight Llama model of one of `LLAMA_SHAPES` with GPT-2's tokenizer (vocabulary 50,257), kept if it exists."
    from transformers import LlamaConfig, LlamaForCausalLM
    folder = Path(folder)/size
    if (folder/"config.json").exists(): return folder
    hidden, intermediate, layers = LLAMA_SHAPES[size]
    config = LlamaConfig(vocab_size=50257, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                         num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=512, rope_theta=1e4,
                         mlp_bias=True, tie_word_embeddings=False, bos_token_id=EOS_TOKEN_ID, eos_token_id=EOS_TOKEN_ID,
                         pad_token_id=EOS_TOKEN_ID)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    write_tokenizer(folder)
    return folder


def model_folder(models_dir, size):
    "The fixture model of `size` under `models_dir` (written on first use)."
    if size in LLAMA_SHAPES: return write_llama_fixture(models_dir, size)
    folder, = write_fixture_models(Path(models_dir), sizes=(size,))
    return folder


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def forward_flops(config, rows, width, steps, prompt_rows=None):
    """Model FLOPs of a beam-search generate call: a prefill of `width` tokens then `steps - 1` one-token steps.
    With `prompt_rows` (tinyscale's `BeamCache.fill_prompts`), the first `width - 1` positions run once per prompt
    (`prompt_rows` rows, no output layer) and only the last position once per beam."""
    h, vocab = config.hidden_size, config.vocab_size
    layers = getattr(config, "num_layers", None) or config.num_hidden_layers
    mlp = 3 if config.model_type == "llama" else 2  # Llama's MLP has a gate; GPT-Neo's only in and out
    per_token = 2 * layers * (4 * h * h + mlp * h * (config.intermediate_size or 4 * h))  # q, k, v, out; the MLP
    attention = lambda context: 2 * 2 * layers * h * context                 # scores and weighted values
    if prompt_rows is None:
        prefill = rows * (width * per_token + sum(attention(c) for c in range(1, width + 1)) + 2 * h * vocab)
    else:
        prefill = (prompt_rows * ((width - 1) * per_token + sum(attention(c) for c in range(1, width)))
                   + rows * (per_token + attention(width) + 2 * h * vocab))
    decode = sum(rows * (per_token + attention(width + s) + 2 * h * vocab) for s in range(1, steps))
    return prefill + decode


def completion_text(tokenizer, ids):
    return tokenizer.decode(trim_padding(ids, tokenizer.pad_token_id, tokenizer.eos_token_id), skip_special_tokens=True)


def prompt_lengths(loaded, prompts):
    "Token length of each prompt, as `generate` measures it to form batches."
    return [len(ids) for ids in loaded.tokenizer([p.prompt for p in prompts]).input_ids]


def run_batches(loaded, prompts, configs, batches):
    "Plain `model.generate` on `batches` (lists of prompt indices): texts by index, new tokens, seconds, FLOPs."
    texts, new_tokens, flops = {}, 0, 0
    synchronize(loaded.device)
    start = time.perf_counter()
    for batch in batches:
        new_ids, width = generate_batch(loaded, [prompts[i].prompt for i in batch], [configs[i] for i in batch],
                                        use_beam_cache=False)
        for i, ids in zip(batch, new_ids):
            trimmed = trim_padding(ids, loaded.tokenizer.pad_token_id, loaded.tokenizer.eos_token_id)
            texts[i], new_tokens = completion_text(loaded.tokenizer, ids), new_tokens + len(trimmed)
        flops += forward_flops(loaded.model.config, len(batch) * configs[batch[0]]["num_beams"], width, len(new_ids[0]))
    synchronize(loaded.device)
    return texts, new_tokens, time.perf_counter() - start, flops


def run_tinyscale(loaded, prompts, max_new_tokens, batch_size, streams=1):
    "The real `generate` path into a scratch folder; texts by prompt index, new tokens, seconds and FLOPs."
    out = Path(tempfile.mkdtemp(prefix="tinyscale-bench-"))
    synchronize(loaded.device)
    start = time.perf_counter()
    run, = generate([loaded], list(prompts), out, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=False,
                    device=loaded.device, dtype=loaded.dtype, streams=streams)
    synchronize(loaded.device)
    seconds = time.perf_counter() - start
    table = load_completions(out)
    by_id = dict(zip(table.prompt_id, table.completion))
    texts = {i: by_id[p.id] for i, p in enumerate(prompts)}
    # FLOPs of the batches `generate` formed: every row runs until the batch's longest completion ends
    lengths = prompt_lengths(loaded, prompts)
    new_tokens = dict(zip(table.prompt_id, table.new_tokens))
    flops = 0
    for batch in form_batches(lengths, batch_size):
        steps = max(new_tokens[prompts[i].id] for i in batch)
        flops += forward_flops(loaded.model.config, len(batch) * completion_config()["num_beams"], max(lengths[i] for i in batch), steps,
                               prompt_rows=len(batch))
    return texts, run.new_tokens, seconds, flops


def time_breakdown(loaded, prompts, configs, batch_size, streams=1):
    "Where one batch of (c) spends its time: (group, seconds) by operator group, then the rest; the wall time; its prompts. With several batches at once, the batch runs alone on one stream's share of the threads (the profiler sees the thread that starts it)."
    lengths = prompt_lengths(loaded, prompts)
    batch = form_batches(lengths, batch_size)[0]
    with generation.threads_per_stream(streams):
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            generate_batch(loaded, [prompts[i].prompt for i in batch], [configs[i] for i in batch])
        wall = time.perf_counter() - start
    own = {event.key: event.self_cpu_time_total / 1e6 for event in profiler.key_averages()}
    groups = [(name, sum(own.pop(op, 0.0) for op in ops)) for name, ops in TIME_GROUPS.items()]
    largest = [op.removeprefix("aten::") for op, _ in sorted(own.items(), key=lambda item: -item[1])[:3]]
    groups.append((f"other operators (the largest: {', '.join(largest)})" if largest else "other operators", sum(own.values())))
    groups.append(("outside operators (Python, the generation loop, profiling)", wall - sum(t for _, t in groups)))
    return groups, wall, len(batch)


def sequence_logprob(loaded, prompt, completion):
    "Summed log-probability of `completion`'s tokens after `prompt` and its token count (tokens re-encoded from the text)."
    prompt_ids, new_ids = loaded.tokenizer(prompt).input_ids, loaded.tokenizer(completion).input_ids
    if not new_ids: return 0.0, 0
    ids = torch.tensor([prompt_ids + new_ids], device=loaded.device)
    with torch.inference_mode():
        logits = loaded.model(ids).logits[0, len(prompt_ids) - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(1, ids[0, len(prompt_ids):, None]).sum().item(), len(new_ids)


def report_differences(loaded, prompts, results, names):
    "Each prompt whose (c) output differs from (a) or (b): where the texts part, and how near the two were as beam search scores them."
    for i, prompt in enumerate(prompts):
        others = [k for k in ("a", "b") if k in results and results[k][0][i] != results["c"][0][i]]
        if not others: continue
        ours, theirs = results["c"][0][i], results[others[0]][0][i]
        at = next((j for j, (x, y) in enumerate(zip(ours, theirs)) if x != y), min(len(ours), len(theirs)))
        # the default preset ranks finished beams by summed log-probability over length (length penalty 1)
        (ours_sum, ours_n), (theirs_sum, theirs_n) = (sequence_logprob(loaded, prompt.prompt, t) for t in (ours, theirs))
        ours_score, theirs_score = ours_sum / max(ours_n, 1), theirs_sum / max(theirs_n, 1)
        gap = abs(ours_score - theirs_score)
        print(f"  {prompt.id} ({prompt.category}): (c) differs from {' and '.join(names[k][:3] for k in others)} from character "
              f"{at}: {ours[at:at + 24]!r} against {theirs[at:at + 24]!r}; beam score (mean log-probability per token, "
              f"re-encoded) {ours_score:.6f} against {theirs_score:.6f}, a gap of {gap:.1e}"
              f"{' (a near-tie)' if gap < 1e-3 else ''}", flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="TinyStories-1M shape and 24 prompts: under a minute")
    parser.add_argument("--size", help=f"model shape (default 28M; 1M with --quick): {', '.join([*TINYSTORIES_SHAPES, *LLAMA_SHAPES])}")
    parser.add_argument("--sizes", help="several shapes, comma-separated (e.g. 1M,8M,28M,Llama-5M,Llama-25M): one block each and a table")
    parser.add_argument("--prompts", type=int, help="how many prompts (default 150; 24 with --quick), spread over the set")
    parser.add_argument("--max-new-tokens", type=int, help="maximum new tokens (default: the preset's 256; 48 with --quick)")
    parser.add_argument("--batch-size", type=int, help="tinyscale's batch size (default: batch_size_for's choice)")
    parser.add_argument("--streams", type=int, help="tinyscale's batches at once (default: batch_size_for's choice; 1 with --batch-size)")
    parser.add_argument("--no-probe", action="store_true", help="default batch size from the heuristic alone (no timed probe)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="default: float32; bfloat16 also runs (c) in float32 and reports how many outputs match")
    parser.add_argument("--models-dir", help="where to write (or find) the fixture models (default: a temporary folder)")
    parser.add_argument("--skip-loop", action="store_true", help="skip strategy (a), the slowest")
    parser.add_argument("--skip-seed", action="store_true", help="skip strategy (b) (on the larger shapes it takes several times (c))")
    args = parser.parse_args(argv)
    known = [*TINYSTORIES_SHAPES, *LLAMA_SHAPES]
    args.size_list = args.sizes.split(",") if args.sizes else [args.size or ("1M" if args.quick else "28M")]
    for size in args.size_list:
        if size not in known: parser.error(f"size {size!r}: expected one of {', '.join(known)}")
    if args.device == "cuda" and not torch.cuda.is_available(): parser.error("--device cuda: no CUDA GPU here")
    return args


def bench_size(args, size, prompts, models_dir):
    "One size's three strategies; prints its block and returns its figures."
    max_new_tokens = args.max_new_tokens or (48 if args.quick else completion_config()["max_new_tokens"])
    folder = model_folder(models_dir, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bfloat16 warning: this run reports the matches itself
        loaded = load_model(folder, device=args.device, dtype=args.dtype)
    configs = [completion_config("default", p.category, loaded.dtype, max_new_tokens) for p in prompts]
    name = size if size in LLAMA_SHAPES else f"TinyStories-{size}"
    print(f"\n{name} shape ({loaded.params:,} parameters), {len(prompts)} prompts, default preset, at most {max_new_tokens} "
          f"new tokens, {args.device}, {args.dtype}", flush=True)
    generate_batch(loaded, [prompts[0].prompt], [configs[0]])  # warm up kernels and allocations
    if args.batch_size: batch_size, streams, how = args.batch_size, args.streams or 1, "given"
    else:
        start = time.perf_counter()
        batch_size, streams, how = batch_size_for(loaded, [p.prompt for p in prompts], configs, measure=not args.no_probe,
                                                  streams=args.streams)
        print(f"batch size {batch_size}, {streams} at a time ({how}; chosen in {time.perf_counter() - start:.1f} s, cached per "
              f"model shape)", flush=True)
    # On a CPU the reference is the fp32 peak (a bf16 matmul there can take minutes without AMX kernels); a GPU's is in the run's dtype
    peak_dtype = args.dtype if args.device == "cuda" else "float32"
    peak = matmul_peak(args.device, DTYPES[peak_dtype])
    print(f"{peak_dtype} matmul peak: {peak:.0f} GFLOP/s", flush=True)
    names = {"a": "(a) one prompt at a time", "b": "(b) all prompts in one batch", "c": f"(c) tinyscale, batches of {batch_size}" + (f" x{streams}" if streams > 1 else "")}
    runs = {"c": lambda: run_tinyscale(loaded, prompts, max_new_tokens, batch_size, streams),
            "b": lambda: run_batches(loaded, prompts, configs, [list(range(len(prompts)))]),
            "a": lambda: run_batches(loaded, prompts, configs, [[i] for i in range(len(prompts))])}
    results, speed = {}, {}
    for key, run in runs.items():
        if (key == "a" and args.skip_loop) or (key == "b" and args.skip_seed): continue
        results[key] = texts, new_tokens, seconds, flops = run()
        speed[key] = new_tokens / seconds
        print(f"{names[key]:34s} {new_tokens:7d} new tokens {seconds:8.1f} s {speed[key]:8.1f} new tokens/s "
              f"{flops / seconds / 1e9:7.1f} GFLOP/s", flush=True)
    # The CPU may be shared: measure the peak again and keep the better figure (closer to the machine's real peak)
    peak_after = matmul_peak(args.device, DTYPES[peak_dtype])
    print(f"{peak_dtype} matmul peak after the runs: {peak_after:.0f} GFLOP/s; using {max(peak, peak_after):.0f}")
    peak = max(peak, peak_after)
    for key, (_, _, seconds, flops) in results.items():
        print(f"{names[key]:34s} {flops / seconds / 1e9 / peak:.0%} of the {peak_dtype} matmul peak")
    fraction = results["c"][3] / results["c"][2] / 1e9 / peak
    if fraction < PEAK_TARGET and args.device == "cpu":
        groups, wall, rows = time_breakdown(loaded, prompts, configs, batch_size, streams)
        alone = f", alone on {max(1, torch.get_num_threads() // streams)} thread(s)" if streams > 1 else ""
        print(f"(c) reaches {fraction:.0%} of the peak (target {PEAK_TARGET:.0%}); where the time of one batch of "
              f"{rows} prompts goes ({wall:.1f} s{alone}, profiled):")
        for group, seconds in sorted(groups, key=lambda group: -group[1]):
            print(f"  {seconds / wall:4.0%}  {group}")
    match = lambda other: sum(results["c"][0][i] == results[other][0][i] for i in range(len(prompts))) if other in results else 0
    if args.dtype != "float32":
        reference = load_model(folder, device=args.device, dtype="float32")
        texts = run_tinyscale(reference, prompts, max_new_tokens, batch_size, streams)[0]
        print(f"(c) in {args.dtype} against (c) in float32: {sum(results['c'][0][i] == texts[i] for i in range(len(prompts)))}"
              f"/{len(prompts)} outputs equal")
    report_differences(loaded, prompts, results, names)
    loop = f"{speed['c'] / speed['a']:.2f}" if "a" in speed else "nan"
    seed = f"{speed['c'] / speed['b']:.2f}" if "b" in speed else "nan"
    loop_match = f"{match('a')}/{len(prompts)}" if "a" in results else "0/0"
    seed_match = f"{match('b')}/{len(prompts)}" if "b" in results else "0/0"
    shown = lambda other, text: text if other in results else f"({other}) not run"
    print(f"c/a: {shown('a', loop + 'x')}   c/b: {shown('b', seed + 'x')}   "
          f"outputs of c matching a: {shown('a', loop_match)}, matching b: {shown('b', seed_match)}")
    line = (f"speedup_vs_loop={loop} speedup_vs_seed={seed} matmul_peak_fraction={fraction:.3f} "
            f"outputs_match_loop={loop_match}")
    print(f"load average now: {load_average()}")
    print(line, flush=True)
    return dict(size=size, params=loaded.params, batch_size=batch_size, streams=streams, how=how, speed=speed, fraction=fraction,
                line=line)


def main(argv=None):
    args = parse_args(argv)
    count = args.prompts or (24 if args.quick else 150)
    transformers_logging.disable_progress_bar()
    everything = load_prompts()
    step = max(1, len(everything) // count)
    prompts = everything[::step][:count]
    models_dir = Path(args.models_dir or tempfile.mkdtemp(prefix="tinyscale-bench-models-"))
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{len(args.size_list)} size(s): {', '.join(args.size_list)}; {device} (OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}), torch {torch.__version__}; load average {load_average()} "
          f"(1, 5, 15 min, {os.cpu_count()} CPUs)", flush=True)
    rows = [bench_size(args, size, prompts, models_dir) for size in args.size_list]
    if len(rows) > 1:
        print("\n| size | parameters | batch size | (c) new tokens/s | c/a | c/b | share of peak |\n|---|---|---|---|---|---|---|")
        for r in rows:
            loop, seed = (f"{r['speed']['c'] / r['speed'][k]:.2f}" if k in r["speed"] else "-" for k in "ab")
            print(f"| {r['size']} | {r['params']:,} | {r['batch_size']} x{r['streams']} ({r['how']}) | {r['speed']['c']:.1f} | {loop} | "
                  f"{seed} | {r['fraction']:.0%} |")
        for r in rows: print(f"size={r['size']} {r['line']}")


if __name__ == "__main__":
    sys.exit(main())
