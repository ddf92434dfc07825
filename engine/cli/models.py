"""`train-quality`: train a binary fastText classifier from positive and negative Parquet sources."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from pydantic import ValidationError

from engine.errors import SpecError
from engine.models.training import TrainConfig, train_quality_classifier


def add_train_quality_command(subparsers: Any) -> None:
    """Register `train-quality` on the CLI's subparsers (`corpus-engine train-quality ...`)."""
    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train-quality",
        help="train a binary fastText classifier (quality, toxicity, domain) from Parquet sources",
        description=(
            "Train a fastText classifier from positive and negative Parquet sources (files, folders, globs, "
            "fsspec URLs), hold out a split, print precision/recall/F1. Defaults: DCLM's recipe (word bigrams)."
        ),
    )
    parser.add_argument("--positive", action="append", required=True, help="positive source (repeatable)")
    parser.add_argument("--negative", action="append", required=True, help="negative source (repeatable)")
    parser.add_argument("--output", required=True, help="where to write the model (.bin)")
    parser.add_argument("--text-column", default=defaults.text_column)
    parser.add_argument("--positive-label", default=defaults.positive_label)
    parser.add_argument("--negative-label", default=defaults.negative_label)
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    parser.add_argument("--max-examples-per-class", type=int, default=None)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    for name in ("lr",):
        parser.add_argument(f"--{name}", type=float, default=getattr(defaults, name))
    for name in ("dim", "ws", "epoch", "min-count", "word-ngrams", "bucket", "minn", "maxn", "thread"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name.replace("-", "_")))
    parser.add_argument("--loss", choices=["softmax", "hs", "ns", "ova"], default=defaults.loss)
    parser.add_argument(
        "--quantize",
        action="store_true",
        help="save the model product-quantized (.ftz): ~8x less memory per worker, scores move slightly",
    )
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.set_defaults(handler=run_train_quality)


def run_train_quality(args: argparse.Namespace) -> int:
    """Handler of `train-quality`: train, print the metrics, return 0.

    Raises:
        InputError, SpecError: bad sources or options (the CLI prints them as one paragraph, exit 2).
    """
    fields = set(TrainConfig.model_fields)
    try:
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    except ValidationError as error:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in error.errors())
        raise SpecError(problems) from None
    metrics = train_quality_classifier(args.positive, args.negative, args.output, config)
    if args.json:
        print(json.dumps(asdict(metrics)))
    else:
        for line in metrics.lines():
            print(line)
    sys.stdout.flush()
    return 0
