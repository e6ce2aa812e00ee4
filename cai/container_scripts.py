"""Every command cai runs inside a container or a helper, in one place, with the rule they follow.

The agent runs untrusted code, and it can write its home, the workspace and the data volume. So:

- Work on a path the agent can write is done *as the agent* (it can only hurt itself), or as root
  with no-follow semantics only: rename (`mv` of a link renames the link), `rm -rf` (never follows
  a link), and mode, owner and time changes on a mount point, which the agent cannot replace.
- Nothing the agent can replace is ever run: programs by absolute path under /bin (root's in the
  image), `env -i` so that no variable of the container reaches the script, and a fixed PATH of
  root-owned directories for what the script itself calls.
- Reading files as root goes through the engine's archive API (host keys), which does not follow
  a final symlink and reads inside the container's own root.

Each function returns an argv for `docker exec`; arguments travel as argv words, never spliced
into the script text.
"""

from __future__ import annotations

ENV = ("/bin/env", "-i", "PATH=/bin:/usr/bin:/sbin:/usr/sbin", "LC_ALL=C")
SH = (*ENV, "/bin/sh", "-c")


def _sh(script: str, *args: str) -> list[str]:
    return [*SH, script, "sh", *args]


# --- in the agent's container --------------------------------------------------------------------

# Run as `agent`. A link at ~/.ssh or at authorized_keys is refused by name (following it could
# only reach what the agent can write anyway, but the key would end up somewhere sshd never reads);
# a FIFO there would block the append forever.
INJECT_KEY_SCRIPT = r"""
set -e
d=/home/agent/.ssh
f=$d/authorized_keys
refuse() { printf '%s\n' "$1" >&2; exit 3; }
[ -L "$d" ] && refuse "$d is a symbolic link (to $(readlink "$d")); cai will not write the key through it"
mkdir -p "$d"
[ -d "$d" ] || refuse "$d is not a directory"
chmod 700 "$d"
[ -L "$f" ] && refuse "$f is a symbolic link (to $(readlink "$f")); cai will not write the key through it"
[ -e "$f" ] && [ ! -f "$f" ] && refuse "$f is not a regular file"
exec 9>>"$f"
flock 9
grep -qF -- "$2" "$f" || printf '%s\n' "$1" >>"$f"
chmod 600 "$f"
"""


def inject_key(public_key: str, key_material: str) -> list[str]:
    """Append the key once (flock: 20 parallel first runs add one line). Run as `agent`."""
    return _sh(INJECT_KEY_SCRIPT, public_key, key_material)


# Run as root: it reads /proc and /dev/pts of every user. Only fixed, root-owned programs.
PROBE_SCRIPT = r"""
echo @ss
ss=
for candidate in /bin/ss /usr/bin/ss /sbin/ss /usr/sbin/ss; do [ -x "$candidate" ] && ss=$candidate && break; done
if [ -n "$ss" ]; then "$ss" -tan state established 2>/dev/null || echo @failed; else echo @missing; fi
echo @proc
/bin/cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
echo @pts
/bin/ls /dev/pts 2>/dev/null
echo @end
"""


def session_probe() -> list[str]:
    return _sh(PROBE_SCRIPT)


# --- in an import helper (only the volume is mounted; the agent may write all of it) -----------

# The swap, run by root, detached, so that neither a killed cai nor a broken connection stops it
# half-way. Its phases are journalled in WORK/phase (each written with a rename): `staged` (the
# old tree untouched), `out` (moving the old top-level entries into WORK/old), `in` (moving the
# new ones from WORK/new into place), `done`. Run again on a work directory, it carries on from
# its phase; `finish` discards a work directory that never began its swap. Every move is a rename
# inside the volume, and the owner, mode and time are set on the mount point only.
# Arguments: MOUNT WORK swap|finish "UID:GID MODE MTIME" (the archive's root; empty: keep).
SWAP_SCRIPT = r"""
set -u
cd "$1" || exit 1
w=$2
[ -d "$w/new" ] || { rm -rf -- "$w"; exit 0; }
exec 2>>"$w/log"
phase() { printf '%s\n' "$1" >"$w/phase.new" && mv -f -- "$w/phase.new" "$w/phase"; }
state=$(cat -- "$w/phase" 2>/dev/null) || state=staged
if [ "$state" = staged ]; then
    if [ "$3" = finish ]; then rm -rf -- "$w"; exit 0; fi
    printf '%s\n' "$4" >"$w/root" && mkdir -p -- "$w/old" && phase out || exit 1
    state=out
fi
if [ "$state" = out ]; then
    for e in * .[!.]* ..?*; do
        [ -e "$e" ] || [ -L "$e" ] || continue
        case $e in .cai-import-????????????????) continue ;; esac
        mv -- "$e" "$w/old/" || exit 1
    done
    phase in || exit 1
    state=in
fi
if [ "$state" = in ]; then
    for e in "$w"/new/* "$w"/new/.[!.]* "$w"/new/..?*; do
        [ -e "$e" ] || [ -L "$e" ] || continue
        mv -- "$e" . || exit 1
    done
    phase done || exit 1
fi
read -r owner mode mtime <"$w/root" || owner=
rm -rf -- "$w"
if [ -n "$owner" ]; then chown -- "$owner" . && chmod -- "$mode" . && touch -d "@$mtime" .; fi
"""


def swap(mount: str, work: str, mode: str, root_attrs: str) -> list[str]:
    return _sh(SWAP_SCRIPT, mount, work, mode, root_attrs)


# Work directories in the volume and their phases, one per line: NAME<TAB>PHASE.
LIST_WORK_SCRIPT = r"""
cd "$1" || exit 1
for w in .cai-import-????????????????; do
    [ -d "$w" ] && [ ! -L "$w" ] || continue
    p=$(cat -- "$w/phase" 2>/dev/null) || p=staged
    printf '%s\t%s\n' "$w" "$p"
done
"""


def list_work(mount: str) -> list[str]:
    return _sh(LIST_WORK_SCRIPT, mount)


def free_space(mount: str) -> list[str]:
    return [*ENV, "/bin/df", "-Pk", mount]


def make_private_dirs(*paths: str) -> list[str]:
    """mkdir fails on anything already there, a link included."""
    return [*ENV, "/bin/mkdir", "-m", "700", "--", *paths]


def remove_tree(path: str) -> list[str]:
    return [*ENV, "/bin/rm", "-rf", "--", path]


def read_file(path: str) -> list[str]:
    return [*ENV, "/bin/cat", "--", path]
