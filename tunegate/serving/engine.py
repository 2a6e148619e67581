"""One served model in its own process: llama.cpp's ``llama-server`` on a Unix socket.

Why a process: llama.cpp is native code. A crash there (an illegal instruction on a CPU the
build did not expect, an out-of-memory kill, an abort) must cost the requests it was answering
and nothing else. Why ``llama-server``: it decodes several requests at once in one context
(continuous batching over ``parallel`` slots), which one Python-bound context cannot.

tunegate keeps what must match training on its side: the chat template is rendered here and
tokens are sent, so the server only tokenizes (``/tokenize``) and generates (``/completion``).
Each generation evaluates its whole prompt (``cache_prompt`` off): a prefix resumed from the
cache gives logits that differ in the last bits, and the same request and seed must give the
same text.

The same process computes embeddings (``/v1/embeddings``): started with ``--embeddings`` it
still generates (this llama.cpp decodes embedding and completion requests in separate batches;
greedy answers are the same as without the flag), so a model needs no second process, no second
copy of its KV cache and no second start. Vectors are the mean of the last hidden states over the
input's tokens (``--pooling mean``), L2-normalized; mean pooling cannot split an input across
batches, so the physical batch holds a whole context (``--ubatch-size`` = ``n_ctx``). This
llama.cpp pools wrongly when several inputs share a batch (in one request or from concurrent
requests: some vectors come out mixed with others' tokens, up to 0.4 off per component, checked
against each input alone), so a process embeds one input at a time.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import subprocess
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tunegate.serving import binaries, process_logs, socket_folders
from tunegate.serving.spawn import spawn
from tunegate.serving.sse import sse_lines

# llama.cpp draws a fresh random seed for this value (LLAMA_DEFAULT_SEED).
RANDOM_SEED = 0xFFFFFFFF


@dataclass(frozen=True)
class Sampling:
    """OpenAI sampling parameters, in llama.cpp's terms (temperature 0 = greedy)."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    json_schema: dict[str, Any] | None = None  # the answer is JSON valid against it
    n_probs: int = 0  # > 0: each token comes with its own and the top n_probs' log probabilities
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)

    def to_llama(self) -> dict[str, Any]:
        """The ``/completion`` fields: only OpenAI's samplers, llama.cpp's extra ones off."""
        seed = RANDOM_SEED if self.seed is None else self.seed % RANDOM_SEED
        fields: dict[str, Any] = {
            "temperature": self.temperature, "top_p": self.top_p, "top_k": 0, "min_p": 0.0,
            "repeat_penalty": 1.0, "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty, "seed": seed}
        if self.json_schema is not None:
            fields["json_schema"] = self.json_schema
        if self.n_probs:
            fields["n_probs"] = self.n_probs
        if self.logit_bias:
            fields["logit_bias"] = [[token, bias] for token, bias in self.logit_bias]
        return fields


@dataclass(frozen=True)
class Delta:
    """A piece of generated text. The last one of a generation has ``finish_reason`` set."""

    text: str
    completion_tokens: int
    finish_reason: str | None = None  # "stop" | "length"
    # With ``n_probs``: llama.cpp's ``completion_probabilities`` of the tokens of ``text``.
    probabilities: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class EngineConfig:
    """How each model process runs."""

    n_ctx: int = 2048  # tokens of prompt + completion per request
    parallel: int = 4  # requests decoded together; more wait in the server's queue
    threads: int | None = None  # llama.cpp's default: the machine's cores
    timeout: float = 120.0  # seconds without a token before the request ends (the process is
    # killed as hung unless it still answers /health)
    start_timeout: float = 60.0
    log_dir: Path | None = None  # where each process's log goes (default: a temp folder)


class EngineError(Exception):
    """llama.cpp refused or failed a request; the message says why."""


class EngineStartError(EngineError):
    """The model process did not come up (a GGUF it cannot load, a missing program)."""


class EngineDied(EngineError):
    """The model process ended while it had a request (it is restarted on the next one)."""


class EngineBusy(EngineError):
    """No token came for ``timeout`` seconds, but the process answers: queued behind others."""


class EngineTimeout(EngineError):
    """No token came for ``timeout`` seconds: the process was killed as hung."""


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name: str | int = signal.Signals(-code).name
        except ValueError:  # a real-time signal without a name
            name = -code
        hint = " (most likely out of memory)" if -code == signal.SIGKILL else ""
        return f"it was killed by signal {name}{hint}"
    return f"it exited with code {code}"


def log_excerpt(text: str, lines: int = 3) -> str:
    """What a failed start's error says of its log: the first error line (llama.cpp logs the
    cause first, "error loading model vocabulary: …", then only that loading failed) and the
    last ``lines`` lines."""
    all_lines = text.strip().splitlines()
    tail = all_lines[-lines:]
    first_error = next((line for line in all_lines if " E " in line), None)
    if first_error is not None and first_error not in tail:
        tail = [first_error, "…", *tail]
    return "log: " + " | ".join(tail) if tail else "empty log"


class LlamaServer:
    """A running ``llama-server`` for one GGUF (optionally with one LoRA adapter)."""

    def __init__(self, model: Path, adapter: Path | None, config: EngineConfig):
        self.model, self.adapter, self.config = model, adapter, config
        self._embedding = threading.Lock()  # one input in the process at a time (see above)
        self._folder = socket_folders.make_folder()
        self.socket = self._folder / socket_folders.SOCKET_NAME
        log_dir = config.log_dir or self._folder
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = process_logs.new_log(log_dir, model.stem)
        self._process = spawn(self._argv(), env=binaries.environment(), log=self.log)
        self._client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://llama",
            timeout=httpx.Timeout(config.timeout, connect=5.0))
        try:
            self._wait_ready()
            self.props: dict[str, Any] = self._client.get("/props").json()
            # The model's sizes, which /props lacks (OpenAI-style model listing's "meta"):
            # n_vocab (valid token ids) and n_embd (an embedding's width).
            [listed] = self._client.get("/v1/models").json()["data"]
            self.meta: dict[str, Any] = listed["meta"]
            self.n_vocab = int(self.meta["n_vocab"])
        except BaseException:
            self.close()
            raise

    def _argv(self) -> list[str]:
        config = self.config
        argv = [str(binaries.program(binaries.SERVER)), "--model", str(self.model),
                "--host", str(self.socket), "--ctx-size", str(config.n_ctx * config.parallel),
                "--parallel", str(config.parallel), "--no-webui", "--no-warmup",
                # Every request evaluates its whole prompt (see the module's docstring): no
                # prompt cache in memory either.
                "--cache-ram", "0",
                # Embeddings from the same process (see the module's docstring); an input of a
                # whole context must fit one physical batch.
                "--embeddings", "--pooling", "mean",
                "--batch-size", str(config.n_ctx), "--ubatch-size", str(config.n_ctx)]
        if config.threads:
            argv += ["--threads", str(config.threads)]
        if self.adapter is not None:
            argv += ["--lora", str(self.adapter)]
        return argv

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EngineStartError(f"llama-server could not load {self.model.name}: "
                                       f"{_exit_reason(self._process.returncode)}; "
                                       f"{self._log_tail()}")
            try:
                if self._client.get("/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.05)
        raise EngineStartError(f"llama-server did not come up within "
                               f"{self.config.start_timeout:.0f} s for {self.model.name}")

    def _log_tail(self) -> str:
        try:
            return log_excerpt(self.log.read_text(errors="replace"))
        except OSError:
            return "no log"

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    @property
    def n_ctx(self) -> int:
        return self.config.n_ctx

    def _failure(self, exc: Exception) -> EngineError:
        """What a transport failure means: the process died, hung, or refused."""
        if isinstance(exc, httpx.TimeoutException):
            if self._responds():  # alive, only busy: the request waited behind others
                return EngineBusy(f"no token within {self.config.timeout:.0f} s: the model "
                                  "process is busy with other requests")
            self.kill()
            return EngineTimeout(f"the model process produced nothing for "
                                 f"{self.config.timeout:.0f} s and did not answer; it was stopped")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=1.0)  # a connection lost because the process is ending
        if not self.alive():
            return EngineDied(f"the model process ended: {_exit_reason(self._process.returncode)}")
        return EngineError(f"lost the connection to the model process: {exc}")

    def _responds(self) -> bool:
        """Whether the server's HTTP side still answers (it does while its decoding is busy)."""
        try:
            return self._client.get("/health", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            response = self._client.post(path, json=body)
        except httpx.TransportError as exc:
            raise self._failure(exc) from None
        if response.status_code != 200:
            raise EngineError(_error_message(response.text))
        return response.json()

    def tokenize(self, text: str, add_special: bool, parse_special: bool = True) -> list[int]:
        """``text`` as tokens; special tokens written in it (``<|im_start|>``) are honoured
        unless ``parse_special`` is false (then they are plain text)."""
        body = {"content": text, "add_special": add_special, "parse_special": parse_special}
        return [int(token) for token in self._post("/tokenize", body)["tokens"]]

    @property
    def n_embd(self) -> int:
        """The width of the model's hidden states: the length of its embeddings."""
        return int(self.meta["n_embd"])

    def embed(self, inputs: Sequence[Sequence[int]]) -> list[list[float]]:
        """One embedding per token sequence (each at most ``n_ctx`` tokens), in order: unit
        vectors of ``n_embd`` floats. One input at a time per process (module docstring)."""
        vectors = []
        for tokens in inputs:
            with self._embedding:
                [item] = self._post("/v1/embeddings", {"input": [list(tokens)],
                                                       "encoding_format": "float"})["data"]
            vectors.append([float(value) for value in item["embedding"]])
        return vectors

    def slots(self) -> list[dict[str, Any]]:
        """llama.cpp's view of its slots (``is_processing``, tokens decoded): diagnostics."""
        try:
            return list(self._client.get("/slots").json())
        except httpx.TransportError as exc:
            raise self._failure(exc) from None

    def next_token_probabilities(self, prompt: Sequence[int], top: int) -> dict[int, float]:
        """The model's ``top`` most likely next tokens after ``prompt`` with their probabilities
        (softmax of the logits, before any sampling): for comparing two forms of a model."""
        body = {"prompt": list(prompt), "n_predict": 1, "n_probs": top, "temperature": 0.0,
                "cache_prompt": False}
        [first] = self._post("/completion", body)["completion_probabilities"]
        return {int(item["id"]): math.exp(float(item["logprob"])) for item in first["top_logprobs"]}

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``, special tokens written out."""
        return str(self._post("/detokenize", {"tokens": list(tokens)})["content"])

    def generate(self, prompt: Sequence[int], sampling: Sampling, max_tokens: int,
                 stop: Sequence[str] = ()) -> Generator[Delta, None, None]:
        """Generate up to ``max_tokens`` tokens after ``prompt``, as text pieces.

        llama.cpp holds back text that may begin a stop sequence and never returns the stop
        sequence itself. Ends on an end-of-generation token or a stop sequence ("stop") or after
        ``max_tokens`` ("length"). Closing the iterator early closes the connection, and the
        server drops the request.
        """
        body = {"prompt": list(prompt), "n_predict": max_tokens, "stop": list(stop),
                "stream": True, "cache_prompt": False, **sampling.to_llama()}
        process_logs.keep_short(self.log)  # a few lines a request, for as long as it runs
        try:
            with self._client.stream("POST", "/completion", json=body) as response:
                if response.status_code != 200:
                    raise EngineError(_error_message(response.read().decode("utf-8", "replace")))
                yield from _deltas(sse_lines(response.iter_bytes()))
        except httpx.TransportError as exc:
            raise self._failure(exc) from None

    def kill(self) -> None:
        """Stop the process at once (it is hung, or being replaced)."""
        if self.alive():
            self._process.kill()
        self._process.wait()

    def close(self) -> None:
        """Stop the process and free its files."""
        if self.alive():
            self._process.terminate()
            try:
                self._process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.kill()
        self._client.close()
        self.socket.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the log lives there when no log folder was set
            self._folder.rmdir()


def _error_message(text: str) -> str:
    try:
        error = json.loads(text).get("error") or {}
        return str(error.get("message") or text)
    except (ValueError, AttributeError):
        return text


def _deltas(lines: Iterable[str]) -> Iterator[Delta]:
    """``/completion``'s server-sent events as Deltas; the last one says why it stopped."""
    count = 0
    probabilities: list[dict[str, Any]] = []  # of tokens whose text has not been sent yet
    for line in lines:
        if not line.startswith("data: "):
            continue
        event = json.loads(line[len("data: "):])
        if "error" in event:
            raise EngineError(_error_message(json.dumps(event)))
        probabilities += event.get("completion_probabilities") or []
        if not event.get("stop"):
            count += 1
            if event.get("content"):
                yield Delta(event["content"], count, probabilities=tuple(probabilities))
                probabilities = []
            continue
        count = int(event.get("tokens_predicted", count))
        finish = "length" if event.get("stop_type") == "limit" else "stop"
        yield Delta(event.get("content") or "", count, finish, tuple(probabilities))
        return
    raise EngineError("the model process ended the stream without a final event")
