"""The committed completion scripts, sourced into real bash and zsh (which start with no rc files,
and with a PATH that has no cai and no Python)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import Tmux

REPO = Path(__file__).resolve().parents[2]
BASH_SCRIPT = REPO / "completions" / "cai.bash"
ZSH_SCRIPT = REPO / "completions" / "_cai"
SYSTEM_PATH = "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"

COMPLETE = f"""
source {BASH_SCRIPT}
comp() {{
  COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}
  COMPREPLY=(); _shtab_cai; printf '%s\\n' "${{COMPREPLY[@]}}"
}}
"""


def answers_within_budget(home: Path, context: str, budget_s: float = 30.0) -> None:
    """Until the docker CLI that completion runs lists `context` within completion's 0.5 s, three
    times in a row. Right after a spare engine starts, on a loaded machine, it may not for a
    while; completion then rightly offers nothing, which is not what these tests are about."""
    env = {"HOME": str(home), "PATH": SYSTEM_PATH, "DOCKER_CONFIG": str(home / ".docker")}
    argv = ["timeout", "0.5", "docker", "--context", context, "ps", "-a", "--format", "{{.Names}}"]
    deadline, quick, tries = time.monotonic() + budget_s, 0, []
    while quick < 3:
        started = time.monotonic()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        tries.append((round(time.monotonic() - started, 2), done.returncode, done.stderr.strip()[-200:]))
        quick = quick + 1 if done.returncode == 0 else 0
        assert time.monotonic() < deadline, f"docker --context {context} never answered in 0.5 s: {tries[-5:]}"


def bash_complete(home: Path, *words: str, env: dict | None = None, path: str = SYSTEM_PATH) -> list[str]:
    """COMPREPLY for `words` (the last one is being completed), from a clean bash."""
    child_env = {"HOME": str(home), "PATH": path, "DOCKER_CONFIG": str(home / ".docker"), **(env or {})}
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", COMPLETE + f"comp {quoted}"],
                          capture_output=True, text=True, env=child_env, timeout=30, cwd=home)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.fixture()
def shell_home(isolated_home):
    return isolated_home


def test_subcommands_and_flags(shell_home):
    assert bash_complete(shell_home, "cai", "st") == ["stop", "status"]
    assert bash_complete(shell_home, "cai", "gc", "--") == [
        "--help", "--dry-run", "--force", "--age", "--images", "--json", "--all-contexts", "--verbose", "--quiet",
        "--debug", "--context"]
    assert bash_complete(shell_home, "cai", "status", "--") == [
        "--help", "--container", "--workspace", "--json", "--all-contexts", "--verbose", "--quiet", "--debug", "--context"]
    assert bash_complete(shell_home, "cai", "completion", "") == ["bash", "zsh"]
    assert bash_complete(shell_home, "cai", "ssh", "") == ["cleanup"]
    assert "--name" not in bash_complete(shell_home, "cai", "stop", "--")


def test_paths_complete_as_paths(shell_home):
    (shell_home / "proj-a").mkdir()
    (shell_home / "proj-b.tgz").write_text("")
    assert bash_complete(shell_home, "cai", "status", "--workspace", "proj") == ["proj-a"]
    assert sorted(bash_complete(shell_home, "cai", "import", "--from", "proj")) == ["proj-a", "proj-b.tgz"]
    assert sorted(bash_complete(shell_home, "cai", "export", "-o", "proj")) == ["proj-a", "proj-b.tgz"]


def test_a_tab_on_commands_and_flags_runs_no_program(shell_home, tmp_path):
    """Every program a TAB could start is a shim that leaves a mark; commands and flags leave none."""
    shims, marks = tmp_path / "shims", tmp_path / "marks"
    shims.mkdir()
    marks.mkdir()
    for program in ("python", "python3", "cai", "docker", "date", "mkdir", "mv"):
        shim = shims / program
        shim.write_text(f"#!/bin/sh\ntouch {marks}/{program}\n")
        shim.chmod(0o755)
    path = f"{shims}:{SYSTEM_PATH}"
    assert bash_complete(shell_home, "cai", "", path=path)[:3] == ["run", "exec", "shell"]
    assert bash_complete(shell_home, "cai", "export", "--c", path=path) == ["--container", "--config", "--context"]
    assert sorted(os.listdir(marks)) == []
    bash_complete(shell_home, "cai", "stop", "--container", "", path=path)
    assert "docker" in os.listdir(marks) and "python3" not in os.listdir(marks)


def processes_started(home: Path, *words: str, calls: int) -> int:
    """clone/fork calls by a bash that sources the script and completes `words` `calls` times."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    trace = home / f"trace-{calls}"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork", "-o", str(trace),
                    "bash", "--norc", "--noprofile", "-c", COMPLETE + f"for i in $(seq {calls}); do :; done\n"
                    + f"for ((i = 0; i < {calls}; i++)); do comp {quoted} >/dev/null; done"],
                   env={"HOME": str(home), "PATH": SYSTEM_PATH}, check=True, capture_output=True, timeout=60)
    return len(trace.read_text().splitlines())


@pytest.mark.parametrize("words", [("cai", "st"), ("cai", ""), ("cai", "gc", "--"), ("cai", "--context", "x", "export", "--c"),
                                   ("cai", "completion", "")])
def test_a_tab_on_commands_and_flags_starts_no_process(shell_home, words):
    assert processes_started(shell_home, *words, calls=10) == processes_started(shell_home, *words, calls=0)


def test_container_names_come_from_the_resolved_context(shell_home, spare_engine):
    engine = spare_engine(3)
    engine.reset()
    context = engine.add_context(shell_home)
    engine.make("exited", name="comp-alpha")
    engine.make("created", name="comp-beta")
    engine.make("created", name="comp-foreign", managed=None)
    answers_within_budget(shell_home, context)

    on_line = bash_complete(shell_home, "cai", "--context", context, "stop", "--container", "comp-")
    assert sorted(on_line) == ["comp-alpha", "comp-beta"]
    by_env = bash_complete(shell_home, "cai", "status", "--container", "comp-",
                           env={"CONTAINAI_SECURE_ENGINE_CONTEXT": context, "XDG_CACHE_HOME": str(shell_home / "c1")})
    assert sorted(by_env) == ["comp-alpha", "comp-beta"]
    config = shell_home / ".config" / "containai" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[other]\ncontext_name = "nope"\n\n[secure_engine]\n  context_name = "{context}"  # ours\n')
    by_config = bash_complete(shell_home, "cai", "export", "--container", "comp-a",
                              env={"XDG_CACHE_HOME": str(shell_home / "c2")})
    assert by_config == ["comp-alpha"]
    # a configured context that does not exist falls back, as cai does: default has no comp-*
    config.write_text('[secure_engine]\ncontext_name = "no-such-context"\n')
    assert bash_complete(shell_home, "cai", "stop", "--container", "comp-", env={"XDG_CACHE_HOME": str(shell_home / "c3")}) == []


def test_names_are_cached_for_a_few_seconds(shell_home, spare_engine):
    engine = spare_engine(3)
    engine.reset()
    context = engine.add_context(shell_home)
    engine.make("created", name="cache-one")
    gone = engine.make("created", name="cache-two")
    answers_within_budget(shell_home, context)
    words = ("cai", "--context", context, "stop", "--container", "cache-")
    assert sorted(bash_complete(shell_home, *words)) == ["cache-one", "cache-two"]
    gone.remove()
    assert sorted(bash_complete(shell_home, *words)) == ["cache-one", "cache-two"]  # from the cache
    cache = shell_home / ".cache" / "containai" / f"complete-containers-{context}"
    stamp, *names = cache.read_text().splitlines()
    cache.write_text("\n".join([str(int(stamp) - 10), *names]) + "\n")
    assert bash_complete(shell_home, *words) == ["cache-one"]


@pytest.fixture()
def silent_engine(tmp_path):
    """A unix socket that accepts connections and never answers."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"unix://{path}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_silent_engine_costs_at_most_half_a_second(shell_home, silent_engine):
    env = {**os.environ, "HOME": str(shell_home), "DOCKER_CONFIG": str(shell_home / ".docker")}
    subprocess.run(["docker", "context", "create", "silent", "--docker", f"host={silent_engine}"],
                   check=True, capture_output=True, env=env, timeout=30)
    started = time.monotonic()
    assert bash_complete(shell_home, "cai", "--context", "silent", "stop", "--container", "") == []
    assert time.monotonic() - started < 1.5
    assert not (shell_home / ".cache" / "containai" / "complete-containers-silent").exists()


def test_hostile_context_words_reach_no_path(shell_home):
    assert bash_complete(shell_home, "cai", "--context", "../../etc", "stop", "--container", "") == []
    assert not (shell_home / ".cache").exists()


# --- zsh -----------------------------------------------------------------------------------------


def test_zsh_script_parses():
    done = subprocess.run(["zsh", "-n", str(ZSH_SCRIPT)], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (0, "")


def test_zsh_completes_for_real(shell_home, tmp_path, spare_engine):
    engine = spare_engine(3)
    engine.reset()
    context = engine.add_context(shell_home)
    engine.make("created", name="zsh-one")
    engine.make("created", name="zsh-two")
    answers_within_budget(shell_home, context)
    functions = tmp_path / "zfunc"
    functions.mkdir()
    (functions / "_cai").write_text(ZSH_SCRIPT.read_text())
    session = Tmux(shell_home, width=200, height=40)
    try:
        session.type(f"exec env -i HOME={shell_home} TERM=xterm PATH={SYSTEM_PATH} zsh -f")
        session.type(f"fpath=({functions} $fpath); autoload -U compinit; compinit -u; PS1='zsh%% '")
        session.wait_for_text(r"^zsh% $")
        session._tmux("send-keys", "-t", "t", "-l", "cai st")
        session.key("Tab")
        session.wait_for_text(r"^status\s+--")
        assert re.search(r"^stop\s+--", session.screen(), re.MULTILINE)
        session.key("C-u")
        session.type("clear")
        session._tmux("send-keys", "-t", "t", "-l", "cai gc --")
        session.key("Tab")
        session.wait_for_text(r"--dry-run")
        screen = session.screen()
        for flag in ("--force", "--age", "--images", "--json", "--context"):
            assert flag in screen
        session.key("C-u")
        session.type("clear")
        session._tmux("send-keys", "-t", "t", "-l", f"cai --context {context} stop --container zsh-")
        session.key("Tab")
        session.wait_for_text(r"zsh-one\s+zsh-two")
    finally:
        session.close()


# --- the README's one-line installs, in fresh interactive shells ----------------------------------


def readme_install_line(shell: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("### Shell completion", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    (line,) = [raw.rsplit("#", 1)[0].strip() for raw in section.splitlines() if raw.rstrip().endswith(f"# {shell}")]
    return line


@pytest.fixture()
def cai_on_path(tmp_path):
    """A `cai` for the new shells to find: this checkout's, through the test interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "cai"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m cai \"$@\"\n")
    shim.chmod(0o755)
    return f"{bin_dir}:{SYSTEM_PATH}"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_readme_install_line_works_in_a_new_shell(shell, shell_home, cai_on_path):
    env = {"HOME": str(shell_home), "PATH": cai_on_path, "PYTHONPATH": str(REPO), "TERM": "xterm"}
    installed = subprocess.run([shell, "-c", readme_install_line(shell)], env=env, capture_output=True, text=True,
                               timeout=60, cwd=shell_home)
    assert (installed.returncode, installed.stderr) == (0, "")
    session = Tmux(shell_home, width=200, height=40)
    try:
        session.type(f"exec env -i HOME={shell_home} PATH={cai_on_path} PYTHONPATH={REPO} TERM=xterm PS1='new%% ' {shell} -i")
        session.wait_for_text(r"(new%|[#$%]) $")  # the system rc files may set their own prompt
        session._tmux("send-keys", "-t", "t", "-l", "cai sta")
        session.key("Tab")
        session.wait_for_text(r" cai status $")
    finally:
        session.close()
