"""Structured pruning: channel groups, exact surgery through BN/Add/Concatenate/Depthwise/Flatten,
criteria, selection, and the rank-prune-retrain loop."""

import json

import numpy as np
import pytest
from conftest import mnist_trained

from sparsecomp import BadArgumentError
from sparsecomp.channels import ChannelGraph, ChannelPlan, remove_channels, zero_consumers
from sparsecomp.criteria import (apoz_scores, equalize, l1_scores, l2_scores, round_up_kept, tlt_normalize)
from sparsecomp.structured import channel_scores, prune_structured, select_channels


def _randomize_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype("float32"),
                               rng.normal(size=b.shape).astype("float32"),
                               rng.normal(size=mean.shape).astype("float32"),
                               rng.uniform(0.5, 2.0, var.shape).astype("float32")])
    return model


def _kitchen_sink():
    """Identity and projection shortcuts, BN, depthwise, separable (multiplier 2), concatenation,
    Flatten and global pooling feeding Dense layers, a Dense-Dense tail."""
    import keras
    L = keras.layers
    keras.utils.set_random_seed(0)
    i = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(i)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.ReLU(name="r0")(x)
    y = L.Conv2D(8, 3, padding="same", name="b1c1")(x)
    y = L.BatchNormalization(name="b1bn1")(y)
    y = L.Activation("relu", name="b1r")(y)
    y = L.Conv2D(8, 3, padding="same", name="b1c2")(y)
    y = L.BatchNormalization(name="b1bn2")(y)
    x = L.Add(name="add1")([x, y])
    x = L.ReLU(name="r1")(x)
    y = L.Conv2D(12, 3, strides=2, padding="same", name="b2c1")(x)
    y = L.BatchNormalization(name="b2bn1")(y)
    y = L.ReLU(name="r2")(y)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(y)
    y = L.BatchNormalization(name="dwbn")(y)
    y = L.Conv2D(12, 1, name="b2c2")(y)
    s = L.Conv2D(12, 1, strides=2, name="proj")(x)
    s = L.BatchNormalization(name="projbn")(s)
    x = L.Add(name="add2")([s, y])
    x = L.ReLU(name="r3")(x)
    z = L.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="sep")(x)
    c = L.Concatenate(name="cat")([x, z])
    f = L.Flatten(name="flat")(L.MaxPooling2D(name="pool")(c))
    g = L.GlobalAveragePooling2D(name="gap")(c)
    h = L.Dense(16, activation="relu", name="fc1")(f)
    h2 = L.Dense(16, activation="relu", name="fcg")(g)
    o = L.Dense(4, name="out")(L.Concatenate(name="cat2")([h, h2]))
    return _randomize_bn(keras.Model(i, o))


def _random_plan(cg, frac, seed=0):
    rng = np.random.default_rng(seed)
    plan = ChannelPlan()
    for g in cg.prunable_groups():
        n = cg.size(g)
        plan.remove[g] = sorted(rng.choice(n, max(1, int(n * frac)), replace=False).tolist())
        plan.producers[g] = cg.producers(g)
        plan.sizes[g] = n
    return plan


def _assert_exact(model, plan, x):
    new = remove_channels(model, plan)
    ref = zero_consumers(model, plan)
    a = new.predict(x, verbose=0)
    b = ref.predict(x, verbose=0)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(b, model.predict(x, verbose=0), atol=1e-4)   # the removal did change something
    assert new.count_params() < model.count_params()
    return new


def test_channel_groups_join_across_adds_and_pin_outputs():
    cg = ChannelGraph(_kitchen_sink())
    groups = {tuple(d["producers"]): d for d in cg.describe()}
    assert ("stem", "b1c2") in groups            # identity shortcut: the stem and the block's last conv
    assert ("proj", "b2c2") in groups            # projection shortcut joined with the block's output
    assert groups[("stem", "b1c2")]["pinned"] is None
    assert groups[("out",)]["pinned"] == "model output"
    assert {tuple(cg.producers(g)) for g in cg.prunable_groups()} == {
        ("stem", "b1c2"), ("b1c1",), ("b2c1",), ("proj", "b2c2"), ("sep",), ("fc1",), ("fcg",)}


@pytest.mark.parametrize("frac,seed", [(0.25, 0), (0.5, 1), (0.75, 2)])
def test_removal_is_exact_through_every_supported_layer(frac, seed):
    model = _kitchen_sink()
    cg = ChannelGraph(model)
    plan = _random_plan(cg, frac, seed)
    x = np.random.default_rng(seed).normal(size=(6, 12, 12, 3)).astype("float32")
    new = _assert_exact(model, plan, x)
    assert new.get_layer("dw").get_weights()[0].shape[2] == 12 - len(plan.remove[cg.group_of("b2c1")])
    assert new.get_layer("b1bn2").get_weights()[0].shape[0] == 8 - len(plan.remove[cg.group_of("stem")])
    before = [w.copy() for w in model.get_weights()]
    remove_channels(model, plan)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))    # caller untouched


@pytest.mark.parametrize("name", ["lenet5", "lenet_300_100", "vgg_small_bn", "resnet_small"])
def test_removal_is_exact_on_the_reference_models(name):
    from models import zoo
    import keras
    keras.utils.set_random_seed(1)
    model = _randomize_bn(getattr(zoo, name)())
    cg = ChannelGraph(model)
    plan = _random_plan(cg, 0.4)
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    _assert_exact(model, plan, x)


def test_pinned_groups_and_bad_plans():
    import keras
    L = keras.layers
    i = keras.Input((6, 6, 2))
    a = L.Conv2D(4, 3, name="a")(i)
    r = L.Reshape((16, 4), name="reshape")(a)
    o = L.Dense(3, name="o")(L.Flatten()(r))
    m = keras.Model(i, o)
    cg = ChannelGraph(m)
    g = cg.group_of("a")
    assert "reshape" in cg.pinned(g)
    with pytest.raises(BadArgumentError, match="pinned"):
        remove_channels(m, ChannelPlan(remove={g: [0]}, producers={g: ["a"]}, sizes={g: 4}))
    good = ChannelGraph(_kitchen_sink())
    g = good.group_of("b1c1")
    with pytest.raises(BadArgumentError, match="every channel"):
        remove_channels(good.model, ChannelPlan(remove={g: list(range(8))}))
    with pytest.raises(BadArgumentError, match="out of range"):
        remove_channels(good.model, ChannelPlan(remove={g: [8]}))
    with pytest.raises(BadArgumentError, match="does not have"):
        remove_channels(good.model, ChannelPlan(remove={999: [0]}))


def test_structured_criteria():
    k = np.zeros((3, 3, 2, 4), "float32")
    k[..., 0] = 1.0
    k[0, 0, 0, 1] = 9.0
    k[..., 2] = -0.5
    np.testing.assert_allclose(l1_scores(k), [1.0, 0.5, 0.5, 0.0])          # mean |w| per filter
    np.testing.assert_allclose(l2_scores(k, normalize=False), [np.sqrt(18), 9.0, np.sqrt(4.5), 0.0])
    np.testing.assert_allclose(l1_scores(np.ones((6, 3))), l1_scores(np.ones((3, 3, 4, 3))))   # size-normalized
    np.testing.assert_allclose(apoz_scores([0, 5, 10], 10), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(tlt_normalize([1.0, 2.0, 4.0]), [0.25, 0.5, 1.0])
    np.testing.assert_allclose(tlt_normalize([1.0, 2.0, 3.0], "mean"), [0.5, 1.0, 1.5])
    np.testing.assert_allclose(tlt_normalize([3.0, 4.0], "l2"), [0.6, 0.8])
    a, b = np.array([0.2, 0.9, 0.5]), np.array([0.8, 0.1, 0.5])
    np.testing.assert_allclose(equalize([a, b], "arithmetic_mean"), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(equalize([a, b], "geometric_mean"), [0.4, 0.3, 0.5])
    np.testing.assert_allclose(equalize([a, b], "union"), [0.8, 0.9, 0.5])
    np.testing.assert_allclose(equalize([a, b], "intersection"), [0.2, 0.1, 0.5])
    assert round_up_kept(9, 64, 8, 16) == 16 and round_up_kept(17, 64, 8, 16) == 24
    assert round_up_kept(63, 64, 8, 1) == 64 and round_up_kept(0, 10, 8, 1) == 8
    with pytest.raises(BadArgumentError, match="equalization"):
        equalize([a, b], "median")


def test_selection_global_layer_threshold_granularity_exclude():
    cg = ChannelGraph(_kitchen_sink())
    groups = cg.prunable_groups()
    rng = np.random.default_rng(0)
    scores = {g: rng.random(cg.size(g)) for g in groups}
    total = sum(cg.size(g) for g in groups)
    plan = select_channels(cg, scores, fraction=0.3)
    assert plan.n_channels == round(0.3 * total)
    worst_kept = min(min(np.delete(scores[g], plan.remove.get(g, []))) for g in groups)
    best_gone = max(max(scores[g][plan.remove[g]]) for g in plan.remove)
    assert best_gone <= worst_kept                                 # lowest-ranked across the network
    plan = select_channels(cg, scores, fraction=0.5, scope="layer")
    assert all(len(plan.remove[g]) == cg.size(g) // 2 for g in groups)
    plan = select_channels(cg, scores, threshold=0.5, granularity=4, min_channels=4)
    for g in groups:
        kept = cg.size(g) - len(plan.remove.get(g, []))
        assert kept % 4 == 0 or kept == cg.size(g)
        assert kept >= min(4, cg.size(g)) and kept >= int((scores[g] >= 0.5).sum())
    plan = select_channels(cg, scores, fraction=0.5, scope="layer", exclude=["b2c2"])
    assert cg.group_of("proj") not in plan.remove                # the whole joined group stays
    with pytest.raises(BadArgumentError, match="exactly one"):
        select_channels(cg, scores)
    with pytest.raises(BadArgumentError, match="does not have"):
        select_channels(cg, scores, fraction=0.1, exclude=["nope"])


def test_equalized_scores_on_a_residual_group():
    model = _kitchen_sink()
    cg = ChannelGraph(model)
    g = cg.group_of("stem")
    norms = [tlt_normalize(l2_scores(model.get_layer(p).kernel.numpy(), normalize=False)) for p in ("stem", "b1c2")]
    for op, fn in (("union", np.maximum), ("intersection", np.minimum)):
        s = channel_scores(model, "tlt", equalization=op, cg=cg)[g]
        np.testing.assert_allclose(s, fn(*norms))


def test_fold_bn_scales_norms_by_the_following_batchnorm():
    model = _kitchen_sink()
    cg = ChannelGraph(model)
    bn = model.get_layer("b1bn1")
    gamma, _, _, var = [np.asarray(w, np.float64) for w in bn.get_weights()]
    plain = channel_scores(model, "l1", cg=cg)[cg.group_of("b1c1")]
    folded = channel_scores(model, "l1", cg=cg, fold_bn=True)[cg.group_of("b1c1")]
    np.testing.assert_allclose(folded, plain * np.abs(gamma) / np.sqrt(var + bn.epsilon), rtol=1e-6)
    fc = cg.group_of("fc1")                                      # no BN after it: unchanged
    np.testing.assert_allclose(channel_scores(model, "l1", cg=cg, fold_bn=True)[fc],
                               channel_scores(model, "l1", cg=cg)[fc])


@pytest.fixture(scope="module")
def mnist_lenet5():
    return mnist_trained("lenet5", 3000, batch_size=64)


def test_apoz_counts_zeros_of_the_relu_output(mnist_lenet5):
    import keras
    model, (x, _) = mnist_lenet5
    s = channel_scores(model, "apoz", inputs=x[:200])
    cg = ChannelGraph(model)
    act = keras.Model(model.inputs[0], model.get_layer("conv1").output)(x[:200]).numpy()
    np.testing.assert_allclose(s[cg.group_of("conv1")], 1 - (act == 0).reshape(-1, 20).mean(axis=0))


def test_loop_rounds_history_and_revert(mnist_lenet5):
    model, data = mnist_lenet5
    before = [w.copy() for w in model.get_weights()]
    seen = []
    pruned, hist = prune_structured(model, data, criterion="l1", fraction=0.2, scope="layer", rounds=2,
                                    max_drop=1.0, epochs=1, progress=seen.append)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert len(hist.rounds) == 2 and seen == hist.rounds
    assert hist.rounds[0].filters["conv1"] == [16, 20] and hist.rounds[1].filters["conv1"] == [13, 16]
    assert tuple(pruned.get_layer("conv2").kernel.shape) == (5, 5, 13, 32)          # 50 -> 40 -> 32 filters
    assert tuple(pruned.get_layer("fc1").kernel.shape) == (4 * 4 * 32, 320)         # Flatten rows follow
    assert hist.final_params == pruned.count_params() < hist.dense_params
    from sparsecomp.structured import StructuredHistory
    again = StructuredHistory.from_dict(json.loads(hist.to_json()))
    assert again == hist and again.rounds[1].filters["conv1"] == [13, 16]
    # max_drop=0 with half the filters gone each round: the round fails and is reverted
    same, hist = prune_structured(model, data, criterion="random", fraction=0.9, scope="layer", rounds=3,
                                  max_drop=0.0, epochs=0)
    assert hist.rounds[-1].accepted is False and len(hist.rounds) == 1
    assert same.count_params() == model.count_params()


def test_magnitude_criterion_in_the_same_loop(mnist_lenet5):
    model, data = mnist_lenet5
    pruned, hist = prune_structured(model, data, criterion="magnitude", fraction=0.5, rounds=2, max_drop=1.0,
                                    epochs=1)
    assert [round(r.sparsity, 3) for r in hist.rounds] == [0.5, 0.75]
    k = pruned.get_layer("fc1").kernel.numpy()
    assert (k == 0).mean() == pytest.approx(0.75, abs=1e-3)
    with pytest.raises(BadArgumentError, match="fraction"):
        prune_structured(model, data, criterion="magnitude", fraction=None, threshold=0.5)
    with pytest.raises(BadArgumentError, match="criterion"):
        prune_structured(model, data, criterion="taylor")
