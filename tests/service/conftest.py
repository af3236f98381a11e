"""Fixtures for the service tests: tiny real bundles, real Redis, a live uvicorn app."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from svc_helpers import REDIS_URL, UvicornThread, in_ci, make_settings, redis_answers

from service.app import create_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def bundle_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared random-init tiny bundle (tests/conftest.py), or our own when run standalone."""
    try:
        return Path(request.getfixturevalue("tiny_bundle_dir"))
    except pytest.FixtureLookupError:
        from model.export.synthetic import make_random_bundle

        return make_random_bundle(tmp_path_factory.mktemp("svc_bundle") / "tiny", n_items=200, seed=0)


@pytest.fixture(scope="session")
def bundle_dir_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny bundle with other weights (another model_version), for reloads."""
    from model.export.synthetic import make_random_bundle

    return make_random_bundle(tmp_path_factory.mktemp("svc_bundle_v2") / "tiny", n_items=200, seed=1)


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not redis_answers(REDIS_URL):
        msg = f"no Redis answers at {REDIS_URL} (start one: redis-server --port 6379)"
        if in_ci():
            pytest.fail(msg + "; CI requires it")
        pytest.skip(msg)
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test; its keys are deleted afterwards."""
    import redis

    prefix = f"simgr-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


@pytest.fixture
def live_app(bundle_dir: Path) -> Iterator[UvicornThread]:
    """The tiny bundle behind a real uvicorn socket (in-process session store)."""
    with UvicornThread(create_app(make_settings(artifacts=bundle_dir))) as server:
        yield server
