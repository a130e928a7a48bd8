"""The segmentation bundle the task tests share (``segmentation_bundle_dir``: one export per session)."""

from __future__ import annotations

import pytest

from sc2edge.runtime import Bundle


@pytest.fixture(scope="session")
def seg_bundle(segmentation_bundle_dir) -> Bundle:
    return Bundle.open(segmentation_bundle_dir)
