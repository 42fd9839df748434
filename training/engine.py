"""One round of federated split-LoRA fine-tuning, FT eqs. (2)-(4): batched, and the per-device loop.

For the scheduled set S (N = |S| devices), each with its own minibatch:

* device k: embeddings z^e_k = w^e(x_k) (frozen), sent up;
* server: features z_k = w^c + w^a (z^e_k), sent down;
* device k: loss f_k = mean cross-entropy of its head w^t_k on z_k; it steps its head with its own
  gradient (eq. 3) and sends the feature gradient df_k/dz_k up (eq. 2);
* server: LoRA gradient g^a = (1/N) sum_k df_k/dz_k * dz_k/dw^a (the average over S), one step
  (eq. 4).

:func:`batched_gradients` does all of this as one pass: the scheduled minibatches are stacked into
one padded batch (for wide models, a few length buckets: see :func:`length_buckets`), the
per-device heads are applied with one batched matmul (``torch.baddbmm``), the backward of
``sum_k f_k`` gives every head its own gradient, and the server backward of the stacked features
with the feature gradients divided by N gives the averaged LoRA gradient. It equals
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


#: text tensors of a batch that are cut to a bucket's rows and width
TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
#: length bucketing in :func:`batched_gradients`: at most this many buckets, each of at least
#: ``BUCKET_MIN_ROWS`` rows (smaller batches run as one padded pass)
MAX_BUCKETS = 4
BUCKET_MIN_ROWS = 64
#: ... and only for models at least this wide: on a tiny model every extra pass costs more than
#: the padding it saves (K = 20, minibatch 32, 2 CPU threads: MiniLM, hidden 384, 2.9 s bucketed
#: vs 3.5 s padded per round; tiny-bert 0.078 s vs 0.069 s)
BUCKET_MIN_HIDDEN = 256


def length_buckets(
    attention_mask: torch.Tensor | None,
    max_buckets: int | None = None,
    min_rows: int | None = None,
) -> list[tuple[torch.Tensor, int]] | None:
    """Split a padded text batch into rows of similar length: ``[(row indices, width), ...]``.

    Rows are sorted by their real length and cut into up to ``max_buckets`` equal groups of at
    least ``min_rows`` rows; each group is later padded to its own longest row only, so a stacked
    batch of many devices wastes no more padding than the per-device loop does (usually less).
    Attention never crosses rows and padding is masked, so the features are the same up to
    rounding. Returns None when bucketing would not help (images, a small batch, equal lengths).
    """
    if attention_mask is None:
        return None
    max_buckets = MAX_BUCKETS if max_buckets is None else max_buckets
    min_rows = BUCKET_MIN_ROWS if min_rows is None else min_rows
    rows = attention_mask.shape[0]
    count = min(max_buckets, rows // max(min_rows, 1))
    if count < 2:
        return None
    lengths = attention_mask.sum(dim=1)
    if int(lengths.min()) == int(lengths.max()):
        return None
    order = torch.argsort(lengths, stable=True)
    return [(idx, int(lengths[idx].max())) for idx in torch.tensor_split(order, count)]


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
    buckets = length_buckets(mask) if split.hidden_size >= BUCKET_MIN_HIDDEN else None
    if buckets is None:
        with torch.no_grad():  # devices: frozen embedding module
            emb = split.device_embed(batch)
        feats = split.server_forward(emb, mask)  # server: encoder + LoRA (+ pooler)
        emb_width = emb.shape[-1]
    else:  # the same pass over length buckets: each padded to its own longest row only
        parts, order = [], []
        for rows, width in buckets:
            sub = {k: batch[k][rows, :width] for k in TEXT_KEYS if k in batch}
            with torch.no_grad():
                emb = split.device_embed(sub)
            parts.append(split.server_forward(emb, sub["attention_mask"]))
            order.append(rows)
        emb_width = emb.shape[-1]
        inverse = torch.empty_like(torch.cat(order))
        inverse[torch.cat(order)] = torch.arange(inverse.numel(), device=inverse.device)
        feats = torch.cat(parts)[inverse]
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
    if mask is None:  # images: every patch of every sample is sent
        up = np.full(n, float(emb[:batch_size].numel()))
    else:  # real (unpadded) tokens of each device's rows
        up = mask.view(n, batch_size, -1).sum(dim=(1, 2)).double().cpu().numpy() * emb_width
    elems = up + z[0].numel() + grad_z[0].numel()
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
