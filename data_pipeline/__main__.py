from core.cli import stage_main

VERBS = {
    "synth": ("data_pipeline.synth", "generate synthetic 2D/3D microstructures (seeded)"),
    "import": ("data_pipeline.importers", "import TIFF stacks, slice folders, 2D .tif folders, property CSVs"),
    "describe": ("data_pipeline.describe", "descriptors (porosity, S2, surface, pore sizes, percolation) and a summary PNG"),
    "build": ("data_pipeline.build", "synthesize/import, label (LBM), write a dataset; parallel with Ray, resumable"),
    "label": ("data_pipeline.label", "label a dataset folder in place (e.g. after import): porosity + LBM permeability"),
    "permeability": ("data_pipeline.permeability_cli", "LBM permeability tensor of one volume (--json)"),
}

if __name__ == "__main__":
    stage_main("data_pipeline", VERBS)
