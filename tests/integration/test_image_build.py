"""`cai image build` against the real engine: the tools an agent works with, a CA certificate that
curl and node trust (a TLS server of the test's own, in a network namespace of its own), a real
agent from the npm registry, one classified error for a failed step, and cached rebuilds.

The agent image is built once per run (`agent_build`): its npm install takes a minute or more, so
the suite's own image (scripts/setup.sh) holds no agent. When the npm registry cannot be reached,
that build fails and so do its tests: they are never skipped."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import AGENT_IMAGE, RUN_ID, agent_workspace, run_cai, wait_for

from cai import agents

AGENT = "claude"  # the default agent, as README's quick start installs it
TOOLS = {
    "git": "git --version", "curl": "curl --version", "rsync": "rsync --version", "node": "node --version",
    "npm": "npm --version", "python3 venv": "python3 -m venv /tmp/v && /tmp/v/bin/python -m pip --version",
    "jq": "jq --version", "less": "less --version", "editor": "vi --version", "ssh": "ssh -V", "ps": "ps -p 1",
}


def tag(what: str) -> str:
    """Images this module builds: beside the suite's own (CAI_TEST_IMAGE's repository), per run."""
    repository, _, name = AGENT_IMAGE.rpartition(":")
    return f"{repository}:{name}-{what}-{RUN_ID}"


@pytest.fixture(scope="module")
def base(docker_client, agent_image):
    return docker_client.images.get(agent_image).labels["containai.base"]


@pytest.fixture(scope="module")
def built(docker_client, base, tmp_path_factory):
    """`built(what, *flags)`: `cai image build` of tag(what), timed; every image is removed at the end."""
    home = tmp_path_factory.mktemp("image-home")
    made: list[str] = []

    def build(what: str, *flags: str, env: dict | None = None):
        image = tag(what)
        started = time.monotonic()
        done = run_cai(home, "image", "build", "--base", base, "--tag", image, *flags, timeout=1800, env=env)
        if image not in made:
            made.append(image)
        return done, time.monotonic() - started

    build.home = home
    yield build
    for image in reversed(made):
        try:
            docker_client.images.remove(image)
        except Exception:  # noqa: BLE001 - the build failed or a test removed it
            pass


@pytest.fixture(scope="module")
def agent_build(built):
    done, seconds = built("agents", "--agents", AGENT)
    assert done.returncode == 0, f"cai image build --agents {AGENT} failed (the npm registry must answer):\n{done.stderr}"
    return tag("agents"), seconds


def sh(container, command: str, user: str = "agent") -> tuple[int, str]:
    code, out = container.exec_run(["bash", "-c", command], user=user)
    return code, out.decode(errors="replace")


def test_the_tools_run_as_the_agent(make_container):
    c = make_container()
    # No build caches left in any layer (looked at first: the venv below goes to /tmp).
    code, out = sh(c, "find /var/lib/apt/lists /var/cache/apt /root/.npm /root/.cache /tmp -type f ! -name lock 2>/dev/null",
                   user="root")
    assert out == "", out
    for tool, command in TOOLS.items():
        code, out = sh(c, command)
        assert code == 0, f"{tool}: {command}: {out}"
    code, out = sh(c, "command -v sudo; id -u")
    assert (code, out) == (0, "1000\n")


def test_image_records_its_agents_and_doctor_lists_them(docker_client, agent_image, agent_build, cai):
    image, _ = agent_build
    assert json.loads(docker_client.images.get(image).labels[agents.IMAGE_LABEL]) == {AGENT: agents.KNOWN[AGENT].package}
    assert json.loads(docker_client.images.get(agent_image).labels[agents.IMAGE_LABEL]) == {}
    # doctor reads the default image's label, whichever agents it holds.
    document = json.loads(cai("doctor", "--json").out)
    default_labels = docker_client.images.get("containai:latest").labels
    assert document["agents"] == agents.in_image(default_labels)


def test_a_real_agent_runs(make_container, agent_build):
    image, _ = agent_build
    c = make_container(image=image)
    version = agents.spec_version(agents.KNOWN[AGENT].package)
    code, out = sh(c, f"{AGENT} --version")
    assert code == 0 and version in out, out
    code, out = sh(c, "find /root/.npm /tmp -mindepth 1 2>/dev/null; ls /usr/local/lib/node_modules", user="root")
    assert out.split() == ["@anthropic-ai"], out


def test_a_changed_agent_list_rebuilds_only_the_agent_layer(docker_client, agent_image, agent_build):
    """The suite's image (no agents) and the agent image share every layer up to the agents'."""
    image, _ = agent_build
    mine, theirs = docker_client.api.history(image), docker_client.api.history(agent_image)
    # history is newest first; the layers below the npm install are the oldest ones
    mine, theirs = list(reversed(mine)), list(reversed(theirs))
    at = next(i for i, layer in enumerate(mine) if "npm install --global" in layer["CreatedBy"])
    assert [layer["Id"] for layer in mine[:at]] == [layer["Id"] for layer in theirs[:at]]


def test_an_unchanged_build_takes_under_5_s(built, agent_build):
    image, first = agent_build
    done, seconds = built("agents", "--agents", AGENT)
    assert done.returncode == 0, done.stderr
    assert seconds < 5, f"an unchanged rebuild of {image} took {seconds:.1f} s (the first took {first:.0f} s)"


def test_unknown_agent_is_rc_1_naming_the_known(built):
    done, _ = built("bogus", "--agents", "bogus")
    assert done.returncode == 1
    assert done.stderr.splitlines()[:2] == ["[ERROR] Unknown agent: bogus", "[ERROR] Known agents: claude, codex, gemini"]


def test_a_failed_step_is_named(built):
    config = built.home / ".config" / "containai" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[agent.nosuch]\npackage = "@containai-test/no-such-package@0.0.1"\n')
    try:
        done, _ = built("nosuch", "--agents", "nosuch")
    finally:
        config.unlink()
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    first = next(line for line in lines if line.startswith("[ERROR]"))
    assert first.startswith("[ERROR] Image build failed at step ") and "(RUN if [ -n \"$AGENT_PACKAGES\" ]" in first, done.stderr
    assert "  exit code 1" in lines
    assert lines[-1].startswith("[HINT] An agent's npm package or version does not exist"), done.stderr


def test_a_bad_certificate_file_is_rc_1(built, tmp_path):
    bad = tmp_path / "key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n")
    done, _ = built("badca", "--ca-cert", str(bad))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"[ERROR] Not a PEM CA certificate: {bad}",
                                        "[ERROR] It holds a PRIVATE KEY, not only certificates"]


# --- a TLS server signed by the test's own CA -------------------------------------------------------


def make_tls_material(directory: Path, address: str) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"cai test CA {RUN_ID}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


SERVER = """
import http.server, ssl, sys
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello over tls\\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
httpd = http.server.ThreadingHTTPServer((sys.argv[1], 443), Hello)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
httpd.serve_forever()
"""


def _ip(*argv: str) -> None:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"ip {' '.join(argv)}: {done.stderr}"


def _remove_stale_namespaces() -> None:
    """A namespace of an earlier run that died: no process left in it."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout.split("\n")
    for name in (line.split()[0] for line in listed if line.startswith("cai-tls-")):
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30).stdout.split()
        if not pids:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An HTTPS server at a TEST-NET-3 address (203.0.113.0/24) in a network namespace of its own,
    behind a veth from this host, which containers reach through the host's forwarding. Its
    certificate is signed by a CA made here; returns (URL, the CA's PEM file)."""
    _remove_stale_namespaces()
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, timeout=30).stdout
    slot = next(n for n in (secrets.randbelow(63) for _ in range(200)) if f"203.0.113.{4 * n + 1}/" not in used)
    near, far = f"203.0.113.{4 * slot + 1}", f"203.0.113.{4 * slot + 2}"
    namespace, veth = f"cai-tls-{RUN_ID}", f"caitls{RUN_ID[:6]}"
    directory = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_tls_material(directory, far)
    server = None
    try:
        _ip("netns", "add", namespace)
        _ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}n")
        _ip("link", "set", f"{veth}n", "netns", namespace)
        _ip("addr", "add", f"{near}/30", "dev", veth)
        _ip("link", "set", veth, "up")
        for argv in (["addr", "add", f"{far}/30", "dev", f"{veth}n"], ["link", "set", f"{veth}n", "up"],
                     ["link", "set", "lo", "up"], ["route", "add", "default", "via", near]):
            _ip("netns", "exec", namespace, "ip", *argv)
        server = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-c", SERVER, far, str(cert), str(key)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def answers() -> bool:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                socket.create_connection((far, 443), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(answers, timeout=15)
        yield f"https://{far}/", ca
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
        if os.path.exists(f"/sys/class/net/{veth}"):
            subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)


def test_a_ca_cert_is_trusted_by_curl_and_node_only_when_given(built, make_container, tls_server, tmp_path_factory, docker_client):
    url, ca = tls_server
    done, _ = built("ca", "--ca-cert", str(ca))
    assert done.returncode == 0, done.stderr
    node = f"require('https').get('{url}', r => r.pipe(process.stdout)).on('error', e => {{ console.error(e.code); process.exit(3) }})"
    git = f"GIT_TERMINAL_PROMPT=0 git ls-remote {url} 2>&1"
    with_ca = make_container(image=tag("ca"))
    assert sh(with_ca, f"curl -sS {url}") == (0, "hello over tls\n")
    assert sh(with_ca, f"node -e \"{node}\"") == (0, "hello over tls\n")
    assert "certificate" not in sh(with_ca, git)[1]  # past TLS: the server is no git server
    without = make_container()  # the suite's image: the host's certificates, not this CA
    code, out = sh(without, f"curl -sS {url}")
    assert code == 60 and "certificate" in out, out
    code, out = sh(without, f"node -e \"{node}\"")
    assert code == 3 and out.strip() in ("UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"), out
    assert "certificate" in sh(without, git)[1]

    # Over SSH, as an agent's own commands run: sshd hands the image's trust variables on.
    home = tmp_path_factory.mktemp("ca-home")
    workspace = agent_workspace(tmp_path_factory, "ca-ws")
    started = run_cai(home, "run", "--no-agent", "--image", tag("ca"), str(workspace))
    try:
        assert started.returncode == 0, started.stderr
        done = run_cai(home, "exec", "-w", str(workspace), "--", "node", "-e", node)
        assert (done.returncode, done.stdout) == (0, "hello over tls\n"), done.stderr
        done = run_cai(home, "exec", "-w", str(workspace), "--", "printenv", "PIP_CERT", "REQUESTS_CA_BUNDLE")
        assert done.stdout == "/etc/ssl/certs/ca-certificates.crt\n" * 2, done.stderr
    finally:
        if started.stdout.strip():
            docker_client.api.remove_container(started.stdout.strip(), force=True)


def test_the_quick_start_ends_in_the_agents_own_screen(agent_build, tmp_path_factory, docker_client):
    """README's quick start, `cai image build --agents claude && cd project && cai run`, on a
    terminal: cai attaches to the agent's session, and what shows is Claude Code's own screen.
    Its API's name points at the container's loopback (the tests reach no other host), so after
    its welcome it may end, saying it cannot connect: that is still its own screen."""
    from conftest import CAI, Tmux

    image, _ = agent_build
    home = tmp_path_factory.mktemp("quick-home")
    workspace = agent_workspace(tmp_path_factory, "quick-ws")
    # The API's name answers on the container's own loopback, from /etc/hosts: no query leaves it.
    made = run_cai(home, "run", "--no-agent", "--image", image, "-e", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
                   "-e", "DISABLE_AUTOUPDATER=1", str(workspace))
    assert made.returncode == 0, made.stderr
    hosts = run_cai(home, "exec", "-u", "root", "-w", str(workspace), "--", "sh", "-c",
                    "echo '127.0.0.1 api.anthropic.com statsig.anthropic.com' >> /etc/hosts")
    assert hosts.returncode == 0, hosts.stderr
    screen = Tmux(home, 120, 40)
    try:
        screen.type(f"cd {workspace} && {CAI} run; echo run-rc=$?")
        screen.wait_for_text(r"Welcome to Claude Code", timeout=120)
        if "run-rc=" not in screen.screen():  # still attached: detach, and the agent runs on
            screen.key("C-b")
            screen.key("d")
        screen.wait_for_text(r"^run-rc=0$")
        listed = run_cai(home, "session", "ls", "-a", "--json", "-w", str(workspace))
        [session] = json.loads(listed.stdout)["sessions"]
        assert (session["name"], session["command"]) == (AGENT, [AGENT, "--dangerously-skip-permissions"]), listed.stdout
        log = run_cai(home, "session", "logs", AGENT, "-w", str(workspace)).stdout
        assert "Welcome" in log and "Claude" in log, log[-2000:]
    finally:
        screen.close()
        for container in docker_client.containers.list(all=True, filters={"label": f"containai.workspace={workspace}"}):
            container.remove(force=True)
