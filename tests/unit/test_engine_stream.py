"""Reading llama-server's event stream: events split on line feeds only."""

from __future__ import annotations

import json

from tunegate.serving.engine import Delta, _deltas, log_excerpt
from tunegate.serving.sse import sse_lines

# Characters str.splitlines (and httpx's iter_lines) reads as line breaks, which llama.cpp writes
# raw inside JSON strings.
UNICODE_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def events(*payloads: dict) -> bytes:
    return b"".join(f"data: {json.dumps(p, ensure_ascii=False)}\n\n".encode() for p in payloads)


def test_unicode_line_breaks_inside_an_event_do_not_split_it() -> None:
    stream = events({"content": f"a{UNICODE_BREAKS}b", "stop": False},
                    {"content": "", "stop": True, "stop_type": "eos", "tokens_predicted": 2,
                     "prompt": f"the prompt{UNICODE_BREAKS}"})
    # Delivered in awkward pieces: one byte at a time, multi-byte characters cut in two.
    pieces = [stream[index:index + 1] for index in range(len(stream))]
    assert list(_deltas(sse_lines(pieces))) == [
        Delta(f"a{UNICODE_BREAKS}b", 1), Delta("", 2, "stop")]


def test_lines_are_split_on_line_feeds_and_lose_their_carriage_return() -> None:
    assert list(sse_lines([b"data: 1\r\n\r\ndata: 2", b"\n", b"tail"])) == [
        "data: 1", "", "data: 2", "tail"]


def test_probabilities_of_tokens_without_text_travel_with_the_next_text() -> None:
    first = {"token": "\xe2", "logprob": -0.1, "top_logprobs": []}  # half a character: no text
    second = {"token": "\x82\xac", "logprob": -0.2, "top_logprobs": []}
    last = {"token": "!", "logprob": -0.3, "top_logprobs": []}
    stream = events({"content": "", "stop": False, "completion_probabilities": [first]},
                    {"content": "€", "stop": False, "completion_probabilities": [second]},
                    {"content": "!", "stop": True, "stop_type": "limit", "tokens_predicted": 3,
                     "completion_probabilities": [last]})
    assert list(_deltas(sse_lines([stream]))) == [
        Delta("€", 2, probabilities=(first, second)), Delta("!", 3, "length", (last,))]


def test_a_failed_start_names_the_first_error_of_its_log() -> None:
    """llama.cpp logs why a model did not load first, then only that it failed: the excerpt
    in the error keeps that first error line (seen on a phi3 GGUF whose vocabulary it refused)."""
    log = "\n".join([
        "0.00.010 I llama_model_loader: loaded meta data",
        "0.00.065 E llama_model_load: error loading model: error loading model vocabulary: "
        "unordered_map::at",
        "0.00.065 E llama_model_load_from_file_impl: failed to load model",
        "0.00.123 E srv    load_model: failed to load model, 'phi3.gguf'",
        "0.00.123 I srv    operator(): cleaning up before exit...",
        "0.00.124 E srv  llama_server: exiting due to model loading error"])
    excerpt = log_excerpt(log)
    assert excerpt.startswith("log: 0.00.065 E llama_model_load: error loading model: error "
                              "loading model vocabulary: unordered_map::at | … | ")
    assert excerpt.endswith("exiting due to model loading error")
    assert log_excerpt("a\nb") == "log: a | b" and log_excerpt("") == "empty log"
