"""The manifest's ``files`` record: every file of an artifact with its size and sha256.

Sizes are checked whenever an artifact is opened (cheap: one ``stat`` per file), hashes on
request (``open(..., verify=True)``, the self-test), so that a truncated, swapped or edited
file is named in one line before any backend tries to parse it.
"""
from __future__ import annotations

from pathlib import Path

from grw_edge_runtime.errors import ArtifactError

MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    import hashlib  # loads OpenSSL (about 4 MB resident): only when hashes are checked

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_files(directory: Path) -> list[str]:
    """Every file under ``directory`` but the manifest, as sorted POSIX relative paths
    (a ``.mlpackage`` directory contributes each file inside it)."""
    directory = Path(directory)
    manifest = directory / MANIFEST_NAME
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*")
                  if path.is_file() and path != manifest)


def record_files(directory: Path) -> dict[str, dict[str, object]]:
    """The ``files`` field for the artifact in ``directory``."""
    directory = Path(directory)
    return {name: {"size": (directory / name).stat().st_size,
                   "sha256": file_sha256(directory / name)} for name in artifact_files(directory)}


def integrity_problems(directory: Path, files: dict, *, hashes: bool) -> list[str]:
    """What differs from the record: missing files, other sizes and, with ``hashes``,
    other contents; one readable line each."""
    directory = Path(directory)
    problems = []
    for name, record in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        size = path.stat().st_size
        if size != record["size"]:
            problems.append(f"{name} is {size} bytes, the manifest records {record['size']} "
                            f"(truncated or replaced)")
        elif hashes and file_sha256(path) != record["sha256"]:
            problems.append(f"{name} has changed since export (sha256 differs from the "
                            f"manifest's)")
    return problems


def check_integrity(directory: Path, files: dict | None, *, hashes: bool = False) -> None:
    """Raise ``ArtifactError`` naming the first file that does not match the record."""
    if not files:
        return  # written before the record existed: nothing to compare with
    problems = integrity_problems(directory, files, hashes=hashes)
    if problems:
        raise ArtifactError(f"{directory}: {problems[0]}; re-export the artifact or copy it "
                            f"again")
