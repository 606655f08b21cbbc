"""The image's Python bytecode, compiled when the image is built.

The image is read-only for its user and runs with ``PYTHONDONTWRITEBYTECODE``: without
``.pyc`` files in it, every process start compiles every module it imports from source —
about 1 s more per start of a testbed process here (the consumer: 1.8 s to import in the
container against 0.8 s on the host), and several seconds on a loaded host, which is what
made the consumer's restart in Test 08 slow enough to lose the drain. So each ``.py`` of
the image gets its ``__pycache__/<name>.<cache tag>.pyc`` beside it, compiled by the
image's own interpreter (its cache tag and bytecode), named with its path in the image
(tracebacks), and *unchecked-hash* based: the interpreter never compares it with the
source, which cannot change — an image is immutable and named by a hash of its inputs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path, PurePosixPath

from nightly_pipeline.testbed.docker.contents import Entry

_COMPILE = """
import json, py_compile, sys
pairs = json.load(sys.stdin)
for source, pyc, shown in pairs:
    try:
        py_compile.compile(source, cfile=pyc, dfile=shown, doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except (py_compile.PyCompileError, SyntaxError, ValueError):
        pass  # never importable (a template, another Python's file): none, as compileall
"""


def compiled_entries(python: str, entries: list[Entry], out: Path) -> list[Entry]:
    """The ``.pyc`` entries for the ``.py`` files of ``entries``, written under ``out``
    by ``python`` (the interpreter the image ships); files that do not compile get none."""
    sources = [e for e in entries if e.arcname.endswith(".py")]
    tag = subprocess.run(
        [python, "-c", "import sys; print(sys.implementation.cache_tag)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    pairs, planned = [], []
    for i, entry in enumerate(sources):
        arc = PurePosixPath(entry.arcname)
        pyc_arc = arc.parent / "__pycache__" / f"{arc.stem}.{tag}.pyc"
        pyc = out / f"{i}.pyc"
        pairs.append((str(entry.source), str(pyc), f"/{arc}"))
        planned.append(Entry(str(pyc_arc), pyc))
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [python, "-c", _COMPILE],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return [e for e in planned if e.source.is_file()]
