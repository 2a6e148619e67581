"""What a follower knows of a job's progress, read from its metrics events and its status, and
the figures shown for it (step/total, losses or rewards, tokens/s, ETA). Pure: no I/O, time passed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TERMINAL = ("succeeded", "failed", "cancelled")


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Metrics:
    """One metrics event's figures; every one but the step is optional (older servers and
    OpenAI send no ``learning_rate`` or ``tokens_per_second``; ``valid_loss`` needs a
    validation file)."""

    step: int
    total_steps: int | None
    created_at: int
    train_loss: float | None = None
    valid_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    # Reinforcement runs: the mean reward of the step's answers, and of the validation ones.
    reward_mean: float | None = None
    valid_reward_mean: float | None = None

    @classmethod
    def from_event(cls, data: Any, created_at: int) -> Metrics | None:
        """The figures of a metrics event's ``data``; None when it has no step."""
        if not isinstance(data, dict) or not isinstance(data.get("step"), int):
            return None
        total = data.get("total_steps")
        return cls(step=data["step"], total_steps=total if isinstance(total, int) else None,
                   created_at=created_at, train_loss=_number(data, "train_loss"),
                   valid_loss=_number(data, "valid_loss"),
                   learning_rate=_number(data, "learning_rate"),
                   tokens_per_second=_number(data, "tokens_per_second"),
                   reward_mean=_number(data, "train_reward_mean"),
                   valid_reward_mean=_number(data, "valid_reward_mean"))


@dataclass
class Progress:
    """The newest metrics and status of one job, and the first metrics seen (for the step
    rate when the server gives no ``estimated_finish``)."""

    status: str = "validating_files"
    estimated_finish: int | None = None
    latest: Metrics | None = None
    first: Metrics | None = None
    # valid_loss comes on some steps only: the newest one seen is shown until the next.
    last_valid_loss: float | None = None
    last_valid_reward: float | None = None  # likewise, a reinforcement run's

    def observe_job(self, status: str, estimated_finish: int | None) -> None:
        self.status = status
        self.estimated_finish = estimated_finish

    def observe_metrics(self, metrics: Metrics) -> None:
        if self.first is None:
            self.first = metrics
        if self.latest is None or metrics.step >= self.latest.step:
            self.latest = metrics
        if metrics.valid_loss is not None:
            self.last_valid_loss = metrics.valid_loss
        if metrics.valid_reward_mean is not None:
            self.last_valid_reward = metrics.valid_reward_mean

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def fraction(self) -> float | None:
        """Share of the steps done, 0..1; None before the first metrics."""
        if self.latest is None or not self.latest.total_steps:
            return None
        return min(1.0, self.latest.step / self.latest.total_steps)

    def eta_seconds(self, now: float) -> float | None:
        """Seconds left: the server's ``estimated_finish`` while it runs, else the step rate
        seen so far; None when neither is known (or the job is not running)."""
        if self.status != "running" or (self.latest is not None and self.latest.total_steps
                                        and self.latest.step >= self.latest.total_steps):
            return None  # not training (any more): the export after the last step has no ETA
        if self.estimated_finish is not None:
            return max(0.0, self.estimated_finish - now)
        latest, first = self.latest, self.first
        if latest is None or first is None or not latest.total_steps:
            return None
        steps, seconds = latest.step - first.step, latest.created_at - first.created_at
        if steps <= 0 or seconds <= 0:
            return None
        return max(0.0, (latest.total_steps - latest.step) * seconds / steps)


def duration(seconds: float) -> str:
    """``1:02:03`` or ``2:03``: a terminal-sized ETA."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def figures(progress: Progress, now: float) -> list[str]:
    """The progress figures as short texts, in display order; only those known."""
    latest = progress.latest
    if latest is None:
        return []
    shown = [f"step {latest.step}/{latest.total_steps}" if latest.total_steps
             else f"step {latest.step}"]
    if latest.train_loss is not None:
        shown.append(f"train loss {latest.train_loss:.4f}")
    if progress.last_valid_loss is not None:
        shown.append(f"valid loss {progress.last_valid_loss:.4f}")
    if latest.reward_mean is not None:
        shown.append(f"reward {latest.reward_mean:.3f}")
    if progress.last_valid_reward is not None:
        shown.append(f"valid reward {progress.last_valid_reward:.3f}")
    if latest.learning_rate is not None:
        shown.append(f"lr {latest.learning_rate:.2e}")
    if latest.tokens_per_second is not None:
        shown.append(f"{latest.tokens_per_second:,.0f} tokens/s")
    eta = progress.eta_seconds(now)
    if eta is not None:
        shown.append(f"ETA {duration(eta)}")
    return shown
