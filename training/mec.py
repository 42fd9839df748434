"""Real split fine-tuning for ``edgeft/MECOffloading-v0`` (MEC Section 3): a layer split per user.

One shared pretrained BERT-family encoder with peft LoRA adapters (``training/models.py``) and one
shared linear task head is fine-tuned by N users together. Each round every user n takes one
minibatch of its own data shard (``training/data.py`` tasks; default the offline pretrained
``minilm`` on ``synthetic-text``), cut or padded to exactly d_n tokens, the token length the env
drew for it, and:

* **device side** (user n): embeddings and encoder layers ``[0, alpha_n)`` (their LoRA adapters
  included); it sends the cut-layer hidden states, a (B, d_n, h) tensor, to its edge server;
* **server side**: encoder layers ``[alpha_n, Upsilon)``, the pooler and the head; the loss f_n
  is the mean cross-entropy of the minibatch; the server backpropagates to the cut and sends the
  gradient of f_n with respect to the cut activations back;
* **device side**: backpropagates that gradient through its layers.

The two backward halves give exactly user n's full-model gradient (tested against autograd on
the unsplit model). The update (one per round) is plain SGD on the average over users::

    theta <- theta - lr * (1/N) sum_n grad f_n(theta)        theta = all LoRA matrices + head

so the device-side and server-side LoRA adapters of a layer are one shared parameter (as in the
paper, where users and servers train the same model); no momentum or weight decay.

Cost-model quantities come from the real model (:attr:`MECRealEngine.env_config`, which the env
exposes as its read-only ``config_in_force``; the user's config is left as given): Upsilon =
``num_hidden_layers``, h = ``hidden_size``, B = ``training.batch_size``, the bits per element of
s(d) = ``training.bits_per_element``, and the token range is clipped to what the data holds
(``training.max_seq_len`` and the longest sequence of the training split), so psi(d_n) counts the
FLOPs of the d_n positions the model really runs and s(d_n) = B d_n h bits the tensor it really
sends. ``run_round`` reports the measured bits (``numel`` of the cut tensor times the bits per
element; it equals s(d_n) by construction, and ``bits_real_tokens`` counts only the non-padding
positions, what a sender that drops padding would send).

Dropout: the frozen base runs in eval mode and the LoRA dropout follows ``training.lora_dropout``
(0 by default), so a round is deterministic given the seed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from edgeft.envs.real_config import TrainingConfig
from edgeft.training.data import load_task, next_minibatch, partition
from edgeft.training.models import SplitModel, UnsupportedModelError, load_split_model
from edgeft.training.task_data import TaskData, TextSplit
from torch import nn

if TYPE_CHECKING:  # annotations only: the env imports this module, not the other way round
    from edgeft.envs.mec.config import MECConfig
    from edgeft.envs.mec.types import MECDecision, MECInstance

EVAL_CHUNK = 256


def training_config_of(config: MECConfig) -> TrainingConfig:
    """The :class:`TrainingConfig` of a MEC config's real mode (``config.training``)."""
    return TrainingConfig.from_any(config.training)


# ----------------------------------------------------------------------------- the layer split
class LayerSplit:
    """A BERT-family :class:`SplitModel` cut after encoder layer ``alpha`` (0 <= alpha <= Upsilon).

    ``device_forward`` = embeddings + layers [0, alpha); ``server_forward`` = layers
    [alpha, Upsilon) + pooler. ``device_forward`` followed by ``server_forward`` is the unsplit
    model's pooled output (the same modules, the same attention mask).
    """

    def __init__(self, split: SplitModel) -> None:
        if split.modality != "text" or split.model_type not in ("bert", "roberta"):
            raise UnsupportedModelError(
                f"the MEC layer split needs a BERT-family text encoder, got {split.model_type!r} "
                "(use e.g. 'minilm', 'tiny-bert' or 'bert-base-uncased')"
            )
        self.split = split
        self.layers = list(split.model.encoder.layer)

    @property
    def num_layers(self) -> int:
        """Upsilon: the encoder's layer count."""
        return len(self.layers)

    def mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        """The 4-D attention mask the unsplit model builds from ``attention_mask``."""
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(
            config=self.split.model.config, inputs_embeds=hidden, attention_mask=attention_mask
        )

    def _run(self, hidden: torch.Tensor, mask: Any, lo: int, hi: int) -> torch.Tensor:
        for layer in self.layers[lo:hi]:
            out = layer(hidden, mask)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def _check(self, alpha: int) -> int:
        alpha = int(alpha)
        if not 0 <= alpha <= self.num_layers:
            raise ValueError(f"alpha must be in [0, {self.num_layers}], got {alpha}")
        return alpha

    def device_forward(self, batch: dict[str, torch.Tensor], alpha: int) -> torch.Tensor:
        """Embeddings + layers [0, alpha): the (B, L, h) cut activations the user sends."""
        alpha = self._check(alpha)
        hidden = self.split.device_embed(batch)
        mask = self.mask(hidden, batch.get("attention_mask"))
        return self._run(hidden, mask, 0, alpha)

    def server_forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, alpha: int
    ) -> torch.Tensor:
        """Layers [alpha, Upsilon) + pooler on the cut activations: (B, h) pooled features."""
        alpha = self._check(alpha)
        mask = self.mask(hidden, attention_mask)
        seq = self._run(hidden, mask, alpha, self.num_layers)
        pooler = getattr(self.split.model, "pooler", None)
        return pooler(seq) if pooler is not None else seq[:, 0]

    def forward(self, batch: dict[str, torch.Tensor], alpha: int) -> torch.Tensor:
        """Device then server side, without a cut in the autograd graph."""
        return self.server_forward(
            self.device_forward(batch, alpha), batch.get("attention_mask"), alpha
        )


# ----------------------------------------------------------------------------- the engine
class MECRealEngine:
    """Real layer-split LoRA fine-tuning behind ``MECOffloading`` ``mode="real"``.

    Contract (what the env calls)::

        engine = MECRealEngine(config)        # loads model + data; consumes no randomness
        engine.env_config                     # the config in force: Upsilon, h, B, bits, d range
        engine.seed(seed)                     # fresh LoRA + head + optimiser + shards
        info = engine.run_round(inst, dec)    # one real round; measured loss, bits, ...
        engine.evaluate()                     # held-out loss / accuracy of the unsplit model

    Args:
        config: the env's :class:`MECConfig`; ``config.training`` (a :class:`TrainingConfig` or
            a dict of its fields) selects the model, task, LoRA, lr, batch size, dtype.
    """

    def __init__(self, config: MECConfig) -> None:
        self.config = config
        self.training = training_config_of(config)
        cfg = self.training
        if cfg.modality != "text":
            raise ValueError(
                f"MECOffloading real mode needs a text task (its cost model counts tokens), got "
                f"training.task={cfg.task!r}"
            )
        self.torch_device = torch.device(cfg.device)
        self.dtype = getattr(torch, cfg.dtype)
        self.split = load_split_model(cfg)
        self.layer_split = LayerSplit(self.split)
        vocab = int(getattr(self.split.model.config, "vocab_size", 0) or 0)
        self.data: TaskData = load_task(cfg, self.split.tokenizer, vocab)
        hidden = self.split.hidden_size
        self.num_classes = self.data.num_classes
        self.W = nn.Parameter(
            torch.zeros(hidden, self.num_classes, dtype=self.dtype, device=self.torch_device)
        )
        self.b = nn.Parameter(
            torch.zeros(self.num_classes, dtype=self.dtype, device=self.torch_device)
        )
        train = self.data.train
        assert isinstance(train, TextSplit)
        self.max_tokens = int(
            min(
                cfg.max_seq_len,
                train.ids.shape[1],
                getattr(self.split.model.config, "max_position_embeddings", 10**9),
            )
        )
        self.env_config = self._resolve(config)
        n_test = len(self.data.test)
        order = np.random.default_rng(0).permutation(n_test)
        self.eval_indices = np.sort(order[: cfg.eval_size]) if cfg.eval_size else np.arange(n_test)
        self.optimizer: torch.optim.Optimizer | None = None
        self.round = 0

    # ------------------------------------------------------------------ config of the env
    def _resolve(self, config: MECConfig) -> MECConfig:
        """The env config with the cost model's quantities taken from the real model and data."""
        cfg = self.training
        hi = min(config.tokens_max, self.max_tokens)
        lo = min(config.tokens_min, hi)
        return dataclasses.replace(
            config,
            num_layers=self.layer_split.num_layers,
            hidden_size=self.split.hidden_size,
            batch_size=cfg.batch_size,
            bits_per_element=float(cfg.bits_per_element),
            tokens_min=lo,
            tokens_max=hi,
        )

    # ------------------------------------------------------------------ parameters
    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters: every LoRA matrix (device and server layers) and the head."""
        return [*self.split.lora_parameters(), self.W, self.b]

    def seed(self, seed: int) -> None:
        """Fresh LoRA, head and optimiser; every user's data shard and minibatch order."""
        seed = int(seed)
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.split.reset_lora()
        with torch.no_grad():  # nn.Linear's default init
            bound = 1.0 / math.sqrt(self.split.hidden_size)
            self.W.uniform_(-bound, bound)
            self.b.uniform_(-bound, bound)
        for p in self.parameters():
            p.grad = None
        self.optimizer = torch.optim.SGD(self.parameters(), lr=self.training.lr)
        n = self.config.num_users
        self.shards = partition(
            self.data.train.labels,
            n,
            min(self.training.data_fraction, 1.0 / n),
            "iid",
            1.0,
            self.rng,
        )
        self.perm = [s[self.rng.permutation(len(s))] for s in self.shards]
        self.cursor = np.zeros(n, dtype=np.int64)
        self.round = 0

    def _require_seed(self) -> None:
        if self.optimizer is None:
            raise RuntimeError("call seed(seed) (the env's reset) before run_round")

    # ------------------------------------------------------------------ minibatches
    def _next_indices(self, n: int) -> np.ndarray:
        return next_minibatch(
            self.shards[n], self.perm, self.cursor, n, self.training.batch_size, self.rng
        )

    def make_batch(self, split: TextSplit, idx: np.ndarray, tokens: int) -> dict[str, torch.Tensor]:
        """Samples ``idx`` cut (longer ones) or padded (shorter ones) to exactly ``tokens``."""
        width = split.ids.shape[1]
        ids = np.full((len(idx), tokens), self.data.pad_id, dtype=np.int64)
        keep = min(tokens, width)
        ids[:, :keep] = split.ids[idx, :keep]
        lengths = np.minimum(split.lengths[idx], tokens)
        mask = (np.arange(tokens)[None, :] < lengths[:, None]).astype(np.int64)
        dev = self.torch_device
        batch = {
            "input_ids": torch.as_tensor(ids, device=dev),
            "attention_mask": torch.as_tensor(mask, device=dev),
            "labels": torch.as_tensor(split.labels[idx], device=dev),
        }
        if split.token_type is not None:
            tt = np.zeros((len(idx), tokens), dtype=np.int64)
            tt[:, :keep] = split.token_type[idx, :keep]
            batch["token_type_ids"] = torch.as_tensor(tt, device=dev)
        return batch

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """The shared head."""
        return pooled @ self.W + self.b

    # ------------------------------------------------------------------ one round
    def user_gradient(
        self, batch: dict[str, torch.Tensor], alpha: int, scale: float = 1.0
    ) -> tuple[float, float, int, int]:
        """One user's split forward/backward; adds ``scale`` x its gradient to ``.grad``.

        Returns (loss, minibatch accuracy, elements of the cut tensor sent up, of which real
        (non-padding) token positions).
        """
        ls = self.layer_split
        mask = batch.get("attention_mask")
        cut = ls.device_forward(batch, alpha)  # device side
        sent = cut.detach().requires_grad_(True)  # uplink: the cut activations
        pooled = ls.server_forward(sent, mask, alpha)  # server side
        logits = self.logits(pooled)
        loss = F.cross_entropy(logits, batch["labels"])
        (scale * loss).backward()  # server layers + head; gradient at the cut
        assert sent.grad is not None
        if cut.requires_grad:  # downlink: d(scale f_n)/d cut; device layers' backward
            cut.backward(sent.grad)
        acc = float((logits.argmax(-1) == batch["labels"]).double().mean())
        real = int(mask.sum()) * cut.shape[-1] if mask is not None else cut.numel()
        return float(loss.detach()), acc, int(cut.numel()), real

    def run_round(self, inst: MECInstance, dec: MECDecision) -> dict[str, Any]:
        """One real round: every user n trains on d_n tokens with the cut after alpha_n layers.

        Returns ``loss`` (mean over users of the minibatch losses), ``user_loss`` (N,),
        ``accuracy`` (mean minibatch accuracy), ``user_accuracy`` (N,), ``bits`` (N,) measured
        bits of the cut activations sent (numel x bits per element), ``bits_real_tokens`` (N,)
        the same for the non-padding positions only, and ``train_round``.
        """
        self._require_seed()
        assert self.optimizer is not None
        n = self.config.num_users
        alpha = np.asarray(dec.alpha)
        tokens = np.asarray(inst.tokens)
        if alpha.shape != (n,) or tokens.shape != (n,):
            raise ValueError(
                f"run_round needs alpha and tokens of shape ({n},), got "
                f"{alpha.shape} and {tokens.shape}"
            )
        train = self.data.train
        assert isinstance(train, TextSplit)
        bpe = float(self.training.bits_per_element)
        user_loss, user_acc = np.empty(n), np.empty(n)
        bits, bits_real = np.empty(n), np.empty(n)
        self.split.set_lora_dropout(True)
        for p in self.parameters():
            p.grad = None
        for u in range(n):
            d = int(np.clip(round(float(tokens[u])), 1, self.max_tokens))
            batch = self.make_batch(train, self._next_indices(u), d)
            loss, acc, elems, real = self.user_gradient(
                batch, int(round(float(alpha[u]))), scale=1.0 / n
            )
            user_loss[u], user_acc[u] = loss, acc
            bits[u], bits_real[u] = elems * bpe, real * bpe
        self.split.set_lora_dropout(False)
        for p in self.parameters():  # a parameter no user reached has no gradient
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.round += 1
        return {
            "loss": float(user_loss.mean()),
            "user_loss": user_loss,
            "accuracy": float(user_acc.mean()),
            "user_accuracy": user_acc,
            "bits": bits,
            "bits_real_tokens": bits_real,
            "train_round": self.round,
        }

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, indices: np.ndarray | None = None) -> dict[str, float]:
        """Held-out loss and accuracy of the unsplit model (``training.eval_size`` samples)."""
        test = self.data.test
        assert isinstance(test, TextSplit)
        idx = self.eval_indices if indices is None else np.asarray(indices)
        losses, correct = [], 0
        for i in range(0, len(idx), EVAL_CHUNK):
            chunk = idx[i : i + EVAL_CHUNK]
            width = int(min(np.max(test.lengths[chunk]), self.max_tokens))
            batch = self.make_batch(test, chunk, width)
            logits = self.logits(self.split.full_forward(batch))
            losses.append(F.cross_entropy(logits, batch["labels"], reduction="sum").item())
            correct += int((logits.argmax(-1) == batch["labels"]).sum())
        return {"test_loss": float(sum(losses) / len(idx)), "test_accuracy": correct / len(idx)}
