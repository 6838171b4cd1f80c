"""``define_from_json``: a workflow from an LLM-style JSON document.

The document has the shape the seed guide asks an LLM for::

    {"workflow_slug": "...",
     "steps": [{"slug": "...", "depends_on": [...], "type": "single|map"}]}

Optional keys: on the workflow ``max_attempts``, ``timeout``, ``base_delay``; on a step
``initial_tasks``, ``max_attempts``, ``timeout``, ``base_delay``; ``description`` on
either is allowed and ignored. Any other key is refused, so a misspelt ``depends_on`` cannot
silently turn a step into a root.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Set, Tuple, Union

from . import api
from .errors import InvalidFlowDocument
from .types import FlowDefinition

_FLOW_OPTIONS = ("max_attempts", "timeout", "base_delay")
_STEP_OPTIONS = ("initial_tasks", "max_attempts", "timeout", "base_delay")
_IGNORED = ("description",)


@dataclass(frozen=True)
class StepSpec:
    slug: str
    depends_on: List[str] = field(default_factory=list)
    type: str = "single"
    options: Dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FlowSpec:
    workflow_slug: str
    steps: List[StepSpec]
    options: Dict[str, int] = field(default_factory=dict)


def parse_flow_document(doc: Union[str, bytes, Mapping[str, Any]]) -> FlowSpec:
    """Reads and checks the document's shape (slug rules are the server's to check)."""
    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except ValueError as e:
            raise InvalidFlowDocument(f"not JSON: {e}") from None
    if not isinstance(doc, Mapping):
        raise InvalidFlowDocument("the document must be a JSON object")
    _no_unknown_keys(doc, ("workflow_slug", "steps", *_FLOW_OPTIONS, *_IGNORED), "workflow")
    slug = doc.get("workflow_slug")
    if not isinstance(slug, str):
        raise InvalidFlowDocument('"workflow_slug" must be a string')
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise InvalidFlowDocument('"steps" must be a non-empty array')
    steps = [_parse_step(i, s) for i, s in enumerate(raw_steps)]
    return FlowSpec(slug, steps, _options(doc, _FLOW_OPTIONS, "workflow"))


def _parse_step(i: int, raw: Any) -> StepSpec:
    where = f"steps[{i}]"
    if not isinstance(raw, Mapping):
        raise InvalidFlowDocument(f"{where} must be an object")
    _no_unknown_keys(raw, ("slug", "depends_on", "type", *_STEP_OPTIONS, *_IGNORED), where)
    slug = raw.get("slug")
    if not isinstance(slug, str):
        raise InvalidFlowDocument(f'{where}: "slug" must be a string')
    deps = raw.get("depends_on", [])
    if deps is None:
        deps = []
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise InvalidFlowDocument(f'{where} ({slug}): "depends_on" must be an array of strings')
    step_type = raw.get("type", "single")
    if not isinstance(step_type, str):
        raise InvalidFlowDocument(f'{where} ({slug}): "type" must be a string')
    return StepSpec(slug, list(deps), step_type, _options(raw, _STEP_OPTIONS, where))


def _no_unknown_keys(obj: Mapping[str, Any], known: Tuple[str, ...], where: str) -> None:
    unknown = sorted(set(obj) - set(known))
    if unknown:
        raise InvalidFlowDocument(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")


def _options(obj: Mapping[str, Any], names: Tuple[str, ...], where: str) -> Dict[str, int]:
    options = {}
    for name in names:
        value = obj.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidFlowDocument(f'{where}: "{name}" must be an integer')
        options[name] = value
    return options


def dependency_order(steps: List[StepSpec]) -> List[StepSpec]:
    """The steps ordered so that each comes after the steps it depends on, otherwise in the
    document's order (LLMs do not always list dependencies first). A dependency that is not
    a step of the document is left for the server to refuse (``dependency_not_found``).
    A cycle raises :class:`InvalidFlowDocument`."""
    slugs = {s.slug for s in steps}
    placed: Set[str] = set()
    ordered: List[StepSpec] = []
    pending = list(steps)
    while pending:
        for i, step in enumerate(pending):
            if all(d in placed or d not in slugs or d == step.slug for d in step.depends_on):
                ordered.append(step)
                placed.add(step.slug)
                del pending[i]
                break
        else:
            raise InvalidFlowDocument(
                "the steps' dependencies form a cycle among: " + ", ".join(s.slug for s in pending)
            )
    return ordered


def define_from_json(
    conn: api.Connection, doc: Union[str, bytes, Mapping[str, Any]]
) -> FlowDefinition:
    """Creates the workflow a JSON document describes, in one transaction, and returns it.

    ``create_flow`` then one ``add_step`` per step, dependencies first. Any error (a bad
    document, or the server refusing a slug or a dependency) leaves nothing behind: a bad
    document raises :class:`InvalidFlowDocument` before anything is sent, a refused call its
    :class:`QuantumFlowError`. Inside a transaction of the caller the calls run in a
    savepoint.
    """
    spec = parse_flow_document(doc)
    ordered = dependency_order(spec.steps)
    with conn.transaction():
        api.create_flow(conn, spec.workflow_slug, **spec.options)
        for step in ordered:
            api.add_step(
                conn,
                spec.workflow_slug,
                step.slug,
                step.depends_on,
                step_type=step.type,  # type: ignore[arg-type]  # the server checks it
                **step.options,
            )
        return api.get_flow(conn, spec.workflow_slug)


__all__ = ["FlowSpec", "StepSpec", "define_from_json", "dependency_order", "parse_flow_document"]
