"""Sending the webhook outbox: a thread of the worker, beside its job loop, never inside it.

Every ``poll`` seconds it reads the deliveries that are due, claims each (a compare-and-set
that moves its due time a lease ahead: two workers never send the same attempt, and one killed
mid-attempt leaves the delivery due again once the lease passes), and hands the attempt to a
small pool of threads, at most one attempt per endpoint at a time. So a slow or dead endpoint
holds one thread for at most its timeout and delays neither other endpoints nor training.
Each outcome is recorded: delivered, retried later, given up, or the endpoint disabled
(``tunegate.store.queries.webhooks``).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tunegate.domain.webhook_sender import Attempt, parse_networks, send
from tunegate.settings import Settings
from tunegate.store.base import Store
from tunegate.store.queries.webhooks import DueDelivery

log = logging.getLogger("tunegate.webhooks")

SENDERS = 8  # endpoints attempted at once
LEASE_MARGIN = 30.0  # seconds a claim outlasts the attempt's timeout


class WebhookDelivery:
    def __init__(self, settings: Settings, store: Store, *, poll: float | None = None):
        self.settings = settings
        self.store = store
        self.poll = settings.poll_interval if poll is None else poll
        self.allowed = parse_networks(settings.webhook_allow_networks)
        self._busy: set[str] = set()  # endpoints with an attempt in flight
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook-send")
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming; attempts in flight end within their timeout (an unrecorded one is
        sent again after its lease: receivers de-duplicate by ``webhook-id``)."""
        self._stop.set()
        self._thread.join(timeout=self.poll + 1)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.dispatch_due()
            except Exception:  # a store hiccup must not end deliveries for good
                log.exception("webhook dispatch failed")
            self._stop.wait(self.poll)

    def dispatch_due(self) -> int:
        """Claim the due deliveries of idle endpoints and start their attempts; how many."""
        now = time.time()
        with self._lock:
            busy = sorted(self._busy)
        started = 0
        for due in self.store.due_webhook_deliveries(now, limit=SENDERS * 4,
                                                     skip_endpoints=busy):
            endpoint = due.delivery.endpoint_id
            with self._lock:
                if endpoint in self._busy:
                    continue
                self._busy.add(endpoint)
            lease = now + self.settings.webhook_timeout + LEASE_MARGIN
            if not self.store.claim_webhook_delivery(due.delivery, lease):
                self._release(endpoint)
                continue
            self._pool.submit(self._attempt, due)
            started += 1
        return started

    def _release(self, endpoint_id: str) -> None:
        with self._lock:
            self._busy.discard(endpoint_id)

    def _attempt(self, due: DueDelivery) -> None:
        delivery = due.delivery
        try:
            attempt = send(due.url, due.secret, delivery.id, delivery.body,
                           timeout=self.settings.webhook_timeout, allowed=self.allowed,
                           old_secret=due.old_secret)
            self.record(delivery.id, attempt)
        except Exception:
            log.exception("webhook delivery %s failed", delivery.id)
        finally:
            self._release(delivery.endpoint_id)

    def record(self, delivery_id: str, attempt: Attempt) -> None:
        settings = self.settings
        outcome = self.store.record_webhook_attempt(
            delivery_id, status_code=attempt.status_code, error=attempt.error, now=time.time(),
            first_retry=settings.webhook_first_retry, retry_for=settings.webhook_retry_for,
            disable_after=settings.webhook_disable_after)
        if outcome is None:
            return
        done = outcome.delivery
        log.info("webhook %s (%s of %s) to endpoint %s: %s after %d attempt(s)%s", done.id,
                 done.event_type, done.object_id, done.endpoint_id, done.status.value,
                 done.attempts, f" ({attempt.error})" if attempt.error else "")
        if outcome.disabled_endpoint:
            log.warning("webhook endpoint %s disabled: its deliveries failed for %.0f hours "
                        "(setting TUNEGATE_WEBHOOK_DISABLE_AFTER); enable it again "
                        "(tunegate webhooks update ID --enable) once it answers",
                        done.endpoint_id, settings.webhook_disable_after / 3600)
