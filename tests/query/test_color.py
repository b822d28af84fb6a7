"""Colour names of objects, checked on real photos against what a person would say, and on solid patches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from promptseg.errors import InputError
from promptseg.ops.boxes import mask_to_xyxy
from promptseg.query import color
from promptseg.query.color import (
    COLOR_WORDS,
    MATCH_THRESHOLD,
    color_match,
    color_profiles,
    color_word,
    describe_color,
    dominant_colors,
)
from promptseg.query.model import COLORS

# Representative sRGB values of each palette colour: CSS colours and measured object medians.
PATCHES = [
    ("red", (255, 0, 0)),  # sRGB red
    ("red", (160, 29, 6)),  # the tote's red plastic
    ("red", (141, 32, 50)),  # the VOC red top
    ("red", (178, 34, 34)),  # CSS firebrick
    ("orange", (255, 128, 0)),
    ("orange", (255, 165, 0)),  # CSS orange
    ("orange", (220, 96, 60)),  # the astronaut's suit
    ("yellow", (255, 255, 0)),
    ("yellow", (255, 215, 0)),  # CSS gold
    ("yellow", (252, 238, 79)),  # the baby wipes
    ("green", (0, 128, 0)),
    ("green", (50, 205, 50)),  # CSS limegreen
    ("green", (37, 140, 92)),  # the Irish Spring soap
    ("blue", (0, 0, 255)),
    ("blue", (65, 105, 225)),  # CSS royalblue
    ("blue", (135, 206, 235)),  # CSS skyblue
    ("blue", (36, 44, 61)),  # the VOC navy t-shirt
    ("purple", (128, 0, 128)),
    ("purple", (138, 43, 226)),  # CSS blueviolet
    ("purple", (102, 51, 153)),  # CSS rebeccapurple
    ("purple", (132, 91, 155)),  # the astronaut's mission patch
    ("pink", (255, 192, 203)),  # CSS pink
    ("pink", (255, 105, 180)),  # CSS hotpink
    ("pink", (255, 20, 147)),  # CSS deeppink
    ("brown", (139, 69, 19)),  # CSS saddlebrown
    ("brown", (101, 67, 33)),  # dark brown
    ("brown", (153, 113, 81)),  # the cat's fur
    ("black", (0, 0, 0)),
    ("black", (30, 30, 35)),
    ("white", (255, 255, 255)),
    ("white", (226, 218, 208)),  # the VOC table
    ("gray", (128, 128, 128)),
    ("gray", (90, 95, 100)),
]

# Colour words with their usual sRGB: the patch is named what the word maps to. Left out on purpose:
# silver (192, 192, 192) reads white (L* 78 is above the gray-white line at 70), CSS khaki and beige are
# pale yellows, olive (128, 128, 0) has yellow's hue, and salmon and peach are between names.
WORDS_RGB = [
    ("crimson", (220, 20, 60)),
    ("scarlet", (255, 36, 0)),  # vivid: stays red although h = 42 like the orange suit
    ("maroon", (128, 0, 0)),
    ("burgundy", (128, 0, 32)),
    ("navy", (0, 0, 128)),
    ("teal", (0, 128, 128)),  # h = 196: past the green-blue line at 180
    ("turquoise", (64, 224, 208)),  # h = 185
    ("cyan", (0, 255, 255)),
    ("gold", (255, 215, 0)),
    ("tan", (210, 180, 140)),
    ("khaki", (195, 176, 145)),  # the fabric, not CSS khaki
    ("violet", (238, 130, 238)),
    ("magenta", (255, 0, 255)),  # h = 328, the hue of purple (128, 0, 128)
    ("indigo", (75, 0, 130)),
    ("lilac", (200, 162, 200)),
    ("emerald", (80, 200, 120)),
    ("ivory", (255, 255, 240)),
]


BLACK = np.zeros((4, 4, 3), np.uint8)


def patch_name(rgb: tuple[int, int, int]) -> str:
    image = np.full((20, 30, 3), rgb, np.uint8)
    return describe_color(color_profiles(image, None, np.array([[0, 0, 30, 20]], np.float32))[0])


@pytest.fixture(scope="module")
def tote_profiles(tote: dict[str, Any]) -> np.ndarray:
    """(8, 11), visible parts: mouse traps, wipes, book, soap, spoons, scissors, ice tray, Hanes pack."""
    return color_profiles(tote["rgb"], tote["masks"], mask_to_xyxy(tote["masks"]))


@pytest.fixture(scope="module")
def voc_profiles(voc: dict[str, Any]) -> np.ndarray:
    """(19, 11): a bottle, 8 chairs, 7 people and 3 dining tables."""
    return color_profiles(voc["rgb"], voc["masks"], voc["xyxy"])


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (1, "yellow"),  # Burt's Bees baby wipes
        (2, "red and orange"),  # the joke book: an orange-red cover with white text
        (3, "green and blue"),  # Irish Spring soap: green box, blue print
        (5, "pink and red"),  # Fiskars scissors: pink handles, darker ones red
        (7, "red and white"),  # the Hanes pack
    ],
)
def test_tote_objects_are_named_as_a_person_would(
    tote_profiles: np.ndarray, index: int, expected: str
) -> None:
    assert describe_color(tote_profiles[index]) == expected


def test_a_secondary_colour_still_matches(tote_profiles: np.ndarray) -> None:
    socks, book, scissors, soap = tote_profiles[[7, 2, 5, 3]]
    assert color_match(socks, "red") == 1.0
    assert color_match(socks, "white") >= MATCH_THRESHOLD  # "the red and white socks"
    assert color_match(book, "orange") >= MATCH_THRESHOLD  # an orange-red book: either name finds it
    assert color_match(scissors, "red") < MATCH_THRESHOLD  # pink scissors are not "the red ones"
    assert color_match(soap, "blue") < MATCH_THRESHOLD


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (11, "black"),  # the woman's black jacket
        (13, "white"),  # the table by the window
        (14, "red"),  # the red top
        (15, "brown"),  # the beige top (beige is brown in COLOR_WORDS); her skin adds to it
        # The navy t-shirt is blue, not black: at L* 18 its chroma 8-14 is above the achromatic
        # threshold of 8, and 85 % of the shirt's own pixels name blue. Skin makes brown second.
        (17, "blue"),
        (18, "white"),  # the white dining table, with black trays on it
    ],
)
def test_voc_dominant_colour(voc_profiles: np.ndarray, index: int, expected: str) -> None:
    assert dominant_colors(voc_profiles[index], k=1)[0][0] == expected


@pytest.mark.parametrize(
    ("photo", "xyxy", "expected"),
    [
        ("astronaut.png", (40, 300, 120, 480), "orange"),  # the suit: same hue as the red tote, lighter
        ("coffee.png", (85, 200, 140, 300), "red"),  # the saucer
        ("chelsea.png", (60, 20, 140, 80), "brown"),  # the cat's fur
        ("rocket.jpg", (100, 20, 250, 100), "blue"),  # the dusk sky
    ],
)
def test_boxes_without_masks(skimage_data: Path, photo: str, xyxy: tuple[int, ...], expected: str) -> None:
    image = np.asarray(Image.open(skimage_data / photo).convert("RGB"))
    profile = color_profiles(image, None, np.array([xyxy], np.float32))[0]
    assert describe_color(profile) == expected


@pytest.mark.parametrize(("name", "rgb"), PATCHES, ids=[f"{n}-{rgb}" for n, rgb in PATCHES])
def test_solid_patch_is_named(name: str, rgb: tuple[int, int, int]) -> None:
    assert patch_name(rgb) == name


def test_every_palette_colour_has_a_patch() -> None:
    assert {name for name, _ in PATCHES} == set(COLORS)


@pytest.mark.parametrize(("word", "rgb"), WORDS_RGB, ids=[w for w, _ in WORDS_RGB])
def test_colour_words_agree_with_the_pixels(word: str, rgb: tuple[int, int, int]) -> None:
    assert patch_name(rgb) == COLOR_WORDS[word]


def test_profiles_are_fractions(voc: dict[str, Any], voc_profiles: np.ndarray) -> None:
    assert voc_profiles.shape == (19, len(COLORS))
    assert voc_profiles.dtype == np.float32
    np.testing.assert_allclose(voc_profiles.sum(axis=1), 1.0, atol=1e-5)
    boxes_only = color_profiles(voc["rgb"], None, voc["xyxy"])
    np.testing.assert_allclose(boxes_only.sum(axis=1), 1.0, atol=1e-5)


def test_empty_instances_give_zero_rows(voc: dict[str, Any]) -> None:
    masks = voc["masks"][:3].copy()
    masks[1] = False
    xyxy = voc["xyxy"][:3].copy()
    xyxy[2] = (10, 10, 10, 40)  # zero width
    profiles = color_profiles(voc["rgb"], masks, xyxy)
    assert profiles[0].sum() == pytest.approx(1.0)
    assert not profiles[1].any() and not profiles[2].any()
    assert describe_color(profiles[1]) == ""
    assert dominant_colors(profiles[1]) == []
    assert color_match(profiles[1], "red") == 0.0
    assert color_profiles(voc["rgb"], None, np.zeros((0, 4), np.float32)).shape == (0, len(COLORS))


def test_reads_only_inside_the_box_and_a_bounded_sample(voc: dict[str, Any]) -> None:
    """No timing: the work per instance is bounded by the box crop and the sample cap."""
    image = np.zeros((375, 500, 3), np.uint8)
    image[:, 250:] = 255
    mask = np.ones((1, 375, 500), bool)  # the whole image; its box covers the black half only
    left = color_profiles(image, mask, np.array([[0, 0, 250, 375]], np.float32))[0]
    assert describe_color(left) == "black"
    table = voc["masks"][18]  # 52,238 pixels
    x1, y1, x2, y2 = voc["xyxy"][18].astype(int)
    codes = color._codes(voc["rgb"][y1:y2, x1:x2], table[y1:y2, x1:x2])
    assert 0 < len(codes) <= color._MAX_SAMPLES
    whole = color._codes(voc["rgb"], None)
    assert 0 < len(whole) <= color._MAX_SAMPLES * 1.1


def test_a_thin_mask_the_sample_grid_misses_is_still_read() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    image[1::2, 1::2] = (255, 0, 0)
    mask = np.zeros((1, 200, 200), bool)
    mask[0, 1::2, 1::2] = True  # 10,000 pixels on odd rows and columns: a stride-2 grid sees none
    profile = color_profiles(image, mask, np.array([[0, 0, 200, 200]], np.float32))[0]
    assert describe_color(profile) == "red"


def test_subsampling_is_deterministic_and_close_to_all_pixels(voc: dict[str, Any]) -> None:
    masks, xyxy = voc["masks"][[18]], voc["xyxy"][[18]]
    first = color_profiles(voc["rgb"], masks, xyxy)
    np.testing.assert_array_equal(first, color_profiles(voc["rgb"], masks, xyxy))
    lut = color._lookup_table()
    pixels = voc["rgb"][masks[0]] >> 2
    codes = (pixels[:, 0].astype(np.intp) << 12) | (pixels[:, 1].astype(np.intp) << 6) | pixels[:, 2]
    exact = np.bincount(lut[codes], minlength=len(COLORS)) / len(codes)
    np.testing.assert_allclose(first[0], exact, atol=0.02)


def test_lab_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2", reason="OpenCV (onnx extra) is the reference")
    rgb = np.random.default_rng(0).integers(0, 256, (20_000, 3)).astype(np.float64)
    expected = cv2.cvtColor((rgb / 255).astype(np.float32)[None], cv2.COLOR_RGB2LAB)[0]
    np.testing.assert_allclose(color._srgb_to_lab(rgb), expected, atol=0.5)  # OpenCV's gamma is a table


def test_palette_names_map_to_themselves() -> None:
    for name in COLORS:
        assert COLOR_WORDS[name] == name
        assert color_word(name) == name
    assert set(COLOR_WORDS.values()) == set(COLORS)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("grey", "gray"),
        ("Silver", "gray"),
        ("navy", "blue"),
        ("crimson", "red"),
        ("golden", "yellow"),
        ("beige", "brown"),
        ("lavender", "purple"),
        ("dark red", "red"),  # a shade and a colour
        ("navy blue", "blue"),
        ("hot pink", "pink"),
        ("off-white", "white"),
        ("reddish brown", "brown"),  # the last colour names it
        ("gold coloured", "yellow"),
        ("dark", None),  # shades alone are not colours
        ("light", None),
        ("dark wood", None),
        ("cup", None),
        ("wine", None),  # things as often as colours: "wine glass", "coffee table", "a lemon"
        ("coffee", None),
        ("lemon", None),
        ("", None),
    ],
)
def test_color_word(word: str, expected: str | None) -> None:
    assert color_word(word) == expected


def test_dominant_colors_and_match_rule() -> None:
    profile = np.zeros(len(COLORS), np.float32)
    profile[COLORS.index("white")] = 0.6
    profile[COLORS.index("red")] = 0.3
    profile[COLORS.index("blue")] = 0.1
    assert dominant_colors(profile) == [("white", pytest.approx(0.6)), ("red", pytest.approx(0.3))]
    assert dominant_colors(profile, k=1) == [("white", pytest.approx(0.6))]
    assert dominant_colors(profile, k=3, min_fraction=0.05)[2][0] == "blue"
    assert dominant_colors(profile, min_fraction=0.5) == [("white", pytest.approx(0.6))]
    assert describe_color(profile) == "white and red"
    assert color_match(profile, "red") == pytest.approx(0.5)  # a red and white mug is still red
    assert color_match(profile, "grey") == 0.0  # any colour word is accepted
    assert color_match(profile, "white") == 1.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: color_match(np.ones(len(COLORS)), "dark"), "not a colour"),
        (lambda: dominant_colors(np.ones(3)), "shape"),
        (lambda: dominant_colors(np.ones(len(COLORS)), k=-1), "k must be"),
        (lambda: color_profiles(np.zeros((4, 4), np.uint8), None, np.zeros((1, 4))), "image must be"),
        (lambda: color_profiles(np.zeros((4, 4, 3)), None, np.zeros((1, 4))), "uint8"),
        (lambda: color_profiles(BLACK, None, np.zeros((1, 3))), "boxes must be"),
        (lambda: color_profiles(BLACK, None, np.array([[0, 0, np.nan, 4]])), "finite"),
        (lambda: color_profiles(BLACK, np.zeros((2, 4, 4), bool), np.zeros((1, 4))), "masks must be"),
    ],
)
def test_bad_input_raises_one_clear_error(call: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()
