"""Serving: chat and text completions from llama.cpp processes (see ``engine``).

``open_pool(settings)`` is the one way the API builds its model pool.
"""

from __future__ import annotations

from tunegate.serving.engine import EngineConfig
from tunegate.serving.merged import MergedModels
from tunegate.serving.model import ModelLoader
from tunegate.serving.pool import ModelPool
from tunegate.settings import Settings


def open_pool(settings: Settings) -> ModelPool:
    """The model pool the settings describe (no process starts until a request needs one)."""
    config = EngineConfig(
        n_ctx=settings.inference_context, parallel=max(1, settings.inference_parallel),
        threads=settings.inference_threads or None, timeout=settings.inference_timeout,
        log_dir=settings.logs_dir)
    merged = MergedModels(settings.merged_dir, settings.merged_cache_bytes) \
        if settings.serve_merged else None
    return ModelPool(settings.inference_cache_size, ModelLoader(config, merged),
                     max_queue=4 * config.parallel)
