"""Labels a user hands in: a bad file is one Sc2edgeError naming it, never a traceback."""

import json

import pytest

from sc2edge.errors import Sc2edgeError
from sc2edge.photos import load_labels


@pytest.mark.parametrize("content", [[["a.jpg", 1]], {"a.jpg": "cat"}, {"a.jpg": None}])
def test_json_labels_must_map_images_to_class_indexes(tmp_path, content):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(content))
    with pytest.raises(Sc2edgeError, match="must be a JSON object"):
        load_labels(labels, [image], tmp_path)
    labels.write_text(json.dumps({"a.jpg": 3}))
    assert load_labels(labels, [image], tmp_path) == {image: 3}
