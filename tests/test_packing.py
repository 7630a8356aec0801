"""prift.packing: each sequence of a packed row attends to itself alone (per-sequence sdpa), as if it were alone."""
from __future__ import annotations

import torch

from prift import packing
from prift.backbone import load_model


def _model(tiny_backbone):
    torch.manual_seed(0)
    model = load_model(str(tiny_backbone)).double()
    assert model.config._attn_implementation == "sdpa"
    return model


def test_segments_of_a_packed_row():
    assert packing.segments(torch.tensor([[0, 1, 2, 0, 1, 0]])) == [(0, 3), (3, 5), (5, 6)]
    assert packing.segments(torch.tensor([[0, 1, 2, 3]])) is None            # one sequence: sdpa's own path
    assert packing.segments(torch.tensor([[0, 1, 0], [0, 1, 2]])) is None    # padded rows are not a packed layout
    assert packing.segments(None) is None


def test_varlen_sdpa_gives_each_sequence_its_own_logits_and_gradients(tiny_backbone, monkeypatch):
    """float64: the logits of a packed row through varlen_sdpa equal each sequence's logits computed alone, and so
    do the gradients of a loss over them; the attention runs once per sequence and layer (never over the row)."""
    lens = [7, 12, 3, 9]
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 200, (n,), generator=g) for n in lens]
    alone = _model(tiny_backbone)
    ref = torch.cat([alone(input_ids=s[None]).logits[0] for s in seqs])
    ref.square().mean().backward()
    packed = _model(tiny_backbone)
    assert packing.use_varlen_sdpa(packed) and packed.config._attn_implementation == packing.ATTENTION
    shapes = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(packing.F, "scaled_dot_product_attention",
                        lambda q, *a, **k: (shapes.append(q.shape[2]), sdpa(q, *a, **k))[1])
    out = packed(input_ids=torch.cat(seqs)[None], position_ids=torch.cat([torch.arange(n) for n in lens])[None],
                 use_cache=False).logits[0]
    out.square().mean().backward()
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(packed.parameters(), alone.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)
    assert shapes == lens * packed.config.num_hidden_layers


def test_rows_that_are_not_packed_keep_sdpa(tiny_backbone):
    """A padded batch (attention mask, one sequence per row) through varlen_sdpa is sdpa's computation exactly."""
    a, b = _model(tiny_backbone), _model(tiny_backbone)
    packing.use_varlen_sdpa(b)
    ids = torch.randint(3, 200, (2, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    torch.testing.assert_close(b(input_ids=ids, attention_mask=mask).logits, a(input_ids=ids, attention_mask=mask).logits,
                               rtol=0, atol=0)


def test_the_trainer_switches_sdpa_models_for_packed_batches(tiny_backbone, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig
    from prift.backbone import load_tokenizer
    from prift.methods import Method
    from prift.sft import WeightedCollator, WeightedSFTTrainer
    tok = load_tokenizer(str(tiny_backbone))
    ds = Dataset.from_list([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "idx": 0}])
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], remove_unused_columns=False,
                     dataset_kwargs={"skip_prepare_dataset": True}, max_length=16)
    for packed, impl in ((False, "sdpa"), (True, packing.ATTENTION)):
        model = load_model(str(tiny_backbone))
        WeightedSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                           method=Method.from_config("sft", {"rule": "sft", "source": "online"}),
                           data_collator=WeightedCollator(tok.pad_token_id, packed=packed))
        assert model.config._attn_implementation == impl
