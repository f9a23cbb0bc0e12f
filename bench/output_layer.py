"""The output layer in slices against one matrix product: GFLOP/s side by side, and whether the logits are equal.

    python bench/output_layer.py                  # the TinyStories-28M / 8M / 1M output layers, 1 and 2 threads
    python bench/output_layer.py --hidden 512 --rows 80,160 --threads 1

An output layer (hidden size x 50,257 words) over the rows of one decoding step (prompts x 5 beams)
is computed (a) as `torch.nn.functional.linear` does it, one product, and (b) as
`tinyscale.generate.SlicedOutputLayer` does it inside `sliced_output`: `OUTPUT_SLICE` rows of the
weight at a time, concatenated. Each is timed for `--seconds` per shape, alternately, the better of
`--repeats` kept; the ratio b/a, whether (b) does slice the product there (on several threads,
small products run as one: `SLICED_MIN_ROWS_X_HIDDEN`) and whether every logit is bit-for-bit
equal are printed per shape. Identical runs on a shared CPU differ by up to a fifth.
"""
import argparse, os, time

from tinyscale.generate import OUTPUT_SLICE, sliced_output, slices_here  # before torch, as in tinyscale itself (OpenMP wait policy)
import torch


def rate(work, flops, seconds):
    work()
    start, runs = time.perf_counter(), 0
    while time.perf_counter() - start < seconds: work(); runs += 1
    return flops * runs / (time.perf_counter() - start) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default="512,256,64", help="hidden sizes (default: 512,256,64: the 28M, 8M and 1M shapes)")
    parser.add_argument("--rows", default="40,80,160", help="rows per step: prompts x 5 beams (default: 40,80,160)")
    parser.add_argument("--threads", default="1,2", help="torch threads (default: 1,2)")
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; slices of {OUTPUT_SLICE} rows", flush=True)
    print(f"{'threads':>7} {'hidden':>6} {'rows':>5} {'one product':>12} {'in slices':>10} {'b/a':>5} {'sliced':>6}  equal")
    torch.manual_seed(0)
    with torch.inference_mode():
        for threads in map(int, args.threads.split(",")):
            torch.set_num_threads(threads)
            for hidden in map(int, args.hidden.split(",")):
                layer = torch.nn.Linear(hidden, args.vocab, bias=False)
                model = torch.nn.Module(); model.get_output_embeddings = lambda: layer
                for rows in map(int, args.rows.split(",")):
                    x, flops = torch.randn(rows, 1, hidden), 2 * rows * hidden * args.vocab
                    def sliced():
                        with sliced_output(model): return layer(x)
                    plain = lambda: torch.nn.functional.linear(x, layer.weight)
                    a = b = 0.0
                    for _ in range(args.repeats):
                        a, b = max(a, rate(plain, flops, args.seconds)), max(b, rate(sliced, flops, args.seconds))
                    equal = torch.equal(plain(), sliced())
                    with sliced_output(model): in_slices = slices_here(x)
                    print(f"{threads:7d} {hidden:6d} {rows:5d} {a:8.1f} GF/s {b:6.1f} GF/s {b / a:5.2f} {'yes' if in_slices else 'no':>6}  {'yes' if equal else 'NO'}", flush=True)


if __name__ == "__main__": main()
