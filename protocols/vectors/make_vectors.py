"""Regenerate the frozen vectors in this folder (run only when a format changes,
together with the spec change). Tests load the JSON files and check the code agrees."""

import json
import os
import sys

from blake3 import blake3

from dvx.chunking import Chunker
from dvx.hashing import KIND_CHUNK, KIND_MANIFEST, KIND_TREE, chunk_id, object_id
from dvx.objects import ENTRY_FILE, ENTRY_LINK, ENTRY_TREE, Manifest, Tree, TreeEntry
from dvx.store.pack import COMP_DELTA, DELTA_HEADER, PackEntry, encode_footer, encode_idx


def sample(n: int, seed: int) -> bytes:
    """Deterministic test data: BLAKE3 XOF of the seed."""
    return blake3(seed.to_bytes(8, "little")).digest(length=n)


def main(out_dir: str) -> None:
    hello = b"hello, dvx\n"
    m_hello = Manifest(len(hello), blake3(hello).digest(), ((len(hello), chunk_id(hello)),))
    empty = Manifest(0, blake3(b"").digest(), ())
    sub = Tree.build([TreeEntry("a.txt", ENTRY_FILE, len(hello), 1, m_hello.object_id())])
    root = Tree.build([
        TreeEntry("run.sh", ENTRY_FILE, len(hello), 1, m_hello.object_id(), True),
        TreeEntry("empty", ENTRY_FILE, 0, 1, empty.object_id()),
        TreeEntry("sub dir", ENTRY_TREE, sub.size, sub.files, sub.object_id()),
        TreeEntry("latest", ENTRY_LINK, 5, 0, None, False, "a.txt"),
        TreeEntry("ünï", ENTRY_TREE, 0, 0, Tree().object_id()),
    ])
    big_chunks = tuple((1000 + i, chunk_id(i.to_bytes(4, "little"))) for i in range(700))
    two_level = Manifest(sum(n for n, _ in big_chunks), b"\x07" * 32, big_chunks)
    objects = {
        "contexts": {"chunk": "dvx 2026-11 chunk v1", "manifest": "dvx 2026-11 manifest v1",
                     "tree": "dvx 2026-11 tree v1", "chunk list": "dvx 2026-11 chunklist v1"},
        "chunk": {"data_hex": hello.hex(), "id": chunk_id(hello).hex(),
                  "plain_blake3": blake3(hello).hexdigest()},
        "manifests": [
            {"name": "hello", "encoding_hex": m_hello.encode().hex(), "id": m_hello.object_id().hex()},
            {"name": "empty file", "encoding_hex": empty.encode().hex(), "id": empty.object_id().hex()},
        ],
        "two_level_manifest": {
            "chunks": "700 chunks: length 1000+i, id = chunk id of the 4-byte LE encoding of i",
            "digest_hex": "07" * 32,
            "objects": [{"kind": k, "id": oid.hex(), "encoding_hex": data.hex()}
                        for k, oid, data in two_level.objects()],
        },
        "trees": [
            {"name": "sub", "encoding_hex": sub.encode().hex(), "id": sub.object_id().hex()},
            {"name": "empty", "encoding_hex": Tree().encode().hex(), "id": Tree().object_id().hex()},
            {"name": "root", "encoding_hex": root.encode().hex(), "id": root.object_id().hex()},
        ],
        "invalid_manifests_hex": [
            m_hello.encode()[:-1].hex(),                        # truncated
            (b"DVXM\x02\0\0\0" + m_hello.encode()[8:]).hex(),    # unknown version
            (m_hello.encode()[:48] + b"\x05" + m_hello.encode()[49:]).hex(),  # unknown layout
            (m_hello.encode() + b"\0").hex(),                   # trailing byte
        ],
        "invalid_trees_hex": [
            root.encode()[:-3].hex(),
            (b"DVXT\x01\0\0\0" + (2).to_bytes(4, "little") + root.encode()[12:]).hex(),
        ],
    }
    entries, offset, blobs = [], 8, []
    for kind, data in ((KIND_CHUNK, hello), (KIND_MANIFEST, m_hello.encode())):
        oid = object_id(kind, data)
        entries.append(PackEntry(oid, kind, offset, len(data)))
        blobs.append(data)
        offset += len(data)
    footer, name = encode_footer(entries)
    pack = b"DVXP\x01\0\0\0" + b"".join(blobs) + footer
    packs = {"name": name, "pack_hex": pack.hex(), "idx_hex": encode_idx(entries, len(pack)).hex()}
    # a pack with one whole chunk and one chunk stored as a delta against it (§5.1)
    base = sample(5000, 11)
    edited = base[:2000] + b"0123456789" + base[2000:]
    delta = DELTA_HEADER.pack(chunk_id(base), 2000, 3000) + b"0123456789"
    d_entries = [PackEntry(chunk_id(base), KIND_CHUNK, 8, len(base)),
                 PackEntry(chunk_id(edited), KIND_CHUNK, 8 + len(base), len(delta), COMP_DELTA)]
    d_footer, d_name = encode_footer(d_entries)
    d_pack = b"DVXP\x01\0\0\0" + base + delta + d_footer
    packs["delta"] = {"name": d_name, "pack_hex": d_pack.hex(), "edited_hex": edited.hex(),
                      "idx_hex": encode_idx(d_entries, len(d_pack)).hex()}
    chunking = []
    c = Chunker()
    for n, seed in ((0, 1), (1, 2), (16384, 3), (16385, 4), (300_000, 5), (1_000_000, 6)):
        data = sample(n, seed)
        chunking.append({"generator": "blake3(seed u64 LE) XOF", "seed": seed, "size": n,
                         "params": "defaults 16384/65536/262144 NC1 seed0",
                         "lengths": [ln for _, ln, _ in c.chunk_bytes(data)],
                         "chunk_ids": [chunk_id(data[o:o + ln]).hex()
                                       for o, ln, _ in c.chunk_bytes(data)]})
    for fname, obj in (("objects.json", objects), ("pack.json", packs), ("chunking.json", chunking)):
        with open(os.path.join(out_dir, fname), "w") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
