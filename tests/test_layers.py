"""The store and the remote own their invariants (issue #9, item 3).

* A layer check: the modules above the store and the remote (the verbs in
  ``dvx/ops/``, the public API, the CLI, the history layer) use only their public
  methods: no private member of a store, remote or writer, no store paths, no remote
  key layout, no raw ``RemoteStorage``.
* The store's verified reader (``Store.open_file``): seekable, byte-exact, refuses
  corrupted chunks.
* Fork safety: a child forked after the thread pools were used reads, restores and
  hashes without hanging (PyTorch DataLoader workers fork).
"""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dvx.errors import CorruptObjectError
from dvx.ops.add import add
from dvx.pointer import read_pointer
from dvx.repo import Repository
from tests.conftest import pseudo_random, write

ROOT = Path(__file__).resolve().parent.parent

# -- 1. the layer check ------------------------------------------------------------------

# names whose value is a store, a remote or one of their helpers
OWNED = ("store", "remote", "writer")
# public attributes that still expose the store's file layout (for tests, not verbs)
STORE_LAYOUT = {"pack_path", "idx_path", "packs_dir", "tmp_dir"}
REMOTE_LAYOUT = {"storage", "pack_key", "index_key", "root_key", "MARKER_KEY", "RemoteStorage"}


def _owner(node: ast.expr) -> str | None:
    """'store' / 'remote' / 'writer' when ``node`` names one (``store``, ``repo.store``,
    ``self.remote``, ``local_store``...), else None."""
    if isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.Attribute):
        name = node.attr
    else:
        return None
    low = name.lower().lstrip("_")
    for kind in OWNED:
        if low == kind or low.endswith("_" + kind):
            return kind
    return None


def layer_violations(source: str, filename: str) -> list[str]:
    """What ``source`` does that only the store and remote layers may do."""
    out: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute):
            owner = _owner(node.value)
            if owner is None:
                continue
            attr = node.attr
            if attr.startswith("_") and not attr.startswith("__"):
                out.append(f"{where}: private member {ast.unparse(node)}")
            elif owner == "store" and attr in STORE_LAYOUT:
                out.append(f"{where}: store layout {ast.unparse(node)}")
            elif owner == "remote" and attr in REMOTE_LAYOUT:
                out.append(f"{where}: remote layout {ast.unparse(node)}")
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Attribute) \
                and node.target.attr == "requests" and _owner(node.target.value) == "remote":
            out.append(f"{where}: counts the remote's requests by hand")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr") and len(node.args) >= 2 \
                and _owner(node.args[0]) is not None and isinstance(node.args[1], ast.Constant) \
                and str(node.args[1].value).startswith("_"):
            out.append(f"{where}: private member through {node.func.id}")
        elif isinstance(node, ast.ImportFrom) and node.module and (
                node.module.startswith("dvx.store") or node.module.startswith("dvx.remote")):
            for alias in node.names:
                if alias.name.startswith("_") or alias.name in REMOTE_LAYOUT:
                    out.append(f"{where}: imports {alias.name} from {node.module}")
    return out


def _upper_modules() -> list[Path]:
    files = [f for sub in ("ops", "access", "artifacts", "lineage", "runs")
             for f in sorted((ROOT / "dvx" / sub).glob("*.py"))]
    for name in ("api.py", "cli.py", "cli_runs.py", "cli_artifacts.py", "history.py", "__init__.py"):
        if (ROOT / "dvx" / name).exists():
            files.append(ROOT / "dvx" / name)
    return files


def test_modules_above_the_store_and_remote_use_only_their_public_interface() -> None:
    files = _upper_modules()
    assert len(files) > 10 and any(f.name == "push.py" for f in files)
    problems = [v for f in files for v in layer_violations(f.read_text(), str(f.relative_to(ROOT)))]
    assert problems == [], "\n".join(problems)


def test_other_modules_use_no_private_store_or_remote_members() -> None:
    """Outside the two layers (and not only the verbs): no private members either."""
    problems = []
    for f in sorted((ROOT / "dvx").rglob("*.py")):
        rel = f.relative_to(ROOT)
        if rel.parts[1] in ("store", "remote"):
            continue
        problems += [v for v in layer_violations(f.read_text(), str(rel)) if "private" in v]
    assert problems == [], "\n".join(problems)


def test_the_layer_check_catches_what_it_forbids() -> None:
    bad = textwrap.dedent("""
        from dvx.remote.layout import pack_key, Remote
        from dvx.store.local import _write_all
        def f(repo, remote, store, writer):
            repo.store._reader("x").prefetch(0, 1)
            store._stored_as_delta(b"", "p")
            remote.storage.read_range(pack_key("n"), 0, 1)
            remote.requests += 2
            open(store.idx_path("n"))
            writer._queue.put(None)
            getattr(store, "_readers")
        """)
    found = layer_violations(bad, "bad.py")
    for what in ("imports pack_key", "imports _write_all", "repo.store._reader", "store._stored_as_delta",
                 "remote.storage", "requests by hand", "store.idx_path", "writer._queue", "getattr"):
        assert any(what in v for v in found), (what, found)
    good = "def f(repo, remote):\n    remote.put_pack(repo.store.export_pack('n'))\n    x.__class__\n"
    assert layer_violations(good, "good.py") == []


# -- 2. the verified reader --------------------------------------------------------------

def _big(repo_dir: Path, size: int = 12_000_000) -> tuple[Repository, bytes, bytes]:
    data = pseudo_random(size, 91)
    write(repo_dir / "big.bin", data)
    repo = Repository(str(repo_dir))
    add(repo, ["big.bin"])
    mid = read_pointer(str(repo_dir / "big.bin.dvx")).oid
    return repo, data, mid


def test_open_file_reads_seeks_and_copies_exactly(repo_dir: Path, tmp_path: Path) -> None:
    repo, data, mid = _big(repo_dir)
    with repo.store.open_file(mid) as f:
        assert f.readable() and f.seekable() and not f.writable()
        assert len(f.manifest.chunks) > 3  # several chunks: reads cross their bounds
        assert f.read(10) == data[:10] and f.tell() == 10
        assert f.seek(-5, io.SEEK_END) == len(data) - 5 and f.read() == data[-5:]
        assert f.read(7) == b""  # at the end
        f.seek(0)
        buf = bytearray(3_000_001)
        assert f.readinto(buf) == len(buf) and buf == data[:len(buf)]
        offsets = [1, len(data) // 3, len(data) // 2 + 17, len(data) - 100_000]
        for off in offsets:
            f.seek(off)
            assert f.read(200_000) == data[off:off + 200_000]
        f.seek(123)
        assert f.seek(10, io.SEEK_CUR) == 133
        f.seek(len(data) + 10)
        assert f.read(5) == b""
        with pytest.raises(ValueError):
            f.seek(-1)
        f.seek(0)
        assert f.read() == data
        out = tmp_path / "copy.bin"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            assert f.copy_to(fd) == len(data)
        finally:
            os.close(fd)
        assert out.read_bytes() == data and f.tell() == len(data)
        # buffered like any binary file
        f.seek(0)
        assert io.BufferedReader(f, 65536).read(100_000) == data[:100_000]  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        f.read(1)


def test_open_file_never_returns_a_corrupted_chunk(repo_dir: Path) -> None:
    repo, data, mid = _big(repo_dir, 3_000_000)
    with repo.store.open_file(mid) as f:
        chunks = f.manifest.chunks
    # flip one byte inside the second chunk, in its pack
    second = repo.store.locate(chunks[1][1])
    assert second is not None
    path = repo.store.pack_path(second[0])
    os.chmod(path, 0o644)
    with open(path, "r+b") as p:
        p.seek(second[2] + 10)
        byte = p.read(1)
        p.seek(second[2] + 10)
        p.write(bytes([byte[0] ^ 1]))
    repo.store.close()  # drop the old mapping
    with repo.store.open_file(mid) as f:
        assert f.read(chunks[0][0]) == data[:chunks[0][0]]  # the first chunk is sound
        with pytest.raises(CorruptObjectError, match="hash mismatch"):
            f.read(1)
        with pytest.raises(CorruptObjectError):
            f.copy_to(os.open(os.devnull, os.O_WRONLY))


# -- 3. fork safety ----------------------------------------------------------------------

FORK_SCRIPT = r"""
import os, sys, traceback
from dvx.repo import Repository
from dvx.ops.add import add
from dvx.ops.checkout import checkout
from dvx.pointer import read_pointer

root = sys.argv[1]
repo = Repository(root)
big = os.path.join(root, "big.bin")
want = open(big, "rb").read()
add(repo, ["big.bin"])                       # the hash pool is used
mid = read_pointer(big + ".dvx").oid
os.unlink(big)
checkout(repo, ["big.bin"])                  # the store's read pool is used
with repo.store.open_file(mid) as f:
    f.seek(5_000_000)
    f.read(10)
pid = os.fork()
if pid == 0:
    try:
        os.unlink(big)
        checkout(repo, ["big.bin"])          # read pool again, in the child
        assert open(big, "rb").read() == want
        with repo.store.open_file(mid) as f:
            f.seek(7_000_000)
            assert f.read(1000) == want[7_000_000:7_001_000]
        with open(os.path.join(root, "other.bin"), "wb") as o:
            o.write(want[::-1])
        add(repo, ["other.bin"])             # hash pool again, in the child
        os._exit(0)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
assert code == 0, code
print("child ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reads_restores_and_hashes_after_the_pools_were_used(repo_dir: Path) -> None:
    write(repo_dir / "big.bin", pseudo_random(20_000_000, 17))  # several runs, several blocks
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT, str(repo_dir)], capture_output=True,
                              text=True, env=env, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a forked child hung on a thread pool used before the fork")
    assert proc.returncode == 0 and "child ok" in proc.stdout, proc.stdout + proc.stderr


# -- 4. the remote keeps its write order; the store verifies what it adopts --------------

def test_remote_writes_a_root_record_only_after_its_packs(repo_dir: Path, tmp_path: Path) -> None:
    from dvx.errors import RemoteError
    from dvx.remote.layout import Remote, RootRecord
    from dvx.settings import RemoteConfig

    repo, data, mid = _big(repo_dir, 2_000_000)
    (tmp_path / "r").mkdir()
    remote = Remote(RemoteConfig("r", str(tmp_path / "r")), repo.state_dir, repo.root)
    remote.check_format(create=True)
    [name] = repo.store.pack_names()
    record = RootRecord(mid.hex(), "file", [name], 3, len(data))
    with pytest.raises(RemoteError, match="before its packs"):
        remote.write_root(record)  # the pack is not there yet
    assert remote.read_root(mid.hex()) is None
    with pytest.raises(AttributeError):
        remote.requests += 1  # type: ignore[misc]  # counted by the remote alone
    before = remote.requests
    remote.put_pack(repo.store.export_pack(name))
    assert remote.requests == before + 2  # the pack, then its index
    remote.write_root(record)
    assert remote.read_root(mid.hex()) == record
    # a fresh Remote (another push) learns the packs from the remote's listing
    other = Remote(RemoteConfig("r", str(tmp_path / "r")), repo.state_dir, repo.root)
    with pytest.raises(RemoteError):
        other.write_root(record)
    assert other.list_pack_names() == [name]
    other.write_root(record)
    # deletion: index first, so the pack is invisible before it goes
    other.delete_pack(name)
    assert other.list_pack_names() == [] and other.list_packs() == {}


def test_store_adopts_only_a_sound_pack(repo_dir: Path, tmp_path: Path) -> None:
    import shutil

    from dvx.errors import CorruptObjectError as Corrupt

    repo, data, mid = _big(repo_dir, 2_000_000)
    [name] = repo.store.pack_names()
    exported = repo.store.export_pack(name)
    good = tmp_path / "good.pack"
    shutil.copyfile(exported.path, good)
    bad = bytearray(good.read_bytes())
    bad[100] ^= 1
    other = Repository(str(repo_dir))
    store = other.store
    store.delete_pack(name)
    assert store.pack_names() == [] and not store.contains(mid)
    with pytest.raises(Corrupt, match="hash mismatch"):
        store.adopt_pack(name, lambda p: Path(p).write_bytes(bytes(bad)), "test")
    assert store.pack_names() == [] and os.listdir(store.tmp_dir) == []  # nothing published, nothing left
    assert store.adopt_pack(name, lambda p: shutil.copyfile(good, p), "test") == exported.size
    store.refresh()
    with store.open_file(mid) as f:
        assert f.read() == data
    assert store.adopt_pack(name, lambda p: None, "test") == 0  # already there


def test_every_subpackage_is_installed() -> None:
    """pyproject.toml lists the packages explicitly: a new subpackage missing from the
    list works from a checkout and is absent from a built wheel (dvx.artifacts once was)."""
    top = Path(__file__).resolve().parent.parent
    listed = top.joinpath("pyproject.toml").read_text().split("[tool.setuptools]", 1)[1]
    listed = listed.split("packages = [", 1)[1].split("]", 1)[0]
    names = {n.strip().strip('"') for n in listed.replace("\n", " ").split(",") if n.strip()}
    found = {".".join(p.parent.relative_to(top).parts) for p in (top / "dvx").rglob("__init__.py")}
    assert found == names
