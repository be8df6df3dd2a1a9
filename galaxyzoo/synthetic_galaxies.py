"""Synthetic Galaxy Zoo examples: a 424x424 RGB cut-out that looks like an SDSS image, and the 37 vote
fractions a crowd would give it.

Every example is determined by (seed, index) alone: `make_example(seed, index)` draws the galaxy's true
properties, then the crowd's votes, then renders the image, all from numpy.random.default_rng([seed, index]).

The light is computed on a coarse 212x212 grid (linear flux per channel), blurred by the seeing, stretched
with a colour-preserving asinh (as SDSS colour images are), upsampled to 424x424, and sky noise is added.
"""
import io

import cv2
import numpy as np
from PIL import Image

from galaxyzoo import decision_tree

IMAGE_SIZE = 424
GRID_FACTOR = 2  # coarse grid = IMAGE_SIZE / GRID_FACTOR
GRID = IMAGE_SIZE // GRID_FACTOR
JPEG_QUALITY = 75  # the real cut-outs carry libjpeg's quality-75 quantisation tables

SKY_LEVEL = np.array([5.0, 4.5, 2.5], np.float32)  # display units, measured on the real sample's borders
SKY_NOISE = np.array([7.3, 6.8, 5.9], np.float32)  # per coarse pixel: gives the real sky MAD 4.0/3.7/3.2
STRETCH_GAIN, STRETCH_SOFTENING = 38.0, 0.06  # display = gain * asinh(flux / softening), colour-preserving
SEEING_SIGMA = 1.5  # coarse pixels

BULGE_COLOUR = np.array([1.0, 0.75, 0.45], np.float32)  # old stars: yellowish
DISK_COLOUR = np.array([0.9, 0.8, 0.7], np.float32)
YOUNG_COLOUR = np.array([0.55, 0.65, 1.0], np.float32)  # arms, clumps, rings, arcs: bluish

KINDS = ("smooth", "disk", "artifact")
ODD_FEATURES = ("ring", "lens or arc", "disturbed", "irregular", "other", "merger", "dust lane")
BULGE_AMPLITUDES = (0.0, 1.0, 3.0, 8.0)  # Q5 none / noticeable / obvious / dominant, relative to the disk
EDGE_ON_BULGES = ("rounded", "boxy", "none")

_coarse = (np.arange(GRID, dtype=np.float32) + 0.5) * GRID_FACTOR - 0.5  # coarse pixel centres in image px
GRID_X, GRID_Y = np.meshgrid(_coarse, _coarse)


# ---------------------------------------------------------------------------------------------------
# True properties


def sample_properties(rng):
    """Draw one galaxy's true properties: a dict of plain Python values (see the keys below)."""
    kind = str(rng.choice(KINDS, p=(0.38, 0.58, 0.04)))
    props = dict(kind=kind,
                 centre=(float(211.5 + np.clip(rng.normal(0, 1.5), -4, 4)),
                         float(211.5 + np.clip(rng.normal(0, 1.5), -4, 4))),
                 size=float(rng.lognormal(np.log(22.0), 0.22)),  # disk scale length or smooth half-light radius, px
                 brightness=float(rng.lognormal(0.0, 0.35)),
                 position_angle=float(rng.uniform(0, np.pi)),
                 axis_ratio=1.0, sersic_n=0.0, bulge_class=0, bar=False, arms=0, pitch_deg=0.0,
                 edge_on_bulge="none", odd_feature=None, artifact=None,
                 num_field_stars=int(rng.poisson(6)))
    if kind == "smooth":
        props.update(sersic_n=float(rng.uniform(1.5, 4.5)), axis_ratio=float(np.clip(1.0 - rng.gamma(1.5, 0.15), 0.25, 1.0)),
                     size=props["size"] * 1.2)
    elif kind == "disk":
        _sample_disk(rng, props)
    else:
        props.update(artifact=str(rng.choice(("star", "trail"))), size=4.0)
    if kind != "artifact" and rng.random() < 0.22:
        _sample_odd_feature(rng, props)
    return props


def _sample_disk(rng, props):
    """Inclination, bulge, bar and spiral arms of a disk galaxy (updates `props` in place)."""
    cos_inclination = rng.uniform(0, 1)
    thickness = 0.12  # intrinsic axis ratio of an edge-on disk
    props["axis_ratio"] = float(np.sqrt(cos_inclination ** 2 + thickness ** 2 * (1 - cos_inclination ** 2)))
    props["bulge_class"] = int(rng.choice(4, p=(0.1, 0.45, 0.38, 0.07)))
    props["sersic_n"] = float(rng.uniform(2.0, 4.0))  # of the bulge
    if props["axis_ratio"] < 0.3:
        shape = "none" if props["bulge_class"] == 0 else str(rng.choice(("rounded", "boxy"), p=(0.75, 0.25)))
        props["edge_on_bulge"] = shape
    else:
        props["bar"] = bool(rng.random() < 0.3)
        if rng.random() < 0.7:
            props["arms"] = int(rng.choice(np.arange(1, 7), p=(0.05, 0.55, 0.15, 0.1, 0.1, 0.05)))
            props["pitch_deg"] = float(rng.uniform(6, 35))


def _sample_odd_feature(rng, props):
    """One odd feature that suits the galaxy (updates `props` in place)."""
    choices = ["ring", "lens or arc", "disturbed", "irregular", "merger"]
    if props["kind"] == "disk" and props["axis_ratio"] < 0.45:
        choices.append("dust lane")
    feature = str(rng.choice(choices))
    props["odd_feature"] = feature
    if feature == "irregular":  # an irregular galaxy has no regular structure
        props.update(kind="disk", axis_ratio=max(props["axis_ratio"], 0.5), bulge_class=0, bar=False, arms=0,
                     edge_on_bulge="none")


# ---------------------------------------------------------------------------------------------------
# Crowd votes


def visibility(props):
    """How well a volunteer sees this galaxy's details, in (0, 1): grows with apparent size and brightness."""
    detail = (props["size"] / 22.0) * np.sqrt(props["brightness"])
    return float(1.0 - np.exp(-1.6 * detail))


def _ordinal(position, count, width=0.6):
    """A (count,) distribution peaked at the continuous answer `position` (0 .. count-1)."""
    weights = np.exp(-0.5 * ((np.arange(count) - position) / width) ** 2)
    return weights / weights.sum()


def _one_hot(index, count):
    truth = np.zeros(count)
    truth[index] = 1.0
    return truth


def _votes(rng, truth, seen, guesses=None):
    """Vote fractions (sum 1) of a crowd around the `truth` distribution: Dirichlet noise, more confusion
    (mean drawn towards `guesses`, default uniform, and fewer effective voters) when `seen` (0..1) is low."""
    confusion = 0.04 + 0.4 * (1.0 - seen)
    guesses = np.full(len(truth), 1.0 / len(truth)) if guesses is None else guesses
    mean = (1.0 - confusion) * truth + confusion * guesses
    return rng.dirichlet(np.maximum((4.0 + 36.0 * seen) * mean, 1e-3))


def _answer_truths(props):
    """Per question (tree order), the distribution of answers an ideal volunteer would give, how well the
    question's feature is seen (0..1), and what a confused volunteer guesses (None: any answer alike).
    Returns a list of 11 tuples (truth, seen[, guesses])."""
    v = visibility(props)
    q = props["axis_ratio"]
    disk, odd = props["kind"] == "disk", props["odd_feature"]
    edge_on = 1.0 / (1.0 + np.exp((q - 0.3) / 0.05))
    arms, bar = props["arms"] > 0, props["bar"]
    if props["kind"] == "artifact":
        q1 = np.array([0.15, 0.1, 0.75])
    elif disk:
        structure = 0.55 + 0.4 * arms + 0.25 * bar + 0.5 * edge_on + 0.3 * (odd == "irregular") \
            - 0.3 * (props["bulge_class"] == 3)
        features = v * float(np.clip(structure, 0.05, 0.97))
        q1 = np.array([1.0 - features, features, 0.0])
    else:
        q1 = np.array([0.94, 0.06, 0.0])
    arm_seen = v * (1 - edge_on) * (0.7 if props["bulge_class"] == 3 else 1.0)
    arm_count = min(props["arms"], 5) - 1 if arms else 5
    q11 = 0.6 * _ordinal(arm_count, 6, 0.4) + 0.4 * _one_hot(5, 6) * (1.2 - arm_seen) if arms else _one_hot(5, 6)
    shape_index = EDGE_ON_BULGES.index(props["edge_on_bulge"]) if edge_on > 0.5 else (0 if props["bulge_class"] else 2)
    odd_seen = 0.85 * v if odd else 0.06
    odd_truth = _one_hot(ODD_FEATURES.index(odd), 7) * 0.9 + 0.1 * _one_hot(4, 7) if odd else _one_hot(4, 7)
    return [
        (q1, v, np.array([0.48, 0.48, 0.04])),  # few would call a galaxy a star
        (np.array([edge_on, 1 - edge_on]), v),
        (np.array([bar * v, 1 - bar * v]), v * (1 - edge_on)),
        (np.array([arms * arm_seen, 1 - arms * arm_seen]), v),
        (_ordinal(props["bulge_class"] if disk else 3, 4), v),
        (np.array([odd_seen, 1 - odd_seen]), v),
        (_ordinal(float(np.interp(q, (0.3, 0.625, 0.95), (2, 1, 0))), 3), v),
        (odd_truth, v),
        (_one_hot(shape_index, 3), v * edge_on),
        (_ordinal(float(np.interp(props["pitch_deg"], (10, 22, 34), (0, 1, 2))), 3), arm_seen),
        (q11 / q11.sum(), arm_seen),
    ]


def tree_scale(answer_fractions):
    """Turn 11 per-question vote fractions (each summing to 1, tree order) into the (37,) float64 labels:
    each question is multiplied by its parent answer's already-scaled value, so the tree holds exactly."""
    labels = np.zeros(decision_tree.NUM_OUTPUTS)
    for columns, parent, fractions in zip(decision_tree.QUESTION_SLICES, decision_tree.PARENT_INDEX, answer_fractions):
        labels[columns] = fractions * (1.0 if parent is None else labels[parent])
    return labels


def crowd_labels(props, rng):
    """The 37 vote fractions (float64, obeying the decision tree) a noisy crowd gives a galaxy."""
    return tree_scale([_votes(rng, *question) for question in _answer_truths(props)])


# ---------------------------------------------------------------------------------------------------
# Rendering


def _galaxy_frame(centre, angle, dx=0.0, dy=0.0):
    """Coarse-grid coordinates along (u) and across (w) a galaxy's major axis: two (GRID, GRID) arrays."""
    x, y = GRID_X - np.float32(centre[0] + dx), GRID_Y - np.float32(centre[1] + dy)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return x * c + y * s, -x * s + y * c


def _sersic(radius, half_light, n):
    """Sersic surface brightness, 1 at the half-light radius (radius softened by one px at the centre)."""
    b = 2.0 * n - 1.0 / 3.0
    return np.exp(-b * (np.power(np.sqrt(radius * radius + 1.0) / half_light, 1.0 / n) - 1.0)).astype(np.float32)


def _smooth_light(props, u, w):
    """Elliptical Sersic galaxy: list of (map (GRID, GRID), colour (3,))."""
    radius = np.hypot(u, w / props["axis_ratio"])
    return [(0.35 * props["brightness"] * _sersic(radius, props["size"], props["sersic_n"]), BULGE_COLOUR)]


def _disk_light(props, rng, u, w):
    """Exponential disk with bulge, bar and spiral arms: list of (map, colour)."""
    h, q, b = props["size"], props["axis_ratio"], props["brightness"]
    plane_w = w / q  # deprojected coordinate across the major axis
    radius = np.hypot(u, plane_w)
    disk = np.exp(-radius / h)
    parts = []
    if props["arms"]:
        pitch = np.radians(props["pitch_deg"])
        phase = props["arms"] * (np.arctan2(plane_w, u) - np.log(radius / h + 0.05) / np.tan(pitch)) + rng.uniform(0, 6.3)
        arm = ((1.0 + np.cos(phase)) * 0.5) ** 3 * (1.0 - np.exp(-(radius / (0.8 * h)) ** 2))
        parts.append((1.6 * b * disk * arm, YOUNG_COLOUR))
        disk = disk * (1.0 - 0.5 * arm)
    parts.append((b * disk, DISK_COLOUR))
    if props["bar"]:
        bar_angle = rng.uniform(0, np.pi)
        bu = u * np.cos(bar_angle) + plane_w * np.sin(bar_angle)
        bw = -u * np.sin(bar_angle) + plane_w * np.cos(bar_angle)
        parts.append((1.2 * b * np.exp(-((bu / (1.4 * h)) ** 2 + (bw / (0.3 * h)) ** 2) ** 1.5), BULGE_COLOUR))
    amplitude = BULGE_AMPLITUDES[props["bulge_class"]] * b
    if amplitude:
        bulge_q = max(q, 0.75)
        if props["edge_on_bulge"] == "boxy":  # generalised ellipse: boxy isophotes
            bulge_r = (np.abs(u) ** 4 + np.abs(w / 0.8) ** 4) ** 0.25
        else:
            bulge_r = np.hypot(u, w / bulge_q)
        parts.append((amplitude * 0.25 * _sersic(bulge_r, 0.35 * h, props["sersic_n"]), BULGE_COLOUR))
    return parts


def _irregular_light(props, rng, u, w):
    """Faint diffuse patch with bright blue star-forming clumps: list of (map, colour)."""
    h, b = props["size"], props["brightness"]
    parts = [(0.8 * b * np.exp(-np.hypot(u, w / props["axis_ratio"]) / h), YOUNG_COLOUR)]
    for _ in range(int(rng.integers(4, 10))):
        cu, cw = rng.normal(0, 0.8 * h, 2)
        sigma = rng.uniform(3.0, 7.0)
        parts.append((rng.uniform(0.3, 0.9) * b * np.exp(-((u - cu) ** 2 + (w - cw) ** 2) / (2 * sigma ** 2)),
                      YOUNG_COLOUR))
    return parts


def _odd_light(props, rng, u, w):
    """Light (or a multiplicative map) of the odd feature: (list of (map, colour), factor map or None)."""
    h, b, feature = props["size"], props["brightness"], props["odd_feature"]
    radius = np.hypot(u, w / props["axis_ratio"])
    if feature == "ring":
        ring_r = rng.uniform(1.6, 2.6) * h
        return [(0.5 * b * np.exp(-0.5 * ((radius - ring_r) / (0.2 * h)) ** 2), YOUNG_COLOUR)], None
    if feature == "lens or arc":
        arc_r, centre_angle = rng.uniform(2.2, 3.2) * h, rng.uniform(-np.pi, np.pi)
        sky_r = np.hypot(u, w)
        dtheta = np.angle(np.exp(1j * (np.arctan2(w, u) - centre_angle)))
        arc = np.exp(-0.5 * ((sky_r - arc_r) / 1.5) ** 2 - 0.5 * (dtheta / 0.45) ** 2)
        return [(0.8 * b * arc, YOUNG_COLOUR)], None
    if feature == "disturbed":
        direction = rng.uniform(-np.pi, np.pi)
        lopsided = 1.0 + 0.9 * np.cos(np.arctan2(w, u) - direction) * (1.0 - np.exp(-radius / h))
        return [], lopsided.astype(np.float32)
    if feature == "merger":
        return _companion(props, rng, u, w), None
    if feature == "dust lane":
        lane = 1.0 - 0.85 * np.exp(-0.5 * ((w - rng.uniform(-1, 1)) / 1.6) ** 2) * np.exp(-(u / (3.5 * h)) ** 4)
        return [], lane.astype(np.float32)
    return [], None


def _companion(props, rng, u, w):
    """A second galaxy close by, with a faint tidal bridge: list of (map, colour)."""
    h, b = props["size"], props["brightness"]
    distance, angle = rng.uniform(1.5, 3.0) * h, rng.uniform(-np.pi, np.pi)
    cu, cw = distance * np.cos(angle), distance * np.sin(angle)
    size = h * rng.uniform(0.5, 1.0)
    companion = _sersic(np.hypot(u - cu, (w - cw) / rng.uniform(0.5, 1.0)), size, rng.uniform(1.5, 4.0))
    along = np.clip((u * cu + w * cw) / distance ** 2, 0, 1)  # position along the line joining the two
    bridge = np.exp(-0.5 * (((u - along * cu) ** 2 + (w - along * cw) ** 2) / (0.4 * h) ** 2))
    return [(0.35 * b * rng.uniform(0.4, 1.0) * companion, BULGE_COLOUR), (0.12 * b * bridge, DISK_COLOUR)]


def _artifact_light(props, rng, flux):
    """A bright star with diffraction spikes, or a satellite trail, added to `flux` (GRID, GRID, 3)."""
    u, w = _galaxy_frame(props["centre"], 0.0)
    if props["artifact"] == "star":
        core = np.exp(-(u * u + w * w) / 8.0) * 60.0 + np.exp(-np.hypot(u, w) / 12.0) * 1.5
        spikes = (np.exp(-np.abs(w) / 0.8) + np.exp(-np.abs(u) / 0.8)) * np.exp(-np.hypot(u, w) / 40.0) * 2.0
        flux += (core + spikes)[..., None] * np.array([0.9, 0.95, 1.0], np.float32)
    else:
        angle = rng.uniform(0, np.pi)
        across = -u * np.sin(angle) + w * np.cos(angle)
        colour = np.eye(3, dtype=np.float32)[rng.integers(3)] + 0.5
        flux += (np.exp(-0.5 * (across / 1.5) ** 2) * 0.8)[..., None] * colour


def _add_field_stars(props, rng, flux):
    """Point sources scattered over the field (the seeing blur gives them their shape); in place."""
    for _ in range(props["num_field_stars"]):
        col, row = rng.integers(0, GRID, 2)
        colour = np.array([1.0, 0.85, 0.7], np.float32) if rng.random() < 0.6 else YOUNG_COLOUR
        flux[row, col] += np.float32(rng.lognormal(np.log(2.0), 1.2)) * colour


def render_flux(props, rng):
    """Linear flux of the scene on the coarse grid, before seeing: float32 (GRID, GRID, 3)."""
    flux = np.zeros((GRID, GRID, 3), np.float32)
    if props["kind"] == "artifact":
        _artifact_light(props, rng, flux)
    else:
        u, w = _galaxy_frame(props["centre"], props["position_angle"])
        if props["odd_feature"] == "irregular":
            parts = _irregular_light(props, rng, u, w)
        elif props["kind"] == "disk":
            parts = _disk_light(props, rng, u, w)
        else:
            parts = _smooth_light(props, u, w)
        extra, factor = _odd_light(props, rng, u, w)
        galaxy = np.zeros_like(flux)
        for light, colour in parts + extra:
            galaxy += light.astype(np.float32)[..., None] * colour
        flux += galaxy if factor is None else galaxy * factor[..., None]
    _add_field_stars(props, rng, flux)
    return flux


def to_display(flux, rng):
    """Seeing, asinh stretch, upsampling and sky noise: (GRID, GRID, 3) flux -> uint8 (424, 424, 3)."""
    blurred = cv2.GaussianBlur(flux, (0, 0), SEEING_SIGMA)
    intensity = np.maximum(blurred[..., 0] + blurred[..., 1] + blurred[..., 2], 1e-6)[..., None] / (3 * STRETCH_SOFTENING)
    asinh = np.log(intensity + np.sqrt(intensity * intensity + 1))  # np.arcsinh is several times slower
    display = blurred * (STRETCH_GAIN / STRETCH_SOFTENING) * (asinh / intensity)
    # SDSS sky noise is correlated over a few pixels (resampling), so it is drawn on the coarse grid, and
    # mostly shared by the three channels (correlation 0.8-0.9 in the real sky); the small per-channel
    # part is drawn coarser still, for speed
    shared = rng.standard_normal((GRID, GRID, 1), dtype=np.float32)
    own = cv2.resize(rng.standard_normal((GRID // 2, GRID // 2, 3), dtype=np.float32), (GRID, GRID))
    display += (0.92 * shared + 0.4 * own) * SKY_NOISE + SKY_LEVEL
    display = cv2.resize(display, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    return np.clip(display, 0, 255, out=display).astype(np.uint8)


def make_example(seed, index):
    """Example `index` of the dataset with `seed`: (image uint8 (424, 424, 3), labels float64 (37,),
    properties dict). Depends only on (seed, index)."""
    rng = np.random.default_rng([seed, index])
    props = sample_properties(rng)
    labels = crowd_labels(props, rng)
    image = to_display(render_flux(props, rng), rng)
    return image, labels, props


def encode_jpeg(image, quality=JPEG_QUALITY):
    """JPEG bytes of a uint8 (H, W, 3) image."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
