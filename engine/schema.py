"""Column names shared by every step and phase; use these constants, never string literals."""

from __future__ import annotations

ID = "id"
TEXT = "text"
REASON = "reason"
URL = "url"
LANGUAGE = "language"
LANGUAGE_SCORE = "language_score"
QUALITY_SCORE = "quality_score"
DUPLICATE_OF = "duplicate_of"
CLUSTER_ID = "cluster_id"
CLUSTER_SIZE = "cluster_size"
BATCH = "batch"  # score sidecar: the index of the batch a document was read in, within its shard
# The score sidecar's layout (columns, exactness): part of a unit's reuse key when `output.keep_scores` is on, so a
# change here redoes the shards of jobs that keep scores once. 2: `batch`, labels, exact values, fixed schema.
SCORES_LAYOUT = 2

# Reason codes given by the reader before any step runs (bad documents are data, not exceptions).
INPUT_STEP = "input"
NULL_TEXT = "null_text"
EMPTY_TEXT = "empty_text"
DECODE_ERROR = "decode_error"
TOO_LARGE = "too_large"
