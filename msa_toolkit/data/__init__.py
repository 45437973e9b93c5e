"""Data: Batch contract, collation, dataset formats (native, MMSA pickle) and dataset building."""
