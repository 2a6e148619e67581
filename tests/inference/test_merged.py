"""Fine-tuned models served from merged copies: what is served equals base + adapter within a
stated tolerance, and the copies are a bounded cache that never touches the adapter.

Real llama.cpp throughout: ``llama-export-lora`` and ``llama-quantize`` make the copy, two
``llama-server`` processes answer (the merged copy, and the base GGUF with ``--lora``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import expect_error
from tests.inference.conftest import FRANCE, STRONG, ZERO, MakeModel, adapter_folder
from tunegate.serving import merged as merged_module
from tunegate.serving.engine import EngineConfig
from tunegate.serving.merged import PARTIAL, MergedModels
from tunegate.serving.model import ModelLoader, ServedModel
from tunegate.serving.pool import ModelFiles

PROMPTS = [FRANCE, [{"role": "user", "content": "Write a haiku about rain."}],
           [{"role": "user", "content": "What is 2+2?"}]]
# The next-token probabilities of the merged copy (Q8_0) and of base + adapter differ by at most
# this much (measured on SmolLM2 with the strong test adapter: at most 0.007; with a zero
# adapter, whose merge only re-rounds the weights, at most 0.034). The adapter itself moves
# them by 0.19 to 0.27, so the comparison can tell the two apart.
TOLERANCE = 0.05
TOP = 10


def probabilities(model: ServedModel, messages: list[dict]) -> dict[int, float]:
    return model.engine.next_token_probabilities(model.chat_prompt(messages), TOP)


def largest_difference(a: dict[int, float], b: dict[int, float]) -> float:
    return max(abs(a.get(token, 0.0) - b.get(token, 0.0)) for token in set(a) | set(b))


@pytest.fixture
def served(tmp_path: Path, base_gguf: Path) -> Iterator[dict[str, ServedModel]]:
    """The strong adapter three ways: merged (as served), base + adapter, and the bare base."""
    adapter = adapter_folder(tmp_path, base_gguf, STRONG) / "adapter.gguf"
    config = EngineConfig(parallel=1)
    files = ModelFiles("tuned", base_gguf, adapter)
    models = {"merged": ModelLoader(config, MergedModels(tmp_path / "merged", 1 << 40))(files),
              "adapter": ModelLoader(config, None)(files),
              "base": ModelLoader(config, None)(ModelFiles("base", base_gguf))}
    yield models
    for model in models.values():
        model.close()


def test_the_merged_copy_answers_as_base_plus_adapter(served: dict[str, ServedModel]) -> None:
    moved = []
    for messages in PROMPTS:
        merged, adapter, base = (probabilities(served[name], messages)
                                 for name in ("merged", "adapter", "base"))
        assert largest_difference(merged, adapter) <= TOLERANCE, messages
        moved.append(largest_difference(base, adapter))
    assert max(moved) > 3 * TOLERANCE  # the adapter matters: base is far from both


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_copies_are_reused_bounded_and_leave_the_adapter_alone(tmp_path: Path,
                                                               base_gguf: Path) -> None:
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / f"killed-mid-merge.gguf{PARTIAL}").write_bytes(b"half")
    first = adapter_folder(tmp_path, base_gguf, STRONG) / "adapter.gguf"
    second = adapter_folder(tmp_path, base_gguf, ZERO) / "adapter.gguf"
    before = _sha(first)
    cache = MergedModels(folder, max_bytes=1)  # room for one copy: the newest is always kept
    copy = cache.merged(base_gguf, first)
    assert not list(folder.glob(f"*{PARTIAL}"))  # a killed merge's leftovers go with the next
    made = copy.stat().st_ino
    assert cache.merged(base_gguf, first) == copy and copy.stat().st_ino == made  # reused
    assert _sha(first) == before  # the downloadable adapter is untouched
    other = cache.merged(base_gguf, second)
    assert other != copy and cache.copies() == [other] and not copy.exists()  # LRU evicted
    os.utime(second, ns=(1, 1))  # a changed adapter (new mtime) is merged again
    assert cache.merged(base_gguf, second) != other


def test_a_merge_that_cannot_fit_answers_507_without_paths(
        client, settings, make_model: MakeModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented promise for a full disk holds for a merged copy too: 507, a message that
    says what is needed, no llama.cpp output and no absolute paths; nothing left in the folder."""
    model = make_model(STRONG, suffix="nospace")
    monkeypatch.setattr(merged_module, "_free_bytes", lambda folder: 5 << 20)
    response = client.post("/v1/chat/completions", json={"model": model.id, "messages": FRANCE,
                                                         "max_tokens": 4})
    error = expect_error(client, response, 507, param=None, code="insufficient_storage",
                         says="5 MB free")
    assert "/" not in error["message"].replace("base + adapter", "")  # no path of any kind
    assert response.headers["x-should-retry"] == "false"
    assert not list(settings.merged_dir.iterdir())
    monkeypatch.undo()  # room again: the same request is answered
    assert client.post("/v1/chat/completions", json={"model": model.id, "messages": FRANCE,
                                                     "max_tokens": 4}).status_code == 200
