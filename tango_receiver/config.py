"""detectors.yaml -> validated ``ReceiverConfig``: every check an entry gets, made when it loads.

Field types and ranges are the model's (``receiver_config.py``, which also maps the keys of
existing deployments); what depends on the detector class is checked here, against the classes
themselves: the class exists, a ``pipeline`` names one that fits it, the frame options are ones
the class applies, the ToT table reads, and a mask region lies in the frame. So a receiver that
loads can be built, and an entry that cannot run is refused before anything opens, with file,
receiver, key and value.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .detector import IMAGE_OPTIONS, Detector, detector_classes, pipeline_classes
from .receiver_config import ReceiverConfig
from .rois import misplaced
from .transforms import ImageTransform

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A detectors.yaml entry that cannot run; the text names file, receiver, key and value."""


def parse_entry(name: str, entry: Any, source: str = "detectors.yaml") -> ReceiverConfig:
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: receiver {name!r}: entry must be a mapping, got {entry!r}")
    try:
        config = ReceiverConfig(name=name, **entry)
    except ValidationError as exc:
        raise ConfigError(_describe(source, name, exc)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: receiver {name!r}: {exc}") from None
    _check_against_class(config, f"{source}: receiver {name!r}")
    return config


def load_config(path: str | Path) -> dict[str, ReceiverConfig]:
    """Every entry of a detectors.yaml, validated; the first bad entry raises ConfigError."""
    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must map receiver names to entries")
    return {str(name): parse_entry(str(name), entry, source) for name, entry in raw.items()}


def load_receiver(path: str | Path, name: str) -> ReceiverConfig:
    configs = load_config(path)
    if name not in configs:
        raise ConfigError(f"{path}: no receiver {name!r}; entries: {', '.join(configs)}")
    config = configs[name]
    log.info("receiver %s may write into %s", name, ", ".join(map(str, config.write_roots)))
    return config


def _check_against_class(config: ReceiverConfig, where: str) -> None:
    """What the model alone cannot tell: does the entry fit its detector class?"""
    classes = detector_classes()
    cls = classes.get(config.detector_class)
    if cls is None:
        raise ConfigError(
            f"{where}: key 'class': unknown detector class "
            f"{config.detector_class!r}; known: {', '.join(classes)}"
        )
    if config.pipeline is not None:
        piped = pipeline_classes().get(config.pipeline)
        if piped is None:
            raise ConfigError(
                f"{where}: key 'pipeline': unknown pipeline {config.pipeline!r}; "
                f"known: {', '.join(pipeline_classes())}"
            )
        if cls not in (Detector, piped):
            raise ConfigError(
                f"{where}: key 'pipeline': {config.pipeline!r} is class "
                f"{piped.__name__}; it cannot run in class {cls.__name__}"
            )
        cls = piped
    for key in IMAGE_OPTIONS:
        if getattr(config, key) and key not in cls.options:
            appliers = [c.__name__ for c in classes.values() if key in c.options]
            raise ConfigError(
                f"{where}: key {key!r}: {getattr(config, key)!r} would be ignored "
                f"by class {cls.__name__}; only {', '.join(appliers)} applies it"
            )
    if config.layout == "dectris" and config.file_suffix:
        raise ConfigError(
            f"{where}: key 'layout': 'dectris' writes a master and its data files; "
            f"a scale-out part (file_suffix {config.file_suffix!r}) writes one part "
            f"file, stitched afterwards"
        )
    if config.nexus is not None and cls.mx_keys is None:
        raise ConfigError(
            f"{where}: key 'nexus': class {cls.__name__} writes plain NeXus, no "
            f"NXmx; only {', '.join(n for n, c in classes.items() if c.mx_keys)} "
            f"take a nexus block"
        )
    if cls.single_worker and config.nworkers != 1:
        raise ConfigError(
            f"{where}: key 'nworkers': class {cls.__name__} takes 1 (one worker "
            f"reads every socket so that a frame's parts meet), got "
            f"{config.nworkers}"
        )
    _check_frame_options(config, where)
    _check_rois(config, where)


def _check_rois(config: ReceiverConfig, where: str) -> None:
    """ROIs must lie in the stored frame, where the entry gives its ``shape``."""
    if not (config.rois and config.shape):
        return
    shape = config.shape[::-1] if config.rotate and len(config.shape) == 2 else config.shape
    problems = misplaced(config.rois, tuple(shape))
    if problems:
        raise ConfigError(f"{where}: key 'rois': {'; '.join(problems)}")


def _check_frame_options(config: ReceiverConfig, where: str) -> None:
    try:
        transform = ImageTransform.from_options(config.tot, config.rotate, config.mask)
    except ValueError as exc:
        key = "tot" if config.tot and "ToT" in str(exc) else "mask"
        raise ConfigError(f"{where}: key {key!r}: {exc}") from None
    if not (transform.regions and config.shape and len(config.shape) == 2):
        return
    rows, cols = config.shape[::-1] if config.rotate else config.shape  # mask: stored frame
    for row_span, col_span in transform.regions:
        if row_span.start >= rows or col_span.start >= cols:
            raise ConfigError(
                f"{where}: key 'mask': region rows {row_span.start}:"
                f"{row_span.stop} cols {col_span.start}:{col_span.stop} lies "
                f"outside the {rows} x {cols} frame"
            )


def _describe(path: str, name: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(entry)"
        lines.append(
            f"{path}: receiver {name!r}: key {key!r}: {err['msg']} (got {err.get('input')!r})"
        )
    return "\n".join(lines)
