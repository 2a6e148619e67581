"""Process supervision for ``tunegate serve``: the embedded worker, a subprocess restarted if it
dies and stopped (SIGTERM, then a kill) before ``serve`` exits, and the uvicorn server that
stops it once the HTTP server has stopped."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import uvicorn

from tunegate.settings import Settings, format_aliases

log = logging.getLogger("tunegate")


def worker_environment(settings: Settings) -> dict[str, str]:
    """The settings a worker subprocess needs, as the environment it reads them from."""
    env = dict(os.environ)
    env["TUNEGATE_DATA"] = str(settings.data_dir.resolve())
    env["TUNEGATE_DATABASE_URL"] = settings.sqlalchemy_url
    env["TUNEGATE_MODELS_DIR"] = str(settings.base_models_dir.resolve())
    env["TUNEGATE_HEARTBEAT_TIMEOUT"] = str(settings.heartbeat_timeout)
    env["TUNEGATE_EMBEDDED_PARENT"] = str(os.getpid())
    env["TUNEGATE_MODEL_CACHE"] = str(settings.model_cache.resolve())
    env["TUNEGATE_WORKER_STAGES"] = ",".join(settings.worker_stages)
    env["TUNEGATE_MAX_SEQ_LEN"] = str(settings.max_seq_len)
    env["TUNEGATE_MODEL_ALIASES"] = format_aliases(settings.model_aliases)
    env.pop("TUNEGATE_API_KEY", None)  # workers serve no requests: keep secrets out of them
    return env


class EmbeddedWorker:
    """The worker subprocess ``serve`` runs beside the API, restarted if it dies."""

    RESTART_CHECK_SECONDS = 2.0

    def __init__(self, settings: Settings):
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="worker-watch", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def _spawn(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "tunegate", "worker"],
                                        env=worker_environment(self.settings))
        log.info("embedded worker started (pid %s)", self.process.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(self.RESTART_CHECK_SECONDS):
            if self.process is not None and self.process.poll() is not None:
                log.warning("embedded worker exited with %s; starting a new one",
                            self.process.returncode)
                self._spawn()

    STOP_SECONDS = 30.0

    def stop(self) -> None:
        """SIGTERM: the worker pauses its run, puts the job back in the queue and exits; one
        that takes longer than ``STOP_SECONDS`` is killed (its job resumes from saved state)."""
        self._stopping.set()
        self._watcher.join(timeout=self.RESTART_CHECK_SECONDS + 1)
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=self.STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("the embedded worker did not stop in %.0f s; killing it", self.STOP_SECONDS)
            self.process.kill()
            self.process.wait()
        log.info("embedded worker stopped")



class StopsWorkerFirst(uvicorn.Server):
    """uvicorn, stopping the embedded worker before the process exits.

    After a graceful shutdown on SIGTERM/SIGINT uvicorn raises the signal again with the default
    handler back, so the process dies at once and nothing after ``run()`` would run.
    ``before_exit`` runs inside its signal capture, once the HTTP server has stopped.
    """

    def __init__(self, config: uvicorn.Config, before_exit: Callable[[], None]):
        super().__init__(config)
        self.before_exit = before_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self.before_exit()

