"""LibriSpeech DeepSpeech workload and its variants (WORKLOADS.md §7); data, loss and metrics are
the Conformer workload's."""
