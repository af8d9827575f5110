"""The rules a resumed run must pass: the same model and the same settings, except those that say where
things are and how fast they run (``RESUME_MAY_DIFFER``); what the run's JSON notes of each resume; and how
a setting is named in the messages (its flag, from the recipe knobs).
"""
from fakedetect.config.recipe import KNOB_BY_NAME
from fakedetect.io.files import CheckpointError, load_checkpoint
from fakedetect.io.runs import NEW_RUN, RESUME_KEYS

# Config keys a resumed run may change: where things are and how fast they run, not what is trained.
# (The starting weights, --weights and --no-pretrained, are replaced by the checkpoint's; the normalization they
# chose is compared.)
RESUME_MAY_DIFFER = {"device", "workers", "no_cache", "cache_dir", "strict", "amp", "autocast", "channels_last",
                     "compile", "deterministic", "resume", "overwrite", "checkpoint_interval", "out_dir",
                     "checkpoint_dir", "data_root", "dataset", "dataset_path", "recipe_overrides", "weights",
                     "no_pretrained", "pretrained", "config", "tensorboard", "processes", "sync_bn"}


def setting_label(key):
    """How the user sets config ``key``, for messages (``weight_decay`` -> ``--weight-decay``)."""
    special = {"normalization_mean_std": "the input normalization (mean, std)",
               "data_digest": "data whose file names, labels, sizes and pixels digest to"}
    if key in special:
        return special[key]
    return KNOB_BY_NAME[key].flag if key in KNOB_BY_NAME else f"--{key.replace('_', '-')}"


def load_resume_state(run, config):
    """The last checkpoint of ``run`` to resume, checked against this run: the same model and every
    setting the same except those in RESUME_MAY_DIFFER. CheckpointError with the fix otherwise."""
    path = run.last_path
    state = load_checkpoint(path, required_keys=RESUME_KEYS, fix=NEW_RUN)
    if state["history"].get("model") != run.model:
        raise CheckpointError(f"{path}: holds a {state['history'].get('model')} run, not {run.model}; "
                              "resume with the same -m")
    saved_config = state["history"].get("config") or {}
    changed = [f"{setting_label(key)} {saved_config[key]} (now {config[key]})"
               for key in sorted(saved_config.keys() & config.keys() - RESUME_MAY_DIFFER)
               if saved_config[key] != config[key]]
    if changed:
        raise CheckpointError(f"{path}: holds a run with {', '.join(changed)}; resume with the run's own "
                              f"settings, or {NEW_RUN}")
    return state


def resume_record(history, config, epoch, versions):
    """What the JSON notes of a resume: after which epoch, the settings it was free to change and did
    (device, workers, ...), and the library versions it continued with."""
    first = history.get("config") or {}
    free = RESUME_MAY_DIFFER & config.keys() - {"resume", "overwrite"}
    changed = {key: config[key] for key in sorted(free) if first.get(key) != config[key]}
    return {"after_epoch": epoch, "changed": changed, "versions": versions}
