"""Corpus BLEU with the reference's numbers: sacreBLEU's statistics, the v1.3.1 score formula.

The reference scores with an in-repo port of sacreBLEU 1.3.1 [algoperf/workloads/wmt/bleu.py]:
13a tokenisation of each ``rstrip``ped line, case-sensitive, one reference, clipped n-gram counts
for n = 1..4, 'exp' smoothing, brevity penalty, percent scale (WORKLOADS.md §9.3). sacreBLEU 2.x
extracts the same sufficient statistics (``tests/test_wmt_bleu.py`` checks it on random
corpora), so we use it for those. Its score formula differs in one place: since 2.0 it returns 0
when no n-gram matches at all (sacreBLEU #141), where 1.3.1 still smooths the zero precisions;
``bleu_from_stats`` therefore restates the 1.3.1 formula. Statistics are plain int64 sums, so
ranks all-reduce them before the score is computed.

    python -m pytest tests/test_wmt_bleu.py
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

NGRAM_ORDER = 4
NUM_STATS = 2 + 2 * NGRAM_ORDER  # sys_len, ref_len, correct[1..4], total[1..4]


def corpus_stats(hypotheses: Sequence[str], references: Sequence[str]) -> torch.Tensor:
    """Summed sufficient statistics [sys_len, ref_len, correct×4, total×4] (int64)."""
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    stats = torch.zeros(NUM_STATS, dtype=torch.int64)
    if hypotheses:
        per_line = BLEU(tokenize="13a")._extract_corpus_statistics(
            list(hypotheses), [list(references)]
        )
        stats += torch.tensor(per_line, dtype=torch.int64).sum(0)
    return stats


def _log(x: float) -> float:
    return -9999999999.0 if x == 0.0 else math.log(x)  # the 1.3.1 floor of log(0)


def bleu_from_stats(stats: torch.Tensor | Sequence[int]) -> float:
    """BLEU (0-100) from summed statistics, as sacreBLEU 1.3.1 ``compute_bleu`` with 'exp'."""
    s = [int(v) for v in stats]
    sys_len, ref_len = s[0], s[1]
    correct, total = s[2 : 2 + NGRAM_ORDER], s[2 + NGRAM_ORDER :]
    precisions = [0.0] * NGRAM_ORDER
    smooth = 1.0
    for n in range(NGRAM_ORDER):
        if total[n] == 0:
            break  # higher orders keep precision 0 (and log 0 floors the score to 0)
        if correct[n] == 0:
            smooth *= 2
            precisions[n] = 100.0 / (smooth * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    penalty = 1.0
    if sys_len < ref_len:
        penalty = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    return penalty * math.exp(sum(map(_log, precisions)) / NGRAM_ORDER)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """One-process corpus BLEU (the reference's ``corpus_bleu(hyps, [refs]).score``)."""
    return bleu_from_stats(corpus_stats(hypotheses, references))
