"""One encoder, many tails: a stream decoded by several bundles (classification, segmentation, ...) whose models
share the device encoder and entropy tables, as the paper's students do (the detection and segmentation students
keep the ImageNet student's encoder and entropy bottleneck frozen).

Bundles share an encoder when their entropy model, every section's table hash, the latent's channels and the
encoder geometry agree: a stream one of them encodes then decodes with any other (each still checks the latent's
shape against its own limits). A dynamic-input stream carries the image sizes that segmentation and detection
tails need; a cropped classifier's stream does not, and those tails refuse it in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.bundle import Bundle
from sc2edge.runtime.entropy import entropy_spec
from sc2edge.runtime.halves import Decoder, open_bundle
from sc2edge.tasks import Prediction


def encoder_signature(bundle: Bundle) -> tuple[Any, ...]:
    """What two bundles must agree on for a stream of one to decode with the other."""
    entropy = entropy_spec(bundle.manifest)
    latent = bundle.manifest["latent"]
    return (entropy["kind"], tuple((s["name"], s["hash"]) for s in entropy["sections"]), latent["channels"],
            tuple(tuple(g) for g in latent["geometry"]))


def check_shared_encoder(bundles: Sequence[Bundle]) -> None:
    """Refuse (one line) bundles whose models do not share one encoder and its entropy tables."""
    first = bundles[0]
    for other in bundles[1:]:
        if encoder_signature(other) != encoder_signature(first):
            raise Sc2edgeError(f"bundles {first.path} and {other.path} do not share an encoder (entropy model, table "
                               "hashes or latent geometry differ): a stream of one does not decode with the other")


def tail_kinds(bundles: Sequence[Bundle], tasks: Sequence[str] | None = None) -> list[str]:
    """The task kind of each bundle, after refusing (one line) bundles that do not share one encoder, two bundles
    of one task, and ``tasks`` no bundle serves."""
    if not bundles:
        raise Sc2edgeError("no bundle to decode with")
    check_shared_encoder(bundles)
    kinds = [b.manifest["task"]["kind"] for b in bundles]
    duplicated = sorted({k for k in kinds if kinds.count(k) > 1})
    if duplicated:
        raise Sc2edgeError(f"two bundles serve the {duplicated[0]} task: give one bundle per task")
    unknown = sorted(set(tasks or ()) - set(kinds))
    if unknown:
        raise Sc2edgeError(f'no bundle serves the {unknown[0]} task (these serve {", ".join(kinds)})')
    return kinds


class TailDecoders:
    """A ``Decoder`` per bundle (one per task kind), all tails of one encoder; ``decode(stream)`` runs each.

    Args:
        bundles (Sequence[Bundle | str | Path]): bundles of models that share the encoder.
        tasks (Sequence[str] | None): the task kinds to decode (each must be served by one bundle). Defaults to
            None: every bundle's.
        **options: ``Decoder`` arguments (backend, precision, threads, device).
    """

    def __init__(self, bundles: Sequence[Bundle | str | Path], tasks: Sequence[str] | None = None, **options: Any):
        opened = [open_bundle(b) for b in bundles]
        kinds = tail_kinds(opened, tasks)
        self.decoders: dict[str, Decoder] = {}
        try:
            for kind, bundle in zip(kinds, opened, strict=True):
                if tasks is None or kind in tasks:
                    self.decoders[kind] = Decoder(bundle, **options)
        except BaseException:
            self.close()
            raise

    def decode(self, stream: bytes) -> dict[str, Prediction]:
        """One stream -> each tail's prediction, by task kind."""
        return {kind: decoder.decode(stream) for kind, decoder in self.decoders.items()}

    def close(self) -> None:
        for decoder in self.decoders.values():
            decoder.close()

    def __enter__(self) -> TailDecoders:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
