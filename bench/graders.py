"""How fast the grader engine grades, on one CPU core (``tunegate.graders``, no server).

    .venv/bin/python bench/graders.py [--items 5000] [--python-calls 40]

- ``string_check`` and ``text_similarity`` ``rouge_l``: items per second through
  ``tunegate.graders.grade`` (templates rendered, the metric computed, the grade built) on
  varied short answers against a reference; target at least 1,000 items/s each, so that
  grading is never what an eval run waits for;
- ``python``: grader calls per second, each one a sandboxed child process (start-up, limits,
  the user's ``grade``, the group kill and clean-up), one after another.

The process is pinned to one core first (``os.sched_setaffinity``). The CPU model and the load
average are printed, since a shared machine's numbers move with its load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tunegate.graders import Sample, grade, parse_grader  # noqa: E402

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "the",
         "cat", "sat", "on", "the", "warm", "mat", "near", "Paris", "in", "spring", "and",
         "every", "river", "runs", "to", "the", "sea"]
REFERENCE = "The quick brown fox jumps over the lazy dog near the river in Paris."
GRADERS: dict[str, Any] = {
    "string_check": {"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
                     "reference": "{{item.answer}}", "operation": "ilike"},
    "rouge_l": {"type": "text_similarity", "name": "r", "input": "{{sample.output_text}}",
                "reference": "{{item.answer}}", "evaluation_metric": "rouge_l"},
    "python": {"type": "python", "name": "p", "source": (
        "def grade(sample, item):\n"
        "    return 1.0 if item['answer'].lower() in sample['output_text'].lower() else 0.0\n")},
}


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True,
                                   check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def answers(count: int) -> list[str]:
    """Varied answers of 8 to 20 words (no two the same), deterministic."""
    return [" ".join(WORDS[(index * 7 + step * 3) % len(WORDS)]
                     for step in range(8 + index % 13)) + f" {index}"
            for index in range(count)]


def rate(kind: str, samples: list[str]) -> float:
    grader = parse_grader(GRADERS[kind])
    item = {"answer": REFERENCE}
    grade(grader, Sample(samples[0]), item)  # imports and caches out of the timing
    started = time.perf_counter()
    for text in samples:
        grade(grader, Sample(text), item)
    return len(samples) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--python-calls", type=int, default=40)
    arguments = parser.parse_args()
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    print(f"CPU: {cpu_model()}; pinned to core {core}; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    samples = answers(arguments.items)
    for kind, count in (("string_check", arguments.items), ("rouge_l", arguments.items),
                        ("python", arguments.python_calls)):
        per_second = rate(kind, samples[:count])
        unit = "calls/s" if kind == "python" else "items/s"
        verdict = "met" if per_second >= 1000 else "MISSED"
        target = "" if kind == "python" else f" (target >= 1,000: {verdict})"
        print(f"{kind:13s} {per_second:10,.1f} {unit} over {count}{target}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
