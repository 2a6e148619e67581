"""Every family of the architecture table at a real size: added, trained, exported and served.

Run from the repository root, one family at a time under the heavy lock on a shared machine:

    flock /tmp/tunegate-heavy.lock .venv/bin/python bench/families.py --family qwen3

For each family a base is built at the layer shapes of a published 1B-class model of that
family (its ``config.json`` values below), with random weights and the embedded SmolLM2's
tokenizer (nothing is downloaded; the vocabulary keeps the family's size where the converter
allows, so the embedding and the loss weigh what they would). Families without a 1B-class model
(phi3, mistral) keep their smallest model's layer shapes with fewer layers, said in the output;
``llama-3b`` is the 3B class (Llama 3.2 3B's shapes). Then, as a user's base goes:

1. ``add``: ``tunegate models add FOLDER``'s path (llama.cpp's convert_hf_to_gguf.py, a bf16 GGUF);
2. ``train``: the real trainer (``run_training``) on the GGUF, a few steps: it converts the GGUF
   into the model cache first, as a first job does. Its peak RSS (``ru_maxrss``, its own
   process) against the estimate the worker makes before the job (``tunegate.training.estimate``,
   conversion included), and its tokens/s;
3. ``export``: the adapter as a llama.cpp LoRA GGUF (``export_lora_gguf``);
4. ``serve``: llama.cpp (llama-server through tunegate's serving) runs base + adapter and
   generates; its tokens/s.

Each step runs in its own process, so each peak is its own; scratch goes under ``--scratch``
(default: a temporary folder) and is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# One toy training file, one peak and one embedded base for both benchmarks.
from bench.base_sizes import embedded_ref, peak_rss_bytes, toy_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# transformers config class, the config (from the named model's config.json), and what was cut.
FAMILIES: dict[str, tuple[str, dict[str, Any], str]] = {
    "llama": ("LlamaConfig", {  # Llama 3.2 1B
        "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "tie_word_embeddings": True, "rope_theta": 500000.0, "rms_norm_eps": 1e-5},
        "Llama 3.2 1B"),
    "llama-3b": ("LlamaConfig", {  # Llama 3.2 3B: the 3B class, once
        "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
        "num_attention_heads": 24, "num_key_value_heads": 8, "vocab_size": 128256,
        "tie_word_embeddings": True, "rope_theta": 500000.0, "rms_norm_eps": 1e-5},
        "Llama 3.2 3B"),
    "qwen2": ("Qwen2Config", {  # Qwen2.5 1.5B
        "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
        "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
        "tie_word_embeddings": True, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6},
        "Qwen2.5 1.5B"),
    "qwen3": ("Qwen3Config", {  # Qwen3 1.7B
        "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
        "vocab_size": 151936, "tie_word_embeddings": True, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6}, "Qwen3 1.7B"),
    "gemma3": ("Gemma3TextConfig", {  # Gemma 3 1B
        "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
        "vocab_size": 262144, "tie_word_embeddings": True, "rope_theta": 1000000.0,
        "rope_local_base_freq": 10000.0, "sliding_window": 512, "query_pre_attn_scalar": 256,
        "rms_norm_eps": 1e-6}, "Gemma 3 1B, SmolLM2's 49k vocabulary"),
    "phi3": ("Phi3Config", {  # Phi-3-mini (3.8B): 8 of its 32 layers
        "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 8,
        "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32064,
        "tie_word_embeddings": False, "rope_theta": 10000.0, "rms_norm_eps": 1e-5},
        "Phi-3-mini's layers, 8 of 32; 49k vocabulary"),
    "mistral": ("MistralConfig", {  # Mistral 7B v0.3: 4 of its 32 layers
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 4,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32768,
        "tie_word_embeddings": False, "rope_theta": 1000000.0, "rms_norm_eps": 1e-5},
        "Mistral 7B's layers, 4 of 32; 49k vocabulary"),
}


# --tiny: each family's config at toy widths (its vocabulary kept), to check the bench itself.
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}


def child_build(family: str, scratch: Path, tiny: bool) -> dict[str, Any]:
    """The random base as a bfloat16 Hugging Face folder, with SmolLM2's tokenizer."""
    import torch
    import transformers

    from tunegate.training import model_cache

    class_name, values, _ = FAMILIES[family]
    if tiny:
        values = {**values, **TINY, "query_pre_attn_scalar": 16} if family == "gemma3" \
            else {**values, **TINY}
        if family == "qwen3":
            # transformers reads no head_dim from a qwen3 GGUF (its 128 is every Qwen3's).
            values["head_dim"] = 128
    tokenizer = model_cache.load_tokenizer(embedded_ref(), scratch / "tokenizer-cache")
    if family == "gemma3":
        # llama.cpp's gemma3 converter drops the embedding rows past the tokenizer's (a real
        # Gemma tokenizer has all 262,144), so this base keeps SmolLM2's vocabulary.
        values = {**values, "vocab_size": len(tokenizer)}
    elif values["vocab_size"] < len(tokenizer):
        # phi3's and mistral's 32k vocabularies are smaller than SmolLM2's tokenizer: grown to it.
        values = {**values, "vocab_size": len(tokenizer)}
    config = getattr(transformers, class_name)(
        **values, max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model_class = transformers.AutoModelForCausalLM.from_config
    torch.manual_seed(0)
    with torch.device("meta"):
        model = model_class(config)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    model.tie_weights()
    folder = scratch / f"{family}-hf"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if family in ("phi3", "qwen2"):
        # llama.cpp's converter reads a phi3 folder's vocabulary as GPT-2 BPE only when the
        # folder says GPT2Tokenizer (as Phi-4-mini's does); else it wants a SentencePiece file.
        # For qwen2, transformers otherwise reads it as a Qwen2 tokenizer, whose pre-tokenizer
        # llama.cpp then does not recognise with SmolLM2's vocabulary.
        config_file = folder / "tokenizer_config.json"
        values = json.loads(config_file.read_text())
        config_file.write_text(json.dumps({**values, "tokenizer_class": "GPT2Tokenizer"}))
    return {"n_params": sum(p.numel() for p in model.parameters())}


def child_add(family: str, scratch: Path) -> dict[str, Any]:
    from tunegate.adapters.convert import convert_hf_folder
    from tunegate.domain import catalog

    started = time.monotonic()
    added = catalog.add_base_model(scratch / "models", scratch / f"{family}-hf",
                                   name=family, convert=convert_hf_folder)
    shutil.rmtree(scratch / f"{family}-hf")  # the GGUF is the base now, as after models add
    return {"seconds": round(time.monotonic() - started, 1), "gguf": str(added.path),
            "gguf_bytes": added.path.stat().st_size}


def child_train(family: str, scratch: Path, examples: int,
                checkpointing: bool = False) -> dict[str, Any]:
    from tunegate.domain.methods import Method
    from tunegate.training.run import run_training
    from tunegate.training.spec import BaseModelRef, TrainingSpec

    work = scratch / f"job-{family}"
    work.mkdir()
    ref = BaseModelRef(family, "gguf", str(scratch / "models"), f"{family}.gguf")
    events: list[Any] = []
    spec = TrainingSpec(job_id="ftjob-bench", base_model=ref, cache_dir=str(scratch / "cache"),
                        work_dir=str(work), seed=1,
                        training_file=str(toy_file(work / "train.jsonl", examples, 120)),
                        method=Method.of("supervised", {"n_epochs": 1, "batch_size": 4,
                                                        "learning_rate_multiplier": 1}),
                        gradient_checkpointing=checkpointing)
    started = time.monotonic()
    result = run_training(spec, events.append, lambda: None)
    metrics = [e for e in events if type(e).__name__ == "StepMetrics"]
    return {"status": str(result.status), "seconds": round(time.monotonic() - started, 1),
            "adapter": result.adapter_dir, "peak_rss": peak_rss_bytes(), "steps": len(metrics),
            "losses": [round(m.values.get("train_loss") or 0.0, 3) for m in metrics],
            "tokens_per_s": [m.tokens_per_second for m in metrics],
            "notes": [e.message for e in events if type(e).__name__ == "Note"]}


def child_export(family: str, scratch: Path, adapter: str) -> dict[str, Any]:
    from tunegate.adapters.export import export_lora_gguf

    started = time.monotonic()
    out = export_lora_gguf(Path(adapter), scratch / "models" / f"{family}.gguf",
                           scratch / f"{family}-adapter.gguf")
    return {"seconds": round(time.monotonic() - started, 1), "peak_rss": peak_rss_bytes(),
            "bytes": out.stat().st_size}


def child_serve(family: str, scratch: Path, tokens: int) -> dict[str, Any]:
    from tunegate.serving.engine import EngineConfig, Sampling
    from tunegate.serving.model import ModelLoader
    from tunegate.serving.pool import ModelFiles

    started = time.monotonic()
    model = ModelLoader(EngineConfig(parallel=1), None)(ModelFiles(
        f"{family}-tuned", scratch / "models" / f"{family}.gguf",
        scratch / f"{family}-adapter.gguf"))
    try:
        loaded = time.monotonic() - started
        prompt = model.text_prompt("Repeat list number 3.")
        count, first, ended = 0, 0.0, 0.0
        for delta in model.generate(prompt, Sampling(temperature=0.0, seed=1), tokens):
            if count == 0 and delta.completion_tokens >= 1:
                first = time.monotonic()
            count = delta.completion_tokens
        ended = time.monotonic()
    finally:
        model.close()
    return {"load_s": round(loaded, 1), "tokens": count,
            "tokens_per_s": round((count - 1) / (ended - first), 1) if count >= 2 else 0.0}


def run_child(step: str, family: str, scratch: Path, *flags: str,
              **extra: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", step, "--family", family,
               "--scratch", str(scratch), *flags]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        # transformers' loading report (which tensors mismatched) comes before the traceback.
        report = [line for line in done.stderr.splitlines()
                  if any(word in line.lower() for word in ("mismatch", "shape", "missing"))]
        raise SystemExit(f"{family}: {step} failed:\n" + "\n".join(report[:40])
                         + f"\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def estimate_for(gguf: Path, checkpointing: bool) -> Any:
    """The plan the worker makes before the job: shape from the GGUF header, the first job
    converting it."""
    from tunegate.training import estimate, precision, trainer

    shape = estimate.ModelShape.of_gguf(gguf)
    return shape, estimate.estimate_memory(shape, precision.cpu_base_dtype(),
                                           trainer.CPU_TOKEN_BUDGET, converting=True,
                                           checkpointing=checkpointing)


def bench(family: str, scratch: Path, args: argparse.Namespace) -> dict[str, Any]:
    built = run_child("build", family, scratch, *(["--tiny"] if args.tiny else []))
    added = run_child("add", family, scratch)
    shape, estimated = estimate_for(Path(added["gguf"]), args.checkpointing)
    trained = run_child("train", family, scratch,
                        *(["--checkpointing"] if args.checkpointing else []),
                        examples=args.examples)
    exported = run_child("export", family, scratch, adapter=trained["adapter"])
    try:
        served = run_child("serve", family, scratch, tokens=args.tokens)
    except SystemExit as exc:  # what trained and exported is still worth reporting
        served = {"load_s": None, "tokens_per_s": None, "tokens": 0, "failed": str(exc)[-600:]}
    rates = [rate for rate in trained["tokens_per_s"] if rate]
    return {"family": family, "shape": "tiny" if args.tiny else FAMILIES[family][2],
            "checkpointing": args.checkpointing,
            "n_params": built["n_params"],
            "gguf_params": shape.n_params, "add_s": added["seconds"],
            "gguf_gib": round(added["gguf_bytes"] / 2**30, 2),
            "estimate_gib": round(estimated.total / 2**30, 2),
            "peak_gib": round(trained["peak_rss"] / 2**30, 2),
            "peak_vs_estimate": round(trained["peak_rss"] / estimated.total - 1, 3),
            "train_s": trained["seconds"], "steps": trained["steps"], "losses": trained["losses"],
            "train_tokens_per_s": round(sum(rates) / len(rates), 1) if rates else None,
            "export_s": exported["seconds"], "export_peak_gib":
                round(exported["peak_rss"] / 2**30, 2),
            "serve_load_s": served["load_s"], "generate_tokens_per_s": served["tokens_per_s"],
            "generated": served["tokens"], "serve_failed": served.get("failed")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), action="append")
    parser.add_argument("--child", choices=["build", "add", "train", "export", "serve"])
    parser.add_argument("--scratch", default=None)
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--examples", type=int, default=8, help="4 per step")
    parser.add_argument("--tokens", type=int, default=24, help="tokens to generate")
    parser.add_argument("--tiny", action="store_true", help="toy widths: checks the bench only")
    parser.add_argument("--checkpointing", action="store_true",
                        help="train with gradient checkpointing (TUNEGATE_GRADIENT_CHECKPOINTING=on)")
    args = parser.parse_args()
    families = args.family or sorted(FAMILIES)
    if args.child:
        scratch, family = Path(args.scratch), families[0]
        result = {"build": lambda: child_build(family, scratch, args.tiny),
                  "add": lambda: child_add(family, scratch),
                  "train": lambda: child_train(family, scratch, args.examples,
                                               args.checkpointing),
                  "export": lambda: child_export(family, scratch, args.adapter),
                  "serve": lambda: child_serve(family, scratch, args.tokens)}[args.child]()
        print(json.dumps(result))
        return
    for family in families:
        with tempfile.TemporaryDirectory(prefix=f"families-{family}-", dir=args.scratch) as tmp:
            print(json.dumps(bench(family, Path(tmp), args)), flush=True)


if __name__ == "__main__":
    main()
