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


def test_evaluation_crops_of_a_grayscale_model_keep_its_single_channel(tmp_path):
    """Accuracy control draws random crops of calibration images: for a grayscale model (Fashion-MNIST) they must
    have the centre crop's one channel, or the stack of crops fails."""
    from sc2edge.zoo.datasets import evaluation_crops
    from sc2edge.zoo.registry import get_spec

    images = write_fashion_mnist_images("test", tmp_path, 3)
    paths = sorted(p for p in images.parent.rglob("*.png"))
    preprocess = get_spec("entropic_student_fashion_mnist_beta0.1").preprocess.to_json()
    crops = evaluation_crops(paths, 4, preprocess, seed=0)
    assert crops.shape == (len(paths) * 4, 1, 28, 28)
    assert len({crop.tobytes() for crop in crops}) > len(paths)  # the random crops differ from the centre ones
