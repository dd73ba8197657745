"""Bounded retries with exponential backoff, jitter and Retry-After.

Meta's ``/messages`` endpoint has no idempotency key, so a send is retried only
when it surely never reached Meta (connect failure) or Meta refused it with a
rate limit. A read timeout or a 5xx may hide a message that was sent.
"""

import random
import time

from .errors import ConnectError, RateLimitError, WhatsAppError

__all__ = ["NO_RETRY", "RetryPolicy", "equal_jitter"]


def equal_jitter(delay):
    """Random delay in ``[delay / 2, delay]``: keeps some backoff, spreads workers."""
    half = delay / 2.0
    return half + random.uniform(0.0, half)


class RetryPolicy:
    """When and how long to wait before trying a request again.

    ``sleep``, ``clock`` and ``jitter`` are injectable so tests never sleep.
    ``max_elapsed`` (seconds, optional) bounds the total time spent, sleeps
    included, measured with ``clock``.
    """

    def __init__(
        self,
        max_attempts=4,
        base_delay=0.5,
        max_delay=30.0,
        max_retry_after=60.0,
        sleep=time.sleep,
        clock=time.monotonic,
        jitter=equal_jitter,
        max_elapsed=None,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if base_delay < 0 or max_delay < 0 or max_retry_after < 0:
            raise ValueError("delays must not be negative")
        self.max_attempts = int(max_attempts)
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.max_retry_after = float(max_retry_after)
        self.sleep = sleep
        self.clock = clock
        self.jitter = jitter
        self.max_elapsed = max_elapsed

    def __repr__(self):
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, "
            f"base_delay={self.base_delay}, max_delay={self.max_delay}, "
            f"max_retry_after={self.max_retry_after})"
        )

    def should_retry(self, error, attempt, is_send):
        """True if another attempt is allowed after ``attempt`` (1-based) failed."""
        if attempt >= self.max_attempts:
            return False
        if not isinstance(error, WhatsAppError):
            return False
        if is_send:
            # Only when Meta surely did not process the message.
            return isinstance(error, ConnectError | RateLimitError)
        return bool(error.retryable)

    def delay(self, attempt, error=None):
        """Seconds to wait after attempt number ``attempt`` (1-based) failed."""
        exponent = max(0, int(attempt) - 1)
        backoff = min(self.max_delay, self.base_delay * (2.0**exponent))
        wait = min(self.max_delay, max(0.0, float(self.jitter(backoff))))
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            # The server knows better than our backoff, within our patience.
            wait = max(wait, min(float(retry_after), self.max_retry_after))
        return max(0.0, wait)

    def run(self, func, *, is_send=False, on_retry=None):
        """Call ``func()`` until it succeeds or the policy gives up.

        Only :class:`WhatsAppError` is retried; the last error is re-raised.
        ``on_retry(error, attempt, delay)`` is called before each sleep.
        """
        start = self.clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return func()
            except WhatsAppError as error:
                if not self.should_retry(error, attempt, is_send):
                    raise
                wait = self.delay(attempt, error)
                elapsed = self.clock() - start
                if self.max_elapsed is not None and elapsed + wait > self.max_elapsed:
                    raise
                if on_retry is not None:
                    on_retry(error, attempt, wait)
                self.sleep(wait)


NO_RETRY = RetryPolicy(max_attempts=1)
