"""Cross-project memory (SPEC §2 ``overlord memory``): what happened and what was decided.

Entries are short texts with a category, an optional project and a JSON metadata
document, kept in the state database (``overlord.adapters.sql.schema.memories``). ``search`` finds
entries by words (SQLite FTS5 when available, else a case-insensitive substring
match of every word), newest first.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from overlord.errors import OverlordError


class Category(StrEnum):
    RELEASE = "release"
    DISPATCH = "dispatch"
    FAILURE = "failure"
    DECISION = "decision"
    UPDATE = "update"
    PATTERN = "pattern"


class Memory(BaseModel):
    id: int
    created_at: datetime
    category: Category
    project: str | None = None
    content: str
    metadata: dict[str, Any] = {}


_ALNUM = re.compile(r"[^\W_]")
_PUNCT = re.compile(r"[\W_]")


def parse_category(value: Category | str) -> Category:
    """``value`` as a Category (case-insensitive), or a one-line error listing them."""
    if isinstance(value, Category):
        return value
    try:
        return Category(str(value).strip().lower())
    except ValueError:
        names = ", ".join(c.value for c in Category)
        raise OverlordError(f"unknown memory category {value!r}: use one of {names}") from None


def remember(
    url: str,
    category: Category | str,
    content: str,
    project: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Memory:
    """Store one memory entry and return it."""
    from overlord.adapters.sql import db, schema
    from overlord.core.secrets import redact

    kind = parse_category(category)
    text = redact(content.strip())
    if not text:
        raise OverlordError("a memory needs some text", "say what happened or what was decided")
    created_at = schema.utcnow()
    meta = dict(metadata or {})
    with db.begin(url) as conn:
        result = conn.execute(
            schema.memories.insert().values(
                created_at=created_at,
                category=kind.value,
                project=project,
                content=text,
                meta=meta,
            )
        )
        (new_id,) = result.inserted_primary_key or (None,)
    if new_id is None:  # pragma: no cover - every backend we support returns the key
        raise OverlordError("the state database did not return the new memory's id")
    return Memory(
        id=int(new_id),
        created_at=created_at,
        category=kind,
        project=project,
        content=text,
        metadata=meta,
    )


def _fts_query(words: list[str]) -> str:
    """An FTS5 query matching every word as a (prefix) phrase; user syntax is neutralised."""
    return " ".join('"' + word.replace('"', '""') + '"*' for word in words)


def search(
    url: str,
    text: str = "",
    project: str | None = None,
    category: Category | str | None = None,
    limit: int = 20,
) -> list[Memory]:
    """Memories matching every word of ``text`` (all when empty), newest first."""
    from sqlalchemy import Integer, column, select
    from sqlalchemy import text as sql

    from overlord.adapters.sql import db, schema

    kind = parse_category(category) if category is not None else None
    table = schema.memories
    query = select(table)
    if project is not None:
        query = query.where(table.c.project == project)
    if kind is not None:
        query = query.where(table.c.category == kind.value)
    words = text.split()
    engine = db.engine_for(url)
    like_words = words
    fts_words = [w for w in words if _ALNUM.search(w)]
    if fts_words and db.has_fts(engine):
        # the index finds words (and word prefixes); punctuation is then matched literally
        like_words = [w for w in words if _PUNCT.search(w)]
        matching = sql(f"SELECT rowid FROM {schema.FTS_TABLE} WHERE {schema.FTS_TABLE} MATCH :q")
        ids = matching.bindparams(q=_fts_query(fts_words)).columns(column("rowid", Integer))
        query = query.where(table.c.id.in_(ids))
    for word in like_words:
        query = query.where(table.c.content.icontains(word, autoescape=True))
    query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(max(1, limit))
    with db.connect(url) as conn:
        rows = conn.execute(query).mappings().all()
    return [
        Memory(
            id=row["id"],
            created_at=row["created_at"],
            category=Category(row["category"]),
            project=row["project"],
            content=row["content"],
            metadata=row["meta"] or {},
        )
        for row in rows
    ]
