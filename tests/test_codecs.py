"""The codecs of format versions 2 and 3: exact round trips, exact costs, header checks, bounded streams
(``raw``, ``deflate`` and version 3's ``zdict``)."""

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsecomp
from sparsecomp import BadArgumentError, InvalidTensorError, ResourceLimitError
from sparsecomp.storage import codecs
from sparsecomp.storage.codecs import StreamRef, TensorHeader
from sparsecomp.storage.codecs.gaps import gap_symbols, positions_from_symbols
from sparsecomp.storage.streams import code_stream, decode_stream, deflate


def sparse_tensor(rng, shape, dtype, density):
    a = (rng.standard_normal(shape) * 10).astype(dtype)
    if a.ndim:
        a[rng.random(shape) >= density] = 0
    return a


def header_of(a, enc, path="t"):
    return TensorHeader(path, tuple(a.shape), a.dtype, enc.codec, enc.params,
                        tuple(StreamRef(s.coding, s.stored, s.size) for s in enc.streams), nnz=enc.nnz)


def round_trip(a, enc):
    """Decode ``enc`` exactly as the reader does: header checks, bounded streams, codec decode."""
    h = header_of(a, enc)
    codec = codecs.get(enc.codec)
    assert len(codec.roles(h)) == len(enc.streams)
    codec.check(h)
    data = [decode_stream(s.data, s.coding, s.size, max_ratio=1024) for s in enc.streams]
    return codec.decode(h, data)


SHAPES = [(), (1,), (7,), (3, 5), (300, 100), (5, 5, 1, 20), (1, 1), (2, 700), (0,), (4, 0)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8", "<i8", "|u1", "<i4"])
@pytest.mark.parametrize("density", [0.0, 0.02, 0.5, 1.0])
def test_every_codec_round_trips_bit_exactly(rng, shape, dtype, density):
    a = sparse_tensor(rng, shape, dtype, density)
    for enc in codecs.encode_all(a, level=3):
        b = round_trip(a, enc)
        assert b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes(), enc.codec
        assert enc.nbytes == sum(len(memoryview(s.data).cast("B")) for s in enc.streams)


def test_bit_patterns_not_values_decide_what_is_stored():
    a = np.array([[0.0, -0.0, np.nan], [0.0, 0.0, 0.0], [np.inf, 0.0, -1e-45]], np.float32)
    for enc in codecs.encode_all(a, level=3):
        assert enc.nnz == 4                          # -0.0 is stored: its bits are not zero
        assert round_trip(a, enc).tobytes() == a.tobytes()


@pytest.mark.parametrize("gaps", [[0], [254], [255], [256], [509], [510], [0, 255, 0, 65536], [1000, 0, 3]])
def test_gap_symbols_use_fillers_and_invert(gaps):
    pos = np.cumsum(np.array(gaps) + 1) - 1
    sym = gap_symbols(pos, -1)
    assert len(sym) == len(gaps) + sum(g // 255 for g in gaps)
    assert sym[-1] != 255
    back, carry = positions_from_symbols(sym, 0)
    assert back.tolist() == pos.tolist()
    # the same split into two blocks, the running sum carried across
    for cut in range(len(sym) + 1):
        p1, c = positions_from_symbols(sym[:cut], 0)
        p2, _ = positions_from_symbols(sym[cut:], c)
        assert np.concatenate([p1, p2]).tolist() == pos.tolist()


def test_size_check_picks_the_cheapest_and_honours_min_ratio(rng):
    a = sparse_tensor(rng, (300, 200), "<f4", 0.05)
    sc = sparsecomp.size_check(a)
    assert sc.encoding == min(sc.costs, key=sc.costs.get) == "gaps"
    assert sc.costs["dense"] == a.nbytes and sc.stored_bytes == sc.costs["gaps"]
    ratio = a.nbytes / sc.costs["gaps"]
    assert sparsecomp.size_check(a, min_ratio=ratio * 0.999).encoding == "gaps"
    assert sparsecomp.size_check(a, min_ratio=ratio * 1.001).encoding in ("dense", "planes")
    assert sparsecomp.size_check(a, codecs=["planes"]).encoding in ("dense", "planes")
    with pytest.raises(BadArgumentError):
        sparsecomp.size_check(a, min_ratio=0.5)
    with pytest.raises(BadArgumentError):
        sparsecomp.size_check(a, codecs=["zip"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=0, max_size=3), st.sampled_from(["<f2", "<f4", "<f8", "<i2"]),
       st.floats(0, 1), st.integers(0, 2**31 - 1), st.sampled_from([1, 2, 3]))
def test_property_choice_is_exact_and_never_bigger_than_dense(shape, dtype, density, seed, level):
    rng = np.random.default_rng(seed)
    a = sparse_tensor(rng, tuple(shape), dtype, density)
    encs = codecs.encode_all(a, level=level)
    best = codecs.choose(a, level=level)
    assert best.nbytes <= a.nbytes and best.nbytes == min(e.nbytes for e in encs)
    assert round_trip(a, best).tobytes() == a.tobytes()


# ---- header checks: a file's claims are refused before anything is decoded ---------------------

def _enc(rng, codec):
    a = sparse_tensor(rng, (60, 40), "<f4", 0.1 if codec == "gaps" else 1.0)
    enc = codecs.CODECS[codec].encode(a, level=2, max_ratio=1024, nnz=sparsecomp.storage.tensors.count_nonzero(a))
    enc.nnz = sparsecomp.storage.tensors.count_nonzero(a)
    return a, enc


@pytest.mark.parametrize("codec,change,rule", [
    ("dense", lambda h: h.__class__(**{**h.__dict__, "params": {"x": 1}}), "dense.params"),
    ("dense", lambda h: h.__class__(**{**h.__dict__, "shape": (61, 40)}), "dense.streams"),
    ("planes", lambda h: h.__class__(**{**h.__dict__, "shape": (60, 41)}), "planes.streams"),
    ("gaps", lambda h: h.__class__(**{**h.__dict__, "params": {"order": "diagonal"}}), "gaps.params"),
    ("gaps", lambda h: h.__class__(**{**h.__dict__, "nnz": h.nnz + 1}), "gaps.streams"),
    ("gaps", lambda h: h.__class__(**{**h.__dict__, "shape": (2400,), "params": {"order": "col"}}), "gaps.params"),
    ("gaps", lambda h: h.__class__(**{**h.__dict__, "shape": (3, 40)}), "gaps.streams"),
])
def test_header_checks_refuse_inconsistent_claims(rng, codec, change, rule):
    a, enc = _enc(rng, codec)
    h = change(header_of(a, enc))
    with pytest.raises(InvalidTensorError) as e:
        codecs.get(codec).check(h)
    assert e.value.rule == rule


def test_gap_stream_violations_are_caught_when_decoding(rng):
    a, enc = _enc(rng, "gaps")
    h = header_of(a, enc)
    data = [bytearray(decode_stream(s.data, s.coding, s.size, max_ratio=1024)) for s in enc.streams]
    codec = codecs.get("gaps")
    bad = [bytearray(d) for d in data]
    bad[0][-1] = 255                                  # ends with a filler
    with pytest.raises(InvalidTensorError) as e:
        codec.decode(h, bad)
    assert e.value.rule == "gaps.trailing"
    bad = [bytearray(d) for d in data]
    bad[0][0] = 254 if bad[0][0] != 254 else 253      # shifts every position: now one runs past the end
    bad[0][-1] = 254
    with pytest.raises(InvalidTensorError) as e:
        codec.decode(h, bad)
    assert e.value.rule in ("gaps.range", "gaps.count")
    bad = [bytearray(d) for d in data]
    for plane in bad[1:]:
        plane[3] = 0                                  # a stored value that is zero
    with pytest.raises(InvalidTensorError) as e:
        codec.decode(h, bad)
    assert e.value.rule == "gaps.values"


# ---- streams ------------------------------------------------------------------------------------

def test_stream_coding_is_the_smaller_one():
    text = b"abcabcabc" * 1000
    s = code_stream("x", text, level=2)
    assert s.coding == "deflate" and s.stored < len(text) and s.size == len(text)
    noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert code_stream("x", noise, level=2).coding == "raw"
    assert code_stream("x", text, level=1).coding == "raw"


def inflate(s):
    return bytes(decode_stream(s.data, s.coding, s.size, max_ratio=1 << 20))


@pytest.mark.parametrize("level", [2, 3])
def test_each_deflate_strategy_is_kept_where_it_wins(level):
    """Huffman alone for memoryless bytes, RLE for runs of zeros, LZ77 for text: each measured."""
    rng = np.random.default_rng(1)
    skewed = rng.geometric(0.3, 200_000).clip(0, 254).astype(np.uint8).tobytes()
    runs = np.zeros(200_000, np.uint8)            # a mantissa plane of a 95%-sparse tensor stored dense
    hit = rng.random(200_000) < 0.05
    runs[hit] = rng.integers(1, 256, int(hit.sum()), dtype=np.uint8)
    text = b"".join(b'{"name": "conv%d", "filters": 64, "activation": "relu"},' % i for i in range(3000))
    for data, wins in ((skewed, zlib.Z_HUFFMAN_ONLY), (runs.tobytes(), zlib.Z_RLE), (text, zlib.Z_DEFAULT_STRATEGY)):
        s = code_stream("x", data, level=level)
        sizes = {st: len(deflate(data, st, 9 if st == zlib.Z_DEFAULT_STRATEGY else 1))
                 for st in (zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE, zlib.Z_DEFAULT_STRATEGY)}
        assert min(sizes, key=sizes.get) == wins          # the data really favours that strategy
        assert s.coding == "deflate" and s.stored == sizes[wins] and inflate(s) == data


def test_parallel_stream_coding_gives_the_same_bytes():
    from sparsecomp.storage.streams import code_streams
    rng = np.random.default_rng(2)
    items = [("values", rng.geometric(p, 600_000).clip(0, 255).astype(np.uint8), 2) for p in (0.1, 0.5, 0.9)]
    items.append(("positions", rng.integers(0, 256, 400_000, dtype=np.uint8), 2))
    par = code_streams(items)
    ser = [code_stream(r, d, level=lv) for r, d, lv in items]
    assert [(s.role, s.coding, bytes(s.data)) for s in par] == [(s.role, s.coding, bytes(s.data)) for s in ser]


def test_level_2_samples_big_tensors_and_level_3_tries_everything():
    rng = np.random.default_rng(3)
    dense = (rng.standard_normal((1100, 1000)) * 0.05).astype(np.float32)        # 4.4 MB, no zeros
    assert dense.nbytes >= codecs.SAMPLED_BYTES
    guess = codecs.estimate(dense)
    assert 1 - codecs.SAMPLED_MIN_SAVING < guess["planes"] / dense.nbytes < 0.95   # planes saves ~15%
    assert codecs.choose(dense, level=2).codec == "dense"          # not worth the time at level 2
    best = codecs.choose(dense, level=3)
    assert best.codec == "planes" and best.nbytes == min(e.nbytes for e in codecs.encode_all(dense, level=3))
    sparse = dense.copy()
    sparse[rng.random(sparse.shape) < 0.9] = 0
    enc = codecs.choose(sparse, level=2)
    assert enc.codec == "gaps" and enc.nbytes < 0.25 * sparse.nbytes
    exact = {e.codec: e.nbytes for e in codecs.encode_all(sparse, level=2)}
    assert abs(codecs.estimate(sparse)["gaps"] / exact["gaps"] - 1) < 0.05     # the projection is close
    assert round_trip(sparse, enc).tobytes() == sparse.tobytes()
    # a small tensor is still decided on exact bytes at level 2
    small = dense[:100]
    assert codecs.choose(small, level=2).nbytes == min(e.nbytes for e in codecs.encode_all(small, level=2))


def test_level_2_rules_depend_on_the_codecs_allowed():
    rng = np.random.default_rng(5)
    x = (rng.integers(1, 4, (300, 100)) * 0.5).astype("<f4")           # no zeros, three values
    assert codecs.choose(x, level=2, codecs=["gaps"]).codec == "gaps"    # gaps is not skipped when alone
    assert codecs.choose(x, level=2).codec != "gaps"                      # beside planes it is
    big = (rng.standard_normal((1100, 1000)) * 0.05).astype(np.float32)
    big[rng.random(big.shape) < 0.6] = 0                                  # gaps saves ~50%, not 8x
    assert codecs.choose(big, level=2).codec == "gaps"
    assert codecs.choose(big, level=2, min_ratio=8).codec == "dense"
    assert len(codecs.sample_of(np.arange(10.0))) == 10                    # a small tensor is its own sample


def test_scan_fills_byte_planes_in_place():
    from sparsecomp.storage.codecs.gaps import scan
    from sparsecomp.storage.codecs.values import split_planes
    rng = np.random.default_rng(4)
    a = sparse_tensor(rng, (300, 700), "<f4", 0.1)
    for order in ("row", "col"):
        sym, vals = scan(a, order)
        sym2, planes = scan(a, order, int(np.count_nonzero(a)), planes=True)
        assert np.array_equal(sym, sym2) and np.array_equal(planes, split_planes(vals.view(a.dtype)))
    with pytest.raises(ValueError, match="changed"):
        scan(a, "row", int(np.count_nonzero(a)) - 1)


def test_all_finite_checks_every_block():
    from sparsecomp.storage.tensors import all_finite
    a = np.ones(10_000, np.float32)
    assert all_finite(a, block=1000)
    a[9_999] = np.nan
    assert not all_finite(a, block=1000)
    a[9_999] = 1
    a[0] = -np.inf
    assert not all_finite(a, block=1000) and all_finite(np.zeros(0, np.float32))


@pytest.mark.parametrize("coding", ["deflate", "zdict"])
@pytest.mark.parametrize("case,rule", [
    ("short", "stream.truncated"), ("long", "stream.inflate"), ("trailing", "stream.trailing"),
    ("garbage", "stream.deflate"), ("raw_size", "stream.size"), ("coding", "stream.coding"),
    ("cut", "stream.truncated"), ("declared_zero", "stream.inflate"),
])
def test_stream_decoding_is_bounded(case, rule, coding):
    data = b'{"module":"keras.layers","class_name":"Dense","config":{"units":%d}},' * 40 % tuple(range(40))
    packed = deflate(data, zdict=coding == "zdict")
    args = {"short": (packed, coding, len(data) + 10), "long": (packed, coding, len(data) - 10),
            "trailing": (packed + b"\0\0", coding, len(data)), "garbage": (b"\xff" * 50, coding, 100),
            "raw_size": (data, "raw", len(data) + 1), "coding": (packed, "lzma", len(data)),
            "cut": (packed[:-3], coding, len(data)),
            # zlib reads a limit of 0 as none: a stream declaring 0 bytes must not be inflated at all
            "declared_zero": (deflate(bytes(1 << 20), zdict=coding == "zdict"), coding, 0)}[case]
    with pytest.raises(InvalidTensorError) as e:
        decode_stream(*args, max_ratio=1024)
    assert e.value.rule == rule


@pytest.mark.parametrize("coding", ["deflate", "zdict"])
def test_stream_ratio_bomb_refused_before_inflating(coding):
    bomb = deflate(bytes(1 << 20), zdict=coding == "zdict")
    assert len(bomb) * 1024 < (1 << 20) * 2
    with pytest.raises(ResourceLimitError) as e:
        decode_stream(bomb, coding, 1 << 30, max_ratio=1024)
    assert e.value.rule == "limit.compression"
    assert decode_stream(bomb, coding, 1 << 20, max_ratio=1024) == bytes(1 << 20)


def test_zdict_is_deflate_with_the_preset_dictionary():
    """``zdict`` streams decode with ``zlib.decompressobj(-15, zdict=D)`` and need D: read as plain
    deflate they refuse (a distance into the missing dictionary); the writer keeps it only where it
    is smaller, which Keras config text is and tensor bytes are not."""
    from sparsecomp.storage.zdict import ZDICT
    config = (b'{"module":"keras","class_name":"Sequential","config":{"name":"mlp","trainable":true,"dtype":'
              b'{"module":"keras","class_name":"DTypePolicy","config":{"name":"float32"},"registered_name":null},'
              b'"layers":[{"module":"keras.layers","class_name":"Dense","config":{"name":"dense","units":8}}]}}')
    s = code_stream("file", config, level=2, dictionary=True)
    assert s.coding == "zdict" and s.stored < len(deflate(config)) < len(config)
    d = zlib.decompressobj(-15, zdict=ZDICT)
    assert d.decompress(bytes(s.data)) == config and d.eof
    assert bytes(decode_stream(s.data, "zdict", len(config), max_ratio=1024)) == config
    with pytest.raises(InvalidTensorError) as e:
        decode_stream(s.data, "deflate", len(config), max_ratio=1024)
    assert e.value.rule == "stream.deflate"
    assert code_stream("file", config, level=2).coding == "deflate"           # only where asked for
    assert code_stream("file", config, level=1, dictionary=True).coding == "raw"
    noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert code_stream("file", noise, level=3, dictionary=True).coding == "raw"
