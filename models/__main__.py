from core.cli import stage_main

VERBS = {
    "train": ("models.train", "train a pVAE on a dataset folder (best/last checkpoints, test evaluation, figures)"),
    "evaluate": ("models.evaluate", "metrics (reconstruction, properties, generation) and PNG figures of a checkpoint"),
    "latent": ("models.latent", "export latent means with sample ids as CSV"),
    "surrogate": ("models.surrogate", "multiscale CNN permeability surrogate: train | evaluate | predict"),
    "toy": ("models.toy_cli", "write a small toy dataset (Kozeny-Carman proxy labels) for smoke runs"),
}

if __name__ == "__main__":
    stage_main("models", VERBS)
