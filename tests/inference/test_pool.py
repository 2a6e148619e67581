"""ModelPool rules with a fake loader (no llama.cpp): LRU size, shared use of one model process,
restart of a dead one, eviction of models in use, and release by a generator closed from
another thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunegate.serving.pool import ModelBusy, ModelFiles, ModelLoadError, ModelPool


class FakeModel:
    """Test fake of a model process: it can be closed, or die."""

    def __init__(self, files: ModelFiles):
        self.files = files
        self.closed = False
        self.dead = False

    def alive(self) -> bool:
        return not self.dead

    def close(self) -> None:
        self.closed = True


class Loader:
    """Counts loads; fails for adapters named ``broken.gguf``."""

    def __init__(self) -> None:
        self.loaded: list[FakeModel] = []

    def __call__(self, files: ModelFiles) -> FakeModel:
        if files.adapter is not None and files.adapter.name == "broken.gguf":
            raise ModelLoadError("bad adapter")
        model = FakeModel(files)
        self.loaded.append(model)
        return model


def files(name: str, adapter: str | None = None) -> ModelFiles:
    return ModelFiles(name, Path("/base.gguf"), Path(adapter) if adapter else None)


@pytest.fixture
def loader() -> Loader:
    return Loader()


def test_loads_lazily_once_and_keeps_the_model(loader: Loader) -> None:
    pool = ModelPool(2, loader)
    assert loader.loaded == []
    with pool.use(files("a")) as first:
        pass
    with pool.use(files("a")) as second:
        pass
    assert first is second and len(loader.loaded) == 1
    assert pool.loaded() == ["a"]


def test_least_recently_used_model_is_closed_beyond_capacity(loader: Loader) -> None:
    pool = ModelPool(2, loader)
    for name in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" arrives
        with pool.use(files(name)):
            pass
    assert pool.loaded() == ["a", "c"]
    closed = {model.files.model_id for model in loader.loaded if model.closed}
    assert closed == {"b"}


def test_evict_closes_an_idle_model_and_the_next_use_reloads(loader: Loader) -> None:
    pool = ModelPool(2, loader)
    with pool.use(files("a")) as model:
        pass
    assert pool.evict("a") and model.closed and pool.loaded() == []
    assert not pool.evict("a")
    with pool.use(files("a")) as again:
        assert again is not model


def test_a_model_evicted_while_in_use_is_closed_when_released(loader: Loader) -> None:
    pool = ModelPool(2, loader)
    with pool.use(files("a")) as model:
        pool.evict("a")
        assert not model.closed  # the running request keeps its model
    assert model.closed


def test_same_id_with_other_files_is_reloaded(loader: Loader) -> None:
    pool = ModelPool(2, loader)
    with pool.use(files("a", "one.gguf")) as old:
        pass
    with pool.use(files("a", "two.gguf")) as new:
        assert new.files.adapter == Path("two.gguf")
    assert old.closed and not new.closed


def test_a_failed_load_is_not_kept(loader: Loader) -> None:
    pool = ModelPool(2, loader)
    with pytest.raises(ModelLoadError), pool.use(files("a", "broken.gguf")):
        pass
    assert pool.loaded() == [] and pool._entries == {}


def _hold(pool: ModelPool, name: str, log: list[str], started: threading.Event) -> None:
    with pool.use(files(name)):
        log.append(f"start {name}")
        started.set()
        time.sleep(0.2)
        log.append(f"end {name}")


def test_requests_share_one_model_and_models_run_side_by_side(loader: Loader) -> None:
    pool = ModelPool(4, loader)
    for names in (("a", "a"), ("a", "b")):
        log: list[str] = []
        first_started = threading.Event()
        first = threading.Thread(target=_hold, args=(pool, names[0], log, first_started))
        first.start()
        first_started.wait()
        second = threading.Thread(target=_hold, args=(pool, names[1], log, threading.Event()))
        second.start()
        first.join()
        second.join()
        assert log[1] == f"start {names[1]}", log  # the second began before the first ended
    assert len(loader.loaded) == 2  # one process for "a", shared; one for "b"


def test_a_dead_model_process_is_started_again_by_the_next_request(loader: Loader) -> None:
    pool = ModelPool(2, loader)
    with pool.use(files("a")) as first:
        first.dead = True  # killed while answering
    with pool.use(files("a")) as second:
        assert second is not first and second.alive()
    assert first.closed and len(loader.loaded) == 2


def _stream(pool: ModelPool) -> Iterator[int]:
    with pool.use(files("a")):
        yield from range(1000)


def test_closing_a_stream_in_another_thread_releases_the_model(loader: Loader) -> None:
    """What a disconnecting client does: the generator is advanced and closed by other threads."""
    pool = ModelPool(2, loader)
    stream = _stream(pool)
    advanced = threading.Thread(target=lambda: next(stream))
    advanced.start()
    advanced.join()
    entry = pool._entries["a"]
    assert entry.users == 1
    closer = threading.Thread(target=stream.close)
    closer.start()
    closer.join()
    assert entry.users == 0
    with pool.use(files("a")):  # and the model is usable again
        pass


def test_a_full_queue_is_refused_instead_of_taking_every_thread(loader: Loader) -> None:
    pool = ModelPool(2, loader, max_queue=2)
    streams = [_stream(pool), _stream(pool)]
    next(streams[0])  # two requests hold the model
    waiting = threading.Thread(target=lambda: next(streams[1]))
    waiting.start()
    while pool._entries["a"].users < 2:
        time.sleep(0.01)
    with pytest.raises(ModelBusy), pool.use(files("a")):
        pass
    with pool.use(files("b")):  # other models are not affected
        pass
    streams[0].close()
    waiting.join()
    streams[1].close()
    with pool.use(files("a")):
        pass
