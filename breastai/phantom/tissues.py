"""Phantom tissue tables: label values, relaxation and kinetic parameters, signal classes.

Label values follow phantom-spec.md §7.1; T1 and proton density §4.2; extended Tofts parameters
per kinetic class §4.7. ``TissueClasses`` numbers the relaxation/kinetic classes that index the
signal look-up table of :mod:`breastai.phantom.signal`.
"""

from __future__ import annotations

from breastai.errors import ParameterError

__all__ = [
    "AIR", "BLOOD", "BONE", "BPE_FRACTION", "BPE_KTRANS", "BVESSEL", "FAT", "FGT", "IMPLANT",
    "KINETICS", "LESION0", "LIVER", "LUNG", "MUSCLE", "MYO", "NECROSIS", "NIPPLE", "NODE", "PD",
    "SKIN", "T1_MS", "TISSUE_LABELS", "VESSEL", "TissueClasses",
]  # fmt: skip

# tissue label values (phantom-spec.md §7.1)
AIR, SKIN, FAT, FGT, MUSCLE, BONE, LUNG, BLOOD, MYO, VESSEL, BVESSEL, NIPPLE, NODE, IMPLANT = (
    0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14,
)  # fmt: skip
LIVER, LESION0, NECROSIS = 15, 20, 40
TISSUE_LABELS = {
    "air": AIR, "skin": SKIN, "fat": FAT, "fgt": FGT, "muscle": MUSCLE, "bone": BONE,
    "lung": LUNG, "blood_pool": BLOOD, "myocardium": MYO, "great_vessel": VESSEL,
    "breast_vessel": BVESSEL, "nipple": NIPPLE, "lymph_node": NODE, "implant": IMPLANT,
    "liver": LIVER, "lesion_1": LESION0 + 1, "necrosis": NECROSIS,
}  # fmt: skip

# T1 (ms) at 1.5 T / 3 T, relative proton density (phantom-spec.md §4.2)
T1_MS = {
    "fat": (296.0, 367.0), "fgt": (1266.0, 1445.0), "malignant": (1200.0, 1500.0),
    "benign": (1150.0, 1400.0), "muscle": (1008.0, 1412.0), "myocardium": (1030.0, 1471.0),
    "blood": (1441.0, 1932.0), "skin": (850.0, 850.0), "liver": (602.0, 752.0),
    "necrosis": (1600.0, 1900.0), "node": (1100.0, 1400.0), "silicone": (1000.0, 1300.0),
    "lung": (1200.0, 1400.0),
}  # fmt: skip
PD = {
    "fat": 1.0, "fgt": 0.85, "malignant": 0.85, "benign": 0.85, "muscle": 0.8, "myocardium": 0.8,
    "blood": 0.9, "skin": 0.7, "liver": 0.75, "necrosis": 0.9, "node": 0.8, "silicone": 0.9,
    "lung": 0.07,
}  # fmt: skip
# extended Tofts (Ktrans /min, ve, vp, delay s) per kinetic class (phantom-spec.md §4.7)
KINETICS = {
    "washout": (0.5, 0.3, 0.05, 3.0), "plateau": (0.17, 0.55, 0.03, 5.0),
    "persistent": (0.05, 0.65, 0.01, 8.0), "muscle": (0.03, 0.10, 0.02, 5.0),
    "skin": (0.013, 0.3, 0.01, 5.0), "myocardium": (0.6, 0.25, 0.10, 0.0),
    "liver": (0.5, 0.25, 0.10, 10.0), "node": (0.3, 0.3, 0.05, 5.0),
    "fgt": (0.003, 0.3, 0.003, 15.0), "none": (0.0, 0.3, 0.0, 0.0),
}  # fmt: skip

# background parenchymal enhancement: Ktrans (/min) and enhancing fraction of the FGT per level
BPE_KTRANS = {"minimal": 0.005, "mild": 0.015, "moderate": 0.035, "marked": 0.08}
BPE_FRACTION = {"minimal": 0.15, "mild": 0.35, "moderate": 0.6, "marked": 0.85}


class TissueClasses:
    """Kinetic/relaxation classes: row c of the signal LUT."""

    def __init__(self) -> None:
        self.names: list[str] = ["none"]
        self.t1: list[float] = [1000.0]
        self.pd: list[float] = [0.0]
        self.kin: list[tuple[str, tuple[float, float, float, float]]] = [("none", KINETICS["none"])]

    def add(
        self,
        name: str,
        t1: float,
        pd: float,
        kind: str,
        kin: tuple[float, float, float, float] = KINETICS["none"],
    ) -> int:
        self.names.append(name)
        self.t1.append(t1)
        self.pd.append(pd)
        self.kin.append((kind, kin))
        if len(self.names) > 250:
            raise ParameterError("too many tissue classes in one phantom (more than 250 lesions?)")
        return len(self.names) - 1
