"""The tables report.py adds to the figures: explanation scores against the fakes' masks, and against the
blend masks of pseudo-fakes made from a split's real images."""
from fakedetect.analysis.common import evaluated_name, figure_prefix
from fakedetect.data.folders import LANDMARKS_FILE
from fakedetect.explain.grad_cam import grad_cam_explainer
from fakedetect.explain.saliency import saliency_explainer
from fakedetect.explain.scores import (BASELINES, explain_dataset, format_scores_table, self_blended_fakes,
                                       summarize_scores)
from fakedetect.io.files import write_json

EXPLAINERS = {"saliency": saliency_explainer, "Grad-CAM": grad_cam_explainer}


def explanation_table(results):
    """One row per explanation method, then the mask-only baselines (the same for every method)."""
    table = {name: summarize_scores(result["scores"], name)[name] for name, result in results.items()}
    baselines = summarize_scores(next(iter(results.values()))["scores"])
    return {**table, **{name: baselines[name] for name in BASELINES}}


def blend_mask_table(model, normalization, split, methods, args):
    """The explanation table of ``methods`` (EXPLAINERS names) on pseudo-fakes self-blended from the real
    images of ``split`` (``args.seed``) against their blend masks, printed and written; None, with a note,
    when the split has no landmarks."""
    landmarks_file = split.root_path / LANDMARKS_FILE
    if not landmarks_file.is_file():
        print(f"note: {landmarks_file} not found, so no pseudo-fakes to score against blend masks; build the "
              "dataset with build_faces_dataset.py --detector dlib, which writes it")
        return None
    fakes, masks = self_blended_fakes(split, args.seed)
    if not len(fakes):
        print(f"note: {landmarks_file} lists no real image of the split; blend-mask scores skipped")
        return None
    results = {name: explain_dataset(fakes, EXPLAINERS[name](model), normalization, args.device, args.batch_size,
                                     desc=f"{name} of pseudo-fakes", masks=masks) for name in methods}
    table = explanation_table(results)
    print(f"\nexplanations of {len(fakes)} pseudo-fakes self-blended from the real images of "
          f"{evaluated_name(args)}/{args.split} (--seed {args.seed}, true class) against their blend masks:")
    print(format_scores_table(table))
    write_json(f"{args.figures_dir}/{figure_prefix(args)}_blend_mask_scores.json", table)
    return table
