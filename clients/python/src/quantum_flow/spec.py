"""``define_from_json``: a workflow from an LLM-style JSON document.

The document is the one ``define_flow`` takes (see the main README, "Defining a workflow in
one call")::

    {"workflow_slug": "...",
     "steps": [{"slug": "...", "depends_on": [...], "type": "single|map|event"}]}

The client does not read it: the server checks it (``validate_flow`` reports every problem)
and defines it (``define_flow``), so every client and psql agree on every document.
"""

from __future__ import annotations

from . import api
from .api import FlowDocument
from .types import FlowDefinition


def define_from_json(conn: api.Connection, doc: FlowDocument) -> FlowDefinition:
    """Creates the workflow a JSON document describes and returns it: :func:`define_flow`
    (the document goes to the server unchanged) in a transaction of its own.

    A bad document raises :class:`~quantum_flow.InvalidFlowDocument` with the code of its
    first problem and every problem in ``problems``, and writes nothing. Inside a transaction
    of the caller the call runs in a savepoint, so a refused document leaves the caller's
    transaction usable.
    """
    with conn.transaction():
        return api.define_flow(conn, doc)


__all__ = ["define_from_json"]
