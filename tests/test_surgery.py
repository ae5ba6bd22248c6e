"""Dead-unit removal is exact: outputs before and after agree on real inputs, for every case."""

import json

import numpy as np
import pytest

from sparsecomp.surgery import DeadUnitPlan, find_dead_units, remove_dead_units, remove_units


def keras_mod():
    import keras
    keras.utils.set_random_seed(0)
    return keras


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    ws = []
    for w in model.get_weights():
        ws.append((rng.standard_normal(w.shape) * 0.3).astype(w.dtype))
    model.set_weights(ws)
    return model


def kill(model, layer, units, how):
    """Zero the incoming (kernel column) or outgoing (consumer rows) weights of ``units``."""
    lay = model.get_layer(layer)
    if how == "in":
        k = np.asarray(lay.kernel.numpy())
        k[..., units] = 0
        lay.kernel.assign(k)
    return model


def kill_out(model, consumer, rows_fn):
    lay = model.get_layer(consumer)
    k = np.asarray(lay.kernel.numpy())
    rows_fn(k)
    lay.kernel.assign(k)


def check_exact(model, new, x, atol=1e-5):
    a = np.asarray(model(x, training=False))
    b = np.asarray(new(x, training=False))
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol)


def mnist_x(n=16):
    from sparsecomp import load_mnist
    (x, _), _ = load_mnist()
    return (x[:n].astype("float32") / 255.0)[..., None]


def test_dense_chain_both_reasons():
    keras = keras_mod()
    m = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(30, activation="relu", name="fc1"),
                          keras.layers.Dropout(0.5, name="drop"),
                          keras.layers.Dense(20, activation="tanh", name="fc2"),
                          keras.layers.Dense(10, name="out")])
    randomize(m)
    m.get_layer("fc1").bias.assign(np.abs(np.asarray(m.get_layer("fc1").bias.numpy())) + 0.1)  # act(bias) != 0
    kill(m, "fc1", [0, 3, 7], "in")                                       # no incoming, constant folded
    kill_out(m, "fc2", lambda k: k.__setitem__((slice(None), [1, 2]), 0) or k.__setitem__(([1, 2], slice(None)), 0))
    kill_out(m, "out", lambda k: k.__setitem__(([4, 5], slice(None)), 0))  # fc2 units 4, 5: no outgoing
    plan = find_dead_units(m)
    assert set(plan.remove["fc1"]) >= {0, 3, 7}
    assert {4, 5} <= set(plan.remove["fc2"])
    reasons = {(u.layer, u.unit): u.reason for u in plan.units}
    assert reasons[("fc1", 0)] == "no_incoming" and reasons[("fc2", 4)] == "no_outgoing"
    new = remove_units(m, plan)
    check_exact(m, new, mnist_x())
    assert new.get_layer("fc1").units == 30 - len(plan.remove["fc1"])
    assert new.count_params() < m.count_params()


def test_lenet5_conv_pool_flatten_dense():
    keras_mod()
    from models import zoo
    m = randomize(zoo.lenet5())
    m.get_layer("conv2").bias.assign(np.full(50, 0.2, "float32"))
    kill(m, "conv2", [1, 10, 20], "in")         # constant maps through pool + flatten into fc1's bias
    kill(m, "conv1", [5], "in")                 # conv -> pool -> conv(valid): folded into conv2's bias
    m.get_layer("conv1").bias.assign(np.full(20, 0.3, "float32"))
    kill_out(m, "fc1", lambda k: k.__setitem__((slice(None), [7, 8]), 0))   # fc1 units 7, 8: no incoming
    k = np.asarray(m.get_layer("fc1").kernel.numpy()).reshape(16, 50, 500)
    k[:, 30, :] = 0                             # conv2 filter 30 read by nobody, through Flatten
    m.get_layer("fc1").kernel.assign(k.reshape(800, 500))
    plan = find_dead_units(m)
    assert {1, 10, 20, 30} <= set(plan.remove["conv2"]) and 5 in plan.remove["conv1"]
    new, plans = remove_dead_units(m)
    check_exact(m, new, mnist_x())
    assert new.get_layer("conv2").filters == 50 - len(plan.remove["conv2"])
    assert new.get_layer("fc1").kernel.shape[0] == 16 * new.get_layer("conv2").filters


def test_batchnorm_and_activation_in_chain_functional():
    keras = keras_mod()
    from keras import layers
    inp = keras.Input((10, 10, 3))
    x = layers.Conv2D(8, 3, name="c1")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(6, 3, padding="valid", name="c2")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(3, name="head")(x)
    m = keras.Model(inp, out)
    randomize(m, 1)
    bn = m.get_layer("bn")
    bn.set_weights([np.asarray(v.numpy()) + 0.5 if i == 3 else np.asarray(v.numpy()) for i, v in enumerate(bn.weights)])
    kill(m, "c1", [2, 5], "in")
    plan = find_dead_units(m)
    assert plan.remove["c1"] == [2, 5]
    new = remove_units(m, plan)
    x = np.random.default_rng(0).random((4, 10, 10, 3)).astype("float32")
    check_exact(m, new, x)
    assert new.get_layer("bn").weights[0].shape == (6,)


def test_same_padding_constant_is_kept_not_folded():
    keras = keras_mod()
    m = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(4, 3, activation="relu", name="a"),
                          keras.layers.Conv2D(3, 3, padding="same", name="b"), keras.layers.Flatten(),
                          keras.layers.Dense(2, name="out")])
    randomize(m, 2)
    m.get_layer("a").bias.assign(np.array([0.5, -0.5, 0.5, 0.5], "float32"))
    kill(m, "a", [0, 1], "in")   # unit 0: relu(0.5) != 0 -> kept; unit 1: relu(-0.5) == 0 -> removable
    plan = find_dead_units(m)
    assert plan.remove.get("a") == [1]
    assert ["a", 0, "constant output cannot be folded exactly"] in plan.kept
    new = remove_units(m, plan)
    check_exact(m, new, np.random.default_rng(0).random((3, 8, 8, 2)).astype("float32"))


def test_output_layer_and_merges_untouched_and_caller_model_unchanged():
    keras = keras_mod()
    from keras import layers
    inp = keras.Input((6,))
    a = layers.Dense(5, name="a")(inp)
    b = layers.Dense(5, name="b")(inp)
    out = layers.Dense(2, name="out")(layers.Add()([a, b]))
    m = keras.Model(inp, out)
    randomize(m)
    kill(m, "a", [0], "in")
    kill(m, "out", [1], "in")
    before = [w.copy() for w in m.get_weights()]
    new, plans = remove_dead_units(m)
    assert plans == [] and new is not m
    assert all(x.tobytes() == y.tobytes() for x, y in zip(before, m.get_weights()))


def test_plan_round_trips_as_json_and_prints():
    keras = keras_mod()
    m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="h"), keras.layers.Dense(2, name="o")])
    randomize(m)
    kill(m, "h", [1], "in")
    plan = find_dead_units(m)
    again = DeadUnitPlan.from_dict(json.loads(plan.to_json()))
    assert again.remove == plan.remove and "h: 1 units" in str(plan)
    check_exact(m, remove_units(m, again), np.ones((2, 5), "float32"))


def test_cascade_removes_units_killed_by_earlier_removal():
    keras = keras_mod()
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu", name="h1"),
                          keras.layers.Dense(4, activation="relu", name="h2"), keras.layers.Dense(2, name="o")])
    randomize(m)
    m.get_layer("h2").bias.assign(np.full(4, -1.0, "float32"))
    k = np.asarray(m.get_layer("h2").kernel.numpy())
    k[:, 0] = 0            # h2 unit 0: no incoming, relu(-1) = 0 -> removable
    m.get_layer("h2").kernel.assign(k)
    new, plans = remove_dead_units(m)
    assert len(plans) >= 1
    check_exact(m, new, np.random.default_rng(0).random((5, 6)).astype("float32"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_pruned_lenet300_exact(seed):
    keras_mod()
    from conftest import prune_by_magnitude
    from models import zoo
    m = randomize(zoo.lenet_300_100(), seed)
    prune_by_magnitude(m, 0.97)
    new, plans = remove_dead_units(m)
    check_exact(m, new, mnist_x(32))
    assert new.count_params() < m.count_params()
