#!/usr/bin/python3
"""PyTorch eager reference for `tinymoe bench moe`: HuggingFace's Mixtral MoE block, trained.

Measures what the issue quotes ("PyTorch eager with the HuggingFace loop over experts reaches
roughly the dense GEMM rate at the Mixtral-like shape and about half of it at the fine-grained
one"), the way tools/cli/bench_moe.cpp measures tinymoe's SparseMoEBlock, so the two can be set
side by side (docs/benchmarks.md, "Against PyTorch eager").

The MoE block is a re-implementation in plain PyTorch (HuggingFace `transformers` is not
installable here) of MixtralSparseMoeBlock.forward and MixtralBlockSparseTop2MLP from
src/transformers/models/mixtral/modeling_mixtral.py (read at commit
00d4b3d2142cb4ced2f51b90614b5d26bc045015, as tools/hf_fixtures/generate.py), operation by
operation:
  router nn.Linear(d, E, bias=False); softmax in float32; topk; in-place renormalisation over k;
  one_hot(selected, E).permute(2, 1, 0) expert mask; the experts hit, in ascending order; per
  expert torch.where on its mask, gather of its tokens, w2(silu(w1 x) * w3 x) with bias-free
  nn.Linear, times the pair's weight, index_add_ into a zero [T, d] output.
router_jitter_noise is 0 (MixtralConfig's default), so training mode takes no jitter branch.
The expert MLP and the aux loss are tools/hf_fixtures/generate.py's (SwiGLUExpertW and
hf_topk_load_balancing_loss, HF's function for one layer, without the torch.cat of a one-element
tuple); the block's forward is written out here, because generate.py's expert loop (combine_topk)
is HF's semantics, not its exact operations.

One step = the block's forward in training mode on x [T, d] (requires grad; passed as [1, T, d],
one sequence, as tinymoe's 2-D x), HF's load_balancing_loss_func on the block's router logits
(raw, as MixtralForCausalLM calls it with one layer and no attention mask), then backward from a
fixed random output gradient, then every gradient dropped (set to None), so each step allocates
its gradients afresh, as `tinymoe bench moe` does.

Included, to do the work tinymoe's block does: the gate GEMM, softmax, top-k, renormalisation,
the aux loss's forward (tinymoe's Mixtral rule computes it on every forward; in both benches the
backward starts from the output gradient only, so neither computes the aux loss's gradient),
the expert loop, the combine. Not included: the aux-loss coefficient and its gradient, the rest
of a decoder layer, tinymoe's routing diagnostics (tinymoe does that extra work, HF does not).
HF's aux loss recomputes softmax and top-k from the logits; tinymoe reuses its routing: a
[T, E] softmax and top-k more on the torch side, small next to the expert GEMMs.

Next to it, in the same interleaved rounds, a dense SwiGLU MLP of width k f (the same expert
module with intermediate size k f, so the same GEMM FLOPs), as bench_moe.cpp does.

GFLOP/s use bench_moe.cpp's count, the expert GEMMs only: 9 * 2 T k d f per step (3 projections
forward, 2 GEMMs each backward). Times are medians of --repeats interleaved rounds after one
warm-up round; the ratio is the median of the per-round (dense time / block time). f32.

With --tinymoe PATH the script also runs `PATH bench moe --json` with the same --repeats,
--threads (and --quick), alternating the two programs over --runs runs (the first program
switches every run), and prints per shape the medians over runs: each one's block GFLOP/s, the
speedup tinymoe / torch (median of per-run speedups) and each one's ratio to its own dense MLP.

Needs Debian's PyTorch (apt-get install python3-torch); run with /usr/bin/python3. It is a
benchmark, not part of the tests: torch is never a test dependency of tinymoe.

Usage:
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 tools/bench_torch/bench_moe_eager.py
      [--quick] [--repeats N] [--threads N] [--json] [--tinymoe build/tools/tinymoe [--runs R]]
"""

import argparse
import ctypes
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import types


def fail(message):
    sys.stderr.write("bench_moe_eager.py: %s\n" % message)
    sys.exit(1)


# ----------------------------------------------------------------------------------------------
# Shapes and FLOPs (tools/cli/bench_moe.cpp, MoeShape)
# ----------------------------------------------------------------------------------------------


class MoeShape:
    """T tokens of width d, E SwiGLU experts of width f, each token routed to top_k of them."""

    def __init__(self, name, tokens, d_model, d_ff, experts, top_k):
        self.name, self.tokens, self.d_model, self.d_ff = name, tokens, d_model, d_ff
        self.experts, self.top_k = experts, top_k

    def dense_ff(self):
        return self.top_k * self.d_ff  # the dense MLP's width: equal FLOPs

    def step_flops(self):
        return 9 * 2.0 * self.tokens * self.top_k * self.d_model * self.d_ff

    def __str__(self):  # bench_moe.cpp's MoeShape::str(), so results join on the shape
        return "%s: T=%d d=%d f=%d E=%d k=%d" % (self.name, self.tokens, self.d_model, self.d_ff,
                                                 self.experts, self.top_k)

    def dense_str(self):
        return "%s dense: T=%d d=%d f=%d" % (self.name, self.tokens, self.d_model, self.dense_ff())


def moe_shapes(quick):
    if quick:
        return [MoeShape("mixtral-like", 128, 64, 128, 4, 2), MoeShape("fine-grained", 128, 64, 32, 16, 4)]
    return [MoeShape("mixtral-like", 2048, 512, 1024, 8, 2), MoeShape("fine-grained", 2048, 512, 256, 64, 8)]


# ----------------------------------------------------------------------------------------------
# Report: the table or JSON lines of tools/cli/bench_util.cpp (Report)
# ----------------------------------------------------------------------------------------------


def format_number(value):
    """Enough digits to compare runs, not more: 0.213, 12.4, 1843."""
    magnitude = abs(value)
    return "%.*f" % (3 if magnitude < 10 else 1 if magnitude < 1000 else 0, value)


class Report:
    """One measurement per table row, or one JSON object per line with the keys bench_moe.cpp
    writes: bench, metric, value, unit, shape, and path when there is one."""

    WIDTHS = (16, 34, 18, 26)  # bench, metric, value, target: bench_util.cpp's

    def __init__(self, out, as_json, path_width=28):
        # bench_util.cpp's path column is 28 wide; torch's path is longer, so the caller widens it
        self.out, self.as_json, self.header_written = out, as_json, False
        self.path_width = path_width

    def note(self, text):
        if not self.as_json:
            self.out.write(text + "\n")

    def add(self, bench, metric, value, unit, shape, path=""):
        if self.as_json:
            line = {"bench": bench, "metric": metric, "value": value, "unit": unit, "shape": shape}
            if path:
                line["path"] = path
            self.out.write(json.dumps(line) + "\n")
        else:
            bench_w, metric_w, value_w, target_w = self.WIDTHS
            path_w = self.path_width
            if not self.header_written:
                self.out.write("%-*s%-*s%*s  %-*s%-*sshape\n" % (bench_w, "bench", metric_w, "metric", value_w,
                                                                 "value", target_w, "target", path_w, "path"))
                self.header_written = True
            self.out.write("%-*s%-*s%*s  %-*s%-*s%s\n" % (bench_w, bench, metric_w, metric, value_w,
                                                          format_number(value) + " " + unit, target_w, "",
                                                          path_w, path, shape))
        self.out.flush()  # a long bench shows each result as soon as it exists


# ----------------------------------------------------------------------------------------------
# torch: imported on demand, so --help and argument errors work without it
# ----------------------------------------------------------------------------------------------

torch = None
F = None
nn = None


def import_torch(threads):
    """Imports torch with `threads` BLAS / intra-op threads and 1 inter-op thread. OpenBLAS reads
    OPENBLAS_NUM_THREADS when it loads, so it is set before the import (and set again through
    openblas_set_num_threads below, as tinymoe's set_blas_threads does)."""
    global torch, F, nn
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    try:
        import torch as torch_module
        import torch.nn.functional as functional
        from torch import nn as nn_module
    except ImportError as error:
        sys.stderr.write("bench_moe_eager.py: cannot import torch (%s): install Debian's python3-torch "
                         "(apt-get install python3-torch) and run with /usr/bin/python3\n" % error)
        sys.exit(2)
    torch, F, nn = torch_module, functional, nn_module
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def loaded_openblas():
    """The OpenBLAS library torch's GEMMs run in (Debian's torch calls the system libblas), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libopenblas" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def blas_path(threads):
    """bench_moe.cpp's path column for torch: "torch <version> eager, openblas/<kernel>"."""
    torch.ones(8, 8) @ torch.ones(8, 8)  # makes torch load its BLAS
    openblas = loaded_openblas()
    if openblas is None:
        return "torch %s eager" % torch.__version__
    openblas.openblas_set_num_threads(threads)
    openblas.openblas_get_corename.restype = ctypes.c_char_p
    return "torch %s eager, openblas/%s" % (torch.__version__, openblas.openblas_get_corename().decode())


# ----------------------------------------------------------------------------------------------
# The HF modules (modeling_mixtral.py at the commit above)
# ----------------------------------------------------------------------------------------------


def load_fixture_generator():
    """tools/hf_fixtures/generate.py, the project's re-implementation of HF's layers, for the pieces
    that are the same here: SwiGLUExpertW (MixtralBlockSparseTop2MLP) and
    hf_topk_load_balancing_loss (load_balancing_loss_func for one layer, no attention mask)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "hf_fixtures", "generate.py")
    spec = importlib.util.spec_from_file_location("tinymoe_hf_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_modules():
    """The expert MLP, the block and the aux loss, once torch is imported."""
    hf = load_fixture_generator()

    class MixtralSparseMoeBlock(nn.Module):
        def __init__(self, shape):
            super().__init__()
            self.hidden_dim, self.ffn_dim = shape.d_model, shape.d_ff
            self.num_experts, self.top_k = shape.experts, shape.top_k
            self.gate = nn.Linear(self.hidden_dim, self.num_experts, bias=False)
            self.experts = nn.ModuleList(
                [hf.SwiGLUExpertW(self.hidden_dim, self.ffn_dim) for _ in range(self.num_experts)])
            self.jitter_noise = 0.0  # MixtralConfig.router_jitter_noise default

        def forward(self, hidden_states):
            batch_size, sequence_length, hidden_dim = hidden_states.shape
            if self.training and self.jitter_noise > 0:
                hidden_states *= torch.empty_like(hidden_states).uniform_(1.0 - self.jitter_noise,
                                                                          1.0 + self.jitter_noise)
            hidden_states = hidden_states.view(-1, hidden_dim)
            router_logits = self.gate(hidden_states)  # [T, E]

            routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
            routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
            routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
            routing_weights = routing_weights.to(hidden_states.dtype)

            final_hidden_states = torch.zeros((batch_size * sequence_length, hidden_dim),
                                              dtype=hidden_states.dtype, device=hidden_states.device)
            # [E, k, T]: for each expert, which (slot, token) pairs chose it
            expert_mask = F.one_hot(selected_experts, num_classes=self.num_experts).permute(2, 1, 0)
            expert_hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()
            for expert_idx in expert_hit:
                expert_layer = self.experts[expert_idx]
                idx, top_x = torch.where(expert_mask[expert_idx].squeeze(0))
                current_state = hidden_states[None, top_x].reshape(-1, hidden_dim)
                current_hidden_states = expert_layer(current_state) * routing_weights[top_x, idx, None]
                final_hidden_states.index_add_(0, top_x, current_hidden_states.to(hidden_states.dtype))
            final_hidden_states = final_hidden_states.reshape(batch_size, sequence_length, hidden_dim)
            return final_hidden_states, router_logits

    return types.SimpleNamespace(expert=hf.SwiGLUExpertW, block=MixtralSparseMoeBlock,
                                 aux_loss=hf.hf_topk_load_balancing_loss)


def check_block(block_class):
    """Guards the re-implementation: on a small case, the block's output and every gradient equal a
    dense formulation's (every expert on every token, weighted by the renormalised top-k
    probabilities as a dense [T, E] matrix), in float64."""
    torch.manual_seed(1)
    shape = MoeShape("check", 24, 8, 6, 5, 2)
    block = block_class(shape).double().train()
    x = torch.randn(1, shape.tokens, shape.d_model, dtype=torch.float64, requires_grad=True)
    grad_output = torch.randn(1, shape.tokens, shape.d_model, dtype=torch.float64)
    output, _ = block(x)
    sparse = torch.autograd.grad((output * grad_output).sum(), [x] + list(block.parameters()))

    tokens = x.view(-1, shape.d_model)
    probs = F.softmax(block.gate(tokens), dim=-1)
    kept = torch.zeros_like(probs).scatter(1, probs.topk(shape.top_k, dim=-1).indices, 1.0)
    weights = probs * kept / (probs * kept).sum(dim=-1, keepdim=True)
    dense = sum(weights[:, e:e + 1] * expert(tokens) for e, expert in enumerate(block.experts))
    reference = torch.autograd.grad((dense.view_as(output) * grad_output).sum(), [x] + list(block.parameters()))
    if not torch.allclose(output, dense.view_as(output)) or not all(
            torch.allclose(a, b) for a, b in zip(sparse, reference)):
        fail("the HF block disagrees with its dense formulation")


# ----------------------------------------------------------------------------------------------
# Measurement (bench_moe.cpp's bench_shape, without the time split and the memory peak)
# ----------------------------------------------------------------------------------------------


def interleaved_seconds(runs, repeats, warmup=1):
    """bench_util.cpp's interleaved_seconds: `warmup` untimed rounds, then `repeats` rounds that
    each run every function once, in turn; one list of samples per function."""
    for _ in range(warmup):
        for run in runs:
            run()
    seconds = [[] for _ in runs]
    for _ in range(repeats):
        for samples, run in zip(seconds, runs):
            start = time.perf_counter()
            run()
            samples.append(time.perf_counter() - start)
    return seconds


def load_imbalance(block, x):
    """max / mean of the pairs per expert: 1 is a perfectly balanced load."""
    with torch.no_grad():
        logits = block.gate(x.view(-1, x.shape[-1]))
        selected = torch.topk(F.softmax(logits, dim=1, dtype=torch.float), block.top_k, dim=-1).indices
        counts = torch.bincount(selected.flatten(), minlength=block.num_experts).double()
    return float(counts.max() / counts.mean())


def torch_measurements(shape, repeats, modules):
    """One shape: the HF block and the dense MLP, interleaved. Returns (rows, summary)."""
    torch.manual_seed(0)
    block = modules.block(shape).train()
    dense = modules.expert(shape.d_model, shape.dense_ff()).train()
    x = torch.randn(1, shape.tokens, shape.d_model, requires_grad=True)
    grad_output = torch.randn(1, shape.tokens, shape.d_model)

    def block_step():
        output, router_logits = block(x)
        modules.aux_loss(router_logits, shape.experts, shape.top_k)
        output.backward(grad_output)
        block.zero_grad(set_to_none=True)
        x.grad = None

    def dense_step():
        dense(x).backward(grad_output)
        dense.zero_grad(set_to_none=True)
        x.grad = None

    block_seconds, dense_seconds = interleaved_seconds([block_step, dense_step], repeats)
    flops = shape.step_flops()
    summary = {
        "block_gflops": flops / statistics.median(block_seconds) * 1e-9,
        "dense_gflops": flops / statistics.median(dense_seconds) * 1e-9,
        "ratio": statistics.median(d / b for d, b in zip(dense_seconds, block_seconds)),
    }
    rows = [
        ("hf_moe_block", "forward+backward", summary["block_gflops"], "GFLOP/s", str(shape)),
        ("dense_swiglu", "forward+backward, equal FLOPs", summary["dense_gflops"], "GFLOP/s", shape.dense_str()),
        ("hf_moe_block", "forward+backward / dense", summary["ratio"], "x", str(shape)),
        ("hf_moe_block", "expert load max/mean", load_imbalance(block, x), "x", str(shape)),
    ]
    return rows, summary


def run_torch(args, modules, path, report=None):
    """Every shape once; rows go to `report` when given. Returns {shape string: summary}."""
    summaries = {}
    for shape in moe_shapes(args.quick):
        rows, summaries[str(shape)] = torch_measurements(shape, args.repeats, modules)
        for bench, metric, value, unit, shape_text in rows:
            if report:
                # as bench_moe.cpp: no GEMM path on the load, which does not depend on it
                report.add(bench, metric, value, unit, shape_text, "" if metric == "expert load max/mean" else path)
    return summaries


# ----------------------------------------------------------------------------------------------
# --tinymoe: alternate with `tinymoe bench moe` and compare
# ----------------------------------------------------------------------------------------------


def run_tinymoe(args, environment):
    """One `tinymoe bench moe --json` run: {shape string: summary}, and its path column."""
    command = [args.tinymoe, "bench", "moe", "--json", "--repeats", str(args.repeats), "--threads", str(args.threads)]
    if args.quick:
        command.append("--quick")
    result = subprocess.run(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    if result.returncode != 0:
        fail("`%s` exited with %d:\n%s" % (" ".join(command), result.returncode, result.stderr.rstrip()))
    # bench_moe.cpp names the dense MLP's rows by its own shape string: file them under the block's
    moe_key = {shape.dense_str(): str(shape) for shape in moe_shapes(args.quick)}
    summaries, path = {}, ""
    for line in result.stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            fail("`%s` wrote a line that is not JSON: %s" % (" ".join(command), line))
        if row["bench"] == "dense_swiglu" and row["metric"] == "forward+backward, equal FLOPs":
            summaries.setdefault(moe_key.get(row["shape"], row["shape"]), {})["dense_gflops"] = row["value"]
        elif row["bench"] == "moe_block" and row["metric"] == "forward+backward":
            summaries.setdefault(row["shape"], {})["block_gflops"], path = row["value"], row.get("path", "")
        elif row["bench"] == "moe_block" and row["metric"] == "forward+backward / dense":
            summaries.setdefault(row["shape"], {})["ratio"] = row["value"]
    for shape in moe_shapes(args.quick):
        if len(summaries.get(str(shape), {})) != 3:
            fail("`%s` did not report the block, the dense MLP and their ratio for '%s'" % (" ".join(command), shape))
    return summaries, path


def alternate_runs(args, modules, torch_path, environment):
    """--runs runs of each program, the first one switching every run. Returns the per-run
    summaries of tinymoe and of torch, and tinymoe's path column."""
    tinymoe_runs, torch_runs, tinymoe_path = [], [], ""
    for run in range(args.runs):
        for program in ("tinymoe", "torch") if run % 2 == 0 else ("torch", "tinymoe"):
            if program == "tinymoe":
                summaries, tinymoe_path = run_tinymoe(args, environment)
                tinymoe_runs.append(summaries)
            else:
                summaries = run_torch(args, modules, torch_path)
                torch_runs.append(summaries)
            # progress, and the spread between runs, on stderr (stdout stays the result)
            sys.stderr.write("run %d/%d %-8s %s\n" % (run + 1, args.runs, program, "  ".join(
                "%s: block %s, dense %s GFLOP/s" % (key.split(":")[0], format_number(summary["block_gflops"]),
                                                    format_number(summary["dense_gflops"]))
                for key, summary in summaries.items())))
    return tinymoe_runs, torch_runs, tinymoe_path


def compare(args, modules, torch_path, environment, report):
    """Medians over runs per shape: each program's block GFLOP/s, the median of the per-run
    speedups tinymoe / torch, and each program's block-to-dense ratio."""
    tinymoe_runs, torch_runs, tinymoe_path = alternate_runs(args, modules, torch_path, environment)

    def median_of(runs, key, field):
        return statistics.median(summaries[key][field] for summaries in runs)

    rows = []
    for key in map(str, moe_shapes(args.quick)):
        rows.append((key, median_of(tinymoe_runs, key, "block_gflops"), median_of(torch_runs, key, "block_gflops"),
                     statistics.median(mine[key]["block_gflops"] / theirs[key]["block_gflops"]
                                       for mine, theirs in zip(tinymoe_runs, torch_runs)),
                     median_of(tinymoe_runs, key, "ratio"), median_of(torch_runs, key, "ratio")))
    if args.json:
        for key, tinymoe_gflops, torch_gflops, speedup, tinymoe_ratio, torch_ratio in rows:
            report.add("compare", "tinymoe fwd+bwd", tinymoe_gflops, "GFLOP/s", key, tinymoe_path)
            report.add("compare", "torch eager fwd+bwd", torch_gflops, "GFLOP/s", key, torch_path)
            report.add("compare", "speedup tinymoe / torch eager", speedup, "x", key)
            report.add("compare", "tinymoe fwd+bwd / dense", tinymoe_ratio, "x", key, tinymoe_path)
            report.add("compare", "torch eager fwd+bwd / dense", torch_ratio, "x", key, torch_path)
    else:
        print_comparison(rows, tinymoe_path, torch_path)


def print_comparison(rows, tinymoe_path, torch_path):
    """One row per shape; GFLOP/s by the expert-GEMM count, ratios to each program's own dense MLP."""
    header = ("shape", "tinymoe GFLOP/s", "torch GFLOP/s", "speedup", "tinymoe / dense", "torch / dense")
    width = max(len(row[0]) for row in rows) + 2
    sys.stdout.write("tinymoe: %s; torch: %s\n" % (tinymoe_path, torch_path))
    sys.stdout.write("%-*s" % (width, header[0]) + "".join("%17s" % cell for cell in header[1:]) + "\n")
    for key, *values in rows:
        sys.stdout.write("%-*s" % (width, key) + "".join(
            "%17s" % (format_number(value) + (" x" if column in (2, 3, 4) else ""))
            for column, value in enumerate(values)) + "\n")


# ----------------------------------------------------------------------------------------------


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number, got '%s'" % text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected at least 1, got %d" % value)
    return value


def executable(text):
    if not os.path.isfile(text) or not os.access(text, os.X_OK):
        raise argparse.ArgumentTypeError("'%s' is not an executable file (build it: cmake --build build "
                                         "--target tinymoe_cli; it is build/tools/tinymoe)" % text)
    return text


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="HuggingFace MixtralSparseMoeBlock (PyTorch eager) forward+backward vs a dense SwiGLU MLP of "
                    "equal FLOPs, at `tinymoe bench moe`'s shapes; optionally against tinymoe itself.")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch intra-op and OpenBLAS threads, also passed to tinymoe (default 1)")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed rounds per measurement, after 1 warm-up round; the median is reported (default 5)")
    parser.add_argument("--quick", action="store_true", help="small shapes, for a smoke test")
    parser.add_argument("--tinymoe", type=executable, metavar="PATH",
                        help="a tinymoe binary: also run `PATH bench moe --json` and print a comparison")
    parser.add_argument("--runs", type=positive_int,
                        help="with --tinymoe: runs of each program, alternated; medians reported (default 3)")
    args = parser.parse_args(argv)
    if args.runs is not None and not args.tinymoe:
        parser.error("--runs needs --tinymoe")
    if args.runs is None:
        args.runs = 3
    return args


def main(argv):
    args = parse_arguments(argv)
    environment = dict(os.environ)  # tinymoe's, before OPENBLAS_NUM_THREADS is set for torch
    import_torch(args.threads)
    path = blas_path(args.threads)
    modules = make_modules()
    check_block(modules.block)

    report = Report(sys.stdout, args.json, path_width=max(28, len(path) + 2))
    report.note("torch bench moe: HF MixtralSparseMoeBlock (eager, expert loop) in training mode, f32; median of %d "
                "interleaved rounds after 1 warm-up; %d thread(s); GFLOP/s count the expert GEMMs only "
                "(9 x 2 T k d f per step); %s%s" % (args.repeats, args.threads, path,
                                                   "; --quick shapes" if args.quick else ""))
    if args.tinymoe:
        report.note("against %s bench moe, %d runs each, alternated; medians over runs" % (args.tinymoe, args.runs))
        compare(args, modules, path, environment, report)
    else:
        run_torch(args, modules, path, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
