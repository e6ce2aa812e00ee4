"""Agent sessions that outlive the client (`cai session`, `cai attach`, `cai run -d`).

A session is a tmux session on the agent's private server (socket under /run/user/1000, config
/dev/null) whose first process is the image's wrapper (cai/image/cai-session): it runs the
command as the terminal's foreground job and records its end. Every step runs as the agent over
cai's ssh path (so it works wherever `cai exec` does, remote contexts included), through one
script, CONTROL_SCRIPT, with arguments as argv words and the command's script on stdin.

What a session leaves lives in the data volume, so export carries it and a restart keeps it, in
a directory per container id (containers may share a data volume, and names and hostnames can
be reused): NAME.log (with --log) and NAME.screen (the final screen), and in `.records/` small
files only, which a stopped container's listing reads through the engine: NAME.json (what was
started; its mtime is the start, on the container's clock), NAME.exit ("CODE EPOCH") once it
ended, NAME.lost (when cai first saw it gone without an end: a container stop kills tmux).

Other containers on the same data volume can write all of that, as the agent itself can. So
what is read back is parsed as untrusted text, nothing is read through a link or from a
non-file, every file is created anew with noclobber (never written through something planted),
and what a session runs (NAME.cmd, NAME.pid) lives in the container's own /run/user/1000. No
root action touches any of it.
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
RECORDS_ROOT = "/mnt/agent-data/sessions"
RUNTIME_DIR = "/run/user/1000"
PRIVATE_DIR = f"{RUNTIME_DIR}/cai-sessions"  # this container's own: the scripts the wrappers run
SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")  # no '.' or ':': tmux reads them in targets
START_GRACE_S = 30  # a record this young without its tmux session is still being started
_RECORD_LIMIT = 1 << 16
_ARCHIVE_MEMBERS = 20000

# The control script's own exit codes (the commands it runs use 0-2).
RC_NO_TMUX, RC_TAKEN, RC_NO_SESSION, RC_NOT_RUNNING, RC_NEEDS_LOG, RC_NO_WORKDIR = 20, 21, 22, 23, 24, 25

CONTROL_SCRIPT = r"""
set -u
verb=$1 base=$2 name=${3-}
shift 3
export TMUX_TMPDIR=/run/user/1000
unset TMUX
t() { tmux -L cai -f /dev/null "$@"; }
pane="=$name:0.0"
rec=$base/.records private=$TMUX_TMPDIR/cai-sessions
if ! command -v tmux >/dev/null 2>&1 || [ ! -x /usr/local/lib/containai/cai-session ] || [ ! -d "$TMUX_TMPDIR" ]; then
    exit 20
fi
# Other containers may share the data volume and write here: nothing is read through a link or
# from a non-file, and every file is written anew (noclobber: never through what is there).
rd() { [ -f "$1" ] && [ ! -L "$1" ] && timeout 5 head -c "$2" -- "$1"; }
put() { rm -f -- "$1.new" && (set -C; printf '%s\n' "$2" >"$1.new") && mv -fT -- "$1.new" "$1"; }
if [ "$verb" = new ]; then
    for d in "${base%/*}" "$base" "$rec"; do
        [ -L "$d" ] && { echo "$d is a symbolic link" >&2; exit 1; }
        mkdir -p -- "$d" || exit 1
    done
fi
if ! cd -- "$rec" 2>/dev/null; then
    case $verb in list) printf 'now\t%s\n' "$(date +%s)"; exit 0 ;; orphans) ;; *) exit 22 ;; esac
fi
running() { [ ! -e "$name.exit" ] && t has-session -t "=$name" 2>/dev/null; }
known() { [ -f "$name.json" ] || exit 22; }
case $verb in
new)  # LOG WORKDIR; stdin: the record (one line), then the command's script
    if [ -n "$2" ] && ! (cd /home/agent/workspace && cd -- "$2") 2>/dev/null; then exit 25; fi
    t has-session -t "=$name" 2>/dev/null && exit 21
    IFS= read -r meta || exit 1
    (set -C; printf '%s\n' "$meta" >"$name.json") 2>/dev/null || exit 21
    rm -f -- "$name.exit" "$name.lost" "$base/$name.screen" "$base/$name.log" "$private/$name.cmd" "$private/$name.pid"
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
    ;;
list)
    printf 'now\t%s\n' "$(date +%s)"
    for f in *.json; do
        [ -f "$f" ] || continue
        n=${f%.json}
        case $n in ''|*[!A-Za-z0-9_-]*) continue ;; esac
        log=0; [ -f "$base/$n.log" ] && log=1
        printf 'rec\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$(stat -c %Y -- "$f")" "$log" \
            "$(rd "$n.exit" 64 | tr -d '\t\n')" "$(rd "$n.lost" 64 | tr -d '\t\n')" "$(rd "$f" 65536 | base64 -w0)"
    done
    t list-sessions -F 'tmux	#{session_name}	#{session_attached}' 2>/dev/null || :
    ;;
mark)  # NAME EPOCH ... : lost at EPOCH, unless it ended or was marked before
    set -- "$name" "$@"
    while [ $# -ge 2 ]; do
        [ -f "$1.json" ] && [ ! -e "$1.exit" ] && [ ! -e "$1.lost" ] && put "$1.lost" "$2"
        shift 2
    done
    ;;
remove)  # NAME ... : ended or lost sessions only
    for n in "$name" "$@"; do
        name=$n
        running && continue
        rm -f -- "$n.json" "$n.exit" "$n.lost" "$base/$n.log" "$base/$n.screen" && printf 'removed\t%s\n' "$n"
    done
    ;;
orphans)  # DRY-RUN ID ... : the records of containers that are gone (made over an hour ago)
    cd -- "${base%/*}" 2>/dev/null || exit 0
    for d in [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]; do
        [ -d "$d" ] && [ ! -L "$d" ] || continue
        case " $* " in *" $d "*) continue ;; esac
        [ -n "$(find "$d" -maxdepth 0 -mmin +60)" ] || continue
        if [ "$name" = 1 ] || rm -rf -- "$d"; then printf 'orphan\t%s\n' "$d"; fi
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
wait)
    known
    while :; do
        if [ -e "$name.exit" ]; then printf 'exit\t%s\n' "$(rd "$name.exit" 64)"; exit 0; fi
        if ! t has-session -t "=$name" 2>/dev/null; then
            sleep 0.5
            [ -e "$name.exit" ] && continue
            echo lost; exit 0
        fi
        sleep 0.2
    done
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


def records_dir(container_id: str) -> str:
    return f"{RECORDS_ROOT}/{container_id[:12]}"


def control_command(verb: str, container_id: str, name: str = "", *args: str) -> str:
    """The string sshd hands to the agent's shell: bash runs CONTROL_SCRIPT with argv words."""
    return shlex.join(["bash", "-c", CONTROL_SCRIPT, "cai-session", verb, records_dir(container_id), name, *args])


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

    def as_json(self, container_id: str) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "exit_code": self.exit_code, "started": utc(self.started),
                "ended": utc(self.ended), "lost_at": utc(self.lost_at), "attached_clients": self.attached,
                "command": self.command, "workdir": self.workdir, "log": log_path(container_id, self.name) if self.has_log else None}


@dataclass
class Listing:
    now: int | None = None
    sessions: list[Session] = field(default_factory=list)


def log_path(container_id: str, name: str) -> str:
    return f"{records_dir(container_id)}/{name}.log"


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
    for session in listing.sessions:
        if session.state == "exited":
            continue
        if session.name in attached:
            session.state, session.attached = "running", attached[session.name]
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


def from_archive(chunks: Any) -> Listing:
    """Records read through the engine's archive API (a stopped container): no tmux is running,
    so every session without an end is lost. The tar is streamed; logs are skipped, not read."""
    import tarfile

    from cai import volumes

    files: dict[str, tuple[int, bytes]] = {}
    try:
        with volumes.engine_tar(chunks) as tar:
            for count, member in enumerate(tar):
                if count > _ARCHIVE_MEMBERS:
                    break
                base = member.name.rsplit("/", 1)[-1]
                stem, dot, ext = base.rpartition(".")
                if not dot or ext not in ("json", "exit", "lost") or not NAME_RE.match(stem) or not member.isreg():
                    continue
                handle = tar.extractfile(member) if member.size <= _RECORD_LIMIT else None
                files[base] = (int(member.mtime), handle.read() if handle is not None else b"")
    except (tarfile.TarError, OSError, EOFError):
        pass
    listing = Listing()
    for base, (mtime, raw) in files.items():
        if not base.endswith(".json"):
            continue
        name = base[:-5]
        exit_text = files.get(f"{name}.exit", (0, b""))[1].decode(errors="replace")[:64]
        lost_text = files.get(f"{name}.lost", (0, b""))[1].decode(errors="replace")[:64]
        session = make_session(name, str(mtime), None, exit_text, lost_text, raw)
        if session.state != "exited":
            session.state = "lost"
            session.newly_lost = session.lost_at is None
        listing.sessions.append(session)
    listing.sessions.sort(key=lambda s: (s.started or 0, s.name))
    return listing


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
    """NAME.cmd: the session's command under the agent's login shell, as `cai exec` runs it. Its
    pid (which leads the command's process group) goes where `session kill` finds it."""
    from cai import ssh

    into = f" && cd -- {shlex.quote(workdir)}" if workdir else ""
    login = ssh.login_command([*(f"{key}={value}" for key, value in environment.items()), *command])
    return f"printf '%s\\n' \"$$\" >{PRIVATE_DIR}/{name}.pid && cd {ssh.WORKDIR}{into} && exec {login}\n"


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
    from cai import ssh

    result = ssh.run_captured(_endpoint(eng, container), control_command(verb, container.id, name, *args),
                              timeout=timeout, input=input)
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
        if result.rc != RC_TAKEN:
            raise CaiError(ExitCode.ERROR, "Could not start the session", *said(result.err))
    raise CaiError(ExitCode.ERROR, f"Session name {chosen} is taken" if name else "Could not find a free session name",
                   f"Pick another name, or remove ended sessions: cai session prune --container {container.name}")


def listing(eng: Any, container: Any) -> Listing:
    """Every record of the container, with states settled (lost ones written down)."""
    from cai import engine

    if not container.running:
        last_stop = _epoch(container.finished_at)
        try:
            found = from_archive(engine.get_archive(eng, container.id, f"{records_dir(container.id)}/.records"))
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


def print_stopped_log(eng: Any, container: Any, name: str, tail: int | None) -> None:
    """A stopped container's NAME.log, else its final screen, read through the archive API (a
    final link is not followed) and streamed to stdout."""
    import collections
    import sys

    from cai import engine, volumes

    for ext in ("log", "screen"):
        try:
            chunks = engine.get_archive(eng, container.id, f"{records_dir(container.id)}/{name}.{ext}")
        except CaiError as exc:
            if engine.missing(exc):
                continue
            raise
        with volumes.engine_tar(chunks) as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member is not None and member.isreg() else None
            if handle is None:
                return
            lines: Any = (line[:-2] + b"\n" if line.endswith(b"\r\n") else line for line in handle)
            if ext == "screen":
                lines = [line.rstrip(b"\n") for line in lines]
                while lines and not lines[-1].strip():
                    lines.pop()
                lines = [line + b"\n" for line in lines]
            if tail is not None:
                lines = collections.deque(lines, maxlen=tail)
            for line in lines:
                sys.stdout.buffer.write(line)
            sys.stdout.flush()
        return


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


def stream(eng: Any, container: Any, verb: str, name: str, *args: str, tty: str | None = None) -> int:
    """A verb whose output goes straight to this terminal (logs -f, attach), through ssh with
    the usual retries. The control script's own codes come back as they are."""
    from cai import containers

    rc = containers.connect(eng, container, control_command(verb, container.id, name, *args), tty=tty)
    if rc == 255:
        gone_away(eng, container)
    if rc == RC_NO_SESSION:
        raise not_found(name, container.name)
    if rc == RC_NO_TMUX:
        raise no_tmux(container.name)
    return rc
