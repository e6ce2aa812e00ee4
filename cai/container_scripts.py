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


# Run as root: it reads /proc and /dev/pts of every user. Only fixed, root-owned programs. The
# @sessions lines are the argv (tab-joined, a newline in a word made a space) of the processes
# of cai's session wrapper.
PROBE_SCRIPT = r"""
echo @ss
ss=
for candidate in /bin/ss /usr/bin/ss /sbin/ss /usr/sbin/ss; do [ -x "$candidate" ] && ss=$candidate && break; done
if [ -n "$ss" ]; then "$ss" -tan state established 2>/dev/null || echo @failed; else echo @missing; fi
echo @proc
/bin/cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
echo @pts
/bin/ls /dev/pts 2>/dev/null
echo @sessions
for c in $(grep -alF /usr/local/lib/containai/cai-session /proc/[0-9]*/cmdline 2>/dev/null); do tr '\000\n' '\011 ' <"$c" 2>/dev/null; echo; done
echo @end
"""


def session_probe() -> list[str]:
    return _sh(PROBE_SCRIPT)


# Run as root by bash: the container's own cgroup (the engine mounts it at /sys/fs/cgroup: v2
# with a private cgroup namespace, or v1's per-controller directories), read twice 0.1 s apart
# with builtins only (the wait is a read on a FIFO in root's /run), so that no process of the
# script's own runs between the two readings and its CPU is not counted. One line, times in ns:
# CPU_BEFORE CPU_AFTER WALL_BEFORE WALL_AFTER MEMORY LIMIT INACTIVE_FILE.
RESOURCES_SCRIPT = r"""
d=/sys/fs/cgroup
if [ -r $d/cpu.stat ] && [ -r $d/memory.current ]; then
    v=2 mem=$d/memory.current lim=$d/memory.max stat=$d/memory.stat key=inactive_file
elif [ -r $d/cpuacct/cpuacct.usage ] && [ -r $d/memory/memory.usage_in_bytes ]; then
    v=1 mem=$d/memory/memory.usage_in_bytes lim=$d/memory/memory.limit_in_bytes stat=$d/memory/memory.stat key=total_inactive_file
else
    exit 3
fi
f=/run/cai-resources-$$
mkfifo -m 600 "$f" && exec 9<>"$f" && rm -f "$f" || exit 3
cpu() { if [ $v = 2 ]; then read -r _ c <$d/cpu.stat; c=${c}000; else read -r c <$d/cpuacct/cpuacct.usage; fi; }
cpu; a=$c s=${EPOCHREALTIME/./}000
read -t 0.1 -u 9
cpu; b=$c e=${EPOCHREALTIME/./}000
read -r m <$mem
read -r l <$lim
i=$(grep "^$key " $stat)
echo "$a $b $s $e $m $l ${i#"$key "}"
"""


def probe_with_resources() -> list[str]:
    """The resources read, then the session probe, in one exec under bash (on an ssh:// engine
    every exec costs a new connection to the engine host). Its first lines: `@resources` and
    RESOURCES_SCRIPT's line (none when it could not read them)."""
    return [*ENV, "/bin/bash", "-c", f"echo @resources\n( {RESOURCES_SCRIPT} )\n{PROBE_SCRIPT}", "bash"]


# --- in an import helper (only the volume is mounted; the agent may have written all of it) ----
#
# An import runs only while no other running container mounts the volume, so the agent cannot act
# during it; but it may have planted anything beforehand, at the top of the volume, which it owns.
# So a work directory is used only through the shell's working directory after it proved to be
# the one this import made (root's, 0700, holding the token only cai knows), every move is
# `mv -T` (a rename onto a planted link replaces the link), and nothing is written through a
# path the agent could have chosen. The helper itself has no new privileges and few capabilities.

# The swap, run by root, detached, so that neither a killed cai nor a broken connection stops it
# half-way. Its phases are journalled in WORK/phase (each written with a rename): `staged` (the
# old tree untouched), `out` (moving the old top-level entries into WORK/old), `in` (moving the
# new ones from WORK/new into place), `done`. Run again on a work directory, it carries on from
# its phase; `finish` discards a work directory that never began its swap.
# Arguments: MOUNT WORK TOKEN swap|finish "UID:GID MODE MTIME" (the archive's root; empty: keep).
SWAP_SCRIPT = r"""
set -u
root=$1 w=$2
cd "$root/$w" || exit 3
[ "$(stat -c '%u %a' .)" = "0 700" ] && [ "$(cat token 2>/dev/null)" = "$3" ] || { echo "not cai's work directory: $w" >&2; exit 4; }
exec 2>>log
phase() { printf '%s
' "$1" >phase.new && mv -fT -- phase.new phase; }
state=$(cat phase 2>/dev/null) || state=staged
if [ "$state" = staged ]; then
    if [ "$4" = finish ]; then cd / && rm -rf -- "$root/$w"; exit 0; fi
    [ -d new ] && [ ! -L new ] || exit 5
    printf '%s
' "$5" >rootattrs && mkdir -p old && phase out || exit 1
    state=out
fi
if [ "$state" = out ]; then
    for e in "$root"/* "$root"/.[!.]* "$root"/..?*; do
        [ -e "$e" ] || [ -L "$e" ] || continue
        name=${e#"$root"/}
        [ "$name" = "$w" ] && continue
        mv -T -- "$e" "old/$name" || exit 1
    done
    phase in || exit 1
    state=in
fi
if [ "$state" = in ]; then
    for e in new/* new/.[!.]* new/..?*; do
        [ -e "$e" ] || [ -L "$e" ] || continue
        mv -T -- "$e" "$root/${e#new/}" || exit 1
    done
    phase done || exit 1
fi
read -r owner mode mtime <rootattrs || owner=
cd / && rm -rf -- "$root/$w"
if [ -n "$owner" ]; then chown -- "$owner" "$root" && chmod -- "$mode" "$root" && touch -d "@$mtime" "$root"; fi
"""


def swap(mount: str, work: str, token: str, mode: str, root_attrs: str) -> list[str]:
    return _sh(SWAP_SCRIPT, mount, work, token, mode, root_attrs)


# Work directories in the volume and their phases, one per line: NAME<TAB>PHASE. Only names of
# cai's form are listed; the caller goes on only with the ones it has a token for.
LIST_WORK_SCRIPT = r"""
cd "$1" || exit 1
for w in .cai-import-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]; do
    [ -d "$w" ] && [ ! -L "$w" ] || continue
    p=$(cat -- "$w/phase" 2>/dev/null) || p=staged
    printf '%s\t%s\n' "$w" "$p"
done
"""


def list_work(mount: str) -> list[str]:
    return _sh(LIST_WORK_SCRIPT, mount)


# A new work directory: made by root 0700 (mkdir fails on anything already there, a link
# included), with the token and the staging directory inside, created through the working
# directory so that a rename of the work directory cannot redirect them.
MAKE_WORK_SCRIPT = r"""
set -e
cd "$1"
mkdir -m 700 -- "$2"
cd -- "$2"
[ "$(stat -c '%u %a' .)" = "0 700" ]
printf '%s\n' "$3" >token
mkdir -m 700 new
"""


def make_work_dir(mount: str, work: str, token: str) -> list[str]:
    return _sh(MAKE_WORK_SCRIPT, mount, work, token)


def free_space(mount: str) -> list[str]:
    return [*ENV, "/bin/df", "-Pk", mount]


def remove_tree(path: str) -> list[str]:
    return [*ENV, "/bin/rm", "-rf", "--", path]


def read_file(path: str) -> list[str]:
    return [*ENV, "/bin/cat", "--", path]


# --- cai cp into a stopped container's volume -----------------------------------------------------

# Run in a throwaway helper whose only mount is the one that holds the destination, as the agent
# (uid 1000, no capabilities), or as root for `-a`. Another running container on the same volume
# can swap a directory on the way for a link while this runs: the copy then follows it, but only
# into the volume (which that container can write anyway) or into the helper's own root, which is
# removed with it; never into the stopped container's root.
COPY_STAGED_SCRIPT = r"""
exec cp "$1" -R -P -T -- "$2" "$3"
"""


def copy_staged(source: str, target: str, *, keep_owners: bool) -> list[str]:
    return _sh(COPY_STAGED_SCRIPT, "-a" if keep_owners else "--preserve=mode,timestamps,links", source, target)
