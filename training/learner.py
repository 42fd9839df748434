"""``SplitLoRALearner``: the object a real-mode env drives, one federated round per step.

Contract (what ``edgeft/FedLoRAScheduling-v0`` in ``mode="real"`` calls)::

    learner = SplitLoRALearner(config, num_devices)   # loads model + data; consumes no randomness
    learner.reset(seed)                               # fresh LoRA, heads, optimiser, partition
    bits = learner.draw_round()                       # (K,) bits each device would exchange
    out = learner.run_round(scheduled)                # one round of FT eqs. (2)-(4)
    learner.evaluate()                                # held-out loss / accuracy (mean over heads)
    state = learner.state_dict(); learner.load_state_dict(state)   # exact resume

The global objective (FT eq. 1) is the mean of the K devices' losses, each with its own head, so
``evaluate`` reports the test loss and accuracy averaged over the K heads on the shared encoder.
Every head starts from the same initial head (the server hands out one initial task module).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from edgeft.envs.real_config import TrainingConfig
from edgeft.training.data import (
    ImageSplit,
    TaskData,
    TextSplit,
    load_task,
    next_minibatch,
    partition,
)
from edgeft.training.engine import batched_gradients, loop_gradients
from edgeft.training.models import SplitModel, load_split_model
from torch import nn

STATE_VERSION = 1
EVAL_CHUNK = 256


class SplitLoRALearner:
    """Federated split-LoRA fine-tuning of a pretrained encoder across ``num_devices`` devices.

    Args:
        config: a :class:`TrainingConfig` (or anything ``TrainingConfig.from_any`` accepts).
        num_devices: K.
        method: ``"batched"`` (one pass over all scheduled devices, the default) or ``"loop"``
            (the plain per-device loop, the reference implementation).
    """

    def __init__(
        self, config: TrainingConfig | dict | None, num_devices: int, method: str = "batched"
    ) -> None:
        self.config = TrainingConfig.from_any(config)
        if not isinstance(num_devices, (int, np.integer)) or num_devices < 1:
            raise ValueError(f"num_devices must be a positive integer, got {num_devices!r}")
        if method not in ("batched", "loop"):
            raise ValueError(f"method must be 'batched' or 'loop', got {method!r}")
        self.num_devices = int(num_devices)
        self.method = method
        cfg = self.config
        self.torch_device = torch.device(cfg.device)
        self.dtype = getattr(torch, cfg.dtype)
        self.split: SplitModel = load_split_model(cfg)
        vocab = int(getattr(self.split.model.config, "vocab_size", 0) or 0)
        self.data: TaskData = load_task(cfg, self.split.tokenizer, vocab)
        if self.data.modality != self.split.modality:  # pragma: no cover - checked in the loader
            raise ValueError("task and model modality differ")
        self.num_classes = self.data.num_classes
        hidden = self.split.hidden_size
        self.W = nn.Parameter(
            torch.zeros(
                self.num_devices,
                hidden,
                self.num_classes,
                device=self.torch_device,
                dtype=self.dtype,
            )
        )
        self.b = nn.Parameter(
            torch.zeros(
                self.num_devices, self.num_classes, device=self.torch_device, dtype=self.dtype
            )
        )
        # fixed held-out subset (independent of the run seed)
        n_test = len(self.data.test)
        order = np.random.default_rng(0).permutation(n_test)
        self.eval_indices = np.sort(order[: cfg.eval_size]) if cfg.eval_size else np.arange(n_test)
        self._seeded = False
        self.optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------ set-up
    def reset(self, seed: int) -> None:
        """Re-seed: fresh LoRA and heads on the pretrained model, fresh optimiser, new partition."""
        seed = int(seed)
        self.seed = seed
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.split.reset_lora()
        with torch.no_grad():  # the heads' start (nn.Linear's init; see TrainingConfig.head_init)
            hidden = self.split.hidden_size
            bound = 1.0 / math.sqrt(hidden)
            heads = self.num_devices if self.config.head_init == "independent" else 1
            w0 = torch.empty(heads, hidden, self.num_classes, dtype=self.dtype)
            b0 = torch.empty(heads, self.num_classes, dtype=self.dtype)
            self.W.copy_(w0.uniform_(-bound, bound).expand_as(self.W))
            self.b.copy_(b0.uniform_(-bound, bound).expand_as(self.b))
        params = [*self.split.lora_parameters(), self.W, self.b]
        for p in params:
            p.grad = None
        # plain SGD (eqs. 3-4): no momentum or weight decay, so unscheduled heads never move
        self.optimizer = torch.optim.SGD(
            [
                {"params": self.split.lora_parameters(), "lr": self.config.lr},
                {"params": [self.W, self.b], "lr": self.config.head_rate},
            ],
            lr=self.config.lr,
        )
        labels = self.data.train.labels
        self.local = partition(
            labels,
            self.num_devices,
            self.config.data_fraction,
            self.config.partition,
            self.config.dirichlet_alpha,
            self.rng,
        )
        self.perm = [loc[self.rng.permutation(len(loc))] for loc in self.local]
        self.cursor = np.zeros(self.num_devices, dtype=np.int64)
        self.label_weights = self._label_weights()
        self.pending: np.ndarray | None = None  # (K, batch_size) drawn sample indices
        self.pending_bits: np.ndarray | None = None
        self.round = 0
        self._seeded = True

    def _label_weights(self) -> np.ndarray:
        """(K, C) label proportions of each device's training shard."""
        labels = self.data.train.labels
        counts = np.stack(
            [np.bincount(labels[loc], minlength=self.num_classes) for loc in self.local]
        ).astype(np.float64)
        return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)

    def _require_reset(self) -> None:
        if not self._seeded:
            raise RuntimeError("call reset(seed) before using the learner")

    # ------------------------------------------------------------------ minibatches
    def _next_indices(self, k: int) -> np.ndarray:
        return next_minibatch(
            self.local[k], self.perm, self.cursor, k, self.config.batch_size, self.rng
        )

    def _bits_of(self, idx: np.ndarray) -> float:
        """Bits a device exchanges for the minibatch ``idx`` (same count as the tensors sent)."""
        hidden = self.split.hidden_size
        bs = len(idx)
        train = self.data.train
        if isinstance(train, TextSplit):
            tokens = int(np.minimum(train.lengths[idx], self.config.max_seq_len).sum())
        else:
            tokens = bs * int(self.split.tokens_per_sample() or 0)
        return float((tokens * hidden + 2 * bs * hidden) * self.config.bits_per_element)

    def nominal_bits(self) -> float:
        """Expected bits per device and round: ``batch_size`` x the mean per-sample bits over the
        training set. Deterministic (no RNG, no reset needed); real-mode envs scale their delay
        budget by it."""
        n = len(self.data.train.labels)
        return self._bits_of(np.arange(n)) * self.config.batch_size / n

    def draw_round(self) -> np.ndarray:
        """Draw every device's next minibatch; return the (K,) bits each would exchange.

        Calling it again before :meth:`run_round` returns the same array (nothing new is drawn).
        """
        self._require_reset()
        if self.pending is None:
            self.pending = np.stack([self._next_indices(k) for k in range(self.num_devices)])
            self.pending_bits = np.array(
                [self._bits_of(ix) for ix in self.pending], dtype=np.float64
            )
        assert self.pending_bits is not None
        return self.pending_bits.copy()

    def make_batch(self, split: TextSplit | ImageSplit, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Tensors of the samples ``idx`` (text padded to the longest of them)."""
        dev = self.torch_device
        labels = torch.as_tensor(split.labels[idx], device=dev)
        if isinstance(split, TextSplit):
            lengths = np.minimum(split.lengths[idx], self.config.max_seq_len)
            width = int(lengths.max())
            ids = split.ids[idx, :width]
            mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
            batch = {
                "input_ids": torch.as_tensor(ids, device=dev),
                "attention_mask": torch.as_tensor(mask, device=dev),
                "labels": labels,
            }
            if split.token_type is not None:
                batch["token_type_ids"] = torch.as_tensor(split.token_type[idx, :width], device=dev)
            return batch
        x = torch.as_tensor(split.images[idx], device=dev).to(self.dtype) / 255.0
        x = (x - 0.5) / 0.5
        size = self.split.image_size
        if size is not None and size != x.shape[-1]:
            x = nn.functional.interpolate(
                x, size=(size, size), mode="bilinear", align_corners=False
            )
        return {"pixel_values": x, "labels": labels}

    # ------------------------------------------------------------------ one round
    def run_round(self, scheduled: np.ndarray) -> dict[str, Any]:
        """One round of FT eqs. (2)-(4) with the scheduled devices on the drawn minibatches.

        Args:
            scheduled: (K,) bool mask of the devices that take part.

        Returns:
            ``{"loss": mean training loss over scheduled devices (nan if none),
            "device_loss": (K,) float64 (nan for unscheduled), "bits": (K,) bits measured from
            the exchanged tensors (0 for unscheduled), "num_scheduled": N}``.
        """
        self._require_reset()
        sched = np.asarray(scheduled)
        if sched.shape != (self.num_devices,):
            raise ValueError(f"scheduled must have shape ({self.num_devices},), got {sched.shape}")
        sched = sched.astype(bool)
        self.draw_round()
        assert self.pending is not None and self.optimizer is not None
        pending, self.pending, self.pending_bits = self.pending, None, None
        devices = np.flatnonzero(sched)
        device_loss = np.full(self.num_devices, np.nan)
        bits = np.zeros(self.num_devices)
        self.round += 1
        if len(devices) == 0:
            return {
                "loss": float("nan"),
                "device_loss": device_loss,
                "bits": bits,
                "num_scheduled": 0,
            }
        self.split.set_lora_dropout(True)
        train = self.data.train
        if self.method == "batched":
            batch = self.make_batch(train, pending[devices].reshape(-1))
            losses, b = batched_gradients(
                self.split,
                self.W,
                self.b,
                batch,
                torch.as_tensor(devices, device=self.torch_device),
                self.config.batch_size,
                self.config.bits_per_element,
            )
        else:
            batches = [self.make_batch(train, pending[k]) for k in devices]
            losses, b = loop_gradients(
                self.split, self.W, self.b, batches, devices.tolist(), self.config.bits_per_element
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        device_loss[devices] = losses.double().cpu().numpy()
        bits[devices] = b
        return {
            "loss": float(device_loss[devices].mean()),
            "device_loss": device_loss,
            "bits": bits,
            "num_scheduled": len(devices),
        }

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def features(self, split: TextSplit | ImageSplit, idx: np.ndarray) -> torch.Tensor:
        """Encoder features of the samples ``idx`` through the split model (LoRA dropout off)."""
        self.split.set_lora_dropout(False)
        idx = np.asarray(idx)
        # text: chunks of similar length, each padded to its own longest sample only
        order = (
            np.argsort(split.lengths[idx], kind="stable")
            if isinstance(split, TextSplit)
            else np.arange(len(idx))
        )
        out = []
        for start in range(0, len(idx), EVAL_CHUNK):
            batch = self.make_batch(split, idx[order[start : start + EVAL_CHUNK]])
            emb = self.split.device_embed(batch)
            out.append(self.split.server_forward(emb, batch.get("attention_mask")))
        feats = torch.cat(out)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return feats[torch.as_tensor(inverse, device=feats.device)]

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Held-out loss and accuracy, averaged over the K devices' heads (FT eq. 1).

        Device k's figures follow ``config.eval_weighting_in_force``: ``"common"``: head k's mean
        over the fixed held-out subset; ``"device-labels"``: head k's mean per class on that
        subset, weighted by the label proportions of device k's training shard (classes absent
        from the subset are left out and the weights renormalised).

        Returns ``{"test_loss", "test_accuracy", "device_test_loss" (K,),
        "device_test_accuracy" (K,)}``.
        Consumes no randomness.
        """
        self._require_reset()
        test = self.data.test
        z = self.features(test, self.eval_indices)
        y = torch.as_tensor(test.labels[self.eval_indices], device=self.torch_device)
        logits = torch.einsum("nh,khc->knc", z, self.W) + self.b[:, None, :]
        ce = nn.functional.cross_entropy(
            logits.reshape(-1, self.num_classes), y.repeat(self.num_devices), reduction="none"
        )
        ce = ce.view(self.num_devices, -1).double()
        hit = (logits.argmax(-1) == y[None]).double()
        if self.config.eval_weighting_in_force == "common":
            dev_loss = ce.mean(1).cpu().numpy()
            dev_acc = hit.mean(1).cpu().numpy()
        else:  # per-class means (K, C), weighted by each device's own label proportions
            onehot = nn.functional.one_hot(y, self.num_classes).double()  # (n, C)
            count = onehot.sum(0)
            present = (count > 0).cpu().numpy()
            w = self.label_weights * present
            w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
            per_class_loss = ((ce @ onehot) / count.clamp(min=1)).cpu().numpy()
            per_class_acc = ((hit @ onehot) / count.clamp(min=1)).cpu().numpy()
            dev_loss = (w * per_class_loss).sum(1)
            dev_acc = (w * per_class_acc).sum(1)
        return {
            "test_loss": float(dev_loss.mean()),
            "test_accuracy": float(dev_acc.mean()),
            "device_test_loss": dev_loss,
            "device_test_accuracy": dev_acc,
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: LoRA, heads, optimiser, RNGs, data cursors.

        Holds only tensors and plain Python values, so ``torch.save`` / ``torch.load`` (with the
        default ``weights_only=True``) round-trip it.
        """
        self._require_reset()
        assert self.optimizer is not None
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "num_devices": self.num_devices,
            "seed": self.seed,
            "round": self.round,
            "lora": {n: p.detach().clone() for n, p in self.split.lora_named_parameters()},
            "W": self.W.detach().clone(),
            "b": self.b.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": self.rng.bit_generator.state,
            "local": [torch.as_tensor(x) for x in self.local],
            "perm": [torch.as_tensor(x) for x in self.perm],
            "cursor": torch.as_tensor(self.cursor),
            "pending": None if self.pending is None else torch.as_tensor(self.pending),
        }
        if self.torch_device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.torch_device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (same config and number of devices)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported learner state version {state.get('version')!r}")
        saved = TrainingConfig.from_any(state["config"])  # fields added later take defaults
        if state["num_devices"] != self.num_devices or saved != self.config:
            raise ValueError(
                "learner state was saved with a different TrainingConfig or num_devices"
            )
        if not self._seeded:
            self.reset(int(state["seed"]))
        assert self.optimizer is not None
        self.seed = int(state["seed"])
        self.round = int(state["round"])
        with torch.no_grad():
            named = dict(self.split.lora_named_parameters())
            for n, v in state["lora"].items():
                named[n].copy_(v)
            self.W.copy_(state["W"])
            self.b.copy_(state["b"])
        if len(state["optimizer"]["param_groups"]) == len(self.optimizer.param_groups):
            self.optimizer.load_state_dict(state["optimizer"])
        # else: a state saved before the heads had their own group; plain SGD keeps no
        # per-parameter state, so the fresh optimiser of reset() is the same
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.torch_device)
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["numpy_rng"]
        self.local = [x.numpy().astype(np.int64) for x in state["local"]]
        self.perm = [x.numpy().astype(np.int64) for x in state["perm"]]
        self.cursor = state["cursor"].numpy().astype(np.int64).copy()
        self.pending = (
            None if state["pending"] is None else state["pending"].numpy().astype(np.int64)
        )
        self.pending_bits = (
            None
            if self.pending is None
            else np.array([self._bits_of(ix) for ix in self.pending], dtype=np.float64)
        )
