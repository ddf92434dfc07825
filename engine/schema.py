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

# Reason codes given by the reader before any step runs (bad documents are data, not exceptions).
INPUT_STEP = "input"
NULL_TEXT = "null_text"
EMPTY_TEXT = "empty_text"
DECODE_ERROR = "decode_error"
TOO_LARGE = "too_large"
