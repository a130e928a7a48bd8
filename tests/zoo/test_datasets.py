import numpy as np
from PIL import Image

from sc2edge.photos import find_images, load_labels
from sc2edge.zoo.datasets import fashion_mnist, write_fashion_mnist_images


def test_fashion_mnist_images_are_written_with_their_labels(tmp_path):
    listing = write_fashion_mnist_images("test", tmp_path, count=20, seed=3)
    images = find_images(tmp_path)
    labels = load_labels(listing, images, tmp_path)
    raw_images, raw_labels = fashion_mnist("test")
    assert len(images) == 20
    for path in images:
        index = int(path.stem.split("-")[1])
        with Image.open(path) as image:
            assert image.mode == "L" and np.array_equal(np.asarray(image), raw_images[index])
        assert labels[path] == raw_labels[index]
    assert write_fashion_mnist_images("test", tmp_path / "again", count=20, seed=3).read_text() == listing.read_text()
