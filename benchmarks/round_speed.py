"""Time of one federated split-LoRA round: one batched pass vs the plain per-device loop.

K = 20 devices all scheduled, minibatch 32 each, synthetic-text task; both methods run on the
same drawn minibatches from the same state, side by side in this process, and the script checks
that they produce the same LoRA update. Reports the median of ``--repeats`` rounds per model.

    python benchmarks/round_speed.py [--models tiny-bert,minilm] [--repeats 5] [--threads N]

GPU: uses CUDA when ``--device cuda`` is given and available; otherwise CPU only (say so when
quoting figures).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from edgeft.training.learner import SplitLoRALearner


def time_round(learner: SplitLoRALearner, method: str, state: dict, scheduled: np.ndarray) -> float:
    learner.load_state_dict(state)
    learner.method = method
    if learner.torch_device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    learner.run_round(scheduled)
    if learner.torch_device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny-bert,minilm")
    parser.add_argument("--devices", type=int, default=20, help="K (all scheduled)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device if args.device != "cuda" or torch.cuda.is_available() else "cpu"
    print(
        f"torch {torch.__version__}, device {device}, CPU threads {torch.get_num_threads()}, "
        f"K = {args.devices}, minibatch {args.batch_size}, synthetic-text, all devices scheduled"
    )
    print(f"{'model':<10} {'batched s':>10} {'loop s':>10} {'speed-up':>9}  max rel. diff LoRA")
    for name in args.models.split(","):
        learner = SplitLoRALearner(
            {"model": name, "batch_size": args.batch_size, "device": device}, args.devices
        )
        learner.reset(0)
        scheduled = np.ones(args.devices, bool)
        learner.run_round(scheduled)  # warm-up (allocator, kernels) and a non-zero LoRA B
        times: dict[str, list[float]] = {"batched": [], "loop": []}
        rel = 0.0
        for r in range(args.repeats):
            learner.draw_round()
            state = learner.state_dict()
            for method in ("batched", "loop") if r % 2 == 0 else ("loop", "batched"):
                times[method].append(time_round(learner, method, state, scheduled))
                if method == "loop":
                    ref = [p.detach().clone() for p in learner.split.lora_parameters()]
                else:
                    got = [p.detach().clone() for p in learner.split.lora_parameters()]
            before = [state["lora"][n] for n, _ in learner.split.lora_named_parameters()]
            for g, f, b0 in zip(got, ref, before):
                d = (f - b0).norm()
                if d > 0:
                    rel = max(rel, float((g - f).norm() / d))
        tb, tl = statistics.median(times["batched"]), statistics.median(times["loop"])
        print(f"{name:<10} {tb:>10.3f} {tl:>10.3f} {tl / tb:>8.2f}x  {rel:.1e} (float32)")


if __name__ == "__main__":
    main()
