"""Run configs as files: ``train_main.py --config FILE`` reads one, and every run writes its own.

A config file is a YAML mapping of train_main.py's settings by their config names (``lr``,
``batch_size``, ``model``, ...; the keys of a run JSON's ``config``), or a run's JSON itself
(its ``config`` is read). Its values become the parser's defaults, so flags on the command line
override them (timm's ``--config``); every run writes its full config as ``out/{run}.yaml``,
and ``--config out/{run}.yaml`` trains the same run again. A file that lists every recipe knob
(as a run's own does) fixes them all, so ``--recipe`` then changes none of them; a hand-written
file may list a few. Here: reading and writing them; train_main.py's parser turns a file's settings into
its defaults (cli.train.config_defaults).
"""
from pathlib import Path

from fakedetect.io.files import atomic_write

# Config keys a file never sets: what the run derived (the data's digest, the normalization it chose, the
# precision the device gave, the recipe flags given, the processes torchrun started), and what one invocation
# asks of its run's files.
NOT_RESTORED = {"dataset_path", "recipe_overrides", "data_digest", "normalization_mean_std", "autocast",
                "channels_last", "processes", "resume", "overwrite", "config"}


class ConfigError(ValueError):
    """A config file that cannot be read or holds a setting train_main.py does not have."""


def read_config(path):
    """The settings of config file ``path`` (YAML, or a run JSON's ``config``) as a dict; ConfigError naming the file."""
    import yaml

    path = Path(path)
    fix = "pass a YAML file of settings or a run's out/{run}.yaml or out/{run}.json"
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read it ({error.strerror or error}); {fix}") from None
    try:
        content = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ConfigError(f"--config {path}: not YAML or JSON (parse error{at}); {fix}") from None
    if path.suffix == ".json":
        if not (isinstance(content, dict) and isinstance(content.get("config"), dict)):
            raise ConfigError(f"--config {path}: a JSON without a 'config' mapping is not a run JSON; {fix}")
        content = content["config"]
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"--config {path}: holds a {type(content).__name__}, not a mapping of settings; {fix}")
    return content


def write_config(path, config):
    """Write ``config`` (a run's settings) as YAML, in the flags' order, atomically."""
    import yaml

    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
