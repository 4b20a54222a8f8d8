from core.cli import stage_main

VERBS = {
    "run": ("tuning.run_cli", "run a Ray Tune study of the pVAE or the surrogate (one MLflow run per trial)"),
    "resume": ("tuning.resume_cli", "resume an interrupted study from its folder (Tuner.restore)"),
    "ablate": ("tuning.ablation", "dataset-size ablation: sizes x seeds, table + PNG of test metrics"),
    "promote": ("tuning.promote", "register the best pVAE trial as MLflow model 'pvae' with alias 'champion'"),
}

if __name__ == "__main__":
    stage_main("tuning", VERBS)
