"""lkkit benchmarks: each compares lkkit with the raw SDK in the same run."""
