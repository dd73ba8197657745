"""The send engine of one number: pacing, requests in flight, outcome of each send.

The caller hands a list of :class:`SendJob` to :meth:`Sender.run` and reads the
outcomes as they come, in its own thread (the Odoo side writes them to the
database there). The engine:

- starts sends on an even grid of ``rate`` per second, never more than ``rate``
  in any window (:class:`~.ratelimit.SlidingWindowLimiter`);
- keeps as many requests in flight as the observed latency needs to reach the
  rate (rate x latency, with headroom), never more than ``max_in_flight``;
- turns each answer into one :class:`Outcome` (:func:`decide`): sent, failed,
  retry at a later time, or hold the account;
- stops starting sends at the first error that would fail every send of the
  account (:func:`~.errors.holds_account`); what was not started comes back as
  ``requeue``.
"""

import logging
import math
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .errors import (
    PAIR_RATE_LIMIT_DELAY,
    ConnectError,
    RateLimitError,
    ServerError,
    TransportError,
    WhatsAppError,
    holds_account,
)
from .ratelimit import SlidingWindowLimiter
from .retry import RetryPolicy

__all__ = [
    "FAILED",
    "HOLD",
    "REQUEUE",
    "RETRY",
    "SENT",
    "InFlightController",
    "Outcome",
    "SendJob",
    "SendSettings",
    "Sender",
    "decide",
    "perform",
]

_logger = logging.getLogger(__name__)

SENT = "sent"  # Meta accepted it: ``result`` holds the wamid
FAILED = "failed"  # final; ``reason`` says why when the error alone does not
RETRY = "retry"  # refused without sending: try again ``delay`` seconds from now
HOLD = "hold"  # refused for an account-level reason: back to the queue, untouched
REQUEUE = "requeue"  # not attempted (the engine stopped) or an unexpected error

# Reasons the error alone does not tell; the caller words them for users.
MAYBE_SENT = "maybe_sent"  # no answer: Meta may have sent it, never resent
RATE_LIMIT_EXHAUSTED = "rate_limit_exhausted"
UNEXPECTED = "unexpected"  # a bug or a broken job: ``error`` is not a WhatsAppError
NOT_ATTEMPTED = "not_attempted"


@dataclass(frozen=True)
class SendSettings:
    """The knobs of one number's queue (the account's settings)."""

    rate: int = 80
    max_in_flight: int = 100
    max_retries: int = 5  # connect failures and Meta server errors
    rate_limit_retries: int = 8  # refusals 130429 / 131056 / 4 / 80007

    def __post_init__(self):
        if self.rate < 1 or self.max_in_flight < 1:
            raise ValueError("rate and max_in_flight must be at least 1")


@dataclass
class SendJob:
    """One message to send: ``spec`` says what (see :func:`perform`)."""

    key: object
    spec: dict
    attempts: int = 0  # earlier attempts of this message (its retry count)


@dataclass(frozen=True)
class Outcome:
    key: object
    kind: str
    result: object = None
    error: BaseException | None = None
    delay: float = 0.0
    reason: str | None = None
    attempts: int = 0  # attempts made, this one included
    latency: float | None = field(default=None, compare=False)


def _may_resend(error):
    """Resend only what surely did not go out: a send has no idempotency key.

    A connect failure never reached Meta; a Meta error object with a server code
    (1, 2, 131000...) says Meta did not send it. A proxy's HTML 5xx or a dropped
    connection may hide an accepted send.
    """
    if isinstance(error, ConnectError):
        return True
    return isinstance(error, ServerError) and error.code is not None


def decide(key, error, attempts, settings, policy):
    """The outcome of a send refused with ``error`` after ``attempts`` attempts.

    The one place where an error becomes sent / failed / retry / hold.
    """
    if not isinstance(error, WhatsAppError):
        return Outcome(key, REQUEUE, error=error, reason=UNEXPECTED, attempts=attempts)
    if holds_account(error):
        return Outcome(key, HOLD, error=error, attempts=attempts)
    if isinstance(error, RateLimitError):
        if attempts > settings.rate_limit_retries:
            return Outcome(
                key, FAILED, error=error, reason=RATE_LIMIT_EXHAUSTED, attempts=attempts
            )
        delay = policy.delay(attempts, error)
        if error.code == 131056:
            # Only this recipient waits; the number keeps sending to the others.
            delay = max(delay, PAIR_RATE_LIMIT_DELAY)
        return Outcome(key, RETRY, error=error, delay=delay, attempts=attempts)
    if _may_resend(error) and attempts <= settings.max_retries:
        delay = policy.delay(attempts, error)
        return Outcome(key, RETRY, error=error, delay=delay, attempts=attempts)
    if isinstance(error, TransportError) and not isinstance(error, ConnectError):
        return Outcome(key, FAILED, error=error, reason=MAYBE_SENT, attempts=attempts)
    return Outcome(key, FAILED, error=error, attempts=attempts)


def perform(client, spec, before_send=None):
    """Run one job ``spec`` on ``client``; returns the client's SendResult.

    ``spec`` keys: ``to``, ``type``, ``callback``, ``reply_to`` (the wamid quoted)
    and, by type, ``body`` (text), ``template_name``/``language``/``components``
    (template), ``content``/``mime_type``/``filename``/``caption`` (media,
    uploaded first), ``interactive`` (a spec of payloads.interactive_spec),
    ``message_id``/``emoji`` (reaction). Type ``read`` marks the inbound
    ``message_id`` as read and returns whether Meta confirmed it.
    ``before_send`` is called right before the send request (not the upload).
    """
    kind = spec["type"]
    options = {"biz_opaque_callback_data": spec.get("callback")}
    if spec.get("reply_to"):
        options["reply_to"] = spec["reply_to"]
    if "content" in spec:
        media_id = client.upload_media(
            spec["content"], spec["mime_type"], spec["filename"]
        )
        if before_send:
            before_send()
        return client.send_media(
            spec["to"],
            kind,
            media_id=media_id,
            caption=spec.get("caption") if kind != "audio" else None,
            filename=spec.get("filename") if kind == "document" else None,
            **options,
        )
    if before_send:
        before_send()
    if kind == "read":
        return client.mark_as_read(spec["message_id"])
    if kind == "reaction":
        # A reaction quotes nothing: its target is the message it is about.
        return client.send_reaction(
            spec["to"],
            spec["message_id"],
            spec.get("emoji") or "",
            biz_opaque_callback_data=spec.get("callback"),
        )
    if kind == "template":
        return client.send_template(
            spec["to"],
            spec["template_name"],
            spec["language"],
            components=spec.get("components"),
            **options,
        )
    if kind == "interactive":
        return client.send_interactive(spec["to"], spec["interactive"], **options)
    return client.send_text(spec["to"], spec.get("body") or "", **options)


class InFlightController:
    """How many requests may be in flight: enough for ``rate`` at the latency seen.

    Little's law: ``rate`` sends per second that each take ``latency`` seconds
    need ``rate x latency`` requests in flight. The estimate follows the recent
    latencies (moving average, quick to rise, slow to fall) with some headroom,
    never above ``ceiling`` (threads and sockets are not free, and a Graph that
    slows down to a crawl must not get hundreds of waiting requests).
    """

    HEADROOM = 1.25

    def __init__(self, rate, ceiling, initial_latency=1.0):
        self.rate = rate
        self.ceiling = max(1, int(ceiling))
        self.latency = float(initial_latency)
        self._lock = threading.Lock()

    def observe(self, seconds):
        with self._lock:
            weight = 0.3 if seconds > self.latency else 0.05
            self.latency += weight * (seconds - self.latency)

    def observe_pending(self, age):
        """A request unanswered after ``age`` seconds: latency is at least that.

        Without it a stale estimate (Graph slowed down, or the last run's hint)
        holds the limit low until the first slow answers come back, and the
        queue idles for about one latency.
        """
        with self._lock:
            self.latency = max(self.latency, age)

    @property
    def limit(self):
        # Rounded first: float noise must not add a request.
        wanted = math.ceil(round(self.rate * self.latency * self.HEADROOM, 3)) + 1
        return max(1, min(self.ceiling, wanted))


class Sender:
    """Sends the jobs of one number; one instance per account and run.

    ``client_factory()`` builds a client (one per worker thread: ``requests``
    sessions are not shared between threads). The threads, their clients and
    their open connections serve every :meth:`run` until :meth:`close`: a new
    connection makes its first request late, which bunches sends at Meta.
    ``limiter`` and ``policy`` are injectable for tests.
    """

    FLUSH_EVERY = 0.1  # seconds: outcomes are handed over at least this often
    FLUSH_SIZE = 20

    def __init__(
        self,
        client_factory,
        settings,
        *,
        limiter=None,
        policy=None,
        controller=None,
        clock=time.monotonic,
        sleep=time.sleep,
    ):
        self.client_factory = client_factory
        self.settings = settings
        self.limiter = limiter or SlidingWindowLimiter(settings.rate)
        # Rate-limit refusals back off from 1 s, doubling; others from 0.5 s.
        self.policy = policy or RetryPolicy(
            max_attempts=max(settings.max_retries, settings.rate_limit_retries) + 1,
            base_delay=1.0,
            max_delay=300.0,
            max_retry_after=300.0,
        )
        self.controller = controller or InFlightController(
            settings.rate, settings.max_in_flight
        )
        self.clock = clock
        self.sleep = sleep
        self.hold_error = None  # the first account-level error seen
        self.peak_in_flight = 0
        self.dispatched = set()  # keys whose request was started
        self._pool = None
        self._local = threading.local()
        self._clients = []
        self._clients_lock = threading.Lock()

    def close(self):
        """Stop the worker threads and close their clients."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _executor(self):
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.settings.max_in_flight,
                thread_name_prefix="whatsapp-send",
            )
        return self._pool

    def _client(self):
        """This worker thread's client, built on its first job."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.client_factory()
            with self._clients_lock:
                self._clients.append(client)
        return client

    @property
    def held(self):
        return self.hold_error is not None

    def drain(self):
        """Wait until no send of ours is left in the window (hand-over to another)."""
        self.limiter.drain()

    def run(self, jobs):
        """Send ``jobs``; yield lists of outcomes, one per job in all.

        Stopping early (closing the generator) stops starting new sends and
        waits for the requests in flight; their outcomes are then dropped.
        """
        jobs = list(jobs)
        if not jobs:
            return
        run = _Run(self, jobs)
        run.start()
        pending = len(jobs)
        try:
            batch, flushed = [], time.monotonic()
            while pending:
                try:
                    outcome = run.results.get(timeout=self.FLUSH_EVERY)
                except queue.Empty:
                    outcome = None
                if outcome is not None:
                    batch.append(outcome)
                    pending -= 1
                if batch and (
                    not pending
                    or len(batch) >= self.FLUSH_SIZE
                    or time.monotonic() - flushed >= self.FLUSH_EVERY
                ):
                    yield batch
                    batch, flushed = [], time.monotonic()
        finally:
            run.finish()


# A send thread needs little stack. With the default (8 MB of address space each)
# a few hundred of them would exceed the address-space limit Odoo sets on its
# prefork workers (limit_memory_hard), and threads would fail to start.
SEND_THREAD_STACK = 1024 * 1024
_STACK_LOCK = threading.Lock()


def _submit_with_small_stack(pool, fn, *args):
    """``pool.submit``, any thread it starts getting a small stack.

    ``threading.stack_size`` is process-wide: set and restored around the call,
    under a lock, so that only the pool's own threads get it.
    """
    with _STACK_LOCK:
        previous = threading.stack_size(SEND_THREAD_STACK)
        try:
            return pool.submit(fn, *args)
        finally:
            threading.stack_size(previous)


class _Stopped(Exception):
    """The run stopped before this job's request could start."""


class _Run:
    """One call of :meth:`Sender.run`.

    A dispatcher thread hands jobs to a pool while fewer than the controller's
    limit are in it; each pool thread waits for its slot, then sends.
    """

    def __init__(self, sender, jobs):
        self.sender = sender
        self.jobs = jobs
        self.results = queue.Queue()
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.in_flight = 0  # jobs in the pool: waiting for a slot, or sending
        self.submitted = 0  # jobs handed to the pool, in order
        self.sending = 0  # requests started whose answer is not read yet
        self.started_at = {}  # job key -> when its request went out
        self.slot_lock = threading.Lock()
        self.local = threading.local()
        self.pool = sender._executor()
        self.thread = threading.Thread(
            target=self.dispatcher, name="whatsapp-dispatch", daemon=True
        )

    def start(self):
        self.thread.start()

    def finish(self):
        """Stop dispatching and wait for the jobs handed to the pool."""
        self.stop.set()
        self.thread.join()
        with self.cond:
            while self.in_flight:
                self.cond.wait(0.05)

    def work(self, job):
        sender = self.sender
        self.local.key = job.key
        attempts = job.attempts + 1
        try:
            client = self.sender._client()  # built before the slot: it takes time
            if "content" in job.spec:
                # A media upload is not a message: the slot is taken before the send.
                result = perform(client, job.spec, self.take_slot)
            else:
                self.take_slot()
                result = perform(client, job.spec)
            outcome = Outcome(job.key, SENT, result=result, attempts=attempts)
        except _Stopped:
            outcome = Outcome(
                job.key, REQUEUE, reason=NOT_ATTEMPTED, attempts=job.attempts
            )
        except Exception as error:  # noqa: BLE001 - every job gets an outcome
            outcome = decide(job.key, error, attempts, sender.settings, sender.policy)
            if outcome.kind == REQUEUE:
                _logger.warning(
                    "WhatsApp send job %s raised %s", job.key, type(error).__name__
                )
        started = getattr(self.local, "started", None)
        self.local.started = None
        if started is not None:
            with self.cond:
                self.sending -= 1
                self.started_at.pop(job.key, None)
            if outcome.kind != REQUEUE:
                sender.controller.observe(sender.clock() - started)
        if outcome.kind == HOLD and sender.hold_error is None:
            sender.hold_error = outcome.error
            self.stop.set()
        elif (
            outcome.kind == RETRY
            and isinstance(outcome.error, RateLimitError)
            and outcome.error.code != 131056
        ):
            # The number (or app) is over Meta's limit: every send slows down.
            sender.limiter.pause(min(outcome.delay, 60.0))
        self.results.put(outcome)
        with self.cond:
            self.in_flight -= 1
            self.cond.notify()

    def take_slot(self):
        """Wait for this send's slot, right before its request goes out.

        Taken in the thread that sends, so that nothing (a thread starting, a
        busy CPU) sits between the slot and the request; the lock lets one
        thread at a time wait on the limiter while the others sleep on the lock.
        """
        sender = self.sender
        limiter = sender.limiter
        with self.slot_lock:
            while not limiter.try_acquire():
                if self.stop.is_set():
                    raise _Stopped
                sender.sleep(min(max(limiter.wait_time(), 0.001), 0.05))
        if self.stop.is_set():
            raise _Stopped  # the slot is lost; the window only gets emptier
        sender.dispatched.add(self.local.key)
        self.local.started = sender.clock()
        with self.cond:
            self.started_at[self.local.key] = self.local.started
            self.sending += 1
            sender.peak_in_flight = max(sender.peak_in_flight, self.sending)

    def requeue_from(self, index):
        for rest in self.jobs[index:]:
            self.results.put(
                Outcome(rest.key, REQUEUE, reason=NOT_ATTEMPTED, attempts=rest.attempts)
            )

    def dispatch(self):
        sender = self.sender
        for index, job in enumerate(self.jobs):
            with self.cond:
                while (
                    not self.stop.is_set() and self.in_flight >= sender.controller.limit
                ):
                    if self.started_at:
                        oldest = min(self.started_at.values())
                        sender.controller.observe_pending(sender.clock() - oldest)
                        if self.in_flight < sender.controller.limit:
                            break
                    self.cond.wait(0.05)
                if not self.stop.is_set():
                    self.in_flight += 1
            if self.stop.is_set():
                self.requeue_from(index)
                return
            try:
                _submit_with_small_stack(self.pool, self.work, job)
            except BaseException:
                with self.cond:
                    self.in_flight -= 1
                raise
            self.submitted = index + 1

    def dispatcher(self):
        try:
            self.dispatch()
        except BaseException as error:  # noqa: BLE001 - never leave a job behind
            _logger.exception("WhatsApp send dispatcher stopped")
            # The jobs in the pool stop before their slot and report themselves;
            # the others were never started.
            self.stop.set()
            for job in self.jobs[self.submitted :]:
                self.results.put(
                    Outcome(job.key, REQUEUE, error=error, reason=UNEXPECTED)
                )
