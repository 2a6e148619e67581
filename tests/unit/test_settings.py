from pathlib import Path

import pytest

from tunegate.settings import ENVIRONMENT, Settings

SETTINGS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_environment_variables_and_overrides() -> None:
    settings = Settings.from_env({"TUNEGATE_FINE_TUNING": "disabled", "TUNEGATE_PORT": "9001",
                                  "TUNEGATE_WORKER_STAGES": "validate",
                                  "TUNEGATE_DATA": "/srv/tg"}, port=9002)
    assert settings.fine_tuning is False
    assert settings.port == 9002  # a CLI flag beats the environment
    assert settings.worker_stages == ("validate",)
    assert settings.model_cache == Path("/srv/tg/models")
    assert settings.sqlalchemy_url == "sqlite:////srv/tg/tunegate.sqlite3"


@pytest.mark.parametrize(("name", "value"), [("TUNEGATE_FINE_TUNING", "maybe"),
                                             ("TUNEGATE_WORKER_STAGES", "train,dance"),
                                             ("TUNEGATE_PORT", "eighty")])
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Settings.from_env({name: value})


def test_the_settings_page_documents_every_setting() -> None:
    text = SETTINGS_PAGE.read_text()
    assert [name for name in ENVIRONMENT if f"`{name}`" not in text] == []


def test_the_stream_heartbeat_is_a_positive_number_of_seconds() -> None:
    assert Settings.from_env({"TUNEGATE_SSE_HEARTBEAT_SECONDS": "2.5"}).sse_heartbeat == 2.5
    assert Settings.from_env({}).sse_heartbeat == 15.0
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ValueError):
            Settings.from_env({"TUNEGATE_SSE_HEARTBEAT_SECONDS": bad})


def test_the_executor_and_its_ray_resources() -> None:
    defaults = Settings.from_env({})
    assert (defaults.executor, defaults.ray_address) == ("local", "auto")
    assert (defaults.ray_cpus_per_run, defaults.ray_gpus_per_run) == (1.0, 0.0)
    ray = Settings.from_env({"TUNEGATE_EXECUTOR": "Ray", "TUNEGATE_RAY_ADDRESS": "10.0.0.5:6379",
                             "TUNEGATE_RAY_CPUS": "4", "TUNEGATE_RAY_GPUS": "0.5"})
    assert (ray.executor, ray.ray_address) == ("ray", "10.0.0.5:6379")
    assert (ray.ray_cpus_per_run, ray.ray_gpus_per_run) == (4.0, 0.5)
    for name, bad in (("TUNEGATE_EXECUTOR", "slurm"), ("TUNEGATE_RAY_GPUS", "-1"),
                      ("TUNEGATE_RAY_CPUS", "many")):
        with pytest.raises(ValueError, match=name if name != "TUNEGATE_RAY_CPUS" else None):
            Settings.from_env({name: bad})
