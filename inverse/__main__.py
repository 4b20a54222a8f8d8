from core.cli import stage_main

VERBS = {
    "design": ("inverse.design", "design microstructures for target porosity/permeability; verified by the LBM solver"),
    "calibrate": ("inverse.calibrate", "label delivered (decoded, binarized, cleaned) structures with the LBM: "
                                       "a dataset to train a decoder-aware surrogate"),
    "interpolate": ("inverse.interpolate", "slerp between two samples' latents; decode, predict (and verify) along the path"),
}

if __name__ == "__main__":
    stage_main("inverse", VERBS)
