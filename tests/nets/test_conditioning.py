"""Tests of terradiff.nets.conditioning and the class / metadata conditioning of the UNet."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from terradiff.nets.conditioning import (
    NULL_LABEL,
    ClassEmbedding,
    Condition,
    ConditionEmbedding,
    ConditionSpec,
    MetadataEmbedding,
)
from terradiff.nets.unet import UNet

TINY: dict[str, Any] = {
    "base_channels": 16,
    "channel_mults": (1, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (8,),
    "image_size": 16,
    "num_groups": 8,
    "head_channels": 16,
}
NAN = float("nan")


def _randomize(net: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Random values for every parameter (zero-initialised layers would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


# ----------------------------------------------------------------------------- spec


def test_spec_json_round_trip_and_validation() -> None:
    spec = ConditionSpec(num_classes=10, metadata_fields=("lon", "lat", "gsd"))
    data = json.loads(json.dumps(spec.to_dict()))
    assert data == {"num_classes": 10, "metadata_fields": ["lon", "lat", "gsd"]}
    assert ConditionSpec.from_dict(data) == spec
    assert ConditionSpec.from_dict({}) == ConditionSpec()
    assert spec.enabled and not ConditionSpec().enabled
    assert ConditionSpec(metadata_fields=["a"]).metadata_fields == ("a",)  # type: ignore[arg-type]
    for bad, match in (
        ({"num_classes": -1}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"metadata_fields": ("a", "a")}, "repeated"),
        ({"metadata_fields": "lat"}, "sequence of names"),
        ({"metadata_fields": ("",)}, "non-empty"),
    ):
        with pytest.raises(ValueError, match=match):
            ConditionSpec(**bad)
    with pytest.raises(ValueError, match=r"unknown condition spec keys \['classes'\]"):
        ConditionSpec.from_dict({"classes": 3})


# ----------------------------------------------------------------------------- condition


def test_condition_validates_and_derives_presence_from_finite_values() -> None:
    c = Condition(torch.tensor([0, 2], dtype=torch.int32), torch.tensor([[0.5, NAN], [1.0, 2.0]]))
    assert c.labels is not None and c.labels.dtype == torch.long
    assert c.present is not None and c.present.tolist() == [[True, False], [True, True]]
    assert c.batch_size == 2 and c.num_fields == 2
    assert Condition().batch_size is None and Condition().num_fields is None
    with pytest.raises(ValueError, match="integer tensor"):
        Condition(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="without metadata"):
        Condition(present=torch.ones(2, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool tensor shaped like"):
        Condition(metadata=torch.zeros(2, 3), present=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch size"):
        Condition(torch.tensor([0, 1, 2]), torch.zeros(2, 1))


def test_null_like_and_concat_round_trip() -> None:
    c = Condition(torch.tensor([3, 1, 0]), torch.randn(3, 2))
    null = c.null_like()
    assert null.labels is not None and null.labels.tolist() == [NULL_LABEL] * 3
    assert null.present is not None and not null.present.any()
    both = Condition.concat(c, null)
    assert both.batch_size == 6
    assert both.labels is not None and both.metadata is not None and both.present is not None
    assert torch.equal(both.labels[:3], c.labels) and torch.equal(both.labels[3:], null.labels)
    assert torch.equal(both.metadata[:3], c.metadata)
    assert torch.equal(both.present[:3], c.present)
    assert torch.equal(both.present[3:], null.present)
    assert null.null_like(5).batch_size == 5
    empty = Condition().null_like()
    assert empty.labels is None and empty.metadata is None and empty.present is None
    moved = c.to("cpu")
    assert moved.labels is not None and torch.equal(moved.labels, c.labels)


def test_concat_fills_a_part_only_one_side_has_with_nulls() -> None:
    labels_only = Condition(torch.tensor([1, 2]))
    meta_only = Condition(metadata=torch.tensor([[0.5]]))
    both = Condition.concat(labels_only, meta_only)
    assert both.labels is not None and both.labels.tolist() == [1, 2, NULL_LABEL]
    assert both.present is not None and both.present.tolist() == [[False], [False], [True]]
    with pytest.raises(ValueError, match="batch size is unknown"):
        Condition.concat(labels_only, Condition())
    assert Condition.concat(Condition(), Condition()).batch_size is None
    with pytest.raises(ValueError, match="fields"):
        Condition.concat(Condition(metadata=torch.zeros(1, 2)), meta_only)


def test_dropout_rate_is_binomial_and_joint() -> None:
    n, p = 20_000, 0.1
    c = Condition(torch.randint(0, 5, (n,)), torch.rand(n, 3))
    dropped = c.with_dropped(p, torch.Generator().manual_seed(0))
    assert dropped.labels is not None and dropped.present is not None
    null_label = dropped.labels == NULL_LABEL
    null_meta = ~dropped.present.any(dim=1)
    assert torch.equal(null_label, null_meta)  # class and metadata dropped together
    fraction = null_label.float().mean().item()
    assert abs(fraction - p) < 4 * math.sqrt(p * (1 - p) / n), fraction
    kept = ~null_label
    assert dropped.metadata is not None and c.metadata is not None
    assert torch.equal(dropped.metadata[kept], c.metadata[kept])
    assert not dropped.metadata[null_label].any()  # dropped values zeroed


def test_dropout_is_reproducible_and_draws_one_number_per_sample() -> None:
    c = Condition(torch.arange(8))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = c.with_dropped(0.5, g1)
    b = c.with_dropped(0.5, g2)
    assert a.labels is not None and b.labels is not None and torch.equal(a.labels, b.labels)
    # the generator advanced by exactly B draws, whatever drop_prob is
    g3 = torch.Generator().manual_seed(3)
    c.with_dropped(0.0, g3)
    torch.rand(8, generator=g2.manual_seed(3))
    assert torch.equal(g3.get_state(), g2.get_state())
    unchanged = c.with_dropped(0.0, torch.Generator())
    assert unchanged.labels is not None and torch.equal(unchanged.labels, c.labels)
    gone = c.with_dropped(1.0, torch.Generator())
    assert gone.labels is not None and (gone.labels == NULL_LABEL).all()
    with pytest.raises(ValueError, match="drop_prob"):
        c.with_dropped(1.5, torch.Generator())
    assert Condition().with_dropped(0.5, torch.Generator()).batch_size is None


# ----------------------------------------------------------------------------- embeddings


def test_class_embedding_null_row() -> None:
    emb = ClassEmbedding(3, 8)
    out = emb(torch.tensor([0, -1, 2]))
    assert out.shape == (3, 8)
    torch.testing.assert_close(out[1], emb.table.weight[3], rtol=0, atol=0)
    torch.testing.assert_close(emb(None, 2), emb.table.weight[3].expand(2, 8), rtol=0, atol=0)
    for bad in ([3], [-2]):
        with pytest.raises(ValueError, match=r"class labels must be in \[0, 2\]"):
            emb(torch.tensor(bad))
    with pytest.raises(ValueError, match="batch size"):
        emb(None)


def test_metadata_embedding_missing_fields() -> None:
    torch.manual_seed(0)
    emb = MetadataEmbedding(("lon", "lat", "gsd"), 16)
    with torch.no_grad():
        emb.null.normal_()  # distinct null vectors (they start at zero)
    values = torch.tensor([[0.1, 0.2, 0.3], [0.4, NAN, 0.6], [NAN, NAN, NAN]])
    present = torch.isfinite(values)
    out = emb(values, present)
    assert out.shape == (3, 16) and torch.isfinite(out).all()
    torch.testing.assert_close(emb(values), out, rtol=0, atol=0)  # present = finite by default
    # a missing value is ignored: any number in its place gives the same embedding
    other = torch.where(present, values, torch.tensor(123.0))
    torch.testing.assert_close(emb(other, present), out, rtol=0, atol=0)
    # a present value matters
    moved = values.clone()
    moved[1, 0] = 0.9
    assert not torch.allclose(emb(moved, present)[1], out[1])
    # all missing = the sum of the null vectors; None = all missing, bitwise
    torch.testing.assert_close(out[2], emb.null.sum(0))
    torch.testing.assert_close(emb(None, None, 3)[2], out[2], rtol=0, atol=0)
    # the sum over fields: one field present equals its embedding + the others' nulls
    one = emb(values[:1], torch.tensor([[True, False, False]]))
    alone = one - emb.null[1] - emb.null[2]
    solo = MetadataEmbedding(("lon",), 16)
    solo.load_state_dict({k: v[:1] for k, v in emb.state_dict().items()})
    torch.testing.assert_close(alone, solo(values[:1, :1]), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"shape \[B, 3\]"):
        emb(torch.zeros(2, 2))


def test_condition_embedding_rejects_parts_the_spec_lacks() -> None:
    emb = ConditionEmbedding(ConditionSpec(num_classes=2), 8)
    with pytest.raises(ValueError, match="no metadata input"):
        emb(Condition(metadata=torch.zeros(1, 1)), 1)
    with pytest.raises(ValueError, match="batch size 1, the input 2"):
        emb(Condition(torch.tensor([0])), 2)
    with pytest.raises(ValueError, match="needs classes or metadata"):
        ConditionEmbedding(ConditionSpec(), 8)


# ----------------------------------------------------------------------------- UNet


SPEC = ConditionSpec(num_classes=3, metadata_fields=("lat", "gsd"))


def _digest(net: torch.nn.Module) -> str:
    lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in net.state_dict().items())
    return hashlib.sha256(lines.encode()).hexdigest()


def test_unconditioned_unet_state_dict_is_unchanged() -> None:
    # Digests of the state_dict keys and shapes of these nets before conditioning existed.
    tiny = {
        "base_channels": 16,
        "channel_mults": (1, 2, 2),
        "num_res_blocks": 1,
        "attention_resolutions": (16,),
        "image_size": 32,
        "num_groups": 8,
        "head_channels": 16,
    }
    plain = UNet(3, **tiny)
    assert _digest(plain) == "7459963e7ac844c6b2113993fcfabb113e9037cf04aa2bc7d50a25373d128383"
    fused = UNet(3, **tiny, cond_channels=2, context_channels=8)
    assert _digest(fused) == "ea0e74c282d73f0b7906c7148c8b68896c22fbbcddf29ef656ce782fc30b8cb7"
    assert plain.condition_embed is None and plain.config["condition_spec"] is None
    empty = UNet(3, **tiny, condition_spec=ConditionSpec())
    assert _digest(empty) == _digest(plain) and empty.config == plain.config
    # an old config (no condition_spec key) still builds
    old = {k: v for k, v in plain.config.items() if k != "condition_spec"}
    assert _digest(UNet.from_config(old)) == _digest(plain)


def test_conditioned_unet_shares_the_unconditioned_initial_weights() -> None:
    torch.manual_seed(0)
    plain = UNet(3, **TINY)
    torch.manual_seed(0)
    conditioned = UNet(3, **TINY, condition_spec=SPEC)
    extra = {k for k in conditioned.state_dict() if k.startswith("condition_embed.")}
    assert extra and set(conditioned.state_dict()) - extra == set(plain.state_dict())
    for name, value in plain.state_dict().items():
        assert torch.equal(conditioned.state_dict()[name], value), name


def test_config_round_trip_with_condition() -> None:
    net = UNet(3, **TINY, condition_spec=SPEC)
    _randomize(net)
    config = json.loads(json.dumps(net.config))
    rebuilt = UNet.from_config(config)
    assert rebuilt.config == net.config and rebuilt.condition_spec == SPEC
    rebuilt.load_state_dict(net.state_dict())
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5.0, 600.0])
    c = Condition(torch.tensor([2, -1]), torch.tensor([[0.3, NAN], [0.1, 0.9]]))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, t, condition=c), net(x, t, condition=c))


def test_none_condition_is_the_null_condition() -> None:
    net = UNet(3, **TINY, condition_spec=SPEC)
    _randomize(net)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5.0, 600.0])
    c = Condition(torch.tensor([2, 0]), torch.tensor([[0.3, NAN], [0.1, 0.9]]))
    with torch.no_grad():
        none = net(x, t)
        assert torch.equal(net(x, t, condition=c.null_like()), none)
        assert torch.equal(net(x, t, condition=Condition()), none)
        assert not torch.allclose(net(x, t, condition=c), none)
        # labels only: metadata all missing
        labels = Condition(torch.tensor([2, 0]))
        padded = Condition(torch.tensor([2, 0]), torch.zeros(2, 2), torch.zeros(2, 2).bool())
        assert torch.equal(net(x, t, condition=labels), net(x, t, condition=padded))
        out, features = net.forward_features(x, t, condition=c)
        torch.testing.assert_close(out, net(x, t, condition=c))
        assert len(features) == len(TINY["channel_mults"])


def test_unet_condition_errors() -> None:
    plain = UNet(3, **TINY)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="no class input"):
        plain(x, t, condition=Condition(torch.tensor([0, 1])))
    assert plain(x, t, condition=Condition()).shape == x.shape  # empty condition is fine
    net = UNet(3, **TINY, condition_spec=SPEC)
    with pytest.raises(ValueError, match="metadata has 3 fields, the net expects 2"):
        net(x, t, condition=Condition(metadata=torch.zeros(2, 3)))
    with pytest.raises(ValueError, match="batch size 1, the input 2"):
        net(x, t, condition=Condition(torch.tensor([0])))


def test_condition_embedding_gets_gradients_and_runs_channels_last_bf16() -> None:
    net = UNet(3, **TINY, condition_spec=SPEC)
    _randomize(net)
    x, t = torch.randn(4, 3, 16, 16), torch.tensor([1.0, 2.0, 3.0, 4.0])
    c = Condition(
        torch.tensor([0, 1, 2, -1]), torch.tensor([[0.1, 0.2], [NAN, 0.3], [0.5, NAN], [NAN, NAN]])
    )
    net(x, t, condition=c).square().mean().backward()
    grads = {n: p.grad for n, p in net.named_parameters() if n.startswith("condition_embed.")}
    assert sorted(grads) == [
        "condition_embed.classes.table.weight",
        "condition_embed.metadata.bias1",
        "condition_embed.metadata.bias2",
        "condition_embed.metadata.null",
        "condition_embed.metadata.weight1",
        "condition_embed.metadata.weight2",
    ]
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())
    # only the rows of the classes in the batch (0, 1, 2 and the null row 3) get gradient
    assert (grads["condition_embed.classes.table.weight"].abs().sum(1) > 0).tolist() == [True] * 4
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        out = net(x.contiguous(memory_format=torch.channels_last), t, condition=c)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(out.float(), net(x, t, condition=c), atol=0.05, rtol=0.05)


def test_conditioned_unet_learns_to_use_the_class() -> None:
    """A probe: the target depends only on the class, so the net cannot ignore the condition."""
    torch.manual_seed(0)
    net = UNet(1, **TINY, condition_spec=ConditionSpec(num_classes=2))
    g = torch.Generator().manual_seed(0)
    labels = Condition(torch.tensor([0, 1] * 4))
    target = torch.tensor([1.0, -1.0] * 4).view(-1, 1, 1, 1).expand(8, 1, 16, 16)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for _ in range(15):
        x = torch.randn(8, 1, 16, 16, generator=g)
        t = torch.randint(0, 1000, (8,), generator=g).float()
        loss = F.mse_loss(net(x, t, condition=labels), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x = torch.randn(8, 1, 16, 16, generator=g)
    t = torch.randint(0, 1000, (8,), generator=g).float()
    with torch.no_grad():
        out = net(x, t, condition=labels)
    # a class-blind net can do no better than predicting 0 (loss 1); ~0.05 after 15 steps
    assert F.mse_loss(out, target).item() < 0.3
    assert (out[0::2].mean() - out[1::2].mean()).item() > 1.0  # targets +1 and -1


def test_rows_cut_every_part_of_a_condition() -> None:
    """``sample --batch-size`` draws a condition of --n images in parts."""
    metadata = torch.tensor([[0.1, float("nan")], [0.2, 0.3], [0.4, 0.5]])
    condition = Condition(labels=torch.tensor([2, -1, 0]), metadata=metadata)
    part = condition.rows(1, 3)
    assert torch.equal(part.labels, torch.tensor([-1, 0]))
    assert torch.equal(part.metadata, metadata[1:])
    assert torch.equal(part.present, torch.tensor([[True, True], [True, True]]))
    assert condition.rows(0, 1).present.tolist() == [[True, False]]
    assert Condition().rows(0, 2).batch_size is None
