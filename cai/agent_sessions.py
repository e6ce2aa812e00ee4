"""Agent sessions that outlive the client (`cai session`, `cai attach`, `cai run -d`).

A session is a tmux session on the agent's private server (socket under /run/user/1000, config
/dev/null) whose first process is the image's wrapper (cai/image/cai-session): it runs the
command as the terminal's foreground job and records its end. Every step runs as the agent over
cai's ssh path (so it works wherever `cai exec` does, remote contexts included), through one
script, CONTROL_SCRIPT, with arguments as argv words and the command's script on stdin.

What a session leaves lives in the container's own writable layer, in SESSIONS_DIR (0700, the
agent's, outside every volume), so a restart keeps it and no other container can read or change
it: containers share the default data volume, and before, a neighbour there could point the
records at the user's checkout, forge an exit code or read every log. NAME.log (with --log) and
NAME.screen (the final screen), and in `.records/` small files only, which a stopped container's
listing reads through the engine: NAME.json (what was started; its mtime is the start, on the
container's clock), NAME.exit ("CODE EPOCH") once it ended, NAME.lost (when cai first saw it gone
without an end: a container stop kills tmux). A running tmux session wins over every record.

The agent itself runs untrusted code and can write that directory too. So every verb works only
inside it once it is verified (no link on its path, `pwd -P` exactly it, the agent's, on the root
filesystem), removes only regular files, what is read back is parsed as untrusted text, and the
control script's answer is read with a bound (CONTROL_OUTPUT_LIMIT). No root action touches any
of it.

Containers made before this layout kept their records in the data volume
(/mnt/agent-data/sessions/ID): cai no longer reads or writes there (see docs/cli-reference.md).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shlex
from dataclasses import dataclass, field
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Sequence

from cai import output
from cai.errors import CaiError, ExitCode

WRAPPER = "/usr/local/lib/containai/cai-session"
SESSIONS_DIR = "/home/agent/.cai-sessions"  # in the container's own layer: no volume is mounted there
LEGACY_RECORDS_ROOT = "/mnt/agent-data/sessions"  # before: shared by every container on the volume
RUNTIME_DIR = "/run/user/1000"
PRIVATE_DIR = f"{RUNTIME_DIR}/cai-sessions"  # the scripts the wrappers run
SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")  # no '.' or ':': tmux reads them in targets
START_GRACE_S = 30  # a record this young without its tmux session is still being started
CONTROL_OUTPUT_LIMIT = 8 << 20  # bytes of the control script's stdout (and of its stderr) cai reads
_RECORD_LIMIT = 1 << 16
_ARCHIVE_MEMBERS = 20000
_ARCHIVE_BYTES = 8 << 20  # records kept from a stopped container's archive
_ARCHIVE_STREAMED = 64 << 20  # bytes of that archive cai reads through before it gives up

# The control script's own exit codes (the commands it runs use 0-2).
RC_NO_TMUX, RC_TAKEN, RC_NO_SESSION, RC_NOT_RUNNING, RC_NEEDS_LOG, RC_NO_WORKDIR, RC_UNSAFE_DIR = 20, 21, 22, 23, 24, 25, 26
RC_NO_START = 27
LOGIN_PASS = "--cai-login"  # NAME.cmd's argument once it runs as a login shell

CONTROL_SCRIPT = r"""
set -u
verb=$1 base=$2 name=${3-}
shift 3
export TMUX_TMPDIR=/run/user/1000
unset TMUX
t() { tmux -L cai -f /dev/null "$@"; }
pane="=$name:0.0"
private=$TMUX_TMPDIR/cai-sessions
if ! command -v tmux >/dev/null 2>&1 || [ ! -x /usr/local/lib/containai/cai-session ] || [ ! -d "$TMUX_TMPDIR" ]; then
    exit 20
fi
# Verbs work only inside the verified directory: no link anywhere on its path, `pwd -P` exactly
# it, the agent's own, and on the container's root filesystem (in no volume). Then it is made
# 0700 (chmod from inside: never through a link).
inside() {
    local path= part
    for part in $(printf '%s\n' "${1#/}" | tr / ' '); do
        path=$path/$part
        [ -L "$path" ] && return 1
    done
    cd -P -- "$1" 2>/dev/null && [ "$(pwd -P)" = "$1" ] && [ -O . ] && [ "$(stat -c %d .)" = "$(stat -c %d /)" ] &&
        chmod 700 .
}
unsafe() { echo "$1 is not this container's own session directory (a link on its path, another owner, or in a volume)" >&2; exit 26; }
mkdir -m 700 -- "$base" 2>/dev/null  # made here, or there already (never through a link)
inside "$base" || unsafe "$base"
mkdir -m 700 -- .records 2>/dev/null
inside "$base/.records" || unsafe "$base/.records"
# Only regular files are read or removed, reads are bounded in size and time (a FIFO cannot hang
# them), and every file is written anew (noclobber: never through what is there).
rd() { [ -f "$1" ] && [ ! -L "$1" ] && timeout 5 head -c "$2" -- "$1"; }
rmreg() { local f; for f; do if [ -f "$f" ] && [ ! -L "$f" ]; then rm -f -- "$f" || return 1; fi; done; }
put() { rmreg "$1.new" && (set -C; printf '%s\n' "$2" >"$1.new") && mv -fT -- "$1.new" "$1"; }
running() { t has-session -t "=$name" 2>/dev/null; }
known() { [ -f "$name.json" ] || running || exit 22; }
case $verb in
new)  # LOG WORKDIR; stdin: the record (one line), then the command's script
    if [ -n "$2" ] && ! (cd /home/agent/workspace && cd -- "$2") 2>/dev/null; then exit 25; fi
    running && exit 21
    IFS= read -r meta || exit 1
    (set -C; printf '%s\n' "$meta" >"$name.json") 2>/dev/null || exit 21
    rmreg "$name.exit" "$name.lost" "$base/$name.screen" "$base/$name.log" "$private/$name.cmd" "$private/$name.pid" \
        "$private/$name.nostart" "$private/$name.started" || exit 1
    if ! { mkdir -p -m 700 -- "$private" && (set -C; cat >"$private/$name.cmd"); } ||
        ! t set-option -g history-limit 50000 \; new-session -d -s "$name" -x 200 -y 50 -c "$base" \
            /usr/local/lib/containai/cai-session "$base" "$name"; then
        rm -f -- "$name.json" "$private/$name.cmd"
        exit 1
    fi
    if [ "$1" = 1 ]; then
        t pipe-pane -o -t "$pane" "set -C; exec cat >'$base/$name.log'"
    fi
    t wait-for -S "cai-go-$name"
    # Started once the pid recorded after the login pass runs something else than NAME.cmd
    # (exec replaced it). NAME.cmd writes NAME.nostart before it ends when the command cannot
    # start, so once the session has ended that file alone decides: then its words, and exit 27.
    # Both waits are bounded in time (bash's SECONDS: no process per look).
    deadline=$((SECONDS + 6))
    while [ "$SECONDS" -lt "$deadline" ]; do
        [ -f "$private/$name.nostart" ] && break
        [ -f "$private/$name.started" ] && break  # a builtin or a function: it runs in NAME.cmd's shell
        pid=$(rd "$private/$name.pid" 16)
        case $pid in ''|*[!0-9]*) ;; *)
            argv=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null)  # empty once it has ended
            [ -n "$argv" ] && ! printf '%s\n' "$argv" | grep -qxF -- --cai-login && break ;;
        esac
        running || break
        sleep 0.01
    done
    if [ -f "$private/$name.nostart" ]; then
        deadline=$((SECONDS + 6))
        while running && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
        rd "$base/$name.screen" 65536 | awk 'NF' | tail -n 5 >&2
        exit 27
    fi
    ;;
list)
    printf 'now\t%s\n' "$(date +%s)"
    for f in *.json; do
        [ -f "$f" ] && [ ! -L "$f" ] || continue
        n=${f%.json}
        case $n in ''|*[!A-Za-z0-9_-]*) continue ;; esac
        log=0; [ -f "$base/$n.log" ] && [ ! -L "$base/$n.log" ] && log=1
        printf 'rec\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$(stat -c %Y -- "$f")" "$log" \
            "$(rd "$n.exit" 64 | tr -d '\t\n')" "$(rd "$n.lost" 64 | tr -d '\t\n')" "$(rd "$f" 65536 | base64 -w0)"
    done
    t list-sessions -F 'tmux	#{session_name}	#{session_attached}' 2>/dev/null || :
    ;;
mark)  # NAME EPOCH ... : lost at EPOCH, unless it runs, ended or was marked before
    set -- "$name" "$@"
    while [ $# -ge 2 ]; do
        name=$1
        [ -f "$1.json" ] && [ ! -e "$1.exit" ] && [ ! -e "$1.lost" ] && ! running && put "$1.lost" "$2"
        shift 2
    done
    ;;
remove)  # NAME ... : ended or lost sessions only
    for n in "$name" "$@"; do
        name=$n
        running && continue
        rmreg "$n.exit" "$n.lost" "$base/$n.log" "$base/$n.screen" "$n.json" && [ ! -e "$n.json" ] && [ ! -L "$n.json" ] &&
            printf 'removed\t%s\n' "$n"
    done
    ;;
logs)  # LINES FOLLOW (a log is a terminal's output: its CR before each LF goes)
    known
    log=$base/$name.log
    if [ -f "$log" ] && [ ! -L "$log" ]; then
        if [ "$2" = 1 ] && running; then
            tail -n "$1" -f --pid="$(t display-message -p -t "$pane" '#{pane_pid}')" -- "$log" | sed -u 's/\r$//'
        else
            tail -n "$1" -- "$log" | sed 's/\r$//'
        fi
        exit 0
    fi
    [ "$2" = 1 ] && running && exit 24
    # a screen: without the blank rows below its text
    { if running; then t capture-pane -p -J -S - -E - -t "$pane"; else rd "$base/$name.screen" 67108864; fi; } |
        awk '/^[[:space:]]*$/ { n++; next } { for (; n > 0; n--) print ""; print }' | tail -n "$1"
    ;;
send)  # TEXT (tmux reads a final ';' as a separator unless escaped)
    known; running || exit 23
    text=$1
    case $text in *\;) text="${text%;}\\;" ;; esac
    t send-keys -t "$pane" -l -- "$text" \; send-keys -t "$pane" Enter
    ;;
wait)  # the tmux session decides: NAME.exit is read only once it has ended
    known
    while running; do sleep 0.2; done
    [ -e "$name.exit" ] || sleep 0.5
    if [ -f "$name.exit" ]; then printf 'exit\t%s\n' "$(rd "$name.exit" 64)"; else echo lost; fi
    ;;
kill)  # SIGNAL-NUMBER: the command's process group (its first process leads it), never the wrapper's
    known; running || exit 23
    pid=$(rd "$private/$name.pid" 16) || exit 23
    case $pid in ''|*[!0-9]*) exit 23 ;; esac
    pane_pid=$(t display-message -p -t "$pane" '#{pane_pid}') || exit 23
    [ "$(ps -o ppid= -p "$pid" | tr -d ' ')" = "$pane_pid" ] && [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ] || exit 23
    kill -n "$1" -- "-$pid"
    ;;
attach)  # READ-ONLY
    known; running || exit 23
    if [ "$1" = 1 ]; then exec tmux -L cai -f /dev/null attach-session -r -t "=$name"; fi
    exec tmux -L cai -f /dev/null attach-session -t "=$name"
    ;;
*) exit 2 ;;
esac
"""

_WORDS = ("amber", "aspen", "birch", "cedar", "cobalt", "coral", "delta", "ember", "fern", "flint", "garnet", "harbor",
          "hazel", "indigo", "iris", "jade", "juniper", "kestrel", "lark", "linden", "maple", "marlin", "moss", "nova",
          "oak", "onyx", "otter", "pine", "quartz", "raven", "reed", "river", "sage", "slate", "sparrow", "spruce",
          "thistle", "tide", "umber", "vale", "willow", "wren", "yarrow", "zephyr")


def default_name() -> str:
    return f"{secrets.choice(_WORDS)}-{secrets.randbelow(100):02d}"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise CaiError(ExitCode.ERROR, f"Invalid session name: {output.shown(name)}",
                       "Use up to 40 letters, digits, '-' and '_', starting with a letter or digit")
    return name


def control_command(verb: str, name: str = "", *args: str) -> str:
    """The string sshd hands to the agent's shell: bash runs CONTROL_SCRIPT with argv words."""
    return shlex.join(["bash", "-c", CONTROL_SCRIPT, "cai-session", verb, SESSIONS_DIR, name, *args])


# --- records ----------------------------------------------------------------------------------------


@dataclass
class Session:
    name: str
    started: int | None
    command: list[str] | None
    workdir: str | None
    has_log: bool
    exit_code: int | None = None
    ended: int | None = None
    lost_at: int | None = None
    state: str = "running"  # running, starting, exited or lost
    attached: int = 0
    newly_lost: bool = False

    def state_text(self) -> str:
        if self.state == "exited":
            return f"exited ({self.exit_code})"
        if self.state == "lost":
            return f"lost at {utc(self.lost_at)}" if self.lost_at is not None else "lost"
        return self.state

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "exit_code": self.exit_code, "started": utc(self.started),
                "ended": utc(self.ended), "lost_at": utc(self.lost_at), "attached_clients": self.attached,
                "command": self.command, "workdir": self.workdir, "log": log_path(self.name) if self.has_log else None}


@dataclass
class Listing:
    now: int | None = None
    sessions: list[Session] = field(default_factory=list)


def log_path(name: str) -> str:
    return f"{SESSIONS_DIR}/{name}.log"


def utc(epoch: int | None) -> str | None:
    if epoch is None:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(text: str, low: int = 0, high: int = 1 << 40) -> int | None:
    """ASCII digits in a sane range, or None: the agent may have written anything there."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 13:
        return None
    value = int(text)
    return value if low <= value <= high else None


def _meta(raw: bytes) -> tuple[list[str] | None, str | None, bool]:
    """(command, workdir, started with --log) from NAME.json."""
    try:
        data = json.loads(raw[:_RECORD_LIMIT].decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None, None, False
    if not isinstance(data, dict):
        return None, None, False
    command = data.get("command")
    if not (isinstance(command, list) and all(isinstance(word, str) for word in command)):
        command = None
    workdir = data.get("workdir") if isinstance(data.get("workdir"), str) else None
    return command, workdir, data.get("log") is True


def make_session(name: str, mtime: str, has_log: bool | None, exit_text: str, lost_text: str, meta: bytes) -> Session:
    """`has_log` None: as the record says (a stopped container's logs are not looked at)."""
    command, workdir, logged = _meta(meta)
    session = Session(name, _number(mtime), command, workdir, logged if has_log is None else has_log)
    code, _, when = exit_text.strip().partition(" ")
    session.exit_code = _number(code, 0, 255)
    if session.exit_code is not None:
        session.state, session.ended = "exited", _number(when)
    else:
        session.lost_at = _number(lost_text)
    return session


def parse_listing(text: str, booted: int | None = None) -> Listing:
    """The control script's `list` output; lines that do not parse are dropped. `booted`: when
    the container last started; a record older than that without its tmux session is lost."""
    listing = Listing()
    attached: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if fields[0] == "now" and len(fields) == 2:
            listing.now = _number(fields[1])
        elif fields[0] == "rec" and len(fields) == 7 and NAME_RE.match(fields[1]):
            try:
                meta = base64.b64decode(fields[6], validate=True)
            except ValueError:
                meta = b""
            listing.sessions.append(make_session(fields[1], fields[2], fields[3] == "1", fields[4], fields[5], meta))
        elif fields[0] == "tmux" and len(fields) == 3:
            attached[fields[1]] = _number(fields[2], 0, 1 << 20) or 0
    recorded = {session.name for session in listing.sessions}
    for name in attached:  # the private tmux server is the authority: one without a record runs too
        if name not in recorded and NAME_RE.match(name):
            listing.sessions.append(Session(name, None, None, None, False))
    for session in listing.sessions:
        if session.name in attached:  # whatever a record says
            session.state, session.attached = "running", attached[session.name]
            session.exit_code = session.ended = session.lost_at = None
        elif session.state == "exited":
            continue
        elif session.lost_at is not None:
            session.state = "lost"
        elif listing.now is not None and session.started is not None and listing.now - session.started < START_GRACE_S \
                and (booted is None or session.started >= booted):
            session.state = "starting"
        else:
            session.state, session.newly_lost = "lost", True
    listing.sessions.sort(key=lambda s: (s.started or 0, s.name))
    return listing


def settle_lost(listing: Listing, last_stop: int | None) -> list[str]:
    """When each newly lost session was lost: the container's last stop when it came after the
    start (a stop kills tmux), else now. The (NAME, EPOCH) words for the `mark` verb."""
    words: list[str] = []
    for session in listing.sessions:
        if not session.newly_lost:
            continue
        after_start = last_stop is not None and (session.started is None or last_stop >= session.started)
        session.lost_at = last_stop if after_start else listing.now
        if session.lost_at is not None:
            words += [session.name, str(session.lost_at)]
    return words


def _archived_records(chunks: Any) -> dict[str, tuple[int, bytes]]:
    """{NAME.ext: (mtime, bytes)} of the records in the engine's tar of `.records`: regular files
    right in it, each bounded, all of them too; what is past a bound is left out, unread."""
    import tarfile

    from cai import volumes

    files: dict[str, tuple[int, bytes]] = {}
    kept = streamed = 0
    try:
        with volumes.engine_tar(chunks) as tar:
            for count, member in enumerate(tar):
                streamed += member.size
                if count > _ARCHIVE_MEMBERS or streamed > _ARCHIVE_STREAMED:
                    break
                top, _, base = member.name.removeprefix("./").partition("/")
                stem, dot, ext = base.rpartition(".")
                if top != ".records" or not dot or ext not in ("json", "exit", "lost") or not NAME_RE.match(stem) \
                        or not member.isreg() or member.size > _RECORD_LIMIT or kept + member.size > _ARCHIVE_BYTES:
                    continue
                handle = tar.extractfile(member)
                raw = handle.read(_RECORD_LIMIT) if handle is not None else b""
                kept += len(raw)
                files[base] = (int(member.mtime), raw)
    except (tarfile.TarError, OSError, EOFError):
        pass
    return files


def _records(files: dict[str, tuple[int, bytes]]) -> list[Session]:
    found = []
    for base, (mtime, raw) in files.items():
        if not base.endswith(".json"):
            continue
        name = base[:-5]
        exit_text = files.get(f"{name}.exit", (0, b""))[1].decode(errors="replace")[:64]
        lost_text = files.get(f"{name}.lost", (0, b""))[1].decode(errors="replace")[:64]
        found.append(make_session(name, str(mtime), None, exit_text, lost_text, raw))
    found.sort(key=lambda s: (s.started or 0, s.name))
    return found


def from_archive(chunks: Any) -> Listing:
    """Records read through the engine's archive API (a stopped container): no tmux is running,
    so every session without an end is lost. The tar is streamed; logs are skipped, not read."""
    listing = Listing()
    for session in _records(_archived_records(chunks)):
        if session.state != "exited":
            session.state = "lost"
            session.newly_lost = session.lost_at is None
        listing.sessions.append(session)
    return listing


def running_by_records(eng: Any, container: Any) -> list[str] | None:
    """Names of the sessions that cai's own records show as running in a running container
    (started since its last start, with no end and not marked lost), read through the engine's
    archive API, which needs no process in the container: for when the root probe failed or
    timed out. None when the records cannot be read either."""
    from cai import engine

    booted = _epoch(container.started_at)
    try:
        files = _archived_records(engine.get_archive(eng, container.id, f"{SESSIONS_DIR}/.records"))
    except CaiError as exc:
        return [] if engine.missing(exc) else None
    # The archive's mtimes are whole seconds; a record from the second of the start still counts.
    return [s.name for s in _records(files) if s.exit_code is None and s.lost_at is None
            and (booted is None or (s.started is not None and s.started >= booted - 1))]


def probe_names(lines: Sequence[str]) -> list[str]:
    """Names of running sessions from the root probe's `@sessions` lines (argv words joined by a
    tab): the wrapper's processes, `/bin/bash WRAPPER DIR NAME`."""
    names: list[str] = []
    for line in lines:
        words = line.split("\t")
        if len(words) >= 4 and words[1] == WRAPPER and NAME_RE.match(words[3]) and words[3] not in names:
            names.append(words[3])
    return sorted(names)


def session_script(name: str, command: Sequence[str], workdir: str | None, environment: dict[str, str]) -> str:
    """NAME.cmd: the session's command under the agent's login shell, as `cai exec` runs it, but
    read from this file (a `bash -lc` argument would cap it at Linux's 128 KiB for one argument).
    The file runs itself again as a login shell, records its pid (which leads the command's
    process group) where `session kill` finds it, and execs the command in its place. A command
    that cannot start (exec fails, or no such command) leaves NAME.nostart, which `new` reports."""
    from cai import ssh

    assignments, words = ssh.command_words([*(f"{key}={value}" for key, value in environment.items()), *command])
    if not words:
        raise CaiError(ExitCode.ERROR, "No command to run after the NAME=value words")
    # Every word in quotes, so that none (`if`, `{`, `!`) can be shell syntax in this file.
    words = [word if word.startswith("'") else f"'{word}'" for word in words]
    into = f" && cd -- {shlex.quote(workdir)}" if workdir else ""
    prefix = " ".join(assignments)
    nostart = f"{PRIVATE_DIR}/{name}.nostart"
    command = " ".join(words)
    return (
        f'[ "${{1-}}" = {LOGIN_PASS} ] || exec bash -l -- "$0" {LOGIN_PASS}\n'
        f"printf '%s\\n' \"$$\" >{PRIVATE_DIR}/{name}.pid && cd {ssh.WORKDIR}{into} || exit 1\n"
        f"case $(type -t -- {words[0]}) in\n"
        f"file) shopt -s execfail; {prefix} exec -- {command}; rc=$?; echo \"$rc\" >{nostart}; exit \"$rc\" ;;\n"
        f"builtin|function) : >{PRIVATE_DIR}/{name}.started; {prefix} {command} ;;\n"
        f"*) echo \"bash: \"{words[0]}\": command not found\" >&2; echo 127 >{nostart}; exit 127 ;;\n"
        "esac\n"
    )


def meta_json(name: str, command: Sequence[str], workdir: str | None, has_log: bool) -> str:
    """NAME.json, one line (json.dumps escapes every newline)."""
    return json.dumps({"name": name, "command": list(command), "workdir": workdir, "log": has_log}, ensure_ascii=False)


# --- over ssh -----------------------------------------------------------------------------------------


def _endpoint(eng: Any, container: Any) -> Any:
    from cai import containers

    if not containers.ssh_ready(container):
        return containers.setup_ssh(eng, container)
    return containers.endpoint(container)


def control(eng: Any, container: Any, verb: str, name: str = "", *args: str, timeout: float | None = 60.0,
            input: str | None = None) -> Any:
    """Run one verb of the control script as the agent, output captured. An ssh failure is 13."""
    from cai import proc, ssh

    result = ssh.run_captured(_endpoint(eng, container), control_command(verb, name, *args), timeout=timeout,
                              limit=CONTROL_OUTPUT_LIMIT, input=input)
    if result.rc == proc.RC_TOO_LONG:
        raise CaiError(ExitCode.ERROR, f"{container.name} answered with more than {CONTROL_OUTPUT_LIMIT >> 20} MiB; "
                       "cai stopped reading", "Something in the container writes to the session records or the "
                       f"agent's shell start-up: look at {SESSIONS_DIR} and ~/.bashrc")
    if result.rc == RC_UNSAFE_DIR:
        raise CaiError(ExitCode.ERROR, f"Container {container.name}: the session directory failed its check; nothing was done",
                       *said(result.err))
    if result.rc == RC_NO_TMUX:
        raise no_tmux(container.name)
    if result.rc == 255:
        gone_away(eng, container)
        raise CaiError(ExitCode.SSH_CONNECT_FAILED, "SSH connection failed", *ssh.error_lines(result.err))
    if result.rc == 124 and timeout is not None:
        raise CaiError(ExitCode.ERROR, f"{container.name} did not answer within {timeout:g} s")
    return result


def gone_away(eng: Any, container: Any) -> None:
    """After ssh's 255: a container that stopped or froze under a session step is said so (rc 1)."""
    fresh = eng.inspect_container(container.id)
    if fresh is None or not fresh.running:
        state = "was removed" if fresh is None else "was paused (the sessions go on after cai unpause)" \
            if fresh.status == "paused" else "stopped: its sessions were lost"
        raise CaiError(ExitCode.ERROR, f"Container {container.name} {state}")


def said(err: str) -> list[str]:
    """The last lines of what the container said, escaped: the agent's shell writes there too."""
    return [f"  {output.shown(line)}" for line in err.splitlines()[-3:]]


def no_tmux(name: str) -> CaiError:
    return CaiError(ExitCode.ERROR, f"Container {name} cannot hold sessions: its image has no tmux or no cai-session",
                    "Rebuild the image (cai image build) and recreate the container (cai run --fresh)")


def not_found(name: str, container: str) -> CaiError:
    return CaiError(ExitCode.ERROR, f"No session {name} in {container}", f"List them with: cai session ls --container {container} -a")


def lost(name: str) -> CaiError:
    return CaiError(ExitCode.ERROR, f"Session {name} was lost before its command ended (a container stop ends every session)")


def not_running(name: str) -> CaiError:
    return CaiError(ExitCode.ERROR, f"Session {name} is not running", f"See how it ended: cai session ls -a, cai session logs {name}")


class SessionTaken(CaiError):
    """A session of the name asked for exists (running, or its record is kept)."""


def start(eng: Any, container: Any, command: Sequence[str], *, name: str | None, workdir: str | None,
          environment: dict[str, str], log: bool) -> str:
    """Start COMMAND detached; returns the session's name once the command runs."""
    for _ in range(1 if name is not None else 5):
        chosen = name or default_name()
        stdin = meta_json(chosen, command, workdir, log) + "\n" + session_script(chosen, command, workdir, environment)
        result = control(eng, container, "new", chosen, "1" if log else "0", workdir or "", input=stdin)
        if result.rc == 0:
            return chosen
        if result.rc == RC_NO_WORKDIR:
            raise CaiError(ExitCode.ERROR, f"No such directory in the workspace: {output.shown(workdir or '')}")
        if result.rc == RC_NO_START:
            raise CaiError(ExitCode.ERROR, f"Session {chosen} could not start its command", *said(result.err),
                           f"Its record stays until: cai session prune --container {container.name}")
        if result.rc != RC_TAKEN:
            raise CaiError(ExitCode.ERROR, "Could not start the session", *said(result.err))
    raise (SessionTaken if name else CaiError)(
        ExitCode.ERROR, f"Session name {chosen} is taken" if name else "Could not find a free session name",
        f"Pick another name, or remove ended sessions: cai session prune --container {container.name}")


def listing(eng: Any, container: Any) -> Listing:
    """Every record of the container, with states settled (lost ones written down)."""
    from cai import engine

    if not container.running:
        last_stop = _epoch(container.finished_at)
        try:
            found = from_archive(engine.get_archive(eng, container.id, f"{SESSIONS_DIR}/.records"))
        except CaiError as exc:
            if engine.missing(exc):  # no session was ever started there
                return Listing()
            raise
        for session in found.sessions:
            if session.newly_lost:
                session.lost_at = last_stop
        return found
    result = control(eng, container, "list")
    if result.rc != 0:
        raise CaiError(ExitCode.ERROR, "Could not list the sessions", *said(result.err))
    found = parse_listing(result.out, _epoch(container.started_at))
    if any(s.newly_lost for s in found.sessions):
        words = settle_lost(found, _epoch(container.finished_at))
        if words:
            control(eng, container, "mark", *words)
    return found


def _epoch(stamp: str) -> int | None:
    from cai import clock

    try:
        return None if clock.is_zero_time(stamp) else clock.epoch_seconds(stamp)
    except ValueError:
        return None


def running_container(eng: Any, container: Any) -> Any:
    """Steps on one session need the container up: a stopped one lost its sessions."""
    from cai import containers

    if container.status == "paused":
        raise containers.paused_error(container.name)
    if not container.running:
        raise CaiError(ExitCode.ERROR, f"Container {container.name} is {container.status or 'not running'}: its sessions were lost",
                       f"See them with: cai session ls -a --container {container.name}")
    return container


def print_stopped_log(eng: Any, container: Any, name: str, tail: int | None, *, strip: bool) -> None:
    """A stopped container's NAME.log, else its final screen, read through the archive API (a
    final link is not followed) and streamed to stdout; `strip`: through escapes.EscapeFilter."""
    import collections
    import sys

    from cai import engine, escapes, volumes

    for ext in ("log", "screen"):
        try:
            chunks = engine.get_archive(eng, container.id, f"{SESSIONS_DIR}/{name}.{ext}")
        except CaiError as exc:
            if engine.missing(exc):
                continue
            raise
        with volumes.engine_tar(chunks) as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member is not None and member.isreg() else None
            if handle is None:
                return
            lines: Any = _lines(handle)
            if ext == "screen":
                lines = _without_trailing_blanks(lines)
            if tail is not None:
                lines = collections.deque(lines, maxlen=tail)
            cleaner = escapes.EscapeFilter() if strip else None
            for line in lines:
                sys.stdout.buffer.write(cleaner.feed(line) if cleaner is not None else line)
            if cleaner is not None:
                sys.stdout.buffer.write(cleaner.flush())
            sys.stdout.flush()
        return


_LINE_LIMIT = 1 << 16  # a longer line is cut into pieces: --tail keeps at most N of those


def _lines(handle: Any) -> Any:
    """The file's lines (a terminal's CR before each LF dropped), at most _LINE_LIMIT bytes each."""
    while line := handle.readline(_LINE_LIMIT):
        yield line[:-2] + b"\n" if line.endswith(b"\r\n") else line


def _without_trailing_blanks(lines: Any) -> Any:
    """A screen without the blank rows below its text (kept in order, held only while blank)."""
    blank = 0
    for line in lines:
        if not line.strip():
            blank += 1
            continue
        yield from [b"\n"] * blank
        blank = 0
        yield line if line.endswith(b"\n") else line + b"\n"


def wait_for(eng: Any, container: Any, name: str) -> int:
    """The command's exit code (0-255; 128+n for signal n), once it ends."""
    result = control(eng, container, "wait", name, timeout=None)
    if result.rc == RC_NO_SESSION:
        raise not_found(name, container.name)
    line = result.out.strip().splitlines()[-1:] or [""]
    if line[0].startswith("exit\t"):
        code = _number(line[0][5:].partition(" ")[0], 0, 255)
        if code is not None:
            return code
    if line[0] == "lost" or result.rc == 0:
        raise lost(name)
    raise CaiError(ExitCode.ERROR, f"Could not wait for session {name}", *said(result.err))


def stream(eng: Any, container: Any, verb: str, name: str, *args: str, tty: str | None = None,
           strip: bool = False) -> int:
    """A verb whose output goes straight to this terminal (logs -f, attach), through ssh with
    the usual retries. The control script's own codes come back as they are. `strip`: stdout
    goes through escapes.EscapeFilter on its way (the agent wrote what comes)."""
    from cai import containers

    remote = control_command(verb, name, *args)
    if strip:  # stderr too: the agent's login shell writes there
        with _filtered(1), _filtered(2):
            rc = containers.connect(eng, container, remote, tty=tty)
    else:
        rc = containers.connect(eng, container, remote, tty=tty)
    if rc == 255:
        gone_away(eng, container)
    if rc == RC_NO_SESSION:
        raise not_found(name, container.name)
    if rc == RC_NO_TMUX:
        raise no_tmux(container.name)
    if rc == RC_UNSAFE_DIR:
        raise CaiError(ExitCode.ERROR, f"Container {container.name}: the session directory failed its check; nothing was done")
    return rc


class _filtered:
    """File descriptor `fd` (1 or 2) is a pipe for the time being, which a thread drains through
    an EscapeFilter into the real one: ssh writes there itself, so filtering needs the fd."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        import os
        import sys
        import threading

        from cai import escapes

        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = os.dup(self.fd)
        reader, writer = os.pipe()
        os.dup2(writer, self.fd)
        os.close(writer)

        def pump() -> None:
            cleaner = escapes.EscapeFilter()
            try:
                while chunk := os.read(reader, 1 << 16):
                    _write_all(self.saved, cleaner.feed(chunk))
                _write_all(self.saved, cleaner.flush())
            except OSError:  # the terminal went away
                pass
            finally:
                os.close(reader)

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved, self.fd)  # the pipe's last writer here: the pump sees its end
        self.thread.join(timeout=5)
        if not self.thread.is_alive():  # else it still writes there; the process ends soon anyway
            os.close(self.saved)


def _write_all(fd: int, data: bytes) -> None:
    import os

    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
