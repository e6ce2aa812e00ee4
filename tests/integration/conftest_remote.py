"""The `remote_host` session fixture: a second Docker host on this machine, reached as
`ssh://root@10.213.9.2` (see remote_host.py). conftest.py imports it:

    from conftest_remote import remote_host  # noqa: F401

It starts on first use (about 10 s, most of it `docker save | docker load` of the agent image)
and is torn down at the end of the session whatever the tests did. With CI=true a host that
cannot be built fails the test; it never skips it."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def remote_host(tmp_path_factory, docker_client, agent_image):
    from remote_host import RemoteHost, cleanup_leftovers

    host = RemoteHost(basetemp=tmp_path_factory.getbasetemp(), images=(agent_image,))
    try:
        cleanup_leftovers()  # what an interrupted earlier run left
        host.start()  # on failure it has already removed what it made
    except Exception as exc:  # noqa: BLE001
        message = f"remote host: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield host
    host.stop()  # raises when something is left behind: a teardown error, not silence
