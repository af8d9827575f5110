"""Training recipes: every recipe knob declared once, with the values each may take.

A knob (``Knob``) is one line of ``KNOBS``: its name, type, allowed range, help and its value
in both recipes. train_main.py's recipe flags (cli.common.add_recipe_arguments), their range checks,
the ``Recipe`` the trainer receives and the README's recipe table (``python -m fakedetect.config.recipe``
prints it) all come from there. What the knobs build (the optimizer, the learning-rate schedule, class
weights, the input normalization) is in fakedetect.train.

``--recipe course`` is the course's recipe exactly (CIFAR-10 normalization, RandomCrop(256,
padding=4) + flip, Adam lr 1e-3, batch 32, cross-entropy, constant learning rate).
``--recipe improved`` is the default; see the README for why each value.
"""
import dataclasses
import math
from dataclasses import dataclass

IMAGE_SIZE = 256  # the side every image is decoded to (data.images) and trained at; --crop-size's bound
CROP_MODES = ("pad", "native", "resized", "none")  # data.augment implements them
MIN_CROP_SIZE = 32  # --crop native windows: a deep CNN's output stride, and wider than the blur kernel
MASK_MODES = ("hull", "ellipse", "hull-or-ellipse")  # data.self_blend draws them
MASK_TARGETS = ("blend", "boundary")
NORMALIZATIONS = ("auto", "dataset", "symmetric", "model", "cifar10")
OPTIMIZERS = ("SGD", "Adam", "AdamW")
SCHEDULES = ("constant", "cosine")
CLASS_BALANCE = ("none", "sampler", "weights")
SELECTION_METRICS = ("val_acc", "val_auc")
DEFAULT_RECIPE = "improved"
RECIPE_NAMES = ("improved", "course")


@dataclass(frozen=True)
class Knob:
    """One recipe setting: config key ``name`` (flag ``--name`` with dashes, plus ``aliases``),
    its value in each recipe, and what it may be: ``choices``, or a number in ``low``..``high``
    (``None`` = unbounded; ``low_open``/``high_open`` exclude the bound)."""
    name: str
    help: str
    course: object
    improved: object
    choices: tuple = None
    low: float = None
    high: float = None
    low_open: bool = False
    high_open: bool = False
    aliases: tuple = ()

    @property
    def type(self):
        return type(self.improved)

    @property
    def flag(self):
        return f"--{self.name.replace('_', '-')}"

    def value_in(self, recipe):
        return {"course": self.course, "improved": self.improved}[recipe]

    def problem(self, value):
        """Why ``value`` is not allowed (one phrase), or None."""
        if self.choices is not None or self.type is bool:
            return None  # argparse checks choices and booleans
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if math.isfinite(value) and not too_low and not too_high:
            return None
        if self.type is int:
            return f"in {self.low}..{self.high}" if self.high is not None else f">= {self.low}"
        if self.high is None:
            return f"> {self.low:g}" if self.low_open else f"a finite number >= {self.low:g}"
        return f"in [{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


KNOBS = (
    Knob("optimizer", "optimizer", "Adam", "AdamW", choices=OPTIMIZERS, aliases=("-o",)),
    Knob("lr", "peak learning rate", 1e-3, 5e-4, low=0.0, low_open=True),
    Knob("momentum", "SGD momentum (SGD only)", 0.9, 0.9, low=0.0, high=1.0, high_open=True),
    Knob("weight_decay", "AdamW's decoupled weight decay (AdamW only)", 0.0, 0.05, low=0.0),
    Knob("schedule", "learning rate after warm-up: constant, or cosine decay to 0 at the last epoch, stepped "
         "every iteration", "constant", "cosine", choices=SCHEDULES),
    Knob("warmup_epochs", "epochs of linear learning-rate warm-up", 0.0, 1.0, low=0.0),
    Knob("batch_size", "batch size", 32, 32, low=1, aliases=("-b", "--batch_size")),
    Knob("epochs", "epochs at most", 2, 10, low=1, aliases=("-e",)),
    Knob("label_smoothing", "cross-entropy label smoothing", 0.0, 0.1, low=0.0, high=0.99),
    Knob("class_balance", "sampler: draw both classes equally often; weights: weight the loss by inverse class "
         "frequency; none", "none", "weights", choices=CLASS_BALANCE),
    Knob("patience", "stop after this many epochs without a better --selection-metric; 0 = never", 0, 4, low=0),
    Knob("clip_grad_norm", "clip the global gradient norm to this; 0 = off", 0.0, 1.0, low=0.0),
    Knob("normalization", "input mean/std: dataset = training split's statistics, symmetric = [-1, 1], model = "
         "the pretrained backbone's own, cifar10 = the course's constants, auto = model with pretrained weights, "
         "else dataset", "cifar10", "auto", choices=NORMALIZATIONS),
    Knob("selection_metric", "validation metric that picks the best checkpoint and drives --patience",
         "val_acc", "val_auc", choices=SELECTION_METRICS),
    Knob("crop", "training crop: pad = RandomCrop(256, padding=4); native = a random --crop-size window at native "
         "resolution, evaluation on the whole image (not SimpleNet); resized = RandomResizedCrop(256) of "
         "--crop-scale to all of the area; none", "pad", "pad", choices=CROP_MODES),
    Knob("crop_size", "window side of --crop native", 224, 224, low=MIN_CROP_SIZE, high=IMAGE_SIZE),
    Knob("crop_scale", "smallest window area of --crop resized, as a fraction of the image", 0.25, 0.25,
         low=0.01, high=1),
    Knob("flip", "random horizontal flip", True, True),
    Knob("jitter", "colour jitter: brightness, contrast, saturation factors in [1-J, 1+J]; 0 = off", 0.0, 0.0,
         low=0.0, high=0.99),
    Knob("blur_prob", "probability of a Gaussian blur, sigma in [0, 3]", 0.0, 0.0, low=0.0, high=1),
    Knob("jpeg_prob", "probability of JPEG re-compression, quality in 30..100 (on the CPU)", 0.0, 0.0,
         low=0.0, high=1),
    Knob("erase_prob", "probability of random erasing: a rectangle of 2% to 1/3 of the image filled with one "
         "random colour", 0.0, 0.0, low=0.0, high=1),
    Knob("mixup", "mixup alpha: train on pairs of images blended with a Beta(alpha, alpha) weight and their "
         "labels blended alike; 0 = off", 0.0, 0.0, low=0.0),
    Knob("drop_path", "stochastic depth rate of timm and patch models (timm's drop_path_rate); 0 = off", 0.0, 0.0,
         low=0.0, high=0.99),
    Knob("ema", "evaluate and checkpoint an exponential moving average of the weights with this decay (e.g. "
         "0.999), warmed up over the first steps; 0 = off", 0.0, 0.0, low=0.0, high=0.99999),
    Knob("self_blend", "probability that a real training image becomes a self-blended pseudo-fake (itself changed "
         "in colour, sharpness and position, blended back through a face mask: Self-Blended Images); 0 = off",
         0.0, 0.0, low=0.0, high=1),
    Knob("self_blend_mask", "mask of --self-blend: hull = the convex hull of the image's landmarks (landmarks.json; "
         "images without stay real), ellipse = an ellipse about the crop's centre, hull-or-ellipse = the hull where "
         "there are landmarks, else the ellipse", "hull-or-ellipse", "hull-or-ellipse", choices=MASK_MODES),
    Knob("self_blend_pairs", "each real training image that --self-blend picks keeps its place and its pseudo-fake "
         "joins the same batch beside it (as the SBI paper builds batches; a step then draws half of --batch-size); "
         "on by default under --real-only", False, False),
    Knob("mask_loss", "weight of the manipulation-mask loss: the mask head of SeamNet models learns where each "
         "image is manipulated (pseudo-fakes' blend masks, a dataset's masks/; none for real images); 0 = off",
         0.0, 0.0, low=0.0),
    Knob("mask_target", "what --mask-loss predicts: blend = the blend mask M, boundary = Face X-ray's blending "
         "boundary 4M(1-M)", "blend", "blend", choices=MASK_TARGETS),
)
KNOB_BY_NAME = {knob.name: knob for knob in KNOBS}
RECIPES = {recipe: {knob.name: knob.value_in(recipe) for knob in KNOBS} for recipe in RECIPE_NAMES}

# The values a run trains with: one field per knob, set from a recipe and the flags that override it.
Recipe = dataclasses.make_dataclass(
    "Recipe", [(knob.name, knob.type, dataclasses.field(default=knob.improved)) for knob in KNOBS], frozen=True)


def recipe_named(name, **overrides):
    """The ``Recipe`` of recipe ``name`` ("improved" or "course") with ``overrides``."""
    return Recipe(**{**RECIPES[name], **overrides})


def apply_recipe(args, error):
    """Fill the unset knob flags from ``args.recipe``, check every value's range, and return the
    ``Recipe``; ``error(message)`` (the parser's) for a value out of range.
    ``args.recipe_overrides`` lists the knobs the command line set."""
    args.recipe_overrides = [knob.name for knob in KNOBS if getattr(args, knob.name) is not None]
    for knob in KNOBS:
        if getattr(args, knob.name) is None:
            setattr(args, knob.name, knob.value_in(args.recipe))
        problem = knob.problem(getattr(args, knob.name))
        if problem:
            error(f"{knob.flag} must be {problem} (got {getattr(args, knob.name)})")
    return Recipe(**{knob.name: getattr(args, knob.name) for knob in KNOBS})


def knob_table():
    """The README's table of recipe knobs, in Markdown (a test keeps the README's copy equal)."""
    lines = ["| flag | improved | course | allowed | what |", "|---|---|---|---|---|"]
    for knob in KNOBS:
        flags = ", ".join(f"`{flag}`" for flag in (knob.flag, *knob.aliases))
        if knob.choices:
            allowed = " / ".join(knob.choices)
        elif knob.type is bool:
            allowed = f"`--no-{knob.flag[2:]}` turns it off"
        else:
            low = "" if knob.low is None else f"{'>' if knob.low_open else '>='} {knob.low:g}"
            high = "" if knob.high is None else f"{'<' if knob.high_open else '<='} {knob.high:g}"
            allowed = ", ".join(part for part in (low, high) if part)
        lines.append(f"| {flags} | {knob.improved} | {knob.course} | {allowed} | {knob.help} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(knob_table())
