"""LibriSpeech Conformer workload and its variants (WORKLOADS.md §6); also the log-mel frontend
and SpecAugment that the DeepSpeech workload shares."""
