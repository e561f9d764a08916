"""Regenerate vectors/artifacts.json (protocols/artifacts.md): an artifact.json and its
canonical bytes, the tree of its commit, reference-parsing cases, names and aliases
that are refused, and malformed records a reader must refuse with an error. Written
with json directly, not with dvx.artifacts, so the tests check the code against the spec."""

import copy
import json
import os


def canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


POINTER = ("# dvx pointer: the data lives in the DVX store; see protocols/format.md\n"
           "dvx: 1\nkind: file\nid: {id}\nsize: {size}\nfiles: 1\nb3: {b3}\n")

ARTIFACT = {
    "format": 1, "name": "model", "type": "model",
    "versions": [
        {"version": 0, "id": "11" * 32, "kind": "file", "size": 1000, "files": 1, "path": "models/model.pt",
         "run": "a1b2c3d4", "commit": "ab" * 20, "created": "2026-12-01T10:00:00Z", "dropped": True},
        {"version": 1, "id": "22" * 32, "kind": "file", "size": 1200, "files": 1, "path": "models/model.pt",
         "run": "e5f6g7h8", "commit": "cd" * 20, "created": "2026-12-02T10:00:00Z", "dropped": False},
        {"version": 2, "id": "33" * 32, "kind": "dir", "size": 5000, "files": 3, "path": "models/ckpt",
         "run": None, "commit": None, "created": "2026-12-03T10:00:00Z", "dropped": False},
    ],
    "aliases": {"latest": 2, "best": 1, "production": 1},
    "retention": {"keep_last": 2, "keep_aliased": True, "ttl_days": None},
}


def malformed() -> list[dict[str, object]]:
    out = []

    def case(why: str, change) -> None:  # type: ignore[no-untyped-def]
        doc = copy.deepcopy(ARTIFACT)
        change(doc)
        out.append({"why": why, "bytes": canonical(doc)})

    case("sparse version numbers", lambda d: d["versions"][1].update(version=5))
    case("an alias naming a dropped version", lambda d: d["aliases"].update(best=0))
    case("an alias naming no version", lambda d: d["aliases"].update(best=9))
    case("no latest alias", lambda d: d["aliases"].pop("latest"))
    case("a path that leaves the repository", lambda d: d["versions"][1].update(path="../../etc/passwd"))
    case("an absolute path", lambda d: d["versions"][1].update(path="/etc/passwd"))
    case("an id that is not 64 hex digits", lambda d: d["versions"][1].update(id="22" * 31))
    case("an unknown kind", lambda d: d["versions"][1].update(kind="link"))
    case("a bad name", lambda d: d.update(name="../model"))
    case("another artifact's name", lambda d: d.update(name="other"))
    case("an alias that looks like a version", lambda d: d["aliases"].update(v1=1))
    case("a negative keep_last", lambda d: d["retention"].update(keep_last=-1))
    case("a missing key", lambda d: d["versions"][1].pop("created"))
    case("a run id with a slash", lambda d: d["versions"][1].update(run="../x"))
    case("a created time that is no real time", lambda d: d["versions"][1].update(created="2026-99-99T99:99:99Z"))
    out.append({"why": "not JSON", "bytes": "{\"format\": 1,"})
    out.append({"why": "a list, not an object", "bytes": "[]\n"})
    return out


def main() -> None:
    tree = {"artifact.json": canonical(ARTIFACT)}
    for v in ARTIFACT["versions"]:
        if not v["dropped"]:
            tree[f"versions/v{v['version']}.dvx"] = (
                POINTER.format(id=v["id"], size=v["size"], b3="44" * 32) if v["kind"] == "file" else
                POINTER.replace("kind: file", "kind: tree").replace("files: 1\nb3: {b3}\n", "files: 3\n")
                .format(id=v["id"], size=v["size"]))
    vectors = {
        "ref_of": {"model": "refs/dvx/artifacts/model"},
        "artifact": ARTIFACT,
        "canonical": canonical(ARTIFACT),
        "tree": tree,
        "references": [
            {"text": "model", "name": "model", "version": None, "alias": None, "resolves_to": 2},
            {"text": "model:v1", "name": "model", "version": 1, "alias": None, "resolves_to": 1},
            {"text": "model:best", "name": "model", "version": None, "alias": "best", "resolves_to": 1},
            {"text": "model:latest", "name": "model", "version": None, "alias": "latest", "resolves_to": 2},
            {"text": "my.data-set_2:v10", "name": "my.data-set_2", "version": 10, "alias": None,
             "resolves_to": None},
            {"text": "x:prod.eu-1", "name": "x", "version": None, "alias": "prod.eu-1", "resolves_to": None},
        ],
        "unresolvable": ["model:v0", "model:v3", "model:staging", "other:v1"],
        "invalid_references": ["", ":v1", "model:", "model:v01", "model:v1:best", "model:1best", "a/b:v1",
                               "model:-x", "..:v1", "m.lock:v1", " model", "model:v1 "],
        "invalid_names": ["", ".hidden", "-x", "a/b", "a..b", "x.lock", "a b", "é", "x" * 129],
        "valid_names": ["m", "model", "Model.v2", "data-set_1", "x" * 128, "0"],
        "invalid_aliases": ["", "v1", "v0", "v123", "1best", "-best", "a/b", "a:b", "b" * 65],
        "valid_aliases": ["best", "latest", "production", "v", "vNext", "v1a", "prod.eu-1", "b" * 64],
        "malformed": malformed(),
    }
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "artifacts.json"), "w", encoding="utf-8") as f:
        json.dump(vectors, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
