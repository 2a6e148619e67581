"""A models-folder file of an architecture tunegate cannot export or serve: not listed, and a
job or a completion naming it answers the documented 400 (``unsupported_base_model``) with
the reason and the families that work, before any job exists."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.helpers import expect_error, post_job, upload
from tests.unit.test_architectures import write_gguf
from tunegate.api.app import create_app
from tunegate.settings import Settings


def test_a_refused_architecture_is_unlisted_and_answers_400(settings: Settings,
                                                            tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    write_gguf(models / "mamba-130m.gguf", "mamba")
    app = create_app(replace(settings, models_dir=models), validate_responses=True)
    try:
        with app.test_client() as client:
            listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
            assert "mamba-130m" not in listed
            error = expect_error(client, post_job(client, model="mamba-130m",
                                                  training_file=upload(client)),
                                 400, param="model", code="unsupported_base_model")
            assert error["message"].startswith(
                "Base model mamba-130m (mamba-130m.gguf) cannot be used: its GGUF architecture "
                "is 'mamba', which tunegate cannot train, export to a llama.cpp LoRA and serve. "
                "Supported architectures: llama (")
            assert "gemma3 (Gemma 3 (text))" in error["message"]
            assert client.get("/v1/fine_tuning/jobs").json()["data"] == []
            chat: dict[str, Any] = {"model": "mamba-130m", "max_tokens": 1,
                                    "messages": [{"role": "user", "content": "Hi"}]}
            expect_error(client, client.post("/v1/chat/completions", json=chat), 400,
                         param="model", code="unsupported_base_model")
    finally:
        app.state_service.inference.close()
