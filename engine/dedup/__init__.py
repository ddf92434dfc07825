"""Global near-duplicate removal: MinHash signatures, band shuffle, connected components, removal."""
