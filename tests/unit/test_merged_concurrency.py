"""Merged copies made by several processes at once, and merges that cannot fit (issue 26).

A worker builds the same service object as the API, so anything ``MergedModels`` does when it
is constructed runs in every process: it once swept the partial files of the merge the API was
making, and the chat that needed it failed. Here llama.cpp's two programs are fakes (small
Python scripts in ``TUNEGATE_LLAMA_BIN``) that can be held mid-merge, so the test decides what
happens during a merge; the folder logic, the locks and the processes are real.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from tunegate.serving import merged as merged_module
from tunegate.serving.merged import LOCK, PARTIAL, MergedModels, MergeError, MergeNoSpace

# llama-export-lora's fake: writes the "F16 copy", then, while <control>/hold-<adapter> exists,
# says it is halfway (<control>/halfway-<adapter>) and waits. Each run leaves
# <control>/export-<pid>.
FAKE_EXPORT = """\
import os, sys, time
from pathlib import Path
control = Path(os.environ["FAKE_MERGE_CONTROL"])
argv = sys.argv[1:]
output = Path(argv[argv.index("-o") + 1])
(control / f"export-{os.getpid()}").touch()
if (control / "fail").exists():
    sys.exit("fake export: write error")
lora = Path(argv[argv.index("--lora") + 1])
output.write_bytes(b"F16 of " + lora.read_bytes())
hold = control / f"hold-{lora.stem}"
if hold.exists():
    (control / f"halfway-{lora.stem}").touch()
    while hold.exists():
        time.sleep(0.01)
"""
# llama-quantize's fake: its input must still be there (a swept one fails it, as the real one).
FAKE_QUANTIZE = """\
import sys
from pathlib import Path
source, target = Path(sys.argv[-3]), Path(sys.argv[-2])
if not source.is_file():
    sys.exit(f"fake quantize: {source} is gone")
target.write_bytes(b"Q8_0 of " + source.read_bytes())
"""
# A second process that merges a model into the same folder and prints the copy's path.
MERGE_IN_ANOTHER_PROCESS = """\
import sys
from pathlib import Path
from tunegate.serving.merged import MergedModels
print(MergedModels(Path(sys.argv[1]), 1 << 40).merged(Path(sys.argv[2]), Path(sys.argv[3])))
"""


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake llama.cpp programs installed, and the folder that steers them."""
    bin_dir, folder = tmp_path / "fake-llama-bin", tmp_path / "control"
    bin_dir.mkdir()
    folder.mkdir()
    for name, source in (("llama-export-lora", FAKE_EXPORT), ("llama-quantize", FAKE_QUANTIZE)):
        program = bin_dir / name
        program.write_text(f"#!{sys.executable}\n{source}")
        program.chmod(0o755)
    monkeypatch.setenv("TUNEGATE_LLAMA_BIN", str(bin_dir))
    monkeypatch.setenv("FAKE_MERGE_CONTROL", str(folder))
    return folder


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A tiny GGUF: the merge reads its header (tensor types, weight count)."""
    path = tmp_path / "base.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    for name in ("token_embd.weight", "blk.0.attn_q.weight"):
        writer.add_tensor(name, np.zeros((8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def adapter(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(name.encode())
    return path


def exports(control: Path) -> int:
    return len(list(control.glob("export-*")))


def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Held:
    """A merge in a thread, held by the fake export halfway (its F16 partial written)."""

    def __init__(self, cache: MergedModels, base: Path, lora: Path, control: Path):
        self.hold = control / f"hold-{lora.stem}"
        self.hold.touch()
        self.result: dict[str, object] = {}
        self.thread = threading.Thread(target=self._merge, args=(cache, base, lora))
        self.thread.start()
        wait_for((control / f"halfway-{lora.stem}").exists)
        assert list(cache.folder.glob(f"*{PARTIAL}"))  # mid-merge: its partial is on disk

    def _merge(self, cache: MergedModels, base: Path, lora: Path) -> None:
        try:
            self.result["path"] = cache.merged(base, lora)
        except Exception as exc:  # the test reads it
            self.result["error"] = exc

    def finish(self) -> Path:
        self.hold.unlink(missing_ok=True)
        self.thread.join(timeout=30)
        assert "error" not in self.result, self.result["error"]
        return Path(str(self.result["path"]))


@pytest.fixture
def held_merges(control: Path) -> Iterator[list[Held]]:
    merges: list[Held] = []
    yield merges
    for merge in merges:  # a failed test must not leave a thread waiting
        merge.hold.unlink(missing_ok=True)
        merge.thread.join(timeout=30)


def test_a_process_that_builds_the_model_pool_during_a_merge_leaves_it_alone(
        tmp_path: Path, control: Path, base: Path, held_merges: list[Held]) -> None:
    """What a worker does when it starts (``open_pool`` via the service) while the API merges."""
    data = tmp_path / "data"
    cache = MergedModels(data / "serving" / "merged", 1 << 40)
    held_merges.append(merge := Held(cache, base, adapter(tmp_path, "tuned"), control))
    starting = subprocess.run(
        [sys.executable, "-c", "from pathlib import Path; from tunegate.serving import open_pool; "
         "from tunegate.settings import Settings; "
         f"open_pool(Settings(data_dir=Path({str(data)!r})))"],
        capture_output=True, text=True, timeout=60, check=False)
    assert starting.returncode == 0, starting.stderr
    copy = merge.finish()
    assert copy.read_bytes() == b"Q8_0 of F16 of tuned"
    assert not list(cache.folder.glob(f"*{PARTIAL}")) and not list(cache.folder.glob(f"*{LOCK}"))


def test_a_merge_of_another_model_leaves_a_running_merge_alone(
        tmp_path: Path, control: Path, base: Path, held_merges: list[Held]) -> None:
    """The next merge removes leftovers of killed merges, but never those of a live one."""
    cache = MergedModels(tmp_path / "merged", 1 << 40)
    held_merges.append(first := Held(cache, base, adapter(tmp_path, "first"), control))
    other = MergedModels(tmp_path / "merged", 1 << 40)  # as another process would
    assert other.merged(base, adapter(tmp_path, "second")).read_bytes() == b"Q8_0 of F16 of second"
    assert first.finish().read_bytes() == b"Q8_0 of F16 of first"
    assert len(cache.copies()) == 2


def test_two_processes_merging_one_model_wait_for_each_other(
        tmp_path: Path, control: Path, base: Path, held_merges: list[Held]) -> None:
    folder, lora = tmp_path / "merged", adapter(tmp_path, "tuned")
    held_merges.append(first := Held(MergedModels(folder, 1 << 40), base, lora, control))
    second = subprocess.Popen([sys.executable, "-c", MERGE_IN_ANOTHER_PROCESS, str(folder),
                               str(base), str(lora)], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # give it time to start its own merge, if it would (it must wait instead)
    copy = first.finish()
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 0
    assert Path(out.strip()) == copy and copy.read_bytes() == b"Q8_0 of F16 of tuned"
    assert exports(control) == 1  # the second one used the first one's copy
    assert not list(folder.glob(f"*{PARTIAL}")) and not list(folder.glob(f"*{LOCK}"))


def test_leftovers_of_a_killed_merge_go_with_the_next_merge_not_on_construction(
        tmp_path: Path, control: Path, base: Path) -> None:
    folder = tmp_path / "merged"
    folder.mkdir()
    leftovers = [folder / f"0123456789abcdef01234567.f16.gguf{PARTIAL}",
                 folder / f"0123456789abcdef01234567.gguf{PARTIAL}",
                 folder / f"0123456789abcdef01234567{LOCK}"]  # its holder was killed
    for path in leftovers:
        path.write_bytes(b"half")
    cache = MergedModels(folder, 1 << 40)
    assert all(path.exists() for path in leftovers)  # constructing touches nothing
    cache.merged(base, adapter(tmp_path, "tuned"))
    assert not any(path.exists() for path in leftovers)


def test_a_merge_that_cannot_fit_is_refused_before_llama_cpp_runs(
        tmp_path: Path, control: Path, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = MergedModels(tmp_path / "merged", 1 << 40)
    monkeypatch.setattr(merged_module, "_free_bytes", lambda folder: 100)  # < 128 weights
    with pytest.raises(MergeNoSpace) as refused:
        cache.merged(base, adapter(tmp_path, "tuned"))
    assert "MB free" in str(refused.value) and str(tmp_path) not in str(refused.value)
    assert exports(control) == 0 and not list(cache.folder.iterdir())


def test_a_disk_that_fills_during_the_merge_is_told_apart_and_cleaned_up(
        tmp_path: Path, control: Path, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = MergedModels(tmp_path / "merged", 1 << 40)
    free = iter([1 << 30, 1 << 10])  # room at the check; then the export fills the disk
    monkeypatch.setattr(merged_module, "_free_bytes", lambda folder: next(free))
    (control / "fail").touch()
    with pytest.raises(MergeNoSpace) as refused:
        cache.merged(base, adapter(tmp_path, "tuned"))
    assert str(tmp_path) not in str(refused.value)
    assert not list(cache.folder.iterdir())


def test_a_failed_merge_tells_the_client_no_paths_and_keeps_llama_cpp_output_for_the_log(
        tmp_path: Path, control: Path, base: Path) -> None:
    cache = MergedModels(tmp_path / "merged", 1 << 40)
    (control / "fail").touch()
    with pytest.raises(MergeError) as failed:
        cache.merged(base, adapter(tmp_path, "tuned"))
    assert not isinstance(failed.value, MergeNoSpace)  # the disk has room: another failure
    assert str(failed.value) == "merging the adapter failed: llama-export-lora exited with 1"
    assert "fake export: write error" in failed.value.output
    assert not list(cache.folder.iterdir())
