"""Shared fixtures for the Python client tests against a shardcache broker.

The broker address comes from the environment variable SHARDCACHE_BOOTSTRAP
(integration/clients_test.go sets it); without it every test is skipped.
"""

import os
import uuid

import pytest


@pytest.fixture(scope="session")
def bootstrap():
    """Returns the broker's bootstrap address or skips the test."""
    addr = os.environ.get("SHARDCACHE_BOOTSTRAP", "").strip()
    if not addr:
        pytest.skip("SHARDCACHE_BOOTSTRAP is not set; no broker to test")
    return addr


@pytest.fixture
def topic_name(request):
    """Returns a topic name no other test (or earlier run on the same broker) uses."""
    base = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")
    return f"py-{base}-{uuid.uuid4().hex[:8]}"
