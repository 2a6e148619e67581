"""What structured outputs and ``n`` cost, through a real ``tunegate serve`` and the SDK.

    .venv/bin/python bench/structured_outputs.py [--tokens 96] [--rounds 3]

On the embedded SmolLM2-135M-Instruct:

- ``free`` vs ``schema``: the same prompts, generated free and constrained to a JSON schema
  (``response_format`` ``json_schema``). Speed counts the tokens after the first over the time
  after the first streamed chunk (prompt evaluation excluded), per request; the median over
  prompts and rounds is printed and the ratio (target: the constraint costs at most 15 %).
- ``n=4`` vs four sequential requests: aggregate completion tokens over wall time, the
  same prompt and seeds (target: n=4 at least 1.5x on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import running_server, sdk_client  # noqa: E402
from tunegate.domain import catalog  # noqa: E402

MODEL = catalog.EMBEDDED_MODEL_ID
PROMPTS = [f"Describe the city of {city} in detail." for city in
           ("Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Sydney")]
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"}, "country": {"type": "string"},
    "landmarks": {"type": "array", "items": {"type": "string"}},
    "summary": {"type": "string"}},
    "required": ["name", "country", "landmarks", "summary"], "additionalProperties": False}
JSON_SCHEMA: Any = {"type": "json_schema",
                    "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}


def decode_speed(client: Any, prompt: str, tokens: int, constrained: bool) -> float | None:
    """Tokens/s after the first streamed token, or None when fewer than 8 tokens came."""
    extra = {"response_format": JSON_SCHEMA} if constrained else {}
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], seed=5,
        max_completion_tokens=tokens, stream=True, stream_options={"include_usage": True},
        **extra)
    first = end = None
    generated = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter()
        if chunk.usage is not None:
            generated = chunk.usage.completion_tokens
    end = time.perf_counter()
    if first is None or generated < 8:
        return None
    return (generated - 1) / (end - first)


def throughput(client: Any, tokens: int, together: bool) -> float:
    messages = [{"role": "user", "content": PROMPTS[0]}]
    start = time.perf_counter()
    if together:
        reply = client.chat.completions.create(model=MODEL, messages=messages, n=4, seed=11,
                                               max_completion_tokens=tokens)
        generated = reply.usage.completion_tokens
    else:
        generated = sum(client.chat.completions.create(
            model=MODEL, messages=messages, seed=11 + index,
            max_completion_tokens=tokens).usage.completion_tokens for index in range(4))
    return generated / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, \
            running_server(Path(folder), "--worker", "external") as server:
        client = sdk_client(server, max_retries=0, timeout=300)
        decode_speed(client, PROMPTS[0], 8, False)  # start the model process
        speeds: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for prompt in PROMPTS:
                for constrained in (False, True):  # alternating: both see the same load
                    speed = decode_speed(client, prompt, args.tokens, constrained)
                    if speed is not None:
                        speeds[constrained].append(speed)
        free, schema = (statistics.median(speeds[c]) for c in (False, True))
        print(f"free   {free:7.1f} tok/s (median of {len(speeds[False])})")
        print(f"schema {schema:7.1f} tok/s (median of {len(speeds[True])}); "
              f"constraint cost {100 * (1 - schema / free):.1f} %")
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for together in (False, True):
                rates[together].append(throughput(client, args.tokens, together))
        sequential, batched = (statistics.median(rates[t]) for t in (False, True))
        print(f"4 sequential {sequential:7.1f} tok/s; n=4 {batched:7.1f} tok/s; "
              f"ratio {batched / sequential:.2f}x")


if __name__ == "__main__":
    main()
