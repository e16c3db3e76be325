"""lang_neurons._ap: exact vectorised average precision vs scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from lang_neurons._ap import average_precision, average_precision_both

TOL = 1e-6


def sk_ap(scores: np.ndarray, labels: np.ndarray, n_classes: int, descending: bool = True) -> np.ndarray:
    """[C, N] reference; NaN for classes without sentences (where sklearn warns and gives 0)."""
    s = np.asarray(scores, dtype=np.float64)
    s = s if descending else -s
    out = np.full((n_classes, s.shape[1]), np.nan)
    for c in range(n_classes):
        y = labels == c
        if not y.any():
            continue
        for n in range(s.shape[1]):
            out[c, n] = average_precision_score(y, s[:, n])
    return out


def assert_matches(ours: torch.Tensor, ref: np.ndarray) -> None:
    o = ours.numpy()
    assert o.shape == ref.shape
    assert np.array_equal(np.isnan(o), np.isnan(ref))
    ok = ~np.isnan(ref)
    if ok.any():
        assert np.abs(o[ok] - ref[ok]).max() <= TOL


def check_all(scores: np.ndarray, labels: np.ndarray, n_classes: int | None = None, **kw) -> None:
    c = int(labels.max()) + 1 if n_classes is None else n_classes
    st_, lt = torch.from_numpy(scores), torch.from_numpy(labels)
    ref_d, ref_a = sk_ap(scores, labels, c), sk_ap(scores, labels, c, descending=False)
    assert_matches(average_precision(st_, lt, num_classes=n_classes, **kw), ref_d)
    assert_matches(average_precision(st_, lt, descending=False, num_classes=n_classes, **kw), ref_a)
    d, a = average_precision_both(st_, lt, num_classes=n_classes, **kw)
    assert_matches(d, ref_d)
    assert_matches(a, ref_a)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ----------------------------------------------------------------------------- vs sklearn


def test_random_continuous(rng):
    scores = rng.standard_normal((300, 24)).astype(np.float32)
    labels = rng.integers(0, 5, 300)
    check_all(scores, labels)


def test_heavy_ties(rng):
    scores = np.round(rng.standard_normal((200, 16)) * 1.5).astype(np.float32)  # ~7 distinct values
    scores[:, 0] = 0.0  # all-zero (dead) neuron
    scores[:, 1] = 2.5  # all-equal column
    scores[::3, 2] = -0.0  # -0.0 and +0.0 are one tie group for sklearn
    scores[:, 3] = np.where(rng.random(200) < 0.5, 1.0, -1.0)  # two values
    labels = rng.integers(0, 4, 200)
    check_all(scores, labels)


def test_ties_across_chunks_and_classes(rng):
    # tie groups mixing every class, in many neurons with mixed sign and varied scale
    scores = rng.integers(-3, 4, (300, 20)).astype(np.float32) * rng.uniform(0.01, 100, 20).astype(np.float32)
    labels = rng.integers(0, 6, 300)
    check_all(scores, labels, chunk_size=3)


def test_one_positive(rng):
    scores = rng.standard_normal((50, 8)).astype(np.float32)
    labels = np.zeros(50, np.int64)
    labels[17] = 1
    check_all(scores, labels)
    scores[17] = scores[3]  # the positive tied with a negative
    check_all(scores, labels)


def test_bool_labels_return_1d(rng):
    scores = rng.standard_normal((120, 10)).astype(np.float32)
    y = rng.random(120) < 0.3
    ours = average_precision(torch.from_numpy(scores), torch.from_numpy(y))
    assert ours.shape == (10,)
    ref = np.array([average_precision_score(y, scores[:, n]) for n in range(10)])
    assert np.abs(ours.numpy() - ref).max() <= TOL
    neg = average_precision(torch.from_numpy(scores), torch.from_numpy(y), descending=False)
    ref = np.array([average_precision_score(y, -scores[:, n]) for n in range(10)])
    assert np.abs(neg.numpy() - ref).max() <= TOL


def test_one_hot_labels_equal_bool(rng):
    scores = rng.standard_normal((90, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 90)
    full = average_precision(torch.from_numpy(scores), torch.from_numpy(labels))
    for c in range(3):
        one_hot = torch.from_numpy(labels == c)
        assert torch.allclose(average_precision(torch.from_numpy(scores), one_hot), full[c], atol=1e-12)
        as_int = one_hot.long()  # 0/1 integer labels: row 1 is the class
        assert torch.allclose(average_precision(torch.from_numpy(scores), as_int)[1], full[c], atol=1e-12)


def test_descending_false_equals_negated_scores(rng):
    scores = rng.standard_normal((150, 12)).astype(np.float32)
    scores[::4, 5] = 1.0
    labels = torch.from_numpy(rng.integers(0, 3, 150))
    neg = average_precision(torch.from_numpy(scores), labels, descending=False)
    assert torch.allclose(neg, average_precision(torch.from_numpy(-scores), labels), atol=1e-12)


def test_chunking_and_threads_invariance(rng):
    scores = torch.from_numpy(rng.standard_normal((64, 30)).astype(np.float32))
    scores[:, 4] = 0.0
    labels = torch.from_numpy(rng.integers(0, 4, 64))
    base = average_precision_both(scores, labels, chunk_size=None)
    for cs, th in ((1, 1), (7, 2), (7, 1), (30, 3), (1000, 2)):
        other = average_precision_both(scores, labels, chunk_size=cs, num_threads=th, progress=cs == 7)
        for x, y in zip(base, other):
            assert torch.allclose(x, y, atol=1e-12)


def test_absent_class_is_nan(rng):
    scores = rng.standard_normal((60, 5)).astype(np.float32)
    labels = rng.choice([0, 1, 3], 60)  # class 2 absent, class 4 added by num_classes
    check_all(scores, labels, n_classes=5)
    ap = average_precision(torch.from_numpy(scores), torch.from_numpy(labels), num_classes=5)
    assert ap.shape == (5, 5) and torch.isnan(ap[2]).all() and torch.isnan(ap[4]).all()
    with warnings.catch_warnings():  # sklearn itself warns and returns 0.0 for a class without positives
        warnings.simplefilter("ignore")
        assert average_precision_score(labels == 2, scores[:, 0]) == 0.0


def test_wide_key_ranges_and_dtypes(rng):
    # rows whose values span many binades do not fit the 32-bit packed keys (64-bit fallback)
    scores = rng.standard_normal((80, 6)).astype(np.float32)
    scores[0, :3] = 1e-30
    scores[1, :3] = -3e37
    labels = rng.integers(0, 3, 80)
    check_all(scores, labels)
    # float64 that is not float32-representable, including a range too wide for 64-bit packing
    s64 = rng.standard_normal((80, 6))
    s64[0, :2] = 1e-300
    s64[1, :2] = -1e300
    s64[2, 4] = s64[3, 4]  # a float64 tie
    check_all(s64, labels)
    # half precision inputs are exact in float32
    s16 = torch.from_numpy(scores).to(torch.bfloat16)
    ours = average_precision(s16, torch.from_numpy(labels))
    assert_matches(ours, sk_ap(s16.float().numpy(), labels, 3))


def test_many_classes(rng):
    scores = rng.standard_normal((400, 1)).astype(np.float32)
    labels = rng.integers(0, 300, 400)  # class ids need 9 bits
    ours = average_precision(torch.from_numpy(scores), torch.from_numpy(labels), num_classes=300)
    ref = sk_ap(scores, labels, 300)
    assert_matches(ours, ref)


def test_numpy_inputs_and_noncontiguous(rng):
    scores = rng.standard_normal((40, 24)).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    ref = sk_ap(scores[:, ::2], labels, 3)
    assert_matches(average_precision(scores[:, ::2], labels), ref)
    assert_matches(average_precision(torch.from_numpy(scores)[:, ::2], torch.from_numpy(labels)), ref)
    t = torch.from_numpy(np.ascontiguousarray(scores.T)).T  # column-major tensor
    assert_matches(average_precision(t, torch.from_numpy(labels)), sk_ap(scores, labels, 3))


@settings(max_examples=40, deadline=None)
@given(
    n_sent=st.integers(2, 30),
    n_neur=st.integers(1, 5),
    n_cls=st.integers(2, 4),
    n_values=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    chunk=st.sampled_from([None, 1, 2]),
)
def test_property_small_shapes_with_ties(n_sent, n_neur, n_cls, n_values, seed, chunk):
    r = np.random.default_rng(seed)
    labels = r.integers(0, n_cls, n_sent)
    labels[:2] = [0, 1]  # at least two classes present
    scores = (r.integers(0, n_values, (n_sent, n_neur)) - n_values // 2).astype(np.float32)
    scores *= np.float32(r.choice([0.5, 1.0, 3.0]))
    check_all(scores, labels, n_classes=n_cls, chunk_size=chunk)


# ----------------------------------------------------------------------------- errors


def test_shape_and_dtype_errors(rng):
    s = torch.from_numpy(rng.standard_normal((10, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="10 sentences.*9 entries"):
        average_precision(s, torch.arange(9) % 2)
    with pytest.raises(ValueError, match="2-D"):
        average_precision(s[:, 0], torch.arange(10) % 2)
    with pytest.raises(ValueError, match="1-D"):
        average_precision(s, (torch.arange(10) % 2)[:, None])
    with pytest.raises(ValueError, match="floating point"):
        average_precision(torch.ones(10, 3, dtype=torch.int64), torch.arange(10) % 2)
    with pytest.raises(ValueError, match="integer class ids or bool"):
        average_precision(s, torch.rand(10))
    with pytest.raises(ValueError, match=">= 0"):
        average_precision(s, torch.arange(10) - 1)
    with pytest.raises(ValueError, match="num_classes=2"):
        average_precision(s, torch.arange(10) % 3, num_classes=2)


def test_fewer_than_two_classes(rng):
    s = torch.from_numpy(rng.standard_normal((10, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="only 1 class"):
        average_precision(s, torch.full((10,), 2))
    with pytest.raises(ValueError, match="positives and negatives"):
        average_precision(s, torch.ones(10, dtype=torch.bool))
    with pytest.raises(ValueError, match="positives and negatives"):
        average_precision(s, torch.zeros(10, dtype=torch.bool))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_finite_scores(rng, bad, dtype):
    s = torch.from_numpy(rng.standard_normal((20, 50))).to(dtype)
    s[3, 7] = bad
    s[5, 40] = bad
    with pytest.raises(ValueError, match=r"2 non-finite .*nan_to_num"):
        average_precision(s, torch.arange(20) % 3, chunk_size=4, num_threads=2)
