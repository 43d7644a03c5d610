#!/usr/bin/env python3
"""An independent reader of a transparency log served in the C2SP tlog-tiles layout.

Written from the specifications alone (C2SP signed-note, tlog-checkpoint, tlog-tiles and
RFC 9162), sharing no code with careid: it fetches /log/checkpoint, checks its Ed25519
signature against the verifier key it is given, fetches every entry bundle and hash tile the
checkpoint implies, checks that each leaf hash is SHA-256(0x00 || entry), that every stored
hash at every tile level is the hash of the tiles below it, and that the leaves give the
checkpoint's root. Prints `ok <size> <root>` or fails with the first thing wrong.

usage: tlog_reader.py BASE_URL VERIFIER_KEY [--checkpoint FILE]
"""

import base64
import hashlib
import os
import sys
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TILE_HEIGHT = 8
WIDTH = 1 << TILE_HEIGHT


def fetch(base, path):
    # Entry bundles are served to signed-in auditors only: CAREID_TOKEN is the session.
    request = urllib.request.Request(f"{base}/{path}")
    token = os.environ.get("CAREID_TOKEN")
    if token and base.startswith("http"):
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def verify_note(note, vkey):
    """C2SP signed-note: returns the note text once a signature by `vkey` verifies."""
    name, key_id, key = vkey.strip().split("+", 2)
    key = base64.b64decode(key)
    assert key[0] == 0x01, "not an Ed25519 verifier key"
    expected_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    assert expected_id.hex() == key_id, "the verifier key's id does not match its key"
    public = Ed25519PublicKey.from_public_bytes(key[1:])
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        assert line.startswith("\u2014 "), f"not a signature line: {line!r}"
        signer, blob = line[2:].split(" ", 1)
        blob = base64.b64decode(blob)
        if signer == name and blob[:4] == expected_id:
            public.verify(blob[4:], text.encode())  # raises if it does not verify
            return text
    raise AssertionError(f"no signature by {name}")


def index_path(n):
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def tile_path(level, n, width):
    suffix = "" if width == WIDTH else f".p/{width}"
    return f"tile/{level}/{index_path(n)}{suffix}"


def leaf_hash(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """RFC 9162 section 2.1.1, straight from its definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def perfect_root(hashes):
    while len(hashes) > 1:
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]


def main():
    base, vkey = sys.argv[1].rstrip("/") + "/log", sys.argv[2]
    if "--checkpoint" in sys.argv:
        note = open(sys.argv[sys.argv.index("--checkpoint") + 1]).read()
    else:
        note = fetch(base, "checkpoint").decode()
    origin, size, root = verify_note(note, vkey).splitlines()[:3]
    size, root = int(size), base64.b64decode(root)
    assert origin == vkey.split("+")[0], "the checkpoint names another log"

    # Entries and level-0 tiles.
    leaves = []
    for n in range((size + WIDTH - 1) // WIDTH):
        width = min(WIDTH, size - n * WIDTH)
        bundle = fetch(base, tile_path("entries", n, width))
        entries, at = [], 0
        while at < len(bundle):
            length = int.from_bytes(bundle[at : at + 2], "big")
            entries.append(bundle[at + 2 : at + 2 + length])
            at += 2 + length
        assert len(entries) == width, f"entry tile {n} holds {len(entries)} entries, not {width}"
        hashes = fetch(base, tile_path(0, n, width))
        assert len(hashes) == 32 * width, f"tile 0/{n} is {len(hashes)} bytes"
        for i, entry in enumerate(entries):
            seq = n * WIDTH + i
            assert entry.startswith(b"careid-audit/v1\n"), f"record {seq} is not a careid entry"
            assert hashes[32 * i : 32 * i + 32] == leaf_hash(entry), f"record {seq} differs from its leaf hash"
            leaves.append(leaf_hash(entry))

    # Every higher tile: each stored hash is the root of the 256 hashes below it.
    below, level = leaves, 1
    while len(below) >= WIDTH:
        count = len(below) // WIDTH
        computed = [perfect_root(below[i * WIDTH : (i + 1) * WIDTH]) for i in range(count)]
        for n in range((count + WIDTH - 1) // WIDTH):
            width = min(WIDTH, count - n * WIDTH)
            stored = fetch(base, tile_path(level, n, width))
            expected = b"".join(computed[n * WIDTH : n * WIDTH + width])
            assert stored == expected, f"tile {level}/{n} does not hash the tiles below it"
        below, level = computed, level + 1

    assert mth(leaves) == root, "the entries do not give the checkpoint's root"
    print(f"ok {size} {base64.b64encode(root).decode()}")


if __name__ == "__main__":
    main()
