"""``run_training``: the trainer child's one entry point (load, prepare data, train, save).

Reads top to bottom as the steps of a run. Heavy imports are fine here: only the trainer child
imports this module.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tunegate.errors import is_disk_full
from tunegate.graders import InvalidGrader, SandboxLimits, grader_models, parse_grader
from tunegate.graders.endpoint import EndpointModels
from tunegate.training import (
    attention,
    dpo,
    grpo,
    hyperparams,
    journal,
    lora,
    model_cache,
    precision,
    state,
    trainer,
)
from tunegate.training.data import Dataset, load_dataset
from tunegate.training.errors import (
    INSUFFICIENT_STORAGE,
    INVALID_RESUME_STATE,
    INVALID_SETTING,
    OUT_OF_MEMORY,
    UNSUPPORTED_BASE_MODEL,
    TrainingFailed,
)
from tunegate.training.messages import Emit, HyperparametersResolved, note
from tunegate.training.preference import load_preferences
from tunegate.training.rewards import Rewarder
from tunegate.training.rft_data import load_prompts
from tunegate.training.spec import RunStatus, TrainingResult, TrainingSpec
from tunegate.training.threads import ThreadGovernor
from tunegate.training.trainer import TrainerOptions

__all__ = ["TrainerOptions", "TrainingFailed", "TrainingResult", "run_training"]

ShouldStop = Callable[[], str | None]
# How each method's files are read (the methods this trainer can train).
LOADERS: dict[str, Callable[..., Dataset[Any]]] = {"supervised": load_dataset,
                                                   "dpo": load_preferences,
                                                   "reinforcement": load_prompts}
INVALID_GRADER = "invalid_grader"
GRADER_PARAM = "method.reinforcement.grader"


def preload() -> None:
    """Import what a run imports lazily (a standby child calls this before it has a job).

    transformers resolves its classes on first use; doing that ahead saves ~2 s of a run's
    start on 2 cores (the model and tokenizer then load from the cache in ~0.3 s).
    """
    import peft.tuners.lora  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401  (the embedded model's)
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401

    attention.register()


def run_training(spec: TrainingSpec, emit: Emit, should_stop: ShouldStop,
                 options: TrainerOptions | None = None) -> TrainingResult:
    """Fine-tune ``spec.base_model`` with LoRA on ``spec.training_file``.

    ``spec.method`` is ``supervised`` (chat or prompt/completion files), ``dpo`` (preference
    files, :mod:`tunegate.training.dpo`) or ``reinforcement`` (RFT files, GRPO rewarded by the
    job's grader, :mod:`tunegate.training.grpo`). Promises: its "auto" hyperparameters resolved before
    the weights load, a ``hyperparameters`` event before the first step, one ``metrics`` event
    per optimizer step, a ``checkpoint`` event per epoch end.
    Returns status ``succeeded`` (adapter in ``work_dir/adapter``, ``results.csv`` written),
    ``paused`` (state in ``work_dir/run``; ``resume=True`` continues with the same losses) or
    ``cancelled``. Raises ``TrainingFailed``.
    """
    options = options or TrainerOptions()
    if spec.method.type not in LOADERS:
        raise TrainingFailed("unsupported_method", f"Method {spec.method.type!r} is not "
                             "supported; use 'supervised', 'dpo' or 'reinforcement'.", "method")
    try:
        return _run(spec, emit, should_stop, options)
    except torch.OutOfMemoryError as exc:
        raise _out_of_memory() from exc
    except OSError as exc:
        if is_disk_full(exc):  # the save removed what it half wrote (tunegate.training.state)
            raise _disk_full() from exc
        raise
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or \
                "out of memory" in str(exc):
            raise _out_of_memory() from exc
        raise


def _run(spec: TrainingSpec, emit: Emit, should_stop: ShouldStop,
         options: TrainerOptions) -> TrainingResult:
    device = configure_runtime(spec.seed)
    chosen = choose_precision(device)
    # Created before loading, so that the CPU use of other processes meanwhile is measured.
    governor = ThreadGovernor(options.threads) if device.type == "cpu" else None
    # The data first, with the tokenizer alone: a file that cannot train fails in seconds,
    # before the weights load (or a GGUF base is converted).
    tokenizer = model_cache.load_tokenizer(spec.base_model, spec.cache_dir)
    rewarder = _rewarder(spec)  # a grader that cannot run fails here, before any loading
    try:
        return _train(spec, emit, should_stop, options, device, chosen, governor, tokenizer,
                      rewarder)
    finally:
        if rewarder is not None:
            rewarder.close()


def _train(spec: TrainingSpec, emit: Emit, should_stop: ShouldStop, options: TrainerOptions,
           device: torch.device, chosen: precision.Precision, governor: ThreadGovernor | None,
           tokenizer: Any, rewarder: Rewarder | None) -> TrainingResult:
    load = _loader(spec, options)
    train_set: Dataset[Any] = load(spec.training_file, tokenizer, spec.max_seq_len, emit=emit)
    valid_set: Dataset[Any] | None = (
        load(spec.validation_file, tokenizer, spec.max_seq_len, validation=True, emit=emit)
        if spec.validation_file else None)
    # "auto" needs the number of examples kept, which only the tokenized read knows; resolved
    # here, before the weights load, so that a combination a rule refuses fails in seconds.
    hp = hyperparams.resolve(spec.method, len(train_set.examples))
    model = _load_model(spec, emit, tokenizer, chosen.base_dtype)
    if spec.gradient_checkpointing:
        # Only each layer's input is kept; backward recomputes the layer (a forward pass more).
        # Non-reentrant: the frozen base's inputs need no gradient for it to work.
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        emit(note("Gradient checkpointing on: the activations would not fit the memory "
                  "otherwise (or TUNEGATE_GRADIENT_CHECKPOINTING=on)"))
    if governor is not None:
        emit(note(f"Training on CPU with {governor.start()} thread(s), {chosen.describe()}"))
    else:
        emit(note(f"Training on {device.type.upper()}, {chosen.describe()}"))
    emit(HyperparametersResolved(hp.to_dict()))  # after the load's notes, as it always came

    torch.manual_seed(spec.seed)  # the adapter's initial weights
    model = lora.attach_lora(model, spec.init_adapter).to(device)
    # An example longer than the budget gets a micro-batch of its own (packing.plan).
    budget = options.token_budget or (trainer.CUDA_TOKEN_BUDGET if device.type == "cuda"
                                      else trainer.CPU_TOKEN_BUDGET)
    engine = trainer.Engine(model, device, budget, autocast=chosen.autocast)
    objective: trainer.Objective = trainer.SupervisedObjective(engine)
    if spec.method.type == "dpo":
        assert hp.beta is not None
        referenced = _with_references(spec, engine, train_set, valid_set, emit, should_stop)
        if referenced is None:
            return TrainingResult(RunStatus.CANCELLED, None, 0, None, hp.to_dict())
        train_set, valid_set = referenced
        objective = dpo.PreferenceObjective(engine, hp.beta)
    if rewarder is not None:
        objective = grpo.ReinforcementObjective(engine, tokenizer, rewarder, hp, spec.seed,
                                                options.completion_tokens)
        emit(note(f"Sampling {hp.group_size} completions per prompt of at most "
                  f"{objective.completion_tokens} tokens; rewards from the "
                  f"{rewarder.grader.type} grader {rewarder.grader.name!r}"))
    optimizer = trainer.make_optimizer(model, hp.learning_rate, options.weight_decay)
    total_steps = hyperparams.steps_per_epoch(len(train_set.examples), hp.batch_size) * hp.n_epochs
    scheduler = trainer.make_scheduler(optimizer, total_steps, options.warmup_fraction)
    loop = trainer.Loop(objective, optimizer, scheduler, train_set, valid_set,
                    hp, spec.seed, spec.work_dir, options, emit, should_stop, governor)
    progress = _start_or_resume(spec, loop, train_set, valid_set, emit)
    noun = {"dpo": "preference pairs", "reinforcement": "prompts"}.get(spec.method.type,
                                                                       "examples")
    emit(note(f"Training {len(train_set.examples)} {noun} ({train_set.n_tokens} tokens) "
                  f"for {hp.n_epochs} epoch(s), {loop.total_steps} steps of {hp.batch_size} "
                  f"example(s), learning rate {hp.learning_rate:g}"
                  + (f"; resuming after step {progress.step}" if progress.step else "")))

    outcome = trainer.train(loop, progress)
    if outcome is not RunStatus.SUCCEEDED:
        return TrainingResult(outcome, None, progress.trained_tokens, None, hp.to_dict())
    work_dir = Path(spec.work_dir)
    adapter = state.save_adapter(model, work_dir / "adapter")
    results = state.write_results_csv(work_dir / "results.csv", progress.rows,
                                      list(objective.csv_columns))
    result = TrainingResult(RunStatus.SUCCEEDED, str(adapter), progress.trained_tokens,
                            str(results), hp.to_dict())
    journal.save(work_dir, loop.reported)  # before the result: see tunegate.training.journal
    result.save(work_dir)  # the run is done: a worker that dies after this never trains it again
    state.clear_run_state(work_dir)
    return result


def _loader(spec: TrainingSpec, options: TrainerOptions) -> Callable[..., Dataset[Any]]:
    """How the method's files are read; an RFT prompt leaves room for its completion."""
    load = LOADERS[spec.method.type]
    if spec.method.type != "reinforcement":
        return load
    effort = str(getattr(spec.method.hyperparameters, "reasoning_effort", "default"))
    budget = options.completion_tokens or hyperparams.COMPLETION_TOKENS[effort]
    return functools.partial(load, completion_tokens=budget, reasoning_effort=effort)


def _rewarder(spec: TrainingSpec) -> Rewarder | None:
    """The reinforcement job's grader, ready to score (``None`` for the other methods)."""
    if spec.method.type != "reinforcement":
        return None
    try:
        grader = parse_grader(spec.method.grader, where=GRADER_PARAM)
    except InvalidGrader as exc:
        raise TrainingFailed(INVALID_GRADER, str(exc), exc.param) from exc
    if grader_models(grader) and not spec.grader_endpoint:
        raise TrainingFailed(INVALID_GRADER, "The grader calls a model "
                             f"({', '.join(grader_models(grader))}), but the trainer was given "
                             "no endpoint to reach it.", GRADER_PARAM)
    models = (EndpointModels(spec.grader_endpoint, spec.grader_api_key or "")
              if spec.grader_endpoint else None)
    return Rewarder(grader, models, _sandbox_limits(spec))


def _sandbox_limits(spec: TrainingSpec) -> SandboxLimits:
    """The python grader's limits the worker passed on (its settings), else OpenAI's."""
    default = SandboxLimits()
    return SandboxLimits.configured(
        spec.python_grader_seconds or default.seconds,
        spec.python_grader_memory_mb or default.memory_bytes // (1024 * 1024))


def configure_runtime(seed: int) -> torch.device:
    """Pick the device (CUDA when present) and seed every RNG."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_precision(device: torch.device) -> precision.Precision:
    """The run's number formats (TUNEGATE_TRAIN_DTYPE, else what the hardware does fast)."""
    try:
        setting = precision.configured_setting()
    except ValueError as exc:
        raise TrainingFailed(INVALID_SETTING, f"{exc} (the worker's environment).") from exc
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return precision.choose_precision(device.type, setting, precision.cpu_flags(), cuda_bf16)


def _load_model(spec: TrainingSpec, emit: Emit, tokenizer: Any, dtype: str) -> Any:
    started = time.monotonic()
    model = model_cache.load_model(spec.base_model, spec.cache_dir,
                                   attn_implementation=attention.register(), emit=emit,
                                   tokenizer=tokenizer, dtype=dtype)
    if model.get_output_embeddings() is None:
        raise TrainingFailed(UNSUPPORTED_BASE_MODEL,
                             f"{spec.base_model.name} is not a causal language model.", "model")
    model.config.use_cache = False
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    count = sum(p.numel() for p in model.parameters())
    emit(note(f"Loaded base model {spec.base_model.name} ({count / 1e6:.1f}M parameters) in "
                  f"{time.monotonic() - started:.1f}s"))
    return model


def _with_references(spec: TrainingSpec, engine: trainer.Engine, train_set: Dataset[Any],
                     valid_set: Dataset[Any] | None, emit: Emit, should_stop: ShouldStop,
                     ) -> tuple[Dataset[Any], Dataset[Any] | None] | None:
    """Both sets with the reference log-probabilities of the starting model (see dpo.py)."""
    started = time.monotonic()
    base_only = spec.init_adapter is None
    train = dpo.with_references(train_set, engine, base_only=base_only, should_stop=should_stop)
    valid = (dpo.with_references(valid_set, engine, base_only=base_only, should_stop=should_stop)
             if valid_set is not None and train is not None else None)
    if train is None or (valid_set is not None and valid is None):
        return None
    reference = "the base model" if base_only else "the starting fine-tuned model"
    emit(note(f"Computed reference log-probabilities with {reference} in "
                  f"{time.monotonic() - started:.1f}s"))
    return train, valid


def _start_or_resume(spec: TrainingSpec, loop: trainer.Loop, train_set: Dataset[Any],
                     valid_set: Dataset[Any] | None, emit: Emit) -> state.Progress:
    identity = {"training": train_set.fingerprint,
                "validation": valid_set.fingerprint if valid_set else None,
                "hyperparameters": loop.hp.to_dict(), "seed": spec.seed,
                "max_seq_len": spec.max_seq_len}
    if spec.resume:
        saved = state.saved_identity(spec.work_dir)
        if saved is not None and saved != identity:
            raise TrainingFailed(INVALID_RESUME_STATE,
                                 "The saved training state belongs to different data or "
                                 "settings; it cannot be resumed.")
        progress = state.load_run_state(spec.work_dir, loop.engine.model, loop.optimizer,
                                        loop.scheduler)
        if progress is not None:
            # Without what a killed run reported past its state: those steps come again.
            loop.reported = [m for m in journal.load(spec.work_dir) if m.step <= progress.step]
            return progress
        emit(note("No saved training state was found; training starts from the beginning",
                  "warn"))
    else:
        state.clear_run_state(spec.work_dir)
    return state.Progress(identity=identity)


def _disk_full() -> TrainingFailed:
    # The worker says what follows: the job waits for room, or fails after several tries.
    return TrainingFailed(INSUFFICIENT_STORAGE, "The server's data folder filled up while "
                          "training saved its state; what it had half written was removed.")


def _out_of_memory() -> TrainingFailed:
    return TrainingFailed(OUT_OF_MEMORY, "Training ran out of memory. Try a smaller batch size, "
                          "a shorter maximum sequence length, or shorter examples.")
