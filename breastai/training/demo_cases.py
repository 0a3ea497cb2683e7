"""The phantom cases of the demo-weights training (:mod:`breastai.training.demo_weights`): voxel
grids, the extra cases each model gets beyond one per preset, the validation cases, and the
specs that name them (seed, preset, orientation, grid).

Research use only, not a medical device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from breastai.phantom import PhantomCase

__all__ = [
    "AXIAL_GRIDS",
    "BREAST_EXTRA_TRAIN",
    "SAGITTAL_GRID",
    "TUMOR_EXTRA_TRAIN",
    "TUMOR_HARD_NEGATIVES",
    "TUMOR_MARKED_LESIONS",
    "VALIDATION",
    "case_specs",
    "generate_spec_case",
    "listed_specs",
]

# (shape_zyx, spacing_zyx) grids, each about 190 x 335 x 335 mm, as scanners write them.
AXIAL_GRIDS = (
    ((96, 256, 256), (2.0, 1.3, 1.3)),
    ((64, 192, 192), (3.0, 1.75, 1.75)),
    ((80, 224, 224), (2.4, 1.5, 1.5)),
)
SAGITTAL_GRID = ((112, 224, 224), (3.0, 1.5, 1.5))

# Extra breast-model cases (preset, orientation) beyond one per preset: where held-out phantoms
# (validation seeds, bench/accuracy.py) showed the first demo breast model weakest: implants
# (pre-pectoral implants were included in the mask, sub-pectoral breasts cut, which also cut their
# lesions), bright fat without fat saturation (breast under-segmented) and sagittal stacks.
BREAST_EXTRA_TRAIN = (
    ("implant_prepec", "sagittal"),
    ("implant_prepec", "axial"),
    ("implant_prepec", "oblique"),
    ("implant_subpec", "sagittal"),
    ("implant_subpec", "axial"),
    ("implant_subpec", "oblique"),
    ("no_fatsat", "axial"),
    ("no_fatsat", "oblique"),
    ("no_fatsat", "sagittal"),
    ("default", "sagittal"),
    ("bilateral", "sagittal"),
    ("single_breast", "sagittal"),
    ("heart_fp", "sagittal"),
    ("fatty_small_breast", "oblique"),
    ("b1_asym_3T", "sagittal"),
    ("wraparound", "sagittal"),
)
# Extra tumor-model cases (preset, orientation) beyond one per preset: where held-out phantoms
# (seeds 800000+, bench/accuracy.py) showed the demo tumor model weakest: lesions under 10 mm,
# non-mass enhancement, bright fat without fat saturation (false positives), motion, and the
# marked background enhancement and benign lesions that give false positives.
TUMOR_EXTRA_TRAIN = (
    ("tiny_lesion", "axial"),
    ("tiny_lesion", "oblique"),
    ("tiny_lesion", "sagittal"),
    ("nme_segmental", "axial"),
    ("nme_segmental", "oblique"),
    ("nme_segmental", "sagittal"),
    ("no_fatsat", "axial"),
    ("no_fatsat", "oblique"),
    ("no_fatsat", "sagittal"),
    ("motion", "axial"),
    ("motion", "oblique"),
    ("bpe_marked", "oblique"),
    ("benign_fa", "axial"),
    ("low_snr", "oblique"),
)
# Tumor-model hard negatives (preset, orientation, phantom overrides): clumped, nodular background
# enhancement (breastai.phantom's bpe_fraction / bpe_scale_mm) that looks like masses. On
# out-of-family studies (bench/accuracy.py --sets oof) 28 of 33 false positives of the tumor model
# trained without them were enhancing parenchyma of this look; every case still has its lesions.
TUMOR_HARD_NEGATIVES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("bpe_marked", "axial", {"bpe_fraction": 0.3, "bpe_scale_mm": 8.0}),
    ("bpe_marked", "oblique", {"bpe_fraction": 0.4, "bpe_scale_mm": 6.0}),
    ("bpe_marked", "sagittal", {"bpe_fraction": 0.25, "bpe_scale_mm": 10.0}),
    ("default", "axial", {"bpe": "moderate", "bpe_fraction": 0.35, "bpe_scale_mm": 7.0}),
    ("default", "oblique", {"bpe": "marked", "bpe_fraction": 0.3, "bpe_scale_mm": 9.0}),
    ("multifocal", "axial", {"bpe": "moderate", "bpe_fraction": 0.4, "bpe_scale_mm": 6.0}),
)
# Tumor-model lesions in clumped, marked background enhancement (preset, orientation, phantom
# overrides), beside the hard negatives: the model trained with the negatives alone (recipe
# "hard-negatives") lowered false positives but cut lesion borders where a lesion sat in marked,
# clumped enhancement (bench/RESULTS.md, sixth range: one lesion 0.79 -> 0.37 Dice). These cases
# ask for the whole lesion there: large and small, irregular and spiculated masses whose kinetics
# include the plateau and persistent curves of the background itself, so that the shape, not the
# curve, tells lesion from parenchyma.
_MALIGNANT = {"kind": "malignant"}
TUMOR_MARKED_LESIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "bpe_marked",
        "axial",
        {
            "bpe_fraction": 0.3,
            "bpe_scale_mm": 8.0,
            "lesions": [{**_MALIGNANT, "ld_mm": 24.0, "shape": "irregular", "kinetics": "plateau"}],
        },
    ),
    (
        "bpe_marked",
        "sagittal",
        {
            "bpe_fraction": 0.35,
            "bpe_scale_mm": 7.0,
            "lesions": [
                {**_MALIGNANT, "ld_mm": 32.0, "shape": "spiculated", "kinetics": "persistent"}
            ],
        },
    ),
    (
        "default",
        "oblique",
        {
            "bpe": "marked",
            "bpe_fraction": 0.4,
            "bpe_scale_mm": 6.0,
            "lesions": [{**_MALIGNANT, "ld_mm": 14.0, "shape": "lobulated", "kinetics": "plateau"}],
        },
    ),
    (
        "default",
        "axial",
        {
            "bpe": "marked",
            "bpe_fraction": 0.25,
            "bpe_scale_mm": 10.0,
            "lesions": [
                {**_MALIGNANT, "ld_mm": 36.0, "shape": "irregular", "kinetics": "washout"},
                {**_MALIGNANT, "ld_mm": 11.0, "shape": "round", "kinetics": "plateau"},
            ],
        },
    ),
    (
        "no_fatsat",
        "oblique",
        {
            "bpe": "marked",
            "bpe_fraction": 0.3,
            "bpe_scale_mm": 8.0,
            "lesions": [
                {**_MALIGNANT, "ld_mm": 20.0, "shape": "spiculated", "kinetics": "persistent"}
            ],
        },
    ),
    (
        "multifocal",
        "sagittal",
        {"bpe": "marked", "bpe_fraction": 0.3, "bpe_scale_mm": 9.0},
    ),
)
# Validation cases (best-checkpoint choice): the tumor model uses the first two, the breast model
# all four (an easy case and two of its hard ones).
VALIDATION = (
    ("default", "axial"),
    ("multifocal", "axial"),
    ("no_fatsat", "oblique"),
    ("implant_subpec", "sagittal"),
)


def case_specs(
    n: int,
    first_seed: int,
    presets: Sequence[str],
    grids: Any,
    orientations: Sequence[str] = ("axial", "axial", "sagittal", "axial", "oblique"),
    overrides: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """``n`` phantom case specs from ``first_seed`` on, cycling through ``presets``, ``grids``
    and ``orientations`` (sagittal cases take :data:`SAGITTAL_GRID`); ``overrides[i]``, where
    given, are case ``i``'s phantom parameters (``generate_case(**overrides)``)."""
    specs = []
    for i in range(n):
        orientation = orientations[i % len(orientations)]
        if orientation == "sagittal":
            shape, spacing = SAGITTAL_GRID
        else:
            shape, spacing = grids[i % len(grids)]
        specs.append(
            {
                "seed": first_seed + i,
                "preset": presets[i % len(presets)],
                "orientation": orientation,
                "shape_zyx": shape,
                "spacing_zyx": spacing,
            }
        )
        if overrides is not None and overrides[i]:
            specs[-1]["overrides"] = dict(overrides[i])
    return specs


def listed_specs(
    cases: Sequence[tuple[Any, ...]], first_seed: int, grids: Any
) -> list[dict[str, Any]]:
    """The specs of listed cases, ``(preset, orientation)`` or ``(preset, orientation,
    overrides)`` as in :data:`TUMOR_EXTRA_TRAIN` and :data:`TUMOR_HARD_NEGATIVES`, with seeds
    from ``first_seed`` on (:func:`case_specs`)."""
    return case_specs(
        len(cases),
        first_seed,
        [c[0] for c in cases],
        grids,
        [c[1] for c in cases],
        [c[2] if len(c) > 2 else {} for c in cases],
    )


def generate_spec_case(spec: dict[str, Any]) -> tuple[PhantomCase, str]:
    """The phantom case of one spec of :func:`case_specs` (or a domain-randomised spec:
    ``{"seed": ..., "randomised": True}``), and its case id."""
    from breastai.phantom import generate_case
    from breastai.phantom.randomise import generate_randomised_case

    if spec.get("randomised"):
        grid = (spec["shape_zyx"], spec["spacing_zyx"]) if "shape_zyx" in spec else None
        case = generate_randomised_case(spec["seed"], grid=grid)
        return case, f"randomised-{case.meta['orientation']}-s{spec['seed']}"
    case = generate_case(
        spec["seed"],
        preset=spec["preset"],
        orientation=spec["orientation"],
        shape_zyx=spec["shape_zyx"],
        spacing_zyx=spec["spacing_zyx"],
        **spec.get("overrides", {}),
    )
    return case, f"{spec['preset']}-{spec['orientation']}-s{spec['seed']}"
