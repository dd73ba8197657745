"""The send engine (wa_cloud.sender) against the fake Graph server."""

import math
import threading

import pytest
from fake_graph import FakeAccount, FakeGraph
from fake_time import FakeTime

from wa_cloud.client import CloudApiClient, SendResult
from wa_cloud.errors import (
    AuthenticationError,
    ConnectError,
    ReadTimeoutError,
    error_from_payload,
)
from wa_cloud.ratelimit import SlidingWindowLimiter
from wa_cloud.retry import NO_RETRY, RetryPolicy
from wa_cloud.sender import (
    FAILED,
    HOLD,
    MAYBE_SENT,
    NOT_ATTEMPTED,
    RATE_LIMIT_EXHAUSTED,
    REQUEUE,
    RETRY,
    SENT,
    UNEXPECTED,
    InFlightController,
    Sender,
    SendJob,
    SendSettings,
    decide,
)

SETTINGS = SendSettings(rate=80, max_retries=3, rate_limit_retries=4)
# No jitter: the delays are exactly the documented backoff.
POLICY = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=300.0, jitter=float)


def meta(code, subcode=None):
    payload = {"code": code, "message": f"(#{code}) refused"}
    if subcode:
        payload["error_subcode"] = subcode
    return error_from_payload(payload, http_status=400)


def text_jobs(count, prefix="3361"):
    return [
        SendJob(i, {"to": f"{prefix}{i:07d}", "type": "text", "body": "Bonjour"})
        for i in range(count)
    ]


def run_all(sender, jobs):
    outcomes = {}
    for batch in sender.run(jobs):
        for outcome in batch:
            assert outcome.key not in outcomes  # one outcome per job
            outcomes[outcome.key] = outcome
    assert set(outcomes) == {job.key for job in jobs}
    sender.close()
    return outcomes


def graph_client_factory(fake, account):
    def make():
        return CloudApiClient(
            account.access_token,
            account.phone_number_id,
            base_url=fake.url,
            retry_policy=NO_RETRY,
        )

    return make


# -- one place decides the outcome of an error ---------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        meta(190, 463),
        meta(0),
        meta(131042),
        meta(368),
        meta(131031),
        meta(100, 33),
        meta(10),
        meta(200),
    ],
    ids=lambda e: f"{e.code}/{e.subcode}",
)
def test_account_level_errors_hold(error):
    outcome = decide(1, error, 1, SETTINGS, POLICY)
    assert outcome.kind == HOLD
    assert outcome.error is error


def test_rate_limit_refusals_retry_with_backoff_then_fail():
    delays = [decide(1, meta(130429), n, SETTINGS, POLICY).delay for n in (1, 2, 3)]
    assert delays == [1.0, 2.0, 4.0]
    last = decide(1, meta(130429), SETTINGS.rate_limit_retries, SETTINGS, POLICY)
    assert last.kind == RETRY
    spent = decide(1, meta(130429), SETTINGS.rate_limit_retries + 1, SETTINGS, POLICY)
    assert (spent.kind, spent.reason) == (FAILED, RATE_LIMIT_EXHAUSTED)


def test_pair_rate_limit_waits_six_seconds():
    outcome = decide(1, meta(131056), 1, SETTINGS, POLICY)
    assert (outcome.kind, outcome.delay) == (RETRY, 6.0)


def test_other_errors():
    transient = decide(1, ConnectError("refused"), 1, SETTINGS, POLICY)
    assert (transient.kind, transient.delay) == (RETRY, 1.0)
    spent = decide(1, ConnectError("refused"), 4, SETTINGS, POLICY)
    assert spent.kind == FAILED
    maybe = decide(1, ReadTimeoutError("timed out"), 1, SETTINGS, POLICY)
    assert (maybe.kind, maybe.reason) == (FAILED, MAYBE_SENT)
    recipient = decide(1, meta(131026), 1, SETTINGS, POLICY)
    assert (recipient.kind, recipient.reason) == (FAILED, None)
    bug = decide(1, KeyError("components"), 1, SETTINGS, POLICY)
    assert (bug.kind, bug.reason) == (REQUEUE, UNEXPECTED)


# -- requests in flight follow the latency -------------------------------------------


def test_in_flight_limit_is_rate_times_latency_under_a_ceiling():
    controller = InFlightController(rate=80, ceiling=100, initial_latency=0.5)
    controller.observe(0.5)
    assert controller.limit == math.ceil(80 * 0.5 * 1.25) + 1  # 51
    controller.observe(0.1)  # a fast answer lowers the estimate slowly...
    assert controller.limit == math.ceil(80 * 0.48 * 1.25) + 1  # 49
    for _ in range(300):
        controller.observe(0.1)
    assert controller.limit == math.ceil(80 * 0.1 * 1.25) + 1  # 11
    controller.observe(10.0)  # ...a slow one raises it at once...
    assert controller.limit == 100  # ...never above the ceiling


def test_unanswered_requests_raise_a_stale_latency_estimate():
    controller = InFlightController(rate=80, ceiling=100, initial_latency=0.1)
    assert controller.limit == 11
    controller.observe_pending(0.05)  # younger than the estimate: no news
    assert controller.limit == 11
    controller.observe_pending(0.5)  # still unanswered after 500 ms
    assert controller.limit == math.ceil(80 * 0.5 * 1.25) + 1  # 51


def test_a_stale_hint_does_not_hold_the_queue_below_the_latency():
    """The last run saw 50 ms; Graph now answers in 300 ms. Requests still in
    flight lift the limit before their answers come back."""
    account = FakeAccount()
    with FakeGraph(
        [account], rate_limit=None, enforce_window=False, latency=0.3
    ) as fake:
        controller = InFlightController(40, 100, initial_latency=0.05)
        sender = Sender(
            graph_client_factory(fake, account),
            SendSettings(rate=40),
            controller=controller,
        )
        stale_limit = controller.limit  # 4
        outcomes = run_all(sender, text_jobs(40))
        assert {o.kind for o in outcomes.values()} == {SENT}
        arrivals = sorted(r.timestamp for r in fake.requests_to("/messages", "POST"))
    # The stale limit lets 4 requests out; no answer comes back before 300 ms.
    # Held to it, the queue would send 4 in its first 300 ms instead of 12.
    assert stale_limit == 4
    assert sum(1 for t in arrivals if t < arrivals[0] + 0.28) >= 8


def test_starts_follow_the_rate_on_a_fake_clock():
    clock = FakeTime(1000.0)
    starts = []

    class Instant:
        def send_text(self, to, body, biz_opaque_callback_data=None):
            return SendResult(wamid=f"wamid.{to}")

        def close(self):
            pass

    limiter = SlidingWindowLimiter(50, clock=clock, sleep=clock.sleep)
    original = limiter.try_acquire

    def recorded():
        granted = original()
        if granted:
            starts.append(clock.now)
        return granted

    limiter.try_acquire = recorded
    sender = Sender(
        Instant,
        SendSettings(rate=50),
        limiter=limiter,
        clock=clock,
        sleep=clock.sleep,
    )
    outcomes = run_all(sender, text_jobs(200))
    assert {o.kind for o in outcomes.values()} == {SENT}
    for i, start in enumerate(starts):
        assert sum(1 for t in starts[i:] if t - start < 1.0) <= 50
    # An even grid: 200 starts at 50 per 1.1 s, no burst and no idle time.
    # Evenly spaced on the default grid: 1.1 s per `rate` starts (a 100 ms margin).
    assert starts[-1] - starts[0] == pytest.approx(199 * 1.1 / 50, abs=0.002)


@pytest.mark.parametrize("latency", [0.1, 0.3])
def test_rate_is_never_exceeded_at_the_fake_and_in_flight_adapts(latency):
    account = FakeAccount()
    # The fake does not refuse anything: what it sees is the engine's doing.
    with FakeGraph(
        [account], rate_limit=None, enforce_window=False, latency=latency
    ) as fake:
        # The production margin (100 ms): the fake shares this process (and its
        # CPU) with the sender, which delays some requests more.
        limiter = SlidingWindowLimiter(40, margin=0.1)
        sender = Sender(
            graph_client_factory(fake, account), SendSettings(rate=40), limiter=limiter
        )
        outcomes = run_all(sender, text_jobs(100))
        assert {o.kind for o in outcomes.values()} == {SENT}
        assert len(fake.sent_messages) == 100
        assert fake.max_sends_in_window(1.0) <= 40
    # Every answer took at least the fake's latency.
    assert sender.controller.limit >= math.ceil(40 * latency * 1.25) + 1
    if latency >= 0.3:
        # More than the old fixed 4: reaching 40/s at 300 ms needs 12 in flight.
        assert sender.peak_in_flight > 4


# -- account-level errors stop the engine ---------------------------------------------


def test_expired_token_holds_every_message():
    account = FakeAccount(token_expired=True)
    with FakeGraph([account], enforce_window=False, latency=0.05) as fake:
        sender = Sender(graph_client_factory(fake, account), SETTINGS)
        outcomes = run_all(sender, text_jobs(60))
        calls = len(fake.requests_to("POST"))
    kinds = {o.kind for o in outcomes.values()}
    assert kinds <= {HOLD, REQUEUE}
    assert isinstance(sender.hold_error, AuthenticationError)
    assert all(
        o.reason == NOT_ATTEMPTED for o in outcomes.values() if o.kind == REQUEUE
    )
    assert calls < 60  # it stopped starting sends


def test_payment_issue_holds_only_in_flight_sends():
    account = FakeAccount()
    jobs = text_jobs(30)
    errors = {job.spec["to"]: 131042 for job in jobs}
    with FakeGraph(
        [account], enforce_window=False, latency=0.05, errors_for=errors
    ) as fake:
        sender = Sender(graph_client_factory(fake, account), SETTINGS)
        outcomes = run_all(sender, jobs)
        assert fake.sent_messages == []
    assert sender.hold_error.code == 131042
    assert {o.kind for o in outcomes.values()} <= {HOLD, REQUEUE}


# -- one broken job does not stop the others -----------------------------------------


def test_a_job_raising_an_unexpected_exception_is_requeued():
    class Flaky:
        def send_text(self, to, body, biz_opaque_callback_data=None):
            if to.endswith("0000003"):
                raise TypeError("a bug in the payload")
            return SendResult(wamid=f"wamid.{to}")

        def close(self):
            pass

    outcomes = run_all(Sender(Flaky, SendSettings(rate=1000)), text_jobs(6))
    assert outcomes[3].kind == REQUEUE
    assert outcomes[3].reason == UNEXPECTED
    assert isinstance(outcomes[3].error, TypeError)
    assert {o.kind for k, o in outcomes.items() if k != 3} == {SENT}


def test_stopping_early_starts_nothing_more():
    started = []
    release = threading.Event()

    class Slow:
        def send_text(self, to, body, biz_opaque_callback_data=None):
            started.append(to)
            if len(started) > 2:
                release.wait(5)
            return SendResult(wamid=f"wamid.{to}")

        def close(self):
            pass

    sender = Sender(Slow, SendSettings(rate=1000, max_in_flight=2))
    run = sender.run(text_jobs(20))
    first = next(run)
    threading.Timer(0.2, release.set).start()
    run.close()  # waits for the two requests in flight
    sender.close()
    assert {o.kind for o in first} == {SENT}
    assert len(started) <= 4
    assert sender.dispatched == {int(to[4:]) for to in started}


def test_a_thread_that_cannot_start_leaves_no_job_behind(monkeypatch):
    """E.g. "can't start new thread": the run ends, each job with one outcome."""
    import wa_cloud.sender as sender_module

    original = sender_module._submit_with_small_stack
    calls = []

    def failing_submit(pool, fn, *args):
        calls.append(args)
        if len(calls) > 3:
            raise RuntimeError("can't start new thread")
        return original(pool, fn, *args)

    monkeypatch.setattr(sender_module, "_submit_with_small_stack", failing_submit)

    class Instant:
        def send_text(self, to, body, biz_opaque_callback_data=None):
            return SendResult(wamid=f"wamid.{to}")

        def close(self):
            pass

    sender = Sender(Instant, SendSettings(rate=1000))
    outcomes = run_all(sender, text_jobs(10))
    unexpected = [o for o in outcomes.values() if o.reason == UNEXPECTED]
    assert len(unexpected) == 7
    # The three handed over either went out or stopped before their slot.
    assert all(
        o.kind == SENT or o.reason == NOT_ATTEMPTED
        for key, o in outcomes.items()
        if key < 3
    )
