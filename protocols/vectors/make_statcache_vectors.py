"""Regenerate ``statcache.json``: the stat cache of a tracked directory as
``protocols/format.md`` §7 describes it (a listing and one segment), and the same cache
in the format before 2026-12 (a listing and one file per directory), which readers
still accept. Run only when that format changes, together with the spec change.

    PYTHONPATH=. python protocols/vectors/make_statcache_vectors.py protocols/vectors
"""

import json
import marshal
import sys

from blake3 import blake3

from dvx.treescan import ENTRY_HEAD, K_DIR, K_FILE, K_LINK

TARGET = "data"
SEGMENT = "0123456789abcdef.seg"


def entry(name: str, kind: int, exe: int = 0, ino: int = 0, size: int = 0, mtime: int = 0, ctime: int = 0,
          target: bytes = b"") -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    out = ENTRY_HEAD.pack(len(raw), kind, exe, ino, size, mtime, ctime) + raw
    if kind == K_LINK:
        out += len(target).to_bytes(2, "little") + target
    return out


def main(out_dir: str) -> None:
    t0 = 1_764_547_200_000_000_000  # 2025-12-01, in ns
    dirs = [
        ("", b"".join([entry("a.bin", K_FILE, 0, 1001, 5, t0, t0 + 7),
                       entry("latest", K_LINK, size=5, target=b"a.bin"),
                       entry("sub", K_DIR),
                       entry("tool.sh", K_FILE, 1, 1002, 12, t0 + 1, t0 + 9)]),
         [b"\x11" * 32, bytes(32), bytes(32), b"\x22" * 32]),
        ("sub", entry("ünï.txt", K_FILE, 0, 1003, 3, t0 + 2, t0 + 2), [b"\x33" * 32]),
    ]
    sub_tree = b"\x44" * 32
    root_tree = b"\x55" * 32
    described = [
        # dir, tree, size, files, subs, trusted
        ("", root_tree, 20, 3, sub_tree, True),
        ("sub", sub_tree, 3, 1, b"", True),
    ]
    segment = bytearray(b"DVXSEG1\0")
    listing_items = []
    old_items = []
    old_blobs = {}
    out_dirs = []
    for (rel, record, ids), (_r, tree, size, files, subs, trusted) in zip(dirs, described, strict=True):
        ids_b = b"".join(ids)
        digest = blake3(record).digest()
        check = blake3(record + ids_b).digest()[:16]
        ref = (SEGMENT, len(segment), len(record), len(ids_b), check)
        segment += record + ids_b
        listing_items.append((rel, digest, tree, size, files, subs, trusted, ref))
        body = b"DVXDIR1\0" + marshal.dumps((record, ids_b))
        blob = blake3(body).hexdigest()[:32]
        old_blobs[blob] = body.hex()
        old_items.append((rel, digest, tree, size, files, subs, trusted, blob))
        out_dirs.append({"dir": rel, "digest": digest.hex(), "tree": tree.hex(), "size": size, "files": files,
                         "subs": subs.hex(), "trusted": trusted, "record_hex": record.hex(),
                         "ids_hex": ids_b.hex(), "ref": [ref[0], ref[1], ref[2], ref[3], check.hex()]})
    scan_start = t0 + 60_000_000_000
    listing = b"DVXSTAT4" + marshal.dumps((TARGET, root_tree, scan_start, listing_items))
    old_listing = b"DVXSTAT3" + marshal.dumps((TARGET, root_tree, scan_start, old_items))
    vectors = {
        "about": "protocols/format.md section 7: the stat cache of the tracked directory 'data'",
        "target": TARGET,
        "cache_file": blake3(TARGET.encode()).hexdigest()[:32] + ".cache",
        "segments_dir": blake3(TARGET.encode()).hexdigest()[:32] + ".dirs",
        "root_id": root_tree.hex(),
        "scan_start_ns": scan_start,
        "listing_hex": listing.hex(),
        "segment_name": SEGMENT,
        "segment_hex": bytes(segment).hex(),
        "dirs": out_dirs,
        "before_2026_12": {"listing_hex": old_listing.hex(), "files": old_blobs},
    }
    with open(f"{out_dir}/statcache.json", "w") as f:
        json.dump(vectors, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
