"""Fixtures: one connector of each compiled kind, and a Redis server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest

import proxystore_rs

KINDS = ['file', 'shm', 'zmq', 'redis', 'generic']
if 'ucx' in proxystore_rs.compiled_connectors():
    # ci/python-tests.sh builds the wheel with `-F ucx` where UCX is
    # installed (CI always; it says so when it is not). A UCX data server
    # off loopback needs the job's shared secret, which no config carries:
    # set here, inherited by the processes the tests spawn.
    KINDS.append('ucx')
    os.environ.setdefault('PROXYSTORE_UCX_SECRET', f'psrs-pytest-{uuid.uuid4().hex}')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='session')
def redis_url() -> Iterator[str]:
    """A redis-server on a free loopback port, stopped after the session."""
    exe = shutil.which('redis-server')
    if exe is None:
        pytest.skip('redis-server not on PATH (ci/install-deps.sh installs it)')
    port = _free_port()
    proc = subprocess.Popen(
        [exe, '--bind', '127.0.0.1', '--port', str(port), '--save', '',
         '--appendonly', 'no'],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(('127.0.0.1', port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f'redis-server did not start on {port}')
                time.sleep(0.05)
        yield f'redis://127.0.0.1:{port}'
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def make_connector(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[str], Any]]:
    """Builds connectors of a kind; closes them and removes their files."""
    made: list[Any] = []
    dirs: list[str] = []

    def make(kind: str) -> Any:
        if kind == 'file':
            dirs.append(tempfile.mkdtemp(prefix='psrs-'))
            c = proxystore_rs.FileConnector(dirs[-1])
        elif kind == 'shm':
            dirs.append(f'/dev/shm/psrs-test-{uuid.uuid4().hex}')
            c = proxystore_rs.ShmConnector(dirs[-1])
        elif kind == 'zmq':
            c = proxystore_rs.ZmqConnector('tcp://127.0.0.1:*')
        elif kind == 'ucx':
            c = proxystore_rs.UcxConnector()
        elif kind == 'redis':
            url = request.getfixturevalue('redis_url')
            c = proxystore_rs.RedisConnector(url, prefix=uuid.uuid4().hex)
        elif kind == 'generic':
            dirs.append(tempfile.mkdtemp(prefix='psrs-'))
            c = proxystore_rs.Connector('file', dir=dirs[-1])
        else:
            raise ValueError(kind)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=KINDS)
def connector(request: pytest.FixtureRequest, make_connector: Any) -> Any:
    """One connector of each kind in KINDS."""
    return make_connector(request.param)
