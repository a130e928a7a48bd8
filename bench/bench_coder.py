"""Entropy coding cost for one Entropic Student latent (24 x 55 x 55 = 72,600 symbols), one thread.

Compares the paper's path (``EntropyBottleneck.compress`` / ``decompress``, which convert tensors and tables to
Python lists on every call) with ``RansCoder``'s two coders, which write the same bytes: "native" (runtime/_rans.c:
numpy buffers in and out, bounds-checked decoding) and "compressai" (CompressAI's compiled coder: tables converted
once, symbols via ``ndarray.tolist()``, the payload zero-padded so a crafted stream cannot make it read past it),
plus CompressAI's bare coder with every list prepared in advance (the floor of that path).

The latent is Laplacian per channel (scales 0.05..1, the shape of trained factorized-prior latents) and the
EntropyBottleneck's density is fitted to it for a few hundred steps, so the rate (bits per symbol) and the
share of escaped values are those of a trained model rather than of random tables. The stages are measured in
interleaved rounds, so that load from other processes spreads over all of them; the table gives the lowest
sample of all rounds (least affected by load) and the median of the rounds' medians.

Usage: python bench/bench_coder.py [--quick] [--rounds 5] [--fit-steps 300]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch (and numpy) start their thread pools

import torch  # noqa: E402
from compressai.entropy_models import EntropyBottleneck  # noqa: E402

from sc2edge.bench.machine import machine_record  # noqa: E402
from sc2edge.bench.timing import TimingConfig, measure  # noqa: E402
from sc2edge.runtime.rans import (  # noqa: E402
    EntropyTables,
    RansCoder,
    _ans_module,
    _decoder_padding_words,
)

SHAPE = (24, 55, 55)


def fitted_bottleneck(y: torch.Tensor, steps: int) -> EntropyBottleneck:
    """An EntropyBottleneck(24) whose density is trained on ``y`` (rate + quantile loss), then update()d."""
    torch.manual_seed(0)
    eb = EntropyBottleneck(SHAPE[0])
    main = [p for n, p in eb.named_parameters() if not n.endswith("quantiles")]
    optimizer = torch.optim.Adam([{"params": main, "lr": 1e-2}, {"params": [eb.quantiles], "lr": 5e-2}])
    for _ in range(steps):
        optimizer.zero_grad()
        _, likelihoods = eb(y)
        (-torch.log2(likelihoods).mean() + eb.loss()).backward()
        optimizer.step()
    eb.eval()
    eb.update(force=True)
    return eb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few runs only (smoke test)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved measuring rounds. Defaults to 5.")
    parser.add_argument("--fit-steps", type=int, default=300, help="density fitting steps. Defaults to 300.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = TimingConfig.quick() if args.quick else TimingConfig(min_time_s=0.5, min_count=50)
    rounds = 1 if args.quick else args.rounds

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    scales = torch.linspace(0.05, 1.0, SHAPE[0]).reshape(1, -1, 1, 1)
    laplace = torch.distributions.Laplace(torch.zeros(()), torch.ones(()))
    y = laplace.sample((1, *SHAPE)) * scales + torch.randn(1, SHAPE[0], 1, 1, generator=generator) * 0.3
    eb = fitted_bottleneck(y, args.fit_steps)

    tables = EntropyTables.from_bottleneck(eb)
    native, compressai = RansCoder(tables, "native"), RansCoder(tables, "compressai")
    symbols = torch.round(y - eb.quantiles[:, 0, 1].detach().reshape(1, -1, 1, 1)).int()[0].numpy()
    with torch.no_grad():
        reference = eb.compress(y)[0]
    for coder in (native, compressai):
        payload = coder.encode(symbols)
        assert payload == reference, f"RansCoder({coder.name}).encode differs from EntropyBottleneck.compress"
        for reader in (native, compressai):
            assert (reader.decode(payload, SHAPE) == symbols).all()

    ans = _ans_module()
    encoder, decoder = ans.RansEncoder(), ans.RansDecoder()
    impl = compressai.impl
    symbol_list, indexes = symbols.ravel().tolist(), compressai.channel_indexes(SHAPE).ravel().tolist()
    tables_lists = (impl.cdfs, impl.cdf_lengths, impl.offsets)
    escaped = (symbols < tables.offset[:, None, None]) | (
        symbols >= (tables.offset + tables.cdf_length - 2)[:, None, None])

    stages = {
        "encode: eb.compress(y) (paper's path)": lambda: eb.compress(y),
        "encode: RansCoder native": lambda: native.encode(symbols),
        "encode: RansCoder compressai": lambda: compressai.encode(symbols),
        "encode: bare CompressAI, lists ready": lambda: encoder.encode_with_indexes(symbol_list, indexes,
                                                                                    *tables_lists),
        "decode: eb.decompress (paper's path)": lambda: eb.decompress([payload], SHAPE[1:]),
        "decode: RansCoder native": lambda: native.decode(payload, SHAPE),
        "decode: RansCoder compressai (padded)": lambda: compressai.decode(payload, SHAPE),
        "decode: bare CompressAI, unpadded": lambda: decoder.decode_with_indexes(payload, indexes, *tables_lists),
    }
    samples: dict[str, list] = {name: [] for name in stages}
    with torch.no_grad():
        for _ in range(rounds):
            for name, fn in stages.items():
                samples[name].append(measure(lambda _, fn=fn: fn(), [None], config))
    mins = {name: min(stats.min for stats in runs) for name, runs in samples.items()}
    p50s = {name: statistics.median(stats.p50 for stats in runs) for name, runs in samples.items()}

    record = machine_record(threads=1)
    versions = record["versions"]
    count = symbols.size
    pad = 4 * _decoder_padding_words(count, len(payload) // 4)
    print(f"Entropy coding, latent {SHAPE} = {count} symbols, {record['cpu_model']}, 1 thread "
          f"(torch.set_num_threads(1), OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})")
    print(f"versions: python {versions['python']}, numpy {versions['numpy']}, torch {versions['torch']}, "
          f"compressai {versions['compressai']}")
    print(f"payload {len(payload)} bytes = {8 * len(payload) / count:.3f} bits/symbol, "
          f"{escaped.mean() * 100:.3f}% escaped; compressai decode padding {pad / 1e6:.2f} MB; "
          f"both coders byte-identical to eb.compress and cross-decodable: yes")
    print(f"{rounds} interleaved rounds; min = lowest sample of all, p50 = median of the rounds' medians")
    print(f"{'stage':42} {'min ms':>8} {'p50 ms':>8} {'n':>6}")
    for name, runs in samples.items():
        print(f"{name:42} {mins[name]:8.3f} {p50s[name]:8.3f} {sum(stats.n for stats in runs):6d}")
    for kind, paper in (("encode", "encode: eb.compress(y) (paper's path)"),
                        ("decode", "decode: eb.decompress (paper's path)")):
        ours = f"{kind}: RansCoder native"
        others = [name for name in stages if name.startswith(kind) and name not in (paper, ours)]
        ratios = ", ".join(f"{name.split(': ')[1]} {p50s[name] / p50s[ours]:.1f}x (min {mins[name] / mins[ours]:.1f}x)"
                           for name in [paper, *others])
        print(f"{kind}, native is faster than: {ratios} (p50 ratios)")
    print(f"load average during the run: {', '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} cores (other processes inflate p50; min is the least affected)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
