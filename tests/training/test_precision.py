"""The training dtype: chosen from the CPU's flags (or TUNEGATE_TRAIN_DTYPE), and a bfloat16 run
on the tiny llama that learns, keeps its LoRA weights and optimizer state in float32, and
resumes bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tunegate.settings import Settings
from tunegate.training import precision
from tunegate.training.spec import TrainingSpec

from .conftest import THIRD_PARTY_WARNINGS, Recorder, memorisation_rows

pytestmark = [pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS]

MakeSpec = Callable[..., TrainingSpec]
AVX2_XEON = {"fpu", "sse4_2", "avx2", "fma", "avx512f"}  # AVX-512 without its bf16 parts
EPYC = {"fpu", "sse4_2", "avx2", "fma"}


@pytest.mark.parametrize(("flags", "dtype"), [
    (AVX2_XEON | {"amx_tile", "amx_bf16", "avx512_bf16"}, "bfloat16"),  # Sapphire Rapids
    (AVX2_XEON | {"avx512_bf16"}, "bfloat16"),  # Cooper Lake, Zen 4
    (AVX2_XEON, "float32"),
    (EPYC, "float32"),
    (set(), "float32"),  # no /proc/cpuinfo
])
def test_auto_picks_bfloat16_only_on_cpus_with_native_bfloat16(flags: set[str],
                                                                 dtype: str) -> None:
    chosen = precision.choose_precision("cpu", "auto", flags)
    assert chosen.base_dtype == dtype
    assert chosen.autocast == (dtype == "bfloat16")  # bf16 weights need autocast, fp32 none


@pytest.mark.parametrize(("setting", "flags", "dtype"), [
    ("fp32", AVX2_XEON | {"amx_bf16", "avx512_bf16"}, "float32"),
    ("bf16", EPYC, "bfloat16"),
    ("auto", EPYC, "float32"),
])
def test_the_setting_overrides_the_cpu_flags(setting: str, flags: set[str], dtype: str) -> None:
    chosen = precision.choose_precision("cpu", setting, flags)
    assert chosen.base_dtype == dtype
    assert (precision.TRAIN_DTYPE_ENV in chosen.reason) == (setting != "auto")


def test_cuda_keeps_float32_weights_with_autocast_where_supported() -> None:
    amx = {"amx_bf16", "avx512_bf16"}
    assert precision.choose_precision("cuda", "auto", amx, cuda_bf16=True) == \
        precision.Precision("float32", True, "the GPU supports bfloat16")
    assert not precision.choose_precision("cuda", "auto", amx, cuda_bf16=False).autocast
    assert precision.choose_precision("cuda", "bf16", set(), cuda_bf16=True).base_dtype == "float32"
    assert not precision.choose_precision("cuda", "fp32", set(), cuda_bf16=True).autocast


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
                       "flags\t\t: fpu avx2 amx_bf16 avx512_bf16\n\nprocessor\t: 1\n"
                       "flags\t\t: fpu\n")
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "amx_bf16", "avx512_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_a_bad_setting_is_refused_by_name() -> None:
    assert precision.configured_setting({}) == "auto"
    assert precision.configured_setting({"TUNEGATE_TRAIN_DTYPE": " BF16 "}) == "bf16"
    with pytest.raises(ValueError, match="TUNEGATE_TRAIN_DTYPE takes one of .*'fp16'"):
        precision.configured_setting({"TUNEGATE_TRAIN_DTYPE": "fp16"})
    with pytest.raises(ValueError, match="TUNEGATE_TRAIN_DTYPE"):
        Settings.from_env({"TUNEGATE_TRAIN_DTYPE": "half"})
    assert Settings.from_env({"TUNEGATE_TRAIN_DTYPE": "fp32"}).train_dtype == "fp32"


# --- real runs on the tiny llama --------------------------------------------------------------


def train(spec: TrainingSpec, recorder: Recorder | None = None) -> tuple[Any, Recorder]:
    from tunegate.training.run import run_training

    recorder = recorder or Recorder()
    return run_training(spec, recorder.emit, recorder.should_stop), recorder


@pytest.fixture
def bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEGATE_TRAIN_DTYPE", "bf16")


def test_a_bfloat16_run_learns_and_says_so(make_spec: MakeSpec, bf16: None) -> None:
    spec = make_spec(memorisation_rows(6),
                     hyperparameters={"n_epochs": 10, "batch_size": 2, "learning_rate_multiplier": 5})
    result, recorder = train(spec)
    assert result.status == "succeeded"
    losses = recorder.losses()
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.3 * first, (first, last)
    notes = [event["message"] for event in recorder.of("message")]
    assert any("bfloat16 base weights" in text and "TUNEGATE_TRAIN_DTYPE=bf16" in text
               for text in notes), notes


def test_fp32_setting_trains_in_float32(make_spec: MakeSpec,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEGATE_TRAIN_DTYPE", "fp32")
    _, recorder = train(make_spec(memorisation_rows(4)))
    notes = [event["message"] for event in recorder.of("message")]
    assert any("thread(s), float32 (TUNEGATE_TRAIN_DTYPE=fp32)" in text for text in notes), notes


def test_bfloat16_keeps_lora_weights_and_optimizer_state_float32_and_resumes_exactly(
        make_spec: MakeSpec, tmp_path: Path, bf16: None) -> None:
    import torch
    from safetensors.torch import load_file

    rows = memorisation_rows(8)
    straight = train(make_spec(rows))[1]
    work = tmp_path / "paused-bf16"
    paused, before = train(make_spec(rows, work_dir=work), Recorder(stop_at={5: "pause"}))
    assert paused.status == "paused"
    lora_weights = load_file(str(work / "run" / "lora.safetensors"))
    assert lora_weights and {t.dtype for t in lora_weights.values()} == {torch.float32}
    optimizer = torch.load(work / "run" / "optimizer.pt", weights_only=True)["optimizer"]
    moments = [t for entry in optimizer["state"].values() for name, t in entry.items()
               if name in ("exp_avg", "exp_avg_sq")]
    assert moments and {t.dtype for t in moments} == {torch.float32}
    resumed, after = train(make_spec(rows, work_dir=work, resume=True))
    assert resumed.status == "succeeded"
    assert before.losses() + after.losses() == straight.losses()
    adapter = load_file(str(Path(resumed.adapter_dir) / "adapter_model.safetensors"))
    assert {t.dtype for t in adapter.values()} == {torch.float32}


def test_a_bad_setting_fails_the_run_with_a_specific_error(make_spec: MakeSpec,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tunegate.training.errors import TrainingFailed

    monkeypatch.setenv("TUNEGATE_TRAIN_DTYPE", "fp16")
    with pytest.raises(TrainingFailed) as caught:
        train(make_spec())
    assert caught.value.code == "invalid_setting"
    assert "TUNEGATE_TRAIN_DTYPE takes one of" in caught.value.message
