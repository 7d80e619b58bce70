"""Property-based tests (hypothesis) of the slice transforms and the mask/pair checks (issue 5, data side).

Over random shapes, dtypes (uint8, uint16, int16, float32, float64, bool) and values (including NaN, ±Inf, values
beyond the float32 range, constant images and empty masks), every function must either return a result with the
documented shape, dtype and range, or raise one of its documented errors — :class:`scripts.data.case.DataError` or
``ValueError`` — with a message. Any other exception type, or a result outside the documented range, fails.

Settings: ``derandomize=True`` (the same examples on every run, so CI cannot flake), no example database (nothing is
written into the working tree), ``deadline=None`` (MONAI's first Resize call is slow), and ``max_examples`` small
enough that the file runs in well under a minute on one CPU thread.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from scripts.common.value_range import MaskToSigned, MaskToSignedd
from scripts.data.case import DataError
from scripts.data.crops import background_patch, breast_bbox, lesion_bbox, lesion_patch, square_slice
from scripts.data.foreground import breast_side_votes, otsu_threshold
from scripts.data.intensity import PercentileWindow, PercentileWindowd
from scripts.data.laterality import NormalizeLaterality, NormalizeLateralityd
from scripts.data.readers import check_mask, check_pair
from scripts.data.selection import select_lesion_slices

DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64, np.bool_)
SPECIAL = (np.nan, np.inf, -np.inf)
MAX_SIDE = 12  # pixels: large enough for breast/lesion geometry, small enough for ~50 examples per second


def fast(max_examples: int = 40):
    """Shared hypothesis settings (see the module docstring)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def elements(dtype, special: bool = True) -> st.SearchStrategy:
    """Pixel values of ``dtype``: the full integer range; floats within ±1e6, float64 also up to ±1e300 (beyond
    float32), and NaN/±Inf when ``special``."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return st.booleans()
    if dt.kind in "ui":
        return st.integers(int(np.iinfo(dt).min), int(np.iinfo(dt).max))
    width = 32 if dt == np.float32 else 64
    finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=width)
    if dt == np.float64:
        finite = st.one_of(finite, st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False))
    return st.one_of(finite, st.sampled_from(SPECIAL)) if special else finite


@st.composite
def images(draw, min_dims: int = 2, max_dims: int = 2, special: bool = True, dtypes=DTYPES) -> np.ndarray:
    """Random arrays of one of ``dtypes``; a quarter of them constant (a single value everywhere)."""
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=MAX_SIDE))
    if draw(st.integers(0, 3)) == 0:
        return np.full(shape, draw(elements(dtype, special)), dtype=dtype)
    return draw(arrays(dtype, shape, elements=elements(dtype, special)))


@st.composite
def masks(draw, shape: tuple, dtypes=DTYPES) -> np.ndarray:
    """Masks of ``shape``: mostly {0, 1}-valued (often empty) in a random dtype."""
    dtype = draw(st.sampled_from(dtypes))
    return draw(arrays(dtype, shape, elements=st.sampled_from([0, 1]) if dtype != np.bool_ else st.booleans()))


def outcome(fn, *args, **kwargs):
    """``(result, None)`` or ``(None, error)`` for a documented error (ValueError, including DataError, with a
    message). Any other exception propagates and fails the test."""
    try:
        return fn(*args, **kwargs), None
    except ValueError as err:
        assert str(err).strip(), f"{type(err).__name__} without a message"
        return None, err


def non_finite(array) -> bool:
    array = np.asarray(array)
    return array.dtype.kind == "f" and not np.isfinite(array).all()


def beyond_float32(array) -> bool:
    """Finite float64 values that become Inf in float32 (values within half a float32 step of its maximum round
    down to it, so ``|x| > finfo.max`` is not the criterion)."""
    array = np.asarray(array)
    if array.dtype != np.float64:
        return False
    with np.errstate(over="ignore"):
        return bool(np.isinf(array[np.isfinite(array)].astype(np.float32)).any())


def assert_nan_error(err) -> None:
    """Non-finite input: the error must be a DataError saying so (not a numpy/scipy error from deep inside)."""
    assert isinstance(err, DataError) and "NaN or Inf" in str(err), repr(err)


# --------------------------------------------------------------------------- otsu_threshold
@fast(60)
@given(values=images(min_dims=1, max_dims=3), bins=st.integers(2, 300))
def test_otsu_threshold_inside_the_value_range(values, bins):
    """Finite input: ``min ≤ t``, and ``t < max`` when not constant (so the bright class ``values > t`` is never
    empty); constant input: ``t = min``. Non-finite input: DataError."""
    t, err = outcome(otsu_threshold, values, bins)
    if non_finite(values):
        return assert_nan_error(err)
    assert err is None, repr(err)
    as64 = np.asarray(values, np.float64)
    lo, hi = float(as64.min()), float(as64.max())
    assert isinstance(t, float) and np.isfinite(t)
    if hi > lo:
        assert lo <= t < hi and (as64 > t).any()
    else:
        assert t == lo


def test_otsu_threshold_empty_and_bad_bins_are_value_errors():
    with pytest.raises(ValueError, match="empty"):
        otsu_threshold(np.array([], np.float32))
    with pytest.raises(ValueError, match="bins"):
        otsu_threshold(np.arange(4), bins=1)  # found by hypothesis: one bin has no split (argmax of nothing)


# --------------------------------------------------------------------------- PercentileWindow(d)
@fast(60)
@given(img=images(), breast_only=st.booleans(), pct=st.tuples(st.floats(0, 49), st.floats(51, 100)))
def test_percentile_window_range_or_documented_error(img, breast_only, pct):
    """float32 of the input shape in [-1, 1]; or DataError (NaN/Inf, beyond float32, empty window)."""
    out, err = outcome(PercentileWindow(*pct, breast_only=breast_only), img)
    if non_finite(img):
        return assert_nan_error(err)
    if err is not None:
        # an empty window (percentiles coincide, e.g. a constant image) or values beyond float32
        assert isinstance(err, DataError) and ("empty" in str(err) or "float32" in str(err)), repr(err)
        return
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= -1.0 and out.max() <= 1.0


@fast(40)
@given(img=images(special=False))
def test_percentile_window_full_range_is_monotone(img):
    """Window (0, 100) over the whole image: a non-constant image maps monotonically onto exactly [-1, 1]."""
    as64 = np.asarray(img, np.float64)
    out, err = outcome(PercentileWindow(0.0, 100.0, breast_only=False), img)
    if beyond_float32(img):
        assert isinstance(err, DataError) and "float32" in str(err)
        return
    if as64.max() == as64.min():
        assert isinstance(err, DataError) and "empty" in str(err)
        return
    assert err is None, repr(err)
    order = np.argsort(as64, axis=None, kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= 0)  # brighter input is never darker output
    assert out.min() == -1.0 and out.max() == 1.0


@fast(25)
@given(img=images(special=False))
def test_percentile_windowd_maps_each_key(img):
    """Dictionary twin: the same result as the array transform, per key; other keys untouched."""
    data = {"image": img, "other": "kept"}
    out, err = outcome(PercentileWindowd(keys="image"), data)
    ref, ref_err = outcome(PercentileWindow(), img)
    assert (err is None) == (ref_err is None)
    if err is None:
        np.testing.assert_array_equal(out["image"], ref)
        assert out["other"] == "kept"


# --------------------------------------------------------------------------- MaskToSigned(d)
@fast(60)
@given(
    mask=st.one_of(
        images(min_dims=0, max_dims=4),
        # values at and around the 0.5 threshold, as left by a resize of a {0, 1} mask
        arrays(np.float32, array_shapes(min_dims=0, max_dims=4, max_side=6), elements=st.sampled_from([0, 0.5, 1])),
    )
)
def test_mask_to_signed_is_plus_minus_one(mask):
    """Any shape and dtype: float32 of the same shape, +1 exactly where ``mask > 0.5`` (NaN → -1), -1 elsewhere."""
    with np.errstate(invalid="ignore"):
        lesion = np.asarray(mask) > 0.5
    for out in (MaskToSigned()(mask), MaskToSignedd(keys="label")({"label": mask})["label"]):
        assert out.shape == np.shape(mask) and out.dtype == np.float32
        np.testing.assert_array_equal(out, np.where(lesion, 1.0, -1.0))


# --------------------------------------------------------------------------- NormalizeLaterality(d)
@fast(60)
@given(img=images(min_dims=2, max_dims=3), side=st.sampled_from([None, "left", "right"]))
def test_normalize_laterality_flips_or_keeps(img, side):
    """The result is the input or its left-right mirror, same shape and dtype; a given side decides alone
    (``"right"`` flips); detection is mirror-consistent (an image and its mirror are never both flipped)."""
    op = NormalizeLaterality()
    out, err = outcome(op, img, side)
    if side is None and (non_finite(img) or beyond_float32(img)):
        assert isinstance(err, DataError), repr(err)
        return
    assert err is None, repr(err)
    assert out.shape == img.shape and out.dtype == img.dtype
    flip = side == "right" if side is not None else op.needs_flip(img)
    np.testing.assert_array_equal(out, img[..., ::-1] if flip else img)
    if side is not None:
        assert op.needs_flip(img, side) == (side == "right")
    else:
        assert not (op.needs_flip(img) and op.needs_flip(np.ascontiguousarray(img[..., ::-1])))


@fast(40)
@given(data=st.data(), side=st.sampled_from([None, "left", "right"]))
def test_normalize_lateralityd_moves_image_and_mask_together(data, side):
    """Dictionary twin: image and mask flipped together, ``"flipped"`` says whether they were; a ``breast_side``
    entry decides unless the pixels clearly contradict it."""
    img = data.draw(images(special=False))
    label = data.draw(masks(img.shape))
    if label.shape[-1] > 1:  # asymmetric mask, so that a flip of the image without the mask cannot pass unseen
        label[..., 0], label[..., -1] = 1, 0
    out, err = outcome(
        NormalizeLateralityd(keys=("image", "label")), {"image": img, "label": label, "breast_side": side}
    )
    if side is None and beyond_float32(img):  # detection needs the values; a given side does not
        assert isinstance(err, DataError)
        return
    assert err is None, repr(err)
    if side is not None:  # the recorded side, unless the pixels clearly contradict it (2x the foreground)
        try:
            left, right = breast_side_votes(img)
        except DataError:
            left = right = 0
        contradicts = (side == "left" and right > 2 * left) or (side == "right" and left > 2 * right)
        assert out["flipped"] == ((side == "right") != contradicts)
    expect = (lambda a: a[..., ::-1]) if out["flipped"] else (lambda a: a)
    np.testing.assert_array_equal(out["image"], expect(img))
    np.testing.assert_array_equal(out["label"], expect(label))


# --------------------------------------------------------------------------- breast_bbox
@fast(60)
@given(data=st.data(), margin=st.integers(0, 5))
def test_breast_bbox_inside_image_and_keeps_lesion(data, margin):
    """A non-empty half-open box inside the image that contains every lesion pixel; DataError for NaN/Inf."""
    img = data.draw(images())
    label = data.draw(masks(img.shape))
    box, err = outcome(breast_bbox, img, label, margin)
    if non_finite(img):
        return assert_nan_error(err)
    assert err is None, repr(err)
    h, w = img.shape
    r0, r1, c0, c1 = box
    assert all(isinstance(v, int) for v in box)
    assert 0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w
    lesion = lesion_bbox(label)
    if lesion is not None:
        assert r0 <= lesion[0] and lesion[1] <= r1 and c0 <= lesion[2] and lesion[3] <= c1


# --------------------------------------------------------------------------- square outputs
@st.composite
def slice_pairs(draw, special: bool = True):
    """``(image, label)`` of one ``(h, w)`` shape: the image windowed-like (floats in [-1, 1], sometimes NaN/Inf or
    another dtype), the label {0, 1} in a random dtype."""
    if draw(st.booleans()):
        shape = draw(array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=MAX_SIDE))
        fl = st.floats(-1, 1, width=32)
        image = draw(arrays(np.float32, shape, elements=st.one_of(fl, st.sampled_from(SPECIAL)) if special else fl))
    else:
        image = draw(images(special=special))
    return image, draw(masks(image.shape))


def assert_square(out, n: int, spacing, side: float) -> None:
    image, label, out_spacing = out
    assert image.shape == (n, n) and image.dtype == np.float32
    assert np.isfinite(image).all() and image.min() >= -1.0 and image.max() <= 1.0
    assert label.shape == (n, n) and label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1}
    np.testing.assert_allclose(out_spacing, (spacing[0] * side / n, spacing[1] * side / n), rtol=1e-12)


SPACINGS = st.tuples(st.floats(0.01, 2.0), st.floats(0.01, 2.0))


@fast(40)
@given(pair=slice_pairs(), n=st.integers(1, 20), spacing=SPACINGS)
def test_square_slice_shape_range_spacing(pair, n, spacing):
    """(n, n) float32 in [-1, 1] and uint8 {0, 1}; spacing × max(h, w) / n; DataError for NaN/Inf or > float32."""
    image, label = pair
    out, err = outcome(square_slice, image, label, n, spacing)
    if non_finite(image):
        return assert_nan_error(err)
    if beyond_float32(image):
        assert isinstance(err, DataError) and "float32" in str(err)
        return
    assert err is None, repr(err)
    assert_square(out, n, spacing, max(image.shape))


@fast(40)
@given(
    pair=slice_pairs(),
    n=st.integers(1, 20),
    spacing=SPACINGS,
    context=st.floats(1.0, 3.0),
    jitter=st.floats(0.0, 0.5),
    min_patch=st.integers(1, 16),
    seed=st.integers(0, 2**16),
)
def test_lesion_patch_shape_range_spacing(pair, n, spacing, context, jitter, min_patch, seed):
    """Same output contract as square_slice with ``side ≥ min_patch_size``; ValueError without a lesion."""
    image, label = pair
    out, err = outcome(lesion_patch, image, label, n, spacing, None, context, jitter, min_patch, seed)
    if not label.any():
        assert err is not None and "lesion" in str(err)
        return
    if non_finite(image):
        return assert_nan_error(err)
    if beyond_float32(image):
        assert isinstance(err, DataError)
        return
    assert err is None, repr(err)
    side = out[2][0] * n / spacing[0]
    assert side >= min_patch - 1e-9 and abs(side - round(side)) < 1e-6  # an integer window of ≥ min_patch_size px
    assert_square(out, n, spacing, round(side))


@fast(40)
@given(pair=slice_pairs(), n=st.integers(1, 20), spacing=SPACINGS, side=st.integers(1, 16), seed=st.integers(0, 99))
def test_background_patch_shape_range_spacing(pair, n, spacing, side, seed):
    """Same output contract with the window side ``side``; DataError for NaN/Inf or values beyond float32."""
    image, label = pair
    out, err = outcome(background_patch, image, label, n, spacing, side, seed)
    if non_finite(image):
        return assert_nan_error(err)
    if beyond_float32(image):
        assert isinstance(err, DataError)
        return
    assert err is None, repr(err)
    assert_square(out, n, spacing, side)


# --------------------------------------------------------------------------- select_lesion_slices
@fast(60)
@given(
    label=images(min_dims=3, max_dims=3),
    min_area=st.integers(-2, 20),
    k=st.integers(0, 3),
    fraction=st.floats(0.0, 2.0),
    seed=st.integers(0, 99),
)
def test_select_lesion_slices_contract(label, min_area, k, fraction, seed):
    """Sorted unique indices in [0, S); every slice with ≥ max(min_area, 1) lesion pixels kept with its ±k
    neighbours; at most round(fraction × n_lesion) extra lesion-free slices; the same seed gives the same list."""
    keep = select_lesion_slices(label, min_area, k, fraction, seed)
    assert keep == sorted(set(keep)) and all(isinstance(s, int) and 0 <= s < label.shape[0] for s in keep)
    with np.errstate(invalid="ignore"):
        area = (label > 0).reshape(label.shape[0], -1).sum(axis=1)  # NaN is not lesion
    lesion = np.flatnonzero(area >= max(min_area, 1))
    near = {s for c in lesion for s in range(c - k, c + k + 1)}
    assert set(lesion.tolist()) <= set(keep)
    assert near & set(range(label.shape[0])) <= set(keep)
    extra = [s for s in keep if s not in near]
    assert all(area[s] == 0 for s in extra) and len(extra) <= round(fraction * lesion.size)
    assert keep == select_lesion_slices(label, min_area, k, fraction, seed)


# --------------------------------------------------------------------------- check_mask
@st.composite
def mask_values(draw):
    """Masks of any dtype whose values are drawn mostly from {0, 1, 255} (the accepted sets), sometimes anything."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=MAX_SIDE))
    if dtype == np.bool_:
        return draw(arrays(dtype, shape))
    common = st.sampled_from([0, 1, 255])
    return draw(arrays(dtype, shape, elements=st.one_of(common, elements(dtype))))


@fast(80)
@given(mask=mask_values(), lossy=st.booleans())
def test_check_mask_contract(mask, lossy):
    """uint8 {0, 1} of the same shape, or a DataError naming the file. Lossless: accepted exactly when the values
    are a subset of {0, 1} or of {0, 255}; lossy: any finite mask is thresholded at half its maximum."""
    path = "dir ü/mask.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the lossy threshold warning (tested in test_data_bad_inputs)
        out, err = outcome(check_mask, mask, path, lossy)
    if err is not None:
        assert isinstance(err, DataError) and path in str(err)
    if non_finite(mask):
        assert err is not None and "NaN or Inf" in str(err)
        return
    values = set(np.unique(mask).tolist())
    if mask.dtype == np.bool_:
        expected = mask
    elif lossy:
        peak = float(mask.max())
        expected = mask > peak / 2 if peak > 0 else np.zeros(mask.shape, bool)
    elif values <= {0, 1}:
        expected = mask == 1
    elif values <= {0, 255}:
        expected = mask == 255
    else:
        assert err is not None and "found values" in str(err)
        return
    assert err is None, repr(err)
    assert out.shape == mask.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected.astype(np.uint8))


# --------------------------------------------------------------------------- check_pair
def _affine(perm, signs, spacing, origin) -> np.ndarray:
    """(s, h, w) index → RAS affine: a signed axis permutation scaled by the spacing, plus an origin."""
    affine = np.eye(4)
    affine[:3, :3] = (np.eye(3)[list(perm)] * np.asarray(signs, float)[:, None]).T * np.asarray(spacing)
    affine[:3, 3] = origin
    return affine


@fast(80)
@given(
    shape=array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=64),
    spacing=st.tuples(*[st.floats(0.05, 3.0)] * 3),
    perm=st.permutations([0, 1, 2]),
    signs=st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3),
    origin=st.tuples(*[st.floats(-100, 100)] * 3),
    with_affine=st.booleans(),
    change=st.sampled_from(["none", "shape", "spacing", "bad_spacing", "direction", "origin"]),
    bad=st.sampled_from([0.0, -1.0, np.nan, np.inf]),
)
def test_check_pair_contract(shape, spacing, perm, signs, origin, with_affine, change, bad):
    """None for an identical grid; a DataError naming both files (and the problem) for one changed property.
    Changes are far beyond the tolerances (rtol 1e-3 on spacing, 1e-3 on direction cosines, half a voxel on the
    origin), so no example sits on a tolerance edge."""
    affine = _affine(perm, signs, spacing, origin)
    m_shape, m_spacing, m_affine = tuple(shape), tuple(spacing), affine.copy()
    if change == "shape":
        m_shape = (shape[0], shape[1] + 1, shape[2])
    elif change == "spacing":
        m_spacing = (spacing[0], spacing[1] * 1.5, spacing[2])
    elif change == "bad_spacing":
        m_spacing = (spacing[0], bad, spacing[2])
    elif change == "direction":
        m_affine[:3, 1] = -m_affine[:3, 1]  # one axis mirrored
    elif change == "origin":
        m_affine[:3, 3] += 2.0 * max(spacing)
    info, m_info = ({"affine_ras": affine}, {"affine_ras": m_affine}) if with_affine else ({}, {})
    _, err = outcome(check_pair, "img é.nii.gz", shape, spacing, info, "mask é.nii.gz", m_shape, m_spacing, m_info)
    expect_error = change in ("shape", "spacing", "bad_spacing") or (with_affine and change in ("direction", "origin"))
    if not expect_error:
        assert err is None, repr(err)
        return
    assert isinstance(err, DataError) and "img é.nii.gz" in str(err) and "mask é.nii.gz" in str(err), repr(err)
    word = {"shape": "shapes differ", "spacing": "spacing differs", "bad_spacing": "invalid mask spacing"}
    word.update(direction="orientation differs", origin="origin differs")
    assert word[change] in str(err)
