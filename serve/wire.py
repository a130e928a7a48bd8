"""What travels into and between a repository's models besides the latent: the stream input's name and the image
sizes a dynamic-input stream carries, as one int64 row that the entropy-decode model writes and the tails read."""

from __future__ import annotations

import numpy as np

from sc2edge.errors import StreamError
from sc2edge.tasks import ImageSizes

STREAM_INPUT = "STREAM"
IMAGE_SIZES = "image_sizes"  # int64 [4] per item: original height, width, input height, width; zeros: none


def sizes_row(sizes: ImageSizes | None) -> np.ndarray:
    """A stream's image sizes (None: it carries none) -> the int64 row of ``IMAGE_SIZES``."""
    if sizes is None:
        return np.zeros(4, np.int64)
    return np.array([*sizes.original, *sizes.input], np.int64)


def row_sizes(row: np.ndarray) -> ImageSizes | None:
    """The int64 row of ``IMAGE_SIZES`` -> the image sizes (None for the zero row of a stream without them)."""
    values = [int(v) for v in np.asarray(row).reshape(-1)]
    if len(values) != 4 or min(values) < 0:
        raise StreamError(f"{IMAGE_SIZES} must be 4 non-negative integers, got {values}")
    if not any(values):
        return None
    if min(values) < 1:
        raise StreamError(f"{IMAGE_SIZES} {values} declares an empty image")
    return ImageSizes((values[0], values[1]), (values[2], values[3]))
