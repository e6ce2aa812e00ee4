"""`cai export` → `cai import` → `cai export` keeps a real agent home exactly, on the volumes
themselves and in the archives; and the messages, setuid clearing, helper containers and the
engine without an agent image that go with it."""

from __future__ import annotations

import unicodedata

import pytest

import volume_trees as vt
from conftest import RUN_ID, RUN_LABEL, run_cai, unique


@pytest.fixture(scope="module")
def corpus(docker_client, agent_image):
    """Volume A, filled like a real agent home by a plain agent-image container (removed again,
    so export reads the volume through a helper). Module-scoped: it takes a few seconds to build."""
    volume = vt.make_volume(docker_client, "cai-test-home")
    container = docker_client.containers.run(
        agent_image, ["sleep", "infinity"], entrypoint=[], detach=True, name=unique("cai-test-corpus"),
        labels={RUN_LABEL: RUN_ID}, network_mode="none", volumes={volume: {"bind": vt.AGENT_MOUNT, "mode": "rw"}},
    )
    try:
        notes = vt.build_real_home_corpus(container, docker_client)
    finally:
        container.remove(force=True)
    yield volume, notes
    vt.remove_volume(docker_client, volume)


@pytest.fixture()
def scratch(docker_client):
    """Names for volumes that cai itself creates (so they carry no test label); removed at teardown."""
    names = []

    def new(prefix="cai-test-scratch"):
        names.append(unique(prefix))
        return names[-1]

    yield new
    for name in names:
        vt.remove_volume(docker_client, name)


def _ok(done, what):
    assert done.returncode == 0, f"{what}: rc {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done


def _watched(docker_client, volumes, roles, home, *argv):
    """Run cai while watching the containers that mount `volumes`: each must be a helper labelled
    containai.helper=true with a role in `roles`, and none may be left when cai returns."""
    with vt.HelperWatch(docker_client, *volumes) as watch:
        done = run_cai(home, *argv)
    watch.assert_all_labelled(roles)
    left = [(c.name, c.status, c.labels) for c in vt.helpers(docker_client, *volumes)]
    assert left == [], f"`cai {argv[0]}` left helper containers behind: {left}"
    return done, watch


def test_real_home_round_trip_keeps_archives_and_volumes_identical(corpus, home, tmp_path, docker_client, scratch):
    volume_a, notes = corpus
    first, second = tmp_path / "a.tgz", tmp_path / "b.tgz"
    volume_b = scratch()
    volumes = (volume_a, volume_b)

    exported, watch = _watched(docker_client, volumes, {"export"}, home,
                               "export", "--data-volume", volume_a, "--no-excludes", "-o", str(first))
    _ok(exported, "export A")
    assert exported.stdout == f"{first}\n"
    assert exported.stderr == "", "export is quiet unless --verbose"
    assert watch.roles() == {"export"}, "no export helper seen (no container mounts volume A)"
    imported, watch = _watched(docker_client, volumes, {"import"}, home, "import", "--data-volume", volume_b, "--from", str(first))
    _ok(imported, "import into B")
    assert imported.stderr == "", "a plain import prints nothing on success (the corpus has no setuid bits)"
    assert watch.roles() == {"import"}
    _ok(_watched(docker_client, volumes, {"export"}, home,
                 "export", "--data-volume", volume_b, "--no-excludes", "-o", str(second))[0], "export B")

    tree_a, tree_b = vt.tree_of_volume(volume_a, docker_client), vt.tree_of_volume(volume_b, docker_client)
    archive_a, archive_b = vt.tree_of_archive(first), vt.tree_of_archive(second)

    # The corpus is what it claims to be, so that equality below means something.
    private = vt.PRIVATE_FILE.encode()
    assert private in tree_a and private in archive_a
    nfc, nfd = (f"misc/{n}".encode() for n in (vt.NFC_NAME, vt.NFD_NAME))
    assert nfc != nfd and unicodedata.normalize("NFC", vt.NFD_NAME) == vt.NFC_NAME
    for path in (nfc, nfd, f"misc/{vt.NEWLINE_NAME}".encode(), f"misc/{vt.NAME_255_ASCII}".encode(),
                 f"misc/{vt.NAME_255_UTF8}".encode(), b"misc/name with  spaces .txt", b"misc/empty-dir",
                 f"{vt.LONG_DIR}/file-at-the-end-of-a-long-path.txt".encode()):
        assert path in tree_a, vt.show(path)
    assert len(f"{vt.LONG_DIR}/file-at-the-end-of-a-long-path.txt".encode()) > 100
    sparse = tree_a[vt.SPARSE.encode()]
    assert sparse.size == vt.SPARSE_SIZE
    assert tree_a[b"misc/links/dangling"].target == b"does-not-exist"
    assert tree_a[b"misc/links/absolute"].target == b"/etc/hostname"
    assert tree_a[b"projects/web/node_modules/.bin/left-pad"].target == b"../left-pad/bin/cli.js"
    assert tree_a[b"misc/links/two"].group == tree_a[b"misc/hardlink-elsewhere"].group == b"misc/hardlink-elsewhere"
    assert tree_a[b"claude/.credentials.json"].mode == 0o600
    assert {e.uid for e in tree_a.values()} >= {0, 1000, 1234}
    assert tree_a[b"misc/empty-file"].size == 0
    assert any(p.startswith(b"projects/repo/.git/objects/pack/") and p.endswith(b".pack") for p in tree_a)
    assert tree_a[b"projects/repo/.git/hooks/pre-commit"].mode == 0o755
    assert b"venvs/proj/pyvenv.cfg" in tree_a and tree_a[b"venvs/proj/bin/python3"].kind == "symlink"
    assert len(tree_a) > 1000, f"only {len(tree_a)} entries; is the venv there?"

    vt.assert_same_tree(tree_a, archive_a, "volume A and its export")
    vt.assert_same_tree(vt.expected_after_import(archive_a), archive_b, "export of A (without *.priv.*) and export of B")
    vt.assert_same_tree(vt.expected_after_import(tree_a), tree_b, "volume A (without *.priv.*) and volume B")
    assert private not in tree_b


def test_checker_fails_on_one_changed_mode_link_target_or_hard_link(corpus, docker_client):
    """The tree checker is not vacuous: copy volume A, see it equal, change one entry, see it differ."""
    volume_a, _ = corpus
    copy = vt.make_volume(docker_client, "cai-test-copy")
    try:
        docker_client.containers.run(
            vt.AGENT_IMAGE, ["sh", "-c", "cp -a /a/. /c/"], entrypoint=[], remove=True, network_mode="none",
            labels={RUN_LABEL: RUN_ID}, volumes={volume_a: {"bind": "/a", "mode": "ro"}, copy: {"bind": "/c", "mode": "rw"}})
        original = vt.tree_of_volume(volume_a, docker_client)
        vt.assert_same_tree(original, vt.tree_of_volume(copy, docker_client), "volume A and its cp -a copy")

        mutations = [
            ("mode", "chmod 640 $V/claude/settings.json", "chmod 644 $V/claude/settings.json", b"claude/settings.json"),
            # ln -sfn replaces the link: put the directory's and the link's mtimes back, so the target
            # is the only difference
            ("target", 'l=$V/misc/links/dangling; m=$(stat -c %Y $V/misc/links); o=$(stat -c %u:%g $l); '
                       't=$(stat -c %Y $l); ln -sfn does-not-exist-either $l; chown -h $o $l; touch -h -d @$t $l; '
                       'touch -d @$m $V/misc/links',
             None, b"misc/links/dangling"),
            # the same bytes and metadata, but no longer the same inode as misc/links/one
            ("group", 'm=$(stat -c %Y $V/misc/links); cp -p $V/misc/links/two $V/misc/links/two.new; '
                      'mv $V/misc/links/two.new $V/misc/links/two; touch -d @$m $V/misc/links', None, b"misc/hardlink-elsewhere"),
        ]
        for field, change, undo, path in mutations:
            vt.run_in_volume(docker_client, copy, change)
            changed = vt.tree_of_volume(copy, docker_client)
            with pytest.raises(AssertionError) as caught:
                vt.assert_same_tree(original, changed)
            message = str(caught.value)
            assert f"{field} differs" in message and vt.show(path) in message, message
            if undo:
                vt.run_in_volume(docker_client, copy, undo)
                vt.assert_same_tree(original, vt.tree_of_volume(copy, docker_client), f"after undoing the {field} change")
    finally:
        vt.remove_volume(docker_client, copy)


def test_setuid_setgid_sticky_are_cleared_with_one_warning(home, tmp_path, docker_client, scratch):
    members = [
        vt.d(".", mode=0o755), vt.d("./bin", mode=0o2755), vt.f("./bin/suid", b"#!/bin/sh\n", mode=0o4755),
        vt.f("./bin/both", b"#!/bin/sh\n", mode=0o6711), vt.d("./shared", mode=0o1777, uid=0, gid=0),
        vt.f("./plain", b"plain\n", mode=0o640), vt.sym("./link", "bin/suid"),
    ]
    archive = vt.write_archive(tmp_path / "bits.tgz", members)
    tree = vt.tree_of_archive(archive)
    assert vt.special_bit_count(tree) == 4
    volume = scratch()
    done = _ok(run_cai(home, "import", "--data-volume", volume, "--from", str(archive)), "import")
    assert done.stderr.splitlines() == ["[WARN] Cleared setuid, setgid and sticky bits on 4 entries"], done.stderr
    after = vt.tree_of_volume(volume, docker_client)
    vt.assert_same_tree(vt.expected_after_import(tree), after, "archive with its special bits cleared, and the volume")
    assert after[b"bin/suid"].mode == 0o755 and after[b"bin/both"].mode == 0o711 and after[b"shared"].mode == 0o777

    verbose = _ok(run_cai(home, "import", "--verbose", "--data-volume", volume, "--from", str(archive)), "import -v")
    lines = verbose.stderr.splitlines()
    assert [line for line in lines if line.startswith("[WARN]")] == ["[WARN] Cleared setuid, setgid and sticky bits on 4 entries"]
    assert f"[OK] Imported 6 entries into volume {volume}" in lines, verbose.stderr
    vt.assert_same_tree(vt.expected_after_import(tree), vt.tree_of_volume(volume, docker_client), "after the second import")


def test_ok_lines_only_with_verbose(home, tmp_path, docker_client, scratch):
    members = [vt.d("."), vt.d("./shell"), vt.d("./shell/bashrc.d"), vt.f("./shell/bashrc.d/x.priv.sh"),
               vt.f("./shell/bashrc.d/keep.sh"), vt.f("./a"), vt.hard("./b", "./a"), vt.sym("./c", "/nowhere")]
    archive = vt.write_archive(tmp_path / "small.tgz", members)
    volume = scratch()
    quiet = _ok(run_cai(home, "import", "--data-volume", volume, "--from", str(archive)), "import")
    assert (quiet.stdout, quiet.stderr) == ("", "")
    loud = _ok(run_cai(home, "--verbose", "import", "--data-volume", volume, "--from", str(archive)), "import -v")
    # 7 members besides the root; the *.priv.* one is left out, so 6 are restored
    assert f"[OK] Imported 6 entries into volume {volume}" in loud.stderr.splitlines(), loud.stderr
    assert not [line for line in loud.stderr.splitlines() if line.startswith(("[WARN]", "[ERROR]"))]

    out = tmp_path / "out.tgz"
    plain = _ok(run_cai(home, "export", "--data-volume", volume, "-o", str(out)), "export")
    assert (plain.stdout, plain.stderr) == (f"{out}\n", "")
    out2 = tmp_path / "out2.tgz"
    loud = _ok(run_cai(home, "export", "--verbose", "--data-volume", volume, "-o", str(out2)), "export -v")
    assert loud.stdout == f"{out2}\n"
    assert f"[OK] Exported to: {out2}" in loud.stderr.splitlines(), loud.stderr
    vt.assert_same_tree(vt.expected_after_import(vt.tree_of_archive(archive)), vt.tree_of_archive(out), "import then export")


def test_cai_import_names_are_just_data(home, tmp_path, docker_client, scratch):
    members = [
        vt.d(".", mode=0o750), vt.d("./.cai-import-staging"), vt.f("./.cai-import-staging/f", b"staged?\n"),
        vt.d("./.cai-import-staging/new"), vt.f("./.cai-import-staging/new/x", b"x"), vt.f("./.cai-import-old", b"old"),
        vt.d("./.cai-import-"), vt.d("./.cai-import-0123abcd"), vt.f("./.cai-import-0123abcd/log", b"swap done\n"),
        vt.f("./.cai-import-journal", b"phase=swap\n"), vt.sym("./.cai-import-lock", ".cai-import-staging"),
        vt.d("./sub"), vt.d("./sub/.cai-import-staging"), vt.f("./sub/.cai-import-staging/y"), vt.f("./plain", b"p"),
    ]
    archive = vt.write_archive(tmp_path / "names.tgz", members)
    expected = vt.expected_after_import(vt.tree_of_archive(archive))
    volume = scratch()
    for attempt in ("into a new volume", "again, over those very names"):
        done = _ok(run_cai(home, "import", "--data-volume", volume, "--from", str(archive)), f"import {attempt}")
        assert done.stderr == ""
        vt.assert_same_tree(expected, vt.tree_of_volume(volume, docker_client), f"volume after the import {attempt}")
    out = tmp_path / "back.tgz"
    _ok(run_cai(home, "export", "--data-volume", volume, "--no-excludes", "-o", str(out)), "export")
    vt.assert_same_tree(expected, vt.tree_of_archive(out), "export of the volume")
    assert vt.helpers(docker_client) == []


def test_helpers_are_labelled_and_removed_after_success_and_refusal(home, tmp_path, docker_client, scratch):
    archive = vt.write_archive(tmp_path / "h.tgz", [vt.d("."), vt.f("./a"), vt.d("./b")])
    hostile = vt.write_archive(tmp_path / "bad.tgz", [vt.d("."), vt.f("./a"), vt.node("./dev", "chr")])
    volume = scratch()
    for argv, role, ok in (
        (("import", "--data-volume", volume, "--from", str(archive)), "import", True),
        (("export", "--data-volume", volume, "-o", str(tmp_path / "e.tgz")), "export", True),
        (("import", "--data-volume", volume, "--from", str(hostile)), "import", False),
        (("import", "--data-volume", volume, "--from", str(tmp_path / "e.tgz")), "import", True),
    ):
        done, watch = _watched(docker_client, (volume,), {role}, home, *argv)
        assert done.returncode == (0 if ok else 1), done.stderr
        if ok:
            assert watch.roles() == {role}, f"`cai {argv[0]}` of a volume: no helper container seen"


def test_export_and_import_on_an_engine_without_the_agent_image(spare_engine, tmp_path):
    engine = spare_engine(4)
    home = tmp_path / "spare-home"
    home.mkdir()
    context = engine.add_context(home)
    assert [t for i in engine.client.images.list() for t in i.tags] == ["cai-tiny:sleep"]
    members = [
        vt.d(".", mode=0o755), vt.d("./claude", mode=0o700), vt.f("./claude/settings.json", b"{}\n", mode=0o600),
        vt.f(f"./{vt.NFC_NAME}", b"nfc"), vt.f(f"./{vt.NFD_NAME}", b"nfd"), vt.f("./root-owned", b"r", uid=0, gid=0),
        vt.hard("./same-inode", "./root-owned", uid=0, gid=0), vt.sym("./abs", "/etc/shadow"), vt.sym("./dangle", "../../x"),
        vt.d("./empty"), vt.f("./empty-file", b""), vt.f(f"./{'d' * 120}", b"long name"),
    ]
    archive = vt.write_archive(tmp_path / "spare.tgz", members)
    expected = vt.expected_after_import(vt.tree_of_archive(archive))
    volume = unique("cai-test-spare")
    try:
        imported = _ok(run_cai(home, "--context", context, "import", "--data-volume", volume, "--from", str(archive)),
                       "import on the spare engine")
        assert imported.stderr == ""
        on_disk = vt.tree_of_volume_via_archive(volume, engine.client, image="cai-tiny:sleep")
        vt.assert_same_tree(expected, on_disk, "archive and the spare engine's volume")
        out = tmp_path / "back.tgz"
        exported = _ok(run_cai(home, "--context", context, "export", "--data-volume", volume, "--no-excludes", "-o", str(out)),
                       "export on the spare engine")
        assert exported.stdout == f"{out}\n"
        vt.assert_same_tree(expected, vt.tree_of_archive(out), "archive and its round trip on the spare engine")
        built = engine.client.images.list(filters={"label": "containai.helper=true"})
        assert built, "no helper image labelled containai.helper=true on an engine without the agent image"
        left = engine.client.containers.list(all=True, filters={"label": "containai.helper"})
        assert left == [], f"helpers left on the spare engine: {[c.name for c in left]}"
    finally:
        for container in engine.client.containers.list(all=True, filters={"volume": volume}):
            container.remove(force=True)
        try:
            engine.client.volumes.get(volume).remove(force=True)
        except Exception:  # noqa: BLE001 - never created
            pass
