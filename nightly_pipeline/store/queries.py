"""Named SQL queries, read once from ``sql/queries.sql``.

Keeping SQL in a ``.sql`` file lets it be read and linted as SQL; code refers to a query
by name, and a typo in a name fails loudly instead of running the wrong statement.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_NAME_LINE = re.compile(r"^-- name: (?P<name>[a-z0-9_]+)\s*$", re.MULTILINE)


def parse_named_queries(text: str) -> dict[str, str]:
    """Split ``-- name: x`` sections; text before the first name is a file comment."""
    matches = list(_NAME_LINE.finditer(text))
    queries: dict[str, str] = {}
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following else len(text)
        name = match["name"]
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = text[match.end() : end].strip()
    return queries


@functools.cache
def _all_queries() -> dict[str, str]:
    text = resources.files("nightly_pipeline.store.sql").joinpath("queries.sql").read_text()
    return parse_named_queries(text)


def query(name: str) -> str:
    """The SQL text of the named query."""
    try:
        return _all_queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in store/sql/queries.sql") from None
