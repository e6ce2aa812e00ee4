"""`cai image build`'s pure parts: agent lists and their label, CA certificate checks and
choice, the build context, and the builder's output turned into progress and one error."""

from __future__ import annotations

import datetime
import io
import tarfile
from pathlib import Path

import pytest

from cai import agents, config
from cai.commands import _image_build as build
from cai.errors import CaiError
from cai.main import cli
from cai.userfiles import user_config_path


def make_ca(name: str = "Test CA") -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def write_user_config(text: str) -> Path:
    path = user_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- agents ---------------------------------------------------------------------------------------


def test_agent_list_keeps_order_and_drops_repeats():
    chosen = agents.parse_list("codex, claude,codex", config.Layers(None))
    assert [agent.name for agent in chosen] == ["codex", "claude"]
    assert agents.packages(chosen) == f"{agents.KNOWN['codex'].package} {agents.KNOWN['claude'].package}"


def test_unknown_agent_names_the_known_ones(capsys):
    assert cli(["image", "build", "--agents", "claude,bogus"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["[ERROR] Unknown agent: bogus", "[ERROR] Known agents: claude, codex, gemini"]


@pytest.mark.parametrize("text", ["", ",", "claude,", " , claude"])
def test_empty_agent_names_are_refused(text):
    with pytest.raises(CaiError) as caught:
        agents.parse_list(text, config.Layers(None))
    assert caught.value.code == 1 and caught.value.message.startswith("Invalid --agents value")


def test_user_config_agent_is_installable():
    write_user_config('[agent.aider]\npackage = "aider-npm@1.0.0"\n[agent.claude]\npackage = "@anthropic-ai/claude-code@2.0.0"\n')
    chosen = agents.parse_list("aider,claude", config.Layers(None))
    assert agents.packages(chosen) == "aider-npm@1.0.0 @anthropic-ai/claude-code@2.0.0"


@pytest.mark.parametrize("package", ["", "-g", "a b", "x\ny", "tab\tbed", 3])
def test_package_specs_are_one_npm_word(package):
    write_user_config(f"[agent.odd]\npackage = {package!r}\n".replace("'", '"') if isinstance(package, str)
                      else f"[agent.odd]\npackage = {package}\n")
    with pytest.raises(CaiError) as caught:
        agents.defined(config.Layers(None))
    assert caught.value.message.startswith("Invalid [agent.odd] package")


def test_every_known_agent_is_pinned_to_an_exact_version():
    for agent in agents.KNOWN.values():
        assert agents.valid_package(agent.package)
        assert agents.spec_version(agent.package), agent.package


def test_image_label_round_trip():
    chosen = agents.parse_list("claude,codex", config.Layers(None))
    held = agents.in_image({agents.IMAGE_LABEL: agents.label_value(chosen)})
    assert held == [{"name": agent.name, "package": agent.package, "version": agents.spec_version(agent.package)}
                    for agent in chosen]
    assert agents.in_image({agents.IMAGE_LABEL: agents.label_value([])}) == []
    assert agents.in_image({}) is None and agents.in_image(None) is None
    assert agents.in_image({agents.IMAGE_LABEL: "not json"}) is None


@pytest.mark.parametrize(("spec", "version"), [
    ("@openai/codex@0.44.0", "0.44.0"), ("left-pad@1.3.0", "1.3.0"), ("x@1.0.0-beta.2", "1.0.0-beta.2"),
    ("@scope/name", None), ("name@latest", None), ("name@^1.2.0", None), ("", None),
])
def test_spec_version(spec, version):
    assert agents.spec_version(spec) == version


# --- CA certificates ------------------------------------------------------------------------------


def test_a_pem_bundle_gives_one_certificate_each(tmp_path):
    first, second = make_ca("one"), make_ca("two")
    path = tmp_path / "bundle.pem"
    path.write_text(f"subject=one\n{first}\n# two\n{second}")
    certs = build.read_certificates(path)
    assert [cert.pem for cert in certs] == [first, second]
    assert list(build.image_file_names(certs)) == ["bundle.crt", "bundle-2.crt"]


@pytest.mark.parametrize(("content", "why"), [
    ("", "No PEM certificate in it"),
    ("hello\n", "No PEM certificate in it"),
    ("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n", "A PEM block in it is not base64"),
    ("-----BEGIN CERTIFICATE-----\n" * 20000, "A PEM block in it is not base64"),  # linear time, not quadratic
    ("-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n", "OpenSSL cannot read"),
    ("-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n", "It holds a PRIVATE KEY"),
])
def test_a_bad_certificate_file_is_named(tmp_path, content, why):
    path = tmp_path / "bad.pem"
    path.write_text(content)
    with pytest.raises(CaiError) as caught:
        build.read_certificates(path)
    assert caught.value.code == 1
    assert caught.value.message == f"Not a PEM CA certificate: {path}"
    assert caught.value.extra[0].startswith(f"[ERROR] {why}")


def test_a_missing_certificate_file_is_named(tmp_path, capsys):
    assert cli(["image", "build", "--ca-cert", str(tmp_path / "nope.pem")]) == 1
    assert capsys.readouterr().err.splitlines()[:1] == [f"[ERROR] Not a CA certificate file: {tmp_path / 'nope.pem'}"]


def test_config_ca_certs_are_the_users_paths(tmp_path, isolated_home):
    path = write_user_config('[image]\nca_certs = ["~/corp.pem", "rel/ca.pem", "/abs/ca.pem"]\n')
    assert build.configured_ca_files(config.Layers(None).user(), path) == [
        isolated_home / "corp.pem", path.parent / "rel/ca.pem", Path("/abs/ca.pem")]
    assert build.configured_ca_files({}, path) == []
    for bad in ('"one.pem"', "[1]", '[""]'):
        with pytest.raises(CaiError, match=r"Invalid \[image\] ca_certs"):
            build.configured_ca_files({"image": {"ca_certs": eval(bad)}}, path)


def test_host_certificates_are_those_debian_lacks(tmp_path):
    extra, distro = tmp_path / "local", tmp_path / "share" / "mozilla"
    extra.mkdir()
    distro.mkdir(parents=True)
    proxy, public = make_ca("proxy"), make_ca("public")
    (extra / "proxy.crt").write_text(proxy)
    (extra / "copy-of-public.crt").write_text(public)
    (extra / "broken.crt").write_text("junk")
    (extra / "notes.txt").write_text(make_ca("ignored: not .crt"))
    (distro / "Public_Root.crt").write_text(public)
    found = build.host_extra_certificates(extra, tmp_path / "share")
    assert [cert.source.name for cert in found] == ["proxy.crt"]
    assert build.host_extra_certificates(tmp_path / "none", distro) == []


def test_same_certificate_twice_is_added_once(tmp_path):
    ca = make_ca()
    (tmp_path / "a.pem").write_text(ca)
    (tmp_path / "b.crt").write_text(ca)
    certs = build.read_certificates(tmp_path / "a.pem") + build.read_certificates(tmp_path / "b.crt")
    assert list(build.image_file_names(certs)) == ["a.crt"]


# --- the build context ----------------------------------------------------------------------------


def test_context_is_the_same_bytes_for_the_same_inputs(tmp_path):
    (tmp_path / "ca.pem").write_text(make_ca())
    names = build.image_file_names(build.read_certificates(tmp_path / "ca.pem"))
    first = build.context_tar(names)
    assert build.context_tar(names) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        members = {member.name: member for member in archive.getmembers()}
    assert {"Dockerfile", "containai-init", "cai-session", "sshd_config", "ca-certificates", "ca-certificates/ca.crt"} <= set(members)
    assert {(m.mtime, m.uid, m.gid) for m in members.values()} == {(0, 0, 0)}
    assert {m.mode for m in members.values() if m.isfile()} == {0o644}
    with tarfile.open(fileobj=io.BytesIO(build.context_tar({}))) as archive:
        assert [m.name for m in archive.getmembers() if m.name.startswith("ca-")] == ["ca-certificates"]


def test_agent_packages_are_declared_just_before_their_layer():
    """A change of the agent list must leave the tools, user and certificate layers cached: the
    builder keys every RUN after an ARG's declaration on its value."""
    lines = [line for line in (build.DEFINITION_DIR / "Dockerfile").read_text().splitlines() if line and not line.startswith((" ", "#"))]
    arg = lines.index("ARG AGENT_PACKAGES=")
    assert lines[arg + 1].startswith("RUN ") and "npm install --global" in (build.DEFINITION_DIR / "Dockerfile").read_text()
    assert [line.split()[0] for line in lines[:arg]].count("RUN") == 3  # tools, user, certificates
    assert all(line.startswith(("COPY", "RUN chmod", "WORKDIR", "EXPOSE", "CMD")) for line in lines[arg + 2:])


# --- the builder's output -------------------------------------------------------------------------

STREAM = """Step 1/4 : ARG BASE=debian:bookworm-slim
Step 2/4 : FROM cai-base:x
 ---> 8bfeb5689bc1
Step 3/4 : RUN set -e; apt-get update; apt-get install -y git
 ---> Using cache
 ---> 1234
Step 4/4 : RUN set -ef; npm install --global --cache "$cache" @openai/codex@0.44.0
 ---> Running in abcdef
npm ERR! code SELF_SIGNED_CERT_IN_CHAIN
npm ERR! errno SELF_SIGNED_CERT_IN_CHAIN
npm ERR! request to https://example.test/x failed, reason: self-signed certificate in certificate chain
"""


def feed(progress, text):
    for line in text.splitlines():
        progress.feed(line)


def test_progress_follows_the_steps_and_their_last_line():
    progress = build.Progress()
    assert progress.status(80) == ""
    feed(progress, STREAM.split("Step 4/4")[0])
    assert (progress.step, progress.total) == (3, 4)
    assert progress.status(200) == "Step 3 of 4: RUN apt-get update; apt-get install -y …"
    progress.feed("Get:1 http://mirror.test bookworm InRelease [151 kB]\r\x1b[2KGet:2 done")
    assert progress.status(200).endswith("  Get:2 done")
    assert len(progress.status(30)) == 29 and progress.status(30).endswith("…")


def test_a_failed_step_is_named_with_its_last_lines_and_a_hint():
    progress = build.Progress()
    feed(progress, STREAM)
    error = progress.failure("The command '/bin/sh -c set -ef; npm install …' returned a non-zero code: 1")
    assert error.code == 1
    assert error.message == 'Image build failed at step 4/4 (RUN npm install --global --cache "$cache" @openai/codex@0.44.0)'
    assert error.extra[:1] == ("  npm ERR! code SELF_SIGNED_CERT_IN_CHAIN",)
    assert "  exit code 1" in error.extra
    assert error.extra[-1].startswith("[HINT] A TLS certificate was not trusted")


@pytest.mark.parametrize(("output", "detail", "hint"), [
    ("", "pull access denied for nosuch, repository does not exist", "[HINT] The base image is missing"),
    ("npm ERR! code ETARGET", "returned a non-zero code: 1", "[HINT] An agent's npm package or version does not exist"),
    ("npm ERR! code EAI_AGAIN", "returned a non-zero code: 1", "[HINT] The build could not reach the network"),
    ("E: Unable to locate package foo", "returned a non-zero code: 100", None),
])
def test_failures_are_classified(output, detail, hint):
    progress = build.Progress()
    progress.feed("Step 2/9 : FROM nosuch")
    progress.feed(output)
    error = progress.failure(detail)
    assert error.message == "Image build failed at step 2/9 (FROM nosuch)"
    hints = [line for line in error.extra if line.startswith("[HINT]")]
    assert (hints[0].startswith(hint) if hint else hints == [])


def test_a_failure_before_any_step_says_what_the_engine_said():
    error = build.Progress().failure("Cannot locate specified Dockerfile: Dockerfile")
    assert (error.message, error.extra) == ("Image build failed", ("  Cannot locate specified Dockerfile: Dockerfile",))


# --- cai doctor ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("held", "line"), [
    ([{"name": "claude", "package": "@anthropic-ai/claude-code@2.1.332", "version": "2.1.332"},
      {"name": "mine", "package": "mine@latest", "version": None}, {"name": "fake", "package": None, "version": None}],
     "  Agents:     claude 2.1.332, mine mine@latest, fake"),
    ([], "  Agents:     none (cai image build --agents claude)"),
    (None, "  Agents:     unknown (built before cai recorded them; cai image build --agents claude)"),
])
def test_doctor_lists_the_image_agents(capsys, held, line):
    from cai.commands import doctor

    report = {"engine": {"context": "default", "endpoint": "unix:///x", "reachable": True, "version": "1", "api_version": "1.41"},
              "tools": {"docker": "/usr/bin/docker"}, "image": {"name": "containai:latest", "present": True}, "agents": held}
    doctor._print_text(report)
    assert capsys.readouterr().out.splitlines()[-2:] == ["  containai:latest: present", line]


def test_build_lines_lose_c1_controls_too():
    assert build.clean("npm \x9d8;;http://evil\x9c notice \x9b31m red") == "npm 8;;http://evil notice 31m red"
