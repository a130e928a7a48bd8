"""Task kinds by name. A new task is a new ``tasks/<kind>.py`` with a ``Task`` subclass plus one line here;
modules load on first use, so a task's own dependencies (e.g. a COCO evaluator) cost nothing to the others."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sc2edge.errors import BundleError
from sc2edge.tasks.base import Task

TASKS: dict[str, str] = {
    "classification": "sc2edge.tasks.classification:ClassificationTask",
    "segmentation": "sc2edge.tasks.segmentation:SegmentationTask",
    "detection": "sc2edge.tasks.detection:DetectionTask",
}


def task_kinds() -> list[str]:
    return sorted(TASKS)


def task_class(kind: str) -> type[Task]:
    if kind not in TASKS:
        raise BundleError(f'task "{kind}" is not known to this sc2edge (known: {", ".join(task_kinds())})')
    module, name = TASKS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def create_task(section: Mapping[str, Any], labels: Sequence[str] | None = None) -> Task:
    """The task a manifest ``task`` section describes (``labels``: the class names of its labels file)."""
    if not isinstance(section, Mapping) or not isinstance(section.get("kind"), str):
        raise BundleError(f"a task section names its kind, got {section!r}")
    return task_class(section["kind"]).from_json(section, labels)


class _BundleLike(Protocol):
    manifest: dict[str, Any]

    @property
    def labels(self) -> list[str] | None: ...


def bundle_task(bundle: _BundleLike) -> Task:
    """The task of an opened bundle, from ``manifest["task"]`` (``Bundle.open`` normalizes v1 manifests to v2)."""
    return create_task(bundle.manifest["task"], bundle.labels)
