"""RetryPolicy with a fake clock and sleep: nothing here really waits."""

import random

import pytest
from fake_time import FakeTime

from wa_cloud.errors import (
    AuthenticationError,
    ConnectError,
    InvalidRequestError,
    RateLimitError,
    ReadTimeoutError,
    RecipientError,
    ServerError,
    TransportError,
    WhatsAppError,
)
from wa_cloud.retry import NO_RETRY, RetryPolicy, equal_jitter


def no_jitter(delay):
    return delay


def make_policy(fake, **kwargs):
    kwargs.setdefault("jitter", no_jitter)
    return RetryPolicy(sleep=fake.sleep, clock=fake.clock, **kwargs)


def failing(errors, result="ok"):
    """A callable raising the given errors in turn, then returning ``result``."""
    calls = []
    queue = list(errors)

    def func():
        calls.append(1)
        if queue:
            raise queue.pop(0)
        return result

    func.calls = calls
    return func


def test_defaults_match_the_contract():
    policy = RetryPolicy()
    assert policy.max_attempts == 4
    assert policy.base_delay == 0.5
    assert policy.max_delay == 30.0
    assert policy.max_retry_after == 60.0
    assert NO_RETRY.max_attempts == 1
    assert NO_RETRY.should_retry(ServerError(), 1, False) is False


def test_exponential_growth_without_jitter():
    policy = make_policy(FakeTime(1000.0), base_delay=0.5, max_delay=100.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_backoff_is_capped_at_max_delay():
    policy = make_policy(FakeTime(1000.0), base_delay=1.0, max_delay=5.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 10, 60)] == [1, 2, 4, 5, 5, 5]


def test_jitter_function_is_applied_and_pinned():
    seen = []

    def half(delay):
        seen.append(delay)
        return delay / 2

    policy = make_policy(FakeTime(1000.0), base_delay=2.0, jitter=half)
    assert policy.delay(3) == 4.0
    assert seen == [8.0]


def test_jitter_cannot_exceed_cap_or_go_negative():
    policy = make_policy(
        FakeTime(1000.0), base_delay=1.0, max_delay=3.0, jitter=lambda d: 99
    )
    assert policy.delay(5) == 3.0
    policy = make_policy(FakeTime(1000.0), jitter=lambda d: -4)
    assert policy.delay(1) == 0.0


def test_default_jitter_stays_within_half_and_full_delay():
    random.seed(1234)
    values = [equal_jitter(8.0) for _ in range(200)]
    assert all(4.0 <= value <= 8.0 for value in values)
    assert len(set(values)) > 100  # actually random


def test_retry_after_is_honoured_when_longer_than_backoff():
    policy = make_policy(FakeTime(1000.0), base_delay=0.5)
    error = RateLimitError(retry_after=7.0)
    assert policy.delay(1, error) == 7.0


def test_retry_after_never_shortens_the_backoff():
    policy = make_policy(FakeTime(1000.0), base_delay=4.0)
    assert policy.delay(2, RateLimitError(retry_after=1.0)) == 8.0


def test_retry_after_is_capped():
    policy = make_policy(FakeTime(1000.0), max_retry_after=60.0)
    assert policy.delay(1, RateLimitError(retry_after=3600.0)) == 60.0


def test_attempts_are_bounded():
    fake = FakeTime(1000.0)
    policy = make_policy(fake, max_attempts=3, base_delay=1.0)
    func = failing([ServerError(http_status=503)] * 10)
    with pytest.raises(ServerError):
        policy.run(func)
    assert len(func.calls) == 3
    assert fake.sleeps == [1.0, 2.0]


def test_succeeds_after_transient_errors():
    fake = FakeTime(1000.0)
    policy = make_policy(fake, base_delay=0.5)
    func = failing([ServerError(), ReadTimeoutError()], result={"id": "1"})
    assert policy.run(func) == {"id": "1"}
    assert len(func.calls) == 3
    assert fake.sleeps == [0.5, 1.0]


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError(code=190),
        InvalidRequestError(code=100),
        RecipientError(code=131026),
        TransportError(reached_server=True),
    ],
)
def test_permanent_errors_are_not_retried(error):
    fake = FakeTime(1000.0)
    func = failing([error])
    with pytest.raises(type(error)):
        make_policy(fake).run(func)
    assert len(func.calls) == 1
    assert fake.sleeps == []


@pytest.mark.parametrize(
    "error,expected",
    [
        (ConnectError(), True),
        (RateLimitError(code=130429), True),
        (ReadTimeoutError(), False),
        (ServerError(http_status=502), False),
        (ServerError(code=131000), False),
        (TransportError(reached_server=True, retryable=True), False),
    ],
)
def test_send_rules(error, expected):
    policy = make_policy(FakeTime(1000.0))
    assert policy.should_retry(error, 1, is_send=True) is expected


@pytest.mark.parametrize(
    "error,expected",
    [
        (ConnectError(), True),
        (RateLimitError(), True),
        (ReadTimeoutError(), True),
        (ServerError(), True),
        (AuthenticationError(), False),
        (TransportError(reached_server=True, retryable=True), True),
    ],
)
def test_non_send_rules_follow_retryable(error, expected):
    policy = make_policy(FakeTime(1000.0))
    assert policy.should_retry(error, 1, is_send=False) is expected


def test_send_is_not_retried_after_read_timeout():
    fake = FakeTime(1000.0)
    func = failing([ReadTimeoutError("ReadTimeout")])
    with pytest.raises(ReadTimeoutError):
        make_policy(fake).run(func, is_send=True)
    assert len(func.calls) == 1


def test_send_is_retried_after_connect_error_and_rate_limit():
    fake = FakeTime(1000.0)
    func = failing([ConnectError(), RateLimitError(code=130429, retry_after=2.0)])
    assert make_policy(fake, base_delay=0.5).run(func, is_send=True) == "ok"
    assert len(func.calls) == 3
    assert fake.sleeps == [0.5, 2.0]


def test_only_whatsapp_errors_are_retried():
    policy = make_policy(FakeTime(1000.0))
    assert policy.should_retry(ValueError("bad"), 1, False) is False
    func = failing([KeyError("boom")])
    with pytest.raises(KeyError):
        policy.run(func)
    assert len(func.calls) == 1


def test_should_retry_respects_attempt_count():
    policy = make_policy(FakeTime(1000.0), max_attempts=2)
    assert policy.should_retry(ServerError(), 1, False) is True
    assert policy.should_retry(ServerError(), 2, False) is False


def test_on_retry_hook_sees_attempt_and_delay():
    fake = FakeTime(1000.0)
    seen = []
    func = failing([ServerError(), ServerError()])
    make_policy(fake, base_delay=1.0).run(
        func, on_retry=lambda err, attempt, delay: seen.append((attempt, delay))
    )
    assert seen == [(1, 1.0), (2, 2.0)]


def test_max_elapsed_uses_the_injected_clock():
    fake = FakeTime(1000.0)
    policy = make_policy(fake, max_attempts=10, base_delay=4.0, max_elapsed=10.0)
    func = failing([ServerError()] * 10)
    with pytest.raises(ServerError):
        policy.run(func)
    # 4 s then 8 s would pass the 10 s budget: stop after the first sleep.
    assert fake.sleeps == [4.0]
    assert len(func.calls) == 2


def test_unknown_transient_error_retried_only_for_reads():
    error = WhatsAppError("odd", code=987654, is_transient=True, retryable=True)
    policy = make_policy(FakeTime(1000.0))
    assert policy.should_retry(error, 1, is_send=False) is True
    assert policy.should_retry(error, 1, is_send=True) is False


def test_invalid_configuration_is_refused():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)
