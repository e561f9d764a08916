"""One place for each canonical rule (issue 9, item 4).

* every BLAKE3 call with a derive-key context goes through ``dvx/hashing.py``;
* one hand-written validator for pointers and config, which accepts exactly the valid
  ones and raises only ``PointerError``/``ConfigError`` on anything else;
* the chunker defaults are defined once;
* config edits keep comments, order and formatting byte for byte.
"""

from __future__ import annotations

import ast
import contextlib
from dataclasses import asdict
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import dvx
from dvx.errors import ConfigError, FormatVersionError, PointerError
from dvx.ini import IniFile
from dvx.pointer import Pointer, parse_pointer
from dvx.settings import RepoConfig
from tests.conftest import Cli

DVX_DIR = Path(dvx.__file__).resolve().parent


def _modules() -> list[Path]:
    return sorted(DVX_DIR.rglob("*.py"))


# -- hashing ---------------------------------------------------------------------------

def test_only_hashing_passes_a_derive_key_context() -> None:
    offenders = []
    for path in _modules():
        if path.name == "hashing.py" and path.parent == DVX_DIR:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "derive_key_context":
                offenders.append(f"{path.relative_to(DVX_DIR.parent)}:{node.value.lineno}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.startswith("dvx 2026-11 "):
                offenders.append(f"{path.relative_to(DVX_DIR.parent)}:{node.lineno} (context string)")
    assert not offenders, "derive-key contexts outside dvx/hashing.py: " + ", ".join(offenders)


def test_pack_name_and_id_matches() -> None:
    from blake3 import blake3

    from dvx import hashing

    assert hashing.pack_name(b"x") == blake3(b"x", derive_key_context="dvx 2026-11 pack v1").hexdigest()
    for kind in hashing.CONTEXTS:
        oid = hashing.object_id(kind, b"data")
        assert hashing.id_matches(kind, b"data", oid)
        assert not hashing.id_matches(kind, b"datA", oid)
        assert not any(hashing.id_matches(other, b"data", oid) for other in hashing.CONTEXTS if other != kind)
    assert not hashing.id_matches(99, b"data", hashing.chunk_id(b"data"))
    assert hashing.manifest_id(b"m") == hashing.object_id(hashing.KIND_MANIFEST, b"m")


# -- chunker defaults --------------------------------------------------------------------

def test_chunker_defaults_are_defined_once() -> None:
    import re

    from dvx.chunking import Chunker, params
    from dvx.settings import ChunkerConfig

    assert (params.DEFAULT_MIN_SIZE, params.DEFAULT_AVG_SIZE, params.DEFAULT_MAX_SIZE) == (16384, 65536, 262144)
    c = ChunkerConfig()
    p = Chunker().params
    assert (c.min_size, c.avg_size, c.max_size) == (p.min_size, p.avg_size, p.max_size)
    assert (c.normalization, c.seed, c.algorithm) == (params.DEFAULT_NORMALIZATION, params.DEFAULT_SEED,
                                                      params.ALGORITHM)
    literal = re.compile(r"\b(16384|65536|262144)\b|\b(16|64|256) ?\* ?1024\b|\b1 ?<< ?(14|16|18)\b"
                         r"|\bfastcdc2020\b")
    found = []
    for path in _modules():
        if path == DVX_DIR / "chunking" / "params.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if literal.search(code) and "MAX_POINTER_BYTES" not in code:
                found.append(f"{path.relative_to(DVX_DIR.parent)}:{lineno}: {line.strip()}")
    assert not found, "chunker defaults outside dvx/chunking/params.py:\n" + "\n".join(found)


# -- the pointer validator ----------------------------------------------------------------

_HEX = "0123456789abcdef"
_hex_ids = st.text(_HEX, min_size=64, max_size=64)
_FIELDS = ("dvx", "kind", "id", "size", "files", "b3", "exec")


@st.composite
def valid_pointers(draw: st.DrawFn) -> Pointer:
    if draw(st.booleans()):
        return Pointer(dvx=1, kind="file", id=draw(_hex_ids), size=draw(st.integers(0, 2**70)), files=1,
                       b3=draw(_hex_ids), exec=draw(st.booleans()))
    return Pointer(dvx=1, kind="tree", id=draw(_hex_ids), size=draw(st.integers(0, 2**70)),
                   files=draw(st.integers(0, 2**40)))


def _valid(values: dict[str, Any]) -> bool:
    """The pointer rules of protocols/format.md §6, written out again as the oracle."""
    def whole(v: object) -> bool:
        return type(v) is int and v >= 0

    def hex_id(v: object) -> bool:
        return type(v) is str and len(v) == 64 and all(c in _HEX for c in v)

    if not set(_FIELDS[:5]) <= values.keys() <= set(_FIELDS):
        return False
    if not (type(values["dvx"]) is int and whole(values["size"]) and whole(values["files"])
            and hex_id(values["id"]) and values["kind"] in ("file", "tree")
            and type(values.get("exec", False)) is bool):
        return False
    b3 = values.get("b3")
    if values["kind"] == "file":
        return values["files"] == 1 and hex_id(b3)
    return b3 is None and not values.get("exec", False)


@settings(max_examples=300, deadline=None)
@given(valid_pointers(), st.data())
def test_valid_pointers_round_trip(p: Pointer, data: st.DataObject) -> None:
    assert parse_pointer(p.render(), "p.dvx") == p
    assert Pointer.create(**asdict(p)) == p
    # what readers must also accept: any order, comments, blank lines, x- fields, spacing, CRLF
    lines = p.render().splitlines()[1:]
    lines = data.draw(st.permutations(lines))
    extra = data.draw(st.lists(st.sampled_from(["", "# note", "x-origin: s3://b/k", "  ", "x-a:"]), max_size=4))
    mixed = [*lines, *extra]
    mixed = data.draw(st.permutations(mixed))
    pad = data.draw(st.sampled_from(["", " ", "\t"]))
    nl = data.draw(st.sampled_from(["\n", "\r\n"]))
    text = nl.join(pad + line.replace(": ", f"{pad}:{pad} ") for line in mixed)
    assert parse_pointer(text, "p.dvx") == p


_any_value = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 3), st.integers(0, 2**65), st.just(1.0),
    st.sampled_from(["file", "tree", "dir", "1", "", "true"]), _hex_ids,
    st.text(_HEX + "AF g", max_size=66),
)
_field_values = st.dictionaries(st.sampled_from([*_FIELDS, "colour", "x-y"]), _any_value, max_size=9)


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A valid pointer's values with none, one or a few of them changed, dropped or added."""
    values = asdict(draw(valid_pointers()))
    if values["b3"] is None and draw(st.booleans()):
        del values["b3"]
    if not values["exec"] and draw(st.booleans()):
        del values["exec"]
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from([*_FIELDS, "colour"]))
        if draw(st.integers(0, 3)) == 0:
            values.pop(key, None)
        else:
            values[key] = draw(_any_value)
    return values


@settings(max_examples=600, deadline=None)
@given(st.one_of(_mutated(), _field_values))
def test_create_accepts_exactly_the_valid_values(values: dict[str, Any]) -> None:
    try:
        p = Pointer.create(**values)
    except PointerError:
        assert not (_valid(values) and values["dvx"] == 1), values
    else:
        assert _valid(values) and values["dvx"] == 1, values
        assert asdict(p) == {"b3": None, "exec": False, **values}
        assert parse_pointer(p.render(), "p.dvx") == p


_text_values = {
    "dvx": st.sampled_from(["1", "01", "2", "x", "-1", "1.0", "١"]),
    "kind": st.sampled_from(["file", "tree", "File", "dir", ""]),
    "id": st.one_of(_hex_ids, st.sampled_from(["", "ab" * 31, "AB" * 32, "ab" * 33, "g" * 64])),
    "size": st.sampled_from(["0", "7", "1" * 30, "-3", "1e3", "", "٣"]),
    "files": st.sampled_from(["0", "1", "2", "-1", "one"]),
    "b3": st.one_of(_hex_ids, st.sampled_from(["", "ab" * 31, "AB" * 32])),
    "exec": st.sampled_from(["true", "false", "yes", "1", ""]),
}


def _typed(key: str, text: str) -> object:
    """What a field's text means, or a marker that it cannot be read at all."""
    if key == "exec":
        return {"true": True, "false": False}.get(text, ...)
    if key in ("dvx", "size", "files"):
        return int(text) if text.isascii() and text.isdigit() else ...
    return text


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_parse_accepts_exactly_the_valid_pointers(data: st.DataObject) -> None:
    # a valid pointer's lines, with none, one or a few of them changed, dropped or added
    fields = dict(line.split(": ", 1) for line in data.draw(valid_pointers()).render().splitlines()[1:])
    for _ in range(data.draw(st.integers(0, 2))):
        key = data.draw(st.sampled_from(_FIELDS))
        if data.draw(st.integers(0, 3)) == 0:
            fields.pop(key, None)
        else:
            fields[key] = data.draw(_text_values[key])
    text = "".join(f"{k}: {v}\n" for k, v in fields.items())
    typed = {k: _typed(k, v) for k, v in fields.items()}
    if "dvx" in typed and typed["dvx"] not in (1, ...):
        with pytest.raises(FormatVersionError):
            parse_pointer(text, "p.dvx")
        return
    ok = ... not in typed.values() and _valid(typed)
    try:
        p = parse_pointer(text, "p.dvx")
    except PointerError as exc:
        assert not ok, (text, exc)
        assert exc.message.startswith("p.dvx")
    else:
        assert ok, text
        assert asdict(p) == {"b3": None, "exec": False, **typed}


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400),
                 st.lists(st.sampled_from(["dvx: 1", "kind: tree", "kind: file", f"id: {'a' * 64}",
                                           f"b3: {'b' * 64}", "size: 1", "files: 1", "exec: true",
                                           "<<<<<<< ours", "=======", "x-k: v", "# c", ":", "a:b:c"]),
                          max_size=10).map("\n".join)))
def test_garbage_pointers_raise_only_pointer_errors(data: str | bytes) -> None:
    with contextlib.suppress(PointerError, FormatVersionError):
        parse_pointer(data, "fuzz.dvx")


# -- the config validator -----------------------------------------------------------------

_CONFIG_LINES = [
    "[core]", "[chunker]", "[gc]", '[remote "origin"]', '[remote "bad name"]', "[other]", "[core", "format = 1",
    "format = 2", "format = x", "extensions = zstd", "fsync = false", "fsync = maybe", "direct_io = off",
    "default_remote = origin", "url = /tmp/r", "url =", "endpoint_url = http://h", "algorithm = fastcdc2020",
    "algorithm = rabin", "min_size = 16384", "min_size = 8", "avg_size = 65536", "max_size = 262144",
    "max_size = 99999999999999999999999", "normalization = 5", "seed = -1", "reflog_expire_days = 3",
    "reflog_expire_days = -3", "colour = red", "  continued", "# comment", "; comment", "", "garbage",
    "= value", "key: value", "\tindented = 1", "[remote \"a\"] # c",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_CONFIG_LINES), max_size=14),
       st.lists(st.sampled_from(_CONFIG_LINES), max_size=6), st.text(max_size=60))
def test_garbage_config_raises_only_config_errors(tmp_path_factory: pytest.TempPathFactory, shared: list[str],
                                                  local: list[str], noise: str) -> None:
    from dvx.settings import RepoConfig, load_config

    d = tmp_path_factory.mktemp("cfg")
    (d / "config").write_text("\n".join(shared) + "\n" + noise, encoding="utf-8", errors="surrogateescape")
    (d / "config.local").write_text("\n".join(local) + "\n")
    try:
        config = load_config(str(d))
    except (ConfigError, FormatVersionError) as exc:
        assert exc.message
    else:
        assert isinstance(config, RepoConfig)


_names = st.text("abcXYZ019_.-", min_size=1, max_size=8)
_plain = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_categories=("Z", "C")),
                 min_size=1, max_size=20)


@st.composite
def valid_configs(draw: st.DrawFn) -> RepoConfig:
    from dvx.chunking.params import check_settings
    from dvx.settings import ChunkerConfig, CoreConfig, GcConfig, RemoteConfig, RepoConfig

    while True:
        mn = draw(st.integers(64, 1 << 20))
        avg = draw(st.integers(mn, 1 << 22))
        mx = draw(st.integers(avg, 1 << 24))
        norm = draw(st.integers(0, 3))
        try:
            check_settings(mn, avg, mx, norm, 0)
            break
        except ValueError:
            continue
    chunker = ChunkerConfig(min_size=mn, avg_size=avg, max_size=mx, normalization=norm,
                            seed=draw(st.integers(0, 2**64 - 1)))
    remotes = {}
    for name in draw(st.lists(_names, unique=True, max_size=3)):
        keys = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(lambda k: k != "url")
        remotes[name] = RemoteConfig(name, draw(_plain), draw(st.dictionaries(keys, _plain, max_size=3)))
    core = CoreConfig(default_remote=draw(st.none() | _names), fsync=draw(st.booleans()),
                      direct_io=draw(st.booleans()), autostage=draw(st.booleans()))
    return RepoConfig(core=core, chunker=chunker, remotes=remotes,
                      gc=GcConfig(reflog_expire_days=draw(st.integers(0, 10**6))))


@settings(max_examples=150, deadline=None)
@given(valid_configs(), st.booleans())
def test_valid_configs_round_trip(tmp_path_factory: pytest.TempPathFactory, config: RepoConfig,
                                  split: bool) -> None:
    """What ``dvx init`` and the config editor write, ``load_config`` reads back as it was."""
    from dvx.settings import edit_config, load_config, write_initial_config

    d = str(tmp_path_factory.mktemp("cfg"))
    write_initial_config(d, config.chunker)

    def fill(ini: IniFile, local: bool) -> None:
        core = config.core
        for key, value in (("fsync", core.fsync), ("direct_io", core.direct_io), ("autostage", core.autostage)):
            if split == local:
                ini.set("core", key, "true" if value else "false")
        if core.default_remote is not None and not local:
            ini.set("core", "default_remote", core.default_remote)
        if split == local:
            ini.set("gc", "reflog_expire_days", str(config.gc.reflog_expire_days))
        for r in config.remotes.values():
            if not local:
                ini.set(f'remote "{r.name}"', "url", r.url)
            for k, v in r.options.items():
                if (len(k) % 2 == 1) == local:  # options spread over both files
                    ini.set(f'remote "{r.name}"', k, v)

    edit_config(d, False, lambda ini: fill(ini, False))
    edit_config(d, True, lambda ini: fill(ini, True))
    assert load_config(d) == config


# -- config edits keep every other byte ---------------------------------------------------

_COMMENTED = """\
# DVX repository configuration (committed). Chunker settings are fixed for the
# life of the repository: changing them changes every id.
[core]
format = 1
; autostage stays off here: CI runs without hooks
autostage = false

# NEVER change these: every id depends on them
[chunker]
algorithm = fastcdc2020
min_size = 16384
avg_size = 65536
max_size = 262144
normalization = 1
seed = 0

[gc]
\treflog_expire_days = 30\x20\x20
# the end
"""


def test_remote_edits_keep_comments_order_and_formatting(repo_dir: Path, cli: Cli) -> None:
    cfg = repo_dir / ".dvx" / "config"
    local = repo_dir / ".dvx" / "config.local"
    cfg.write_text(_COMMENTED)
    local.write_text("# this machine only\n[core]\nfsync = true\n")
    (repo_dir / "store-a").mkdir()
    (repo_dir / "store-b").mkdir()

    cli("remote", "add", "origin", "store-a", "--default", "-o", "timeout=30")
    text = cfg.read_text()
    with_default = _COMMENTED.replace("autostage = false\n", "autostage = false\ndefault_remote = origin\n")
    assert text == with_default + '\n[remote "origin"]\nurl = store-a\ntimeout = 30\n'

    cli("remote", "add", "backup", "store-b", "--local", "-o", "secret_access_key=hunter2")
    assert local.read_text() == ('# this machine only\n[core]\nfsync = true\n\n'
                                 '[remote "backup"]\nurl = store-b\nsecret_access_key = hunter2\n')
    assert cfg.read_text() == text

    cli("remote", "modify", "origin", "--url", "store-b", "-o", "retries=2", "--unset", "timeout")
    assert cfg.read_text() == text.replace("url = store-a\ntimeout = 30\n", "url = store-b\nretries = 2\n")
    cli("remote", "modify", "backup", "--default", "--local")
    assert local.read_text().startswith("# this machine only\n[core]\nfsync = true\n"
                                        "default_remote = backup\n\n")

    import json
    remotes = {r["name"]: r for r in json.loads(cli("remote", "list", "--json").stdout)}
    assert remotes["origin"]["url"] == "store-b" and remotes["origin"]["options"] == {"retries": "2"}
    assert remotes["backup"]["default"] is True

    cli("remote", "remove", "backup")
    assert local.read_text() == "# this machine only\n[core]\nfsync = true\n"
    cli("remote", "remove", "origin")  # the default: default_remote goes too
    assert cfg.read_text() == _COMMENTED
    cli("remote", "add", "origin", "store-a", "--default", "-o", "timeout=5")
    cli("remote", "remove", "origin")
    assert cfg.read_text() == _COMMENTED
    assert cli("status").exit_code == 0  # still a valid config


def test_remote_edit_refuses_what_would_not_read_back(repo_dir: Path, cli: Cli) -> None:
    cfg = repo_dir / ".dvx" / "config"
    before = cfg.read_bytes()
    res = cli("remote", "add", "x", "s3://bucket/p", "-o", "a:b=c", ok=False)
    assert "invalid config key 'a:b'" in res.output
    assert cfg.read_bytes() == before


_INI_LINES = ["# c", "; c", "", "\t", "[s]", "[t]", '[remote "o"]', "a = 1", "b: 2", "  c = 3", "\tcont",
              "d =", "[u] # c", "a = x # not a comment"]


@st.composite
def ini_texts(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.sampled_from(_INI_LINES), max_size=14))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    if draw(st.booleans()):
        text += "\n"
    try:
        IniFile(text)
    except ConfigError:
        return "[s]\na = 1\n"
    return text


_edits = st.lists(st.tuples(st.sampled_from(["set", "unset", "remove"]),
                            st.sampled_from(["s", "t", "u", "new"]), st.sampled_from(["a", "b", "c", "z"]),
                            st.sampled_from(["v", "", "two words", "x=y"])), max_size=6)


@settings(max_examples=400, deadline=None)
@given(ini_texts(), _edits)
@example("[s]\n# c\na = 1\n# c", [("set", "u", "a", "v"), ("remove", "u", "a", "v"),
                                    ("remove", "s", "a", "v")])  # repeated lines: found by hypothesis
@example("[t]\n  c = 3\na = 1", [("set", "t", "b", "v")])  # keys of mixed indentation: found by hypothesis
def test_ini_edits_change_only_what_they_must(text: str, edits: list[tuple[str, str, str, str]]) -> None:
    ini = IniFile(text)
    model = {s: dict(ini.items(s)) for s in ini.sections()}
    for op, section, key, value in edits:
        before = ini.text()
        lines_before = ini.lines[:]
        assert before == "".join(lines_before)
        if op == "set":
            ini.set(section, key, value)
            model.setdefault(section, {})[key] = value
        elif op == "unset":
            assert ini.unset(section, key) == (key in model.get(section, {}))
            model.get(section, {}).pop(key, None)
        else:
            assert ini.remove_section(section) == (section in model)
            model.pop(section, None)
        again = IniFile(ini.text())  # what a reader sees now
        assert {s: dict(again.items(s)) for s in again.sections()} == model
        assert again.sections() == list(model)
        # one contiguous change (set: plus a newline added to the old last line); every
        # other line stays, in order, byte for byte
        if op != "set":  # exactly one contiguous run of lines deleted (a diff of lines
            # would be ambiguous where identical lines repeat, e.g. two "# c" comments)
            after, cut = ini.lines, len(lines_before) - len(ini.lines)
            i = next((n for n, (x, y) in enumerate(zip(lines_before, after, strict=False)) if x != y),
                     len(after))
            assert cut >= 0 and lines_before[:i] + lines_before[i + cut:] == after, (before, ini.text())
            continue
        changes = [op for op in SequenceMatcher(None, lines_before, ini.lines, autojunk=False).get_opcodes()
                   if op[0] != "equal"]
        assert len(changes) <= 2, (before, ini.text())
        for tag, i1, i2, j1, j2 in changes:
            if tag in ("replace", "delete") and op == "set":
                removed = lines_before[i1:i2]
                assert removed[0].strip().startswith(key) or i2 == len(lines_before), (before, ini.text())
            assert j2 - j1 <= 4  # blank, header, key (and the old last line, given its newline)


@settings(max_examples=100, deadline=None)
@given(ini_texts(), st.sampled_from(["new", 'remote "x"']),
       st.dictionaries(st.sampled_from(["url", "k", "j"]), st.sampled_from(["1", "s3://b"]), min_size=1))
def test_adding_then_removing_a_section_restores_the_bytes(text: str, section: str,
                                                           keys: dict[str, str]) -> None:
    ini = IniFile(text)
    if ini.has_section(section):
        return
    for k, v in keys.items():
        ini.set(section, k, v)
    ini.remove_section(section)
    assert ini.text() == (text if not text or text.endswith("\n") else text + ini._newline())


def test_git_reads_what_the_editor_writes(tmp_path: Path) -> None:
    """The syntax is git's (sections, ``key = value``, ``#``/``;`` comments, tab indents):
    after edits, ``git config -f`` reads the same keys and values. (``.dvx/config`` itself
    has keys like ``min_size``, which git's variable names do not allow, so git refuses
    that file before and after any edit; the format is git-config-like, not git-config.)"""
    import subprocess

    path = tmp_path / "config"
    path.write_text('# remotes\n[core]\n\tformat = 1\n\n; the bucket\n[remote "origin"]\n\turl = s3://a\n'
                    '\tregion = eu\n[gc]\n\treflogexpire = 5\n')
    ini = IniFile(path.read_text())
    ini.set('remote "origin"', "url", "s3://b")
    ini.unset('remote "origin"', "region")
    ini.set('remote "origin"', "endpoint", "http://h")
    ini.set('remote "backup"', "url", "/srv/b")
    ini.set("core", "defaultremote", "origin")
    ini.remove_section("gc")
    path.write_text(ini.text())
    listed = subprocess.run(["git", "config", "-f", str(path), "--list"], check=True, capture_output=True,
                            text=True).stdout.splitlines()
    ours = [f"{s.replace(' ', '.').replace(chr(34), '')}.{k}={v}"
            for s in ini.sections() for k, v in ini.items(s)]
    assert listed == ours
    assert path.read_text().startswith(
        '# remotes\n[core]\n\tformat = 1\n\tdefaultremote = origin\n\n; the bucket\n')


def test_commands_load_no_pydantic(repo_dir: Path) -> None:
    """Pointers and config are checked by hand-written code: no command imports a schema
    library (pydantic took ~60-90 ms of every command's start-up)."""
    import subprocess
    import sys

    (repo_dir / "f.txt").write_text("x")
    for args in (["add", "f.txt"], ["status"], ["remote", "add", "o", str(repo_dir / "o")]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dvx", *args], cwd=repo_dir,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
        assert not {m for m in imported if m.split(".")[0] in ("pydantic", "pydantic_core")}
