"""One round of federated split-LoRA fine-tuning, FT eqs. (2)-(4): batched, and the per-device loop.

For the scheduled set S (N = |S| devices), each with its own minibatch:

* device k: embeddings z^e_k = w^e(x_k) (frozen), sent up;
* server: features z_k = w^c + w^a (z^e_k), sent down;
* device k: loss f_k = mean cross-entropy of its head w^t_k on z_k; it steps its head with its own
  gradient (eq. 3) and sends the feature gradient df_k/dz_k up (eq. 2);
* server: LoRA gradient g^a = (1/N) sum_k df_k/dz_k * dz_k/dw^a (the average over S), one step (eq. 4).

:func:`batched_gradients` does all of this as one pass: the scheduled minibatches are stacked into
one padded batch, the per-device heads are applied with one batched matmul (``torch.baddbmm``), the
backward of ``sum_k f_k`` gives every head its own gradient, and the server backward of the stacked
features with the feature gradients divided by N gives the averaged LoRA gradient. It equals
:func:`loop_gradients` (the plain per-device loop, the test reference) up to rounding, as long as
the LoRA dropout is off (the two draw different masks otherwise).

Both functions leave the gradients in ``.grad`` (heads: zero for unscheduled devices) and return
the per-device losses and the bits each device exchanged, measured from the tensors actually sent:
real (unpadded) tokens of the uplink embeddings + downlink features + uplink feature gradients.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from edgeft.training.models import SplitModel


def embedding_elements(emb: torch.Tensor, attention_mask: torch.Tensor | None) -> int:
    """Elements of the embeddings a device sends: its real tokens only (padding is not sent)."""
    if attention_mask is None:
        return emb.numel()
    return int(emb[attention_mask.bool()].numel())


def batched_gradients(
    split: SplitModel,
    W: torch.Tensor,
    b: torch.Tensor,
    batch: dict[str, torch.Tensor],
    devices: torch.Tensor,
    batch_size: int,
    bits_per_element: int,
) -> tuple[torch.Tensor, np.ndarray]:
    """Gradients of one round for the scheduled ``devices`` in one batched pass.

    Args:
        split: the split model (LoRA parameters receive the averaged gradient).
        W, b: all K heads, (K, H, C) and (K, C) leaf tensors (receive each head's own gradient).
        batch: the scheduled devices' minibatches stacked in ``devices`` order (``batch_size`` rows
            each), padded to a common length; ``labels`` (N * batch_size,).
        devices: (N,) long tensor of scheduled device indices.

    Returns:
        (per-device mean losses (N,), bits exchanged per scheduled device (N,)).
    """
    n = int(devices.numel())
    lora = split.lora_parameters()
    for p in [*lora, W, b]:
        p.grad = None
    mask = batch.get("attention_mask")
    with torch.no_grad():  # devices: frozen embedding module
        emb = split.device_embed(batch)
    feats = split.server_forward(emb, mask)  # server: encoder + LoRA (+ pooler)
    hidden = feats.shape[-1]
    z = feats.detach().view(n, batch_size, hidden).requires_grad_(True)  # downlink
    logits = torch.baddbmm(b[devices].unsqueeze(1), z, W[devices])  # every device's own head
    per_sample = F.cross_entropy(
        logits.reshape(n * batch_size, -1), batch["labels"], reduction="none"
    )
    device_loss = per_sample.view(n, batch_size).mean(dim=1)
    device_loss.sum().backward()  # head k gets d f_k / d w^t_k
    grad_z = z.grad  # uplink: d f_k / d z_k
    assert grad_z is not None
    feats.backward((grad_z / n).reshape(n * batch_size, hidden))  # LoRA: average over devices
    if W.grad is None:  # pragma: no cover - W always takes part
        W.grad = torch.zeros_like(W)
    # bits from the tensors actually exchanged
    elems = np.empty(n, dtype=np.float64)
    for i in range(n):
        rows = slice(i * batch_size, (i + 1) * batch_size)
        up = embedding_elements(emb[rows], None if mask is None else mask[rows])
        elems[i] = up + z[i].numel() + grad_z[i].numel()
    return device_loss.detach(), elems * bits_per_element


def loop_gradients(
    split: SplitModel,
    W: torch.Tensor,
    b: torch.Tensor,
    batches: list[dict[str, torch.Tensor]],
    devices: list[int],
    bits_per_element: int,
) -> tuple[torch.Tensor, np.ndarray]:
    """The same gradients as :func:`batched_gradients`, device by device (the reference).

    Each device's minibatch is padded to its own length, its head is a plain matmul, and the LoRA
    gradients of the devices are accumulated with ``torch.autograd.grad`` and averaged.
    """
    n = len(devices)
    lora = split.lora_parameters()
    acc = [torch.zeros_like(p) for p in lora]
    W.grad = torch.zeros_like(W)
    b.grad = torch.zeros_like(b)
    losses = []
    elems = np.empty(n, dtype=np.float64)
    for i, (k, batch) in enumerate(zip(devices, batches)):
        mask = batch.get("attention_mask")
        with torch.no_grad():
            emb = split.device_embed(batch)
        feats = split.server_forward(emb, mask)
        z = feats.detach().requires_grad_(True)
        Wk = W[k].detach().requires_grad_(True)
        bk = b[k].detach().requires_grad_(True)
        loss = F.cross_entropy(z @ Wk + bk, batch["labels"])
        gz, gW, gb = torch.autograd.grad(loss, [z, Wk, bk])
        W.grad[k] = gW
        b.grad[k] = gb
        for a, g in zip(acc, torch.autograd.grad(feats, lora, grad_outputs=gz)):
            a += g
        losses.append(loss.detach())
        elems[i] = embedding_elements(emb, mask) + z.numel() + gz.numel()
    for p, a in zip(lora, acc):
        p.grad = a / n
    return torch.stack(losses), elems * bits_per_element
