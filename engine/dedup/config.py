"""The `dedup:` section of a job: which deduplication runs and with what parameters."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

KeepPolicy = Literal["first_seen", "longest", "highest_score"]


class _DedupBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    keep: KeepPolicy = Field("first_seen", description="Which document of a cluster survives; ties by id.")
    score_column: str | None = Field(None, description="Numeric column ranked by `keep: highest_score`.")
    write_duplicates: bool = Field(default=True, description="Write removed duplicates to rejected/ with their reason.")
    add_cluster_columns: bool = Field(
        default=False,
        description="Add `cluster_id` (the representative's id) and `cluster_size` to kept documents.",
    )
    in_memory_max_edges: int = Field(
        2_000_000,
        ge=0,
        description="Connected components run in one task when the graph has at most this many edges, "
        "distributed (large-star/small-star rounds over Parquet partitions) otherwise.",
    )

    @model_validator(mode="after")
    def _score_column_given(self) -> _DedupBase:
        if self.keep == "highest_score" and not self.score_column:
            msg = "keep: highest_score needs `score_column` (a numeric column such as quality_score)"
            raise ValueError(msg)
        return self


class MinhashDedup(_DedupBase):
    """MinHash LSH near-duplicate removal across the whole corpus (FineWeb's parameters by default)."""

    type: Literal["minhash"] = "minhash"
    ngram: int = Field(5, ge=1, le=32)
    bands: int = Field(14, ge=1, le=512)
    rows: int = Field(8, ge=1, le=64)
    seed: int = Field(1, ge=0)
    max_chars: int = Field(500_000, ge=1, description="Characters of text used for shingling.")
    partitions: int | None = Field(None, ge=1, le=100_000, description="Shuffle partitions; auto when unset.")
    exact_first: bool = Field(
        default=False,
        description="Report removed documents whose normalised text equals the kept one's as "
        "`exact/duplicate` (the others stay `minhash/duplicate`).",
    )
    backend: Literal["rensa", "numpy"] = Field(
        "rensa", description="MinHash implementation: rensa's R-MinHash (fast) or the NumPy reference."
    )


class ExactDedup(_DedupBase):
    """Exact duplicate removal on a hash of the normalised text."""

    type: Literal["exact"] = "exact"
    partitions: int | None = Field(None, ge=1, le=100_000)


DedupSpec = Annotated[MinhashDedup | ExactDedup, Field(discriminator="type")]
