"""smsgate's benchmarks (`make bench`) and reliability soak (`make soak`)."""
