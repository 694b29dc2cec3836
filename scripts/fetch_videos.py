"""Fetch the two real test videos from the package registries (never committed).

- ``bbb``: the 10-minute Big Buck Bunny inside moviepy's source distribution on PyPI.
- ``narrated``: a 3-minute narrated clip inside Debian's ``openboard-common`` package.

Usage: ``python scripts/fetch_videos.py [bbb|narrated ...]``; prints the paths.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache" / "videos"

BBB_SHA256_PREFIX = "475fbbf3"
BBB_SHA256_SUFFIX = "8621d0"
MOVIEPY_SDIST = "moviepy==2.2.1"
BBB_ZIP_MEMBER = "docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip"
BBB_IN_ZIP = "moviepy_10_minutes/resources/bbb.mp4"
NARRATED_DEB = "openboard-common"
NARRATED_IN_DEB = "usr/share/openboard/library/videos/wannaworktogether.mp4"

VIDEOS = ("bbb", "narrated")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")


def _fetch_bbb(dest: Path, work: Path) -> None:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
          "-d", str(work), MOVIEPY_SDIST], cwd=work)
    sdist = next(work.glob("moviepy-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(BBB_ZIP_MEMBER))
        extracted = tar.extractfile(member)
        if extracted is None:
            raise RuntimeError(f"{member.name} is not a file in {sdist.name}")
        zip_path = work / "moviepy_10_minutes.zip"
        with zip_path.open("wb") as out:
            shutil.copyfileobj(extracted, out)
    with zipfile.ZipFile(zip_path) as zf, zf.open(BBB_IN_ZIP) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out)
    digest = _sha256(dest)
    if not (digest.startswith(BBB_SHA256_PREFIX) and digest.endswith(BBB_SHA256_SUFFIX)):
        dest.unlink()
        raise RuntimeError(f"bbb.mp4 has an unexpected sha256 {digest}")


def _fetch_narrated(dest: Path, work: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise RuntimeError("fetching the narrated clip needs apt-get and dpkg-deb (Debian)")
    try:
        _run(["apt-get", "download", NARRATED_DEB], cwd=work)
    except RuntimeError:
        # A fresh machine may have no package lists yet.
        _run(["apt-get", "update", "-qq"], cwd=work)
        _run(["apt-get", "download", NARRATED_DEB], cwd=work)
    deb = next(work.glob(f"{NARRATED_DEB}_*.deb"))
    root = work / "deb"
    _run(["dpkg-deb", "-x", str(deb), str(root)], cwd=work)
    shutil.copyfile(root / NARRATED_IN_DEB, dest)


def fetch_video(name: str) -> Path:
    """Return the local path of a real test video, downloading it on first use."""
    if name not in VIDEOS:
        raise ValueError(f"unknown video {name!r}; choose from {VIDEOS}")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    dest = CACHE_DIR / ("bbb.mp4" if name == "bbb" else "wannaworktogether.mp4")
    if dest.exists() and dest.stat().st_size > 0:
        return dest
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        work = Path(tmp)
        partial = work / dest.name
        (_fetch_bbb if name == "bbb" else _fetch_narrated)(partial, work)
        os.replace(partial, dest)  # atomic: concurrent fetchers never see half a file
    return dest


def main(argv: list[str]) -> int:
    for name in argv or list(VIDEOS):
        print(fetch_video(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
