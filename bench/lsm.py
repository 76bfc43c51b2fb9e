"""Foundation-model training throughput against transformers' ViTMAE, FLOP/s against a matmul peak, peak memory.

Ours runs twice: as named (CrossMAE decoder: masked patches cross-attend to visible ones) and with
MAE's full self-attention decoder, which does exactly ViTMAE's FLOPs.

Both implementations get the same width, depth, heads, decoder, number of patches, values per
patch, mask ratio (80 %, random) and batch; ViTMAE sees a patch's values as the channels of a
1 x 1 pixel (``patch_size=1``) on a (channel groups x time patches) image, with its position
table interpolated to that grid. Each (implementation, size) runs in a fresh process, so its peak
resident memory is its own. FLOPs of one training step are counted by ``torch.utils.flop_counter``
(matmuls and attention), and achieved FLOP/s are divided by the best dense float32 matmul rate
measured in the same run on the same threads.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

SIZES = ("tiny", "small")
IMPLEMENTATIONS = ("ours", "ours_self_decoder", "vitmae")  # ours: the named size (CrossMAE decoder); then MAE's decoder
GOAL_SPEEDUP = 1.3
GOAL_PEAK_FRACTION = 0.6


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _models(implementation: str, size: str, batch: int):
    import torch
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining

    config = LSMConfig.named(size, mask_strategy="random", mask_ratio=0.8)
    if implementation == "ours_self_decoder":
        config = LSMConfig.named(size, mask_strategy="random", mask_ratio=0.8, decoder_attention="self")
    values = torch.randn(batch, config.channels, config.minutes)
    observed = torch.ones_like(values, dtype=torch.bool)
    if implementation in ("ours", "ours_self_decoder"):
        model = LSMForMaskedPretraining(config)
        return model, lambda: model(values, observed).loss, config
    side = round(config.patches**0.5)
    theirs = ViTMAEConfig(
        hidden_size=config.dim,
        num_hidden_layers=config.depth,
        num_attention_heads=config.heads,
        intermediate_size=int(config.dim * config.mlp_ratio),
        decoder_hidden_size=config.decoder_dim,
        decoder_num_hidden_layers=config.decoder_depth,
        decoder_num_attention_heads=max(1, config.heads // 2),
        decoder_intermediate_size=int(config.decoder_dim * config.mlp_ratio),
        image_size=side,
        patch_size=1,
        num_channels=config.patch_values,
        mask_ratio=0.8,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        norm_pix_loss=False,
    )
    model = ViTMAEForPreTraining._from_config(theirs, attn_implementation="sdpa")
    patches = LSMForMaskedPretraining(config).patchify(values)  # (batch, patches, patch_values), the same patch order
    pixels = (
        patches.transpose(1, 2)
        .reshape(batch, config.patch_values, config.channel_groups, config.time_patches)
        .contiguous()
    )
    return model, lambda: model(pixel_values=pixels, interpolate_pos_encoding=True).loss, config


def _attention_flops() -> dict:
    """torch's FLOP counter has no formula for the CPU attention kernels: count them as the CUDA ones are counted."""
    import torch
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten
    return {
        aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *args, out_shape=None, **kwargs: (
            sdpa_flop_count(q, k, v)
        ),
        aten._scaled_dot_product_flash_attention_for_cpu_backward: lambda grad, q, k, v, *args, out_shape=None, **kwargs: (
            sdpa_backward_flop_count(grad, q, k, v)
        ),
    }


def measure(implementation: str, size: str, batch: int, steps: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model, loss_of_step, config = _models(implementation, size, batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_of_step().backward()
        optimizer.step()

    step()  # warm-up: allocator, kernels
    with FlopCounterMode(display=False, custom_mapping=_attention_flops()) as counter:
        loss_of_step().backward()
    flops = counter.get_total_flops()
    before = _rss_mb()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - started
    return {
        "implementation": implementation,
        "size": size,
        "batch": batch,
        "steps": steps,
        "patches": config.patches,
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "windows_per_s": round(batch * steps / seconds, 2),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflop_s": round(flops * steps / seconds / 1e9, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_training_mb": round(before, 1),
    }


def matmul_peak() -> dict:
    import torch

    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        repeats = max(3, int(2e10 / (2 * n**3)))
        started = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - started))
    return {"gflop_s": round(best / 1e9, 1), "threads": torch.get_num_threads()}


def run(steps: dict | None = None, batch: int = 8) -> dict:
    steps = steps or {"tiny": 20, "small": 3}
    peak = matmul_peak()
    rows = []
    for size in SIZES:
        for implementation in IMPLEMENTATIONS:
            output = subprocess.run(
                [sys.executable, "-m", "bench.lsm", "--measure", implementation, size, str(batch), str(steps[size])],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
    comparisons = {}
    for size in SIZES:
        ours, ours_self, theirs = (
            next(r for r in rows if r["size"] == size and r["implementation"] == name) for name in IMPLEMENTATIONS
        )
        comparisons[size] = {
            "speedup_vs_vitmae": round(ours["windows_per_s"] / theirs["windows_per_s"], 2),
            "self_decoder_speedup_vs_vitmae": round(ours_self["windows_per_s"] / theirs["windows_per_s"], 2),
            "ours_fraction_of_matmul_peak": round(ours["achieved_gflop_s"] / peak["gflop_s"], 2),
            "vitmae_fraction_of_matmul_peak": round(theirs["achieved_gflop_s"] / peak["gflop_s"], 2),
            "memory_ratio_vs_vitmae": round(ours["peak_rss_mb"] / theirs["peak_rss_mb"], 2),
        }
    return {
        "matmul_peak": peak,
        "runs": rows,
        "comparisons": comparisons,
        "goals": {"speedup_vs_vitmae": GOAL_SPEEDUP, "fraction_of_matmul_peak": GOAL_PEAK_FRACTION},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--measure", nargs=4, metavar=("IMPLEMENTATION", "SIZE", "BATCH", "STEPS"), required=True)
    arguments = parser.parse_args()
    implementation, size, batch, steps = arguments.measure
    print(json.dumps(measure(implementation, size, int(batch), int(steps))))
