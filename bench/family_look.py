"""Does a decoded structure look like its family? (issue 13): a family classifier as the yardstick.

The bench set is a mixture of generator families (blobs, overlapping spheres, non-overlapping
spheres, foams, crossed channels; ``samples.csv`` column ``family``). A gradient-boosted classifier
on each structure's morphology (porosity, specific surface, chord length, Euler density,
anisotropy, and the S2 curve over S2(0)) is fitted to training structures and scored on the test
split (its accuracy is the ceiling of every figure below). Then:

``model``: for the model's texture sources ("bank": the texture of the nearest stored training
code, ``PVAE.set_texture_bank``; "prior": the Gaussian prior field; with ``--diffusion`` also
"diffusion": a residual sampled from a learned texture prior, ``models.texture_diffusion``):
  * test codes: each test structure's latent mean decoded and binarized at its porosity; the share
    whose predicted family is the test structure's own ("family match"), and their specific surface
    over their sample's (median);
  * prior samples: global codes from the fitted mixture, binarized at the predicted porosity; the
    share of each predicted family against the training shares (total variation distance), and the
    morphology ratios against the training set;
  * a figure of mid-slices: test structures, then their codes decoded with each source.
``bank``: a copy of a checkpoint with a texture bank (what training with ``texture_bank: N``
stores, the same rows), for a model trained without one.
``critic``: can the adversarial term's critic (``models.layers.PatchDiscriminator``) tell the
training structures from their codes decoded with the prior texture at all? It is trained offline
on fixed pairs (640 training structures and their decodes, binarized at their porosity) and its
accuracy on 160 held-out pairs printed every 100 steps.
``variants``: how different the texture variants 1..5 of one code are, per texture source (median
pairwise minority-phase IoU at the best translation; share of pairs <= 0.5, i.e. distinct).
``slices``: a figure of mid-slices: each target's reference sample beside the candidates of one
or more design runs (HIT / miss, k error, specific surface ratio in the titles).
``designs``: of a design run's results.csv (bench/inverse.py ``--match-reference`` or ``inverse
design`` with reference samples), the share of verified candidates and of hits whose predicted
family is their reference sample's, per method.

    python bench/family_look.py bank runs/bench32/pvae14sp/best runs/bench32/data runs/exp16/pvae14sp_bank/best
    python bench/family_look.py model runs/exp16/pvae14sp_bank/best runs/bench32/data --out runs/exp16/family
    python bench/family_look.py designs runs/exp16/dev_model/design/dev/seed0 runs/bench32/data
    python bench/family_look.py variants runs/exp21/tdiff3d runs/bench32/data
    python bench/family_look.py slices runs/exp22/dev_slices.png runs/bench32/data runs/exp22/dev_{prior,diffusion}/design/dev/seed0
    python bench/family_look.py critic runs/bench32/pvae14sp/best runs/bench32/data --lr 1e-3 [--no-sn]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def features(vols) -> np.ndarray:
    """(n, *shape) bool -> (n, F): the scalar descriptors and the S2 curve over S2(0)."""
    from data_pipeline import morphology as mo

    rows = []
    for v in vols:
        m = mo.morphology(np.asarray(v, dtype=bool))
        rows.append(np.concatenate([[m[k] for k in mo.SCALARS], m["s2"] / max(m["s2"][0], 1e-9)]))
    return np.array(rows)


def family_classifier(dataset: str, ids_train: list[str], n: int = 800, seed: int = 0):
    """Fit the classifier on up to ``n`` seeded training structures; returns (classifier, families by id)."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    from data_pipeline.io import read_volume

    fam = pd.read_csv(Path(dataset) / "samples.csv").set_index("sample_id")["family"]
    pick = sorted(np.random.default_rng(seed).choice(len(ids_train), min(n, len(ids_train)), replace=False))
    ids = [ids_train[i] for i in pick]
    x = features([read_volume(Path(dataset) / "volumes" / f"{i}.tif") for i in ids])
    return HistGradientBoostingClassifier(max_iter=300, random_state=seed).fit(x, fam.loc[ids].values), fam


def model_report(checkpoint: str, dataset: str, out: str | None, n_prior: int = 128, seed: int = 0,
                 diffusion: str | None = None) -> dict:
    import torch

    from data_pipeline import morphology as mo
    from data_pipeline.dataset import VoxelDataset
    from models.binarize import binarize_at
    from models.checkpoint import load_model
    from models.evaluate import code_porosity

    model, cfg, norm = load_model(checkpoint)
    fr = tuple(cfg.split_fractions)
    train = VoxelDataset(dataset, "train", cfg.properties, fractions=fr, split_seed=cfg.split_seed,
                         dataset_size=cfg.dataset_size, subset_seed=cfg.seed)
    test = VoxelDataset(dataset, "test", cfg.properties, fractions=fr, split_seed=cfg.split_seed)
    clf, fam = family_classifier(dataset, list(train.ids), seed=seed)
    x_test = np.asarray(test.volumes()).astype(bool)  # (N, *shape)
    y_test = fam.loc[list(test.ids)].values
    acc = float((clf.predict(features(x_test)) == y_test).mean())
    share_train = {c: float(np.mean(fam.loc[list(train.ids)].values == c)) for c in clf.classes_}
    report = {"classifier_test_accuracy": acc, "train_shares": share_train, "sources": {}}
    print(f"family classifier: test accuracy {acc:.3f} ({len(x_test)} structures; the ceiling of the family match)")
    porosity_of = code_porosity(norm, cfg.properties)
    xt = torch.from_numpy(x_test.astype(np.float32)).unsqueeze(1)
    with torch.no_grad():
        mu = torch.cat([model.encode(xt[s:s + 64])[0] for s in range(0, len(xt), 64)])  # (N, L)
        z_prior = model.sample_prior(n_prior, generator=torch.Generator().manual_seed(seed))  # (n, L)
    phi_test = torch.from_numpy(x_test.reshape(len(x_test), -1).mean(1))
    ref = mo.describe_set(np.asarray(train.volumes()[:256]).astype(bool))
    ss_test = np.array([mo.morphology(v)["specific_surface"] for v in x_test])
    sources = ["bank", "prior"] if len(model.bank_codes) else ["prior"]
    diff = model.texture_diffusion  # a learned texture prior stored in the checkpoint, or None
    if diffusion:  # ... or one from another folder (models.texture_diffusion): one sampled residual per code
        from models.texture_diffusion import load_texture_diffusion

        diff = load_texture_diffusion(diffusion)
    if diff is not None:
        sources.append("diffusion")
    slices = {}
    for src in sources:
        model.texture_source = src if src != "diffusion" else "prior"
        with torch.no_grad():
            if src == "diffusion":
                r_test = diff.sample(mu, generator=torch.Generator().manual_seed(seed))
                p_test = torch.cat([torch.sigmoid(model.decode(mu[s:s + 64], noise=r_test[s:s + 64],
                                                               texture="residual"))[:, 0]
                                    for s in range(0, len(mu), 64)])
                r_prior = diff.sample(z_prior, generator=torch.Generator().manual_seed(seed + 1))
                p_prior = torch.sigmoid(model.decode(z_prior, noise=r_prior, texture="residual"))[:, 0]
            else:
                p_test = torch.cat([torch.sigmoid(model.decode(mu[s:s + 64]))[:, 0] for s in range(0, len(mu), 64)])
                # one independent noise field per prior sample (as models.evaluate draws them); with
                # the bank, the texture of the nearest stored code
                p_prior = torch.sigmoid(model.decode(z_prior, noise=torch.Generator().manual_seed(seed + 1)))[:, 0]
            phi_prior = porosity_of(model.predict_properties(z_prior))
        b_test = binarize_at(p_test, phi_test).numpy()
        b_prior = binarize_at(p_prior, phi_prior).numpy()
        match = float((clf.predict(features(b_test)) == y_test).mean())
        ss = np.array([mo.morphology(v)["specific_surface"] for v in b_test])
        pred_prior = clf.predict(features(b_prior))
        shares = {c: float(np.mean(pred_prior == c)) for c in clf.classes_}
        tv = 0.5 * sum(abs(shares[c] - share_train[c]) for c in clf.classes_)
        cmp = mo.compare_sets(mo.describe_set(b_prior), ref)
        rec = {"test_family_match": match, "test_ss_ratio_median": float(np.median(ss / np.maximum(ss_test, 1e-9))),
               "prior_shares": shares, "prior_share_tv": tv,
               **{f"prior_{k}": cmp[k] for k in ("specific_surface_ratio", "euler_density_ratio",
                                                 "chord_length_ratio", "s2_nearest_median")}}
        report["sources"][src] = rec
        slices[src] = b_test[:8]
        print(f"{src:5s}: test codes family match {match:.3f}, specific surface / sample's {rec['test_ss_ratio_median']:.2f}x; "
              f"prior samples: family shares TV {tv:.2f} "
              f"({', '.join(f'{c} {shares[c]:.2f}/{share_train[c]:.2f}' for c in clf.classes_)}; generated/training), "
              f"specific surface {cmp['specific_surface_ratio']:.2f}x, Euler density {cmp['euler_density_ratio']:.2f}x, "
              f"chord {cmp['chord_length_ratio']:.2f}x, S2 nearest {cmp['s2_nearest_median']:.4f}")
    model.texture_source = "prior"  # the model's default again
    if out:
        _figure(Path(out), x_test[:8], [fam_ for fam_ in y_test[:8]], slices)
    return report


def _figure(out: Path, originals, families, slices: dict) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("test structure", originals)] + [(f"its code, {k} texture", v) for k, v in slices.items()]
    fig, axes = plt.subplots(len(rows), len(originals), figsize=(2 * len(originals), 2.1 * len(rows)))
    for r, (name, ims) in enumerate(rows):
        for j, im in enumerate(ims):
            ax = axes[r, j]
            ax.imshow(im[im.shape[0] // 2] if im.ndim == 3 else im, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(families[j], fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("mid-slices (white = pore): test structures and their latent means decoded", fontsize=9)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "family_look.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    print(f"figure: {path}")
    return path


def add_bank(checkpoint: str, dataset: str, out: str, size: int = 256) -> None:
    """Write ``out``: ``checkpoint`` with a texture bank of ``size`` training structures (the rows
    :meth:`models.pvae.PVAE.bank_rows` picks in training) and ``texture_bank`` set in its config."""
    import torch

    from data_pipeline.dataset import VoxelDataset
    from models.checkpoint import load_model, read_metrics, write_checkpoint

    model, cfg, norm = load_model(checkpoint)
    train = VoxelDataset(dataset, "train", cfg.properties, fractions=tuple(cfg.split_fractions),
                         split_seed=cfg.split_seed, dataset_size=cfg.dataset_size, subset_seed=cfg.seed)
    rows = model.bank_rows(len(train), size, cfg.seed).numpy()
    x = torch.from_numpy(np.asarray(train.volumes()[rows], dtype=np.float32)).unsqueeze(1)  # (K, 1, *shape)
    with torch.no_grad():
        parts = [model.texture_residuals(x[s:s + 64]) for s in range(0, len(x), 64)]
    model.set_texture_bank(torch.cat([c for c, _ in parts]), torch.cat([r for _, r in parts]))
    cfg.texture_bank = int(size)
    write_checkpoint(out, model, cfg, norm, read_metrics(checkpoint))
    print(f"{out}: {checkpoint} with a texture bank of {len(rows)} training structures")


def designs_report(design_dir: str, dataset: str, reference_dataset: str | None = None, seed: int = 0) -> dict:
    import pandas as pd

    from data_pipeline.dataset import split_ids
    from data_pipeline.io import read_volume

    res = pd.read_csv(Path(design_dir) / "results.csv")
    ref_col = "reference" if "reference" in res else None
    if ref_col is None:
        raise SystemExit(f"{design_dir}/results.csv: no 'reference' column (designs without reference samples)")
    res = res[res[ref_col].notna() & (res[ref_col].astype(str) != "")]
    ids = pd.read_csv(Path(dataset) / "samples.csv")["sample_id"].tolist()
    clf, fam = family_classifier(dataset, split_ids(ids)["train"], seed=seed)
    ref_fam = pd.read_csv(Path(reference_dataset or dataset) / "samples.csv").set_index("sample_id")["family"]
    ims = [read_volume(Path(design_dir) / p) for p in res["tif"]]
    res = res.assign(family_pred=clf.predict(features(ims)), family_ref=ref_fam.loc[res[ref_col]].values)
    res["family_match"] = res["family_pred"] == res["family_ref"]
    out = {}
    for method, g in res.groupby("method"):
        hits = g[g["hit"].astype(bool)]
        out[method] = {"candidates": len(g), "match": float(g["family_match"].mean()),
                       "hits": len(hits), "hit_match": float(hits["family_match"].mean()) if len(hits) else float("nan")}
        print(f"{method}: {len(g)} candidates, family = reference's {out[method]['match']:.2f}; "
              f"{len(hits)} hits, family = reference's {out[method]['hit_match']:.2f}")
    return out


def variant_diversity(checkpoint: str, dataset: str, n_codes: int = 8, n_variants: int = 5) -> dict:
    """How different are the texture variants of one code? For ``n_codes`` test codes (latent means of
    test structures spread over the split), variants 1..n_variants of each texture source the model
    has ("prior"; "diffusion" when a learned texture prior is attached) are binarized at the porosity
    of the code's own decode (variant 0); printed: the median pairwise minority-phase IoU at the best
    periodic translation (inverse.evaluation.phase_iou, the distinct-hit measure) and the share of
    pairs <= 0.5 (distinct)."""
    import torch

    from data_pipeline.dataset import VoxelDataset
    from inverse.delivered import decode_probabilities
    from inverse.evaluation import phase_iou
    from models.binarize import binarize_at
    from models.checkpoint import load_model

    model, cfg, _ = load_model(checkpoint)
    test = VoxelDataset(dataset, "test", cfg.properties, fractions=tuple(cfg.split_fractions),
                        split_seed=cfg.split_seed)
    x = np.asarray(test.volumes()).astype(np.float32)[:: max(1, len(test) // n_codes)][:n_codes]  # (n, *shape)
    with torch.no_grad():
        mu = model.encode(torch.from_numpy(x).unsqueeze(1))[0].numpy()  # (n, L)
    sources = ["prior"] + (["diffusion"] if model.texture_diffusion is not None else [])
    out = {}
    for tex in sources:
        pairs = []
        for z in mu:
            phi = float((decode_probabilities(model, z[None], 0) > 0.5).mean())  # variant 0's porosity
            probs = np.concatenate([decode_probabilities(model, z[None], k, texture=None if tex == "prior" else tex)
                                    for k in range(1, n_variants + 1)])  # (n_variants, *shape)
            ims = list(binarize_at(torch.from_numpy(probs), phi).numpy())
            pairs += [phase_iou(ims[i], ims[j], shifts=True) for i in range(len(ims)) for j in range(i + 1, len(ims))]
        pairs = np.asarray(pairs)
        out[tex] = {"median_iou": float(np.median(pairs)), "distinct_share": float(np.mean(pairs <= 0.5))}
        print(f"{tex}: {len(mu)} codes x {n_variants} variants: pairwise shift-IoU median "
              f"{out[tex]['median_iou']:.3f}, pairs <= 0.5: {out[tex]['distinct_share']:.2f}")
    return out


def design_slices(out: str, design_dirs: list[str], dataset: str, n_targets: int = 6, method: str = "bo") -> Path:
    """Mid-slices (last axis) of the reference sample of the first ``n_targets`` targets with one,
    then each run's candidates of ``method`` for that target, titled with the texture / noise seed,
    HIT or miss, the k_xx error and the specific surface over the sample's; one row per target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from data_pipeline.io import read_volume

    runs = {d: pd.read_csv(Path(d) / "results.csv") for d in design_dirs}
    # a bench run's folder <out>/design/<set>/seed<n> is named by <out>
    def label(d: str) -> str:
        parts = Path(d).resolve().parts
        return parts[-4] if len(parts) >= 4 and parts[-3] == "design" else parts[-1]

    labels = {d: label(d) for d in design_dirs}
    first = next(iter(runs.values()))
    tids = [t for t in first.loc[first["reference"].notna(), "target_id"].unique()][:n_targets]
    groups = {d: {t: g[g["method"] == method].sort_values("candidate") for t, g in r.groupby("target_id")}
              for d, r in runs.items()}
    n_cols = 1 + sum(max(len(g.get(t, [])) for t in tids) for g in groups.values())
    fig, axes = plt.subplots(len(tids), n_cols, figsize=(2 * n_cols, 2.1 * len(tids)), squeeze=False)
    for r, tid in enumerate(tids):
        ref = first.loc[first["target_id"] == tid, "reference"].iloc[0]
        vol = read_volume(next((Path(dataset) / "volumes").glob(f"{ref}.*")))
        axes[r, 0].imshow(vol[..., vol.shape[-1] // 2], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(f"{tid}: sample {ref}", fontsize=7)
        c = 1
        for d, g in groups.items():
            for _, row in g.get(tid, pd.DataFrame()).iterrows():
                im = read_volume(Path(d) / row["tif"])
                axes[r, c].imshow(im[..., im.shape[-1] // 2], cmap="gray", vmin=0, vmax=1)
                axes[r, c].set_title(f"{labels[d]}\n{row['texture']}/"
                                     f"{int(row['noise_seed'])} {'HIT' if row['hit'] else 'miss'}, k {row['err_k_xx']:+.0%}, "
                                     f"ss {row['ss_ratio_ref']:.2f}x", fontsize=7)
                c += 1
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("mid-slices, pore white: the target's sample, then each run's candidates\n"
                 "(texture/noise seed; k: verified k_xx error; ss: specific surface / the sample's)", fontsize=9)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"wrote {out}")
    return Path(out)


def critic_probe(checkpoint: str, dataset: str, steps: int = 600, lr: float = 1e-3, spectral_norm: bool = True,
                 n_train: int = 640, n_test: int = 160, batch: int = 32, seed: int = 0) -> list[dict]:
    """Train a fresh PatchDiscriminator (the model's channels) on training structures (real) against
    their latent means decoded with the prior texture and binarized at their porosity (generated);
    returns the held-out accuracy (mean patch logit > 0 for real, < 0 for generated) every 100 steps."""
    import torch
    import torch.nn.functional as F

    from data_pipeline.dataset import VoxelDataset
    from models.binarize import binarize_at
    from models.checkpoint import load_model
    from models.layers import PatchDiscriminator

    torch.manual_seed(seed)
    model, cfg, _ = load_model(checkpoint)
    model.eval()
    train = VoxelDataset(dataset, "train", cfg.properties, fractions=tuple(cfg.split_fractions),
                         split_seed=cfg.split_seed)
    n = min(len(train), n_train + n_test)
    x = torch.from_numpy(np.asarray(train.volumes()[:n]).astype(np.float32)).unsqueeze(1)  # (n, 1, *shape)
    with torch.no_grad():
        mu = torch.cat([model.encode(x[s:s + 64])[0] for s in range(0, n, 64)])  # (n, L)
        g = torch.Generator().manual_seed(seed + 1)
        p = torch.cat([torch.sigmoid(model.decode(mu[s:s + 64], noise=g))[:, 0] for s in range(0, n, 64)])
    fake = binarize_at(p, x.flatten(1).mean(1)).float().unsqueeze(1)  # (n, 1, *shape)
    disc = PatchDiscriminator(cfg.dims, cfg.channels, cfg.kernel_size)
    if not spectral_norm:
        for mod in disc.modules():
            if hasattr(mod, "parametrizations"):
                torch.nn.utils.parametrize.remove_parametrizations(mod, "weight")
    opt = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.9))  # as the trainer's critic
    rng = np.random.default_rng(seed)
    n_fit = n - n_test
    out = []
    for step in range(1, steps + 1):
        idx = rng.choice(n_fit, batch, replace=False)
        loss = F.softplus(-disc(x[idx])).mean() + F.softplus(disc(fake[idx])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            with torch.no_grad():
                real_ok = (disc(x[n_fit:]).flatten(1).mean(1) > 0).float().mean()
                fake_ok = (disc(fake[n_fit:]).flatten(1).mean(1) < 0).float().mean()
            out.append({"step": step, "held_out_accuracy": float((real_ok + fake_ok) / 2), "loss": loss.item()})
            print(f"step {step}: critic loss {loss.item():.3f} (chance {2 * np.log(2):.3f}), "
                  f"held-out accuracy {out[-1]['held_out_accuracy']:.2f}", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("model")
    m.add_argument("checkpoint"), m.add_argument("dataset"), m.add_argument("--out")
    m.add_argument("--n-prior", type=int, default=128), m.add_argument("--seed", type=int, default=0)
    m.add_argument("--diffusion", help="a learned texture prior's folder (bench/texture_diffusion.py fit; "
                                       "default: the one stored in the checkpoint, if any)")
    b = sub.add_parser("bank")
    b.add_argument("checkpoint"), b.add_argument("dataset"), b.add_argument("out")
    b.add_argument("--size", type=int, default=256)
    d = sub.add_parser("designs")
    d.add_argument("design_dir"), d.add_argument("dataset"), d.add_argument("--reference-dataset")
    d.add_argument("--seed", type=int, default=0)
    v = sub.add_parser("variants")
    v.add_argument("checkpoint"), v.add_argument("dataset")
    v.add_argument("--codes", type=int, default=8), v.add_argument("--variants", type=int, default=5)
    f = sub.add_parser("slices")
    f.add_argument("out", help="the figure (.png)"), f.add_argument("dataset")
    f.add_argument("design_dirs", nargs="+", help="design folders with results.csv (reference column)")
    f.add_argument("--targets", type=int, default=6), f.add_argument("--method", default="bo")
    c = sub.add_parser("critic")
    c.add_argument("checkpoint"), c.add_argument("dataset")
    c.add_argument("--steps", type=int, default=600), c.add_argument("--lr", type=float, default=1e-3)
    c.add_argument("--no-sn", action="store_true", help="without spectral normalization")
    c.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.cmd == "bank":
        add_bank(args.checkpoint, args.dataset, args.out, args.size)
    elif args.cmd == "model":
        model_report(args.checkpoint, args.dataset, args.out, args.n_prior, args.seed, args.diffusion)
    elif args.cmd == "variants":
        variant_diversity(args.checkpoint, args.dataset, args.codes, args.variants)
    elif args.cmd == "slices":
        design_slices(args.out, args.design_dirs, args.dataset, args.targets, args.method)
    elif args.cmd == "critic":
        critic_probe(args.checkpoint, args.dataset, args.steps, args.lr, not args.no_sn, seed=args.seed)
    else:
        designs_report(args.design_dir, args.dataset, args.reference_dataset, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
