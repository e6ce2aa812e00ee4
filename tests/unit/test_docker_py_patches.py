"""What cai's repairs of docker-py (docker_py.py) rely on, checked against the docker-py installed.

They replace or call private names of docker-py 7.2 (pyproject.toml pins the range they were
written for). A release that renames one would fail at run time on a user's upgrade; here it
fails the suite instead, naming the repair that needs a look.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

# (the repair in cai/docker_py.py, module, attribute path, parameters its signature must have)
RELIED_ON = [
    ("sdk: the context store next to config.json", "docker.context.config", "find_config_file", ["config_path"]),
    ("load_ssh_transport: the adapter it hands the client", "docker.transport.sshconn", "SSHHTTPAdapter", None),
    ("_patch_ssh_transport: connect", "docker.transport.sshconn", "SSHConnection.connect", ["self"]),
    ("_patch_ssh_transport: new_conn", "docker.transport.sshconn", "SSHConnection.__init__",
     ["self", "ssh_transport", "timeout", "host"]),
    ("_patch_ssh_transport: one pool per client", "docker.transport.sshconn", "SSHHTTPAdapter.get_connection",
     ["self", "url", "proxies"]),
    ("_patch_ssh_transport: one pool per client", "docker.transport.sshconn", "SSHConnectionPool.__init__",
     ["self", "ssh_client", "timeout", "maxsize", "host"]),
    ("_patch_ssh_transport: new_conn", "docker.transport.sshconn", "SSHConnectionPool._new_conn", ["self"]),
    ("_patch_ssh_transport: get_conn", "urllib3.connectionpool", "HTTPConnectionPool._get_conn", ["self", "timeout"]),
    ("local_getter", "docker.transport.unixconn", "UnixHTTPAdapter.get_connection", ["self", "url", "proxies"]),
    ("local_getter and archive_stat", "docker.api.client", "APIClient._url", None),
    ("archive_stat", "docker.api.client", "APIClient._raise_for_status", None),
    ("archive_stat", "docker.utils", "decode_json_header", None),
    ("local_getter", "docker.api.client", "APIClient.get_adapter", ["self", "url"]),
]


@pytest.mark.parametrize("repair, module, path, parameters", RELIED_ON, ids=lambda v: v if isinstance(v, str) else "")
def test_docker_py_still_has_what_a_repair_relies_on(repair, module, path, parameters):
    found = importlib.import_module(module)
    for name in path.split("."):
        assert hasattr(found, name), f"{module}.{path} is gone: look at {repair} in cai/docker_py.py"
        found = getattr(found, name)
    if parameters is not None:
        names = list(inspect.signature(found).parameters)
        assert names[:len(parameters)] == parameters, \
            f"{module}.{path}{inspect.signature(found)} changed: look at {repair} in cai/docker_py.py"


def test_the_client_still_takes_the_ssh_adapter_from_its_module_global():
    """load_ssh_transport sets docker.api.client.SSHHTTPAdapter, whose import failed without paramiko:
    the client must still look the adapter up by that name when it makes an ssh:// client."""
    import docker.api.client as api_client

    assert "SSHHTTPAdapter(" in inspect.getsource(api_client), "look at load_ssh_transport in cai/docker_py.py"


def test_the_pinned_range_is_the_one_installed():
    """pyproject.toml names the docker-py releases the repairs were written for."""
    from importlib.metadata import version
    from pathlib import Path

    pinned = Path(__file__).resolve().parents[2].joinpath("pyproject.toml").read_text()
    assert '"docker>=7.2,<7.3"' in pinned
    assert version("docker").startswith("7.2.")
