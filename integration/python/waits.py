"""Timeouts shared by the client tests in this folder (imported as a plain module)."""

import time

# Upper bound, in seconds, for any single wait on the broker.
TIMEOUT_S = 30.0


class Deadline:
    """A bounded wait: remaining() shrinks to zero, expired() turns true."""

    def __init__(self, seconds=TIMEOUT_S):
        self.end = time.monotonic() + seconds

    def remaining(self):
        return max(0.0, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end
