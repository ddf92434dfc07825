"""Storage: fsspec paths, streaming Parquet, the output layout, atomic commits and markers."""
