"""Prepare LibriSpeech from the OpenSLR archives: tokenizer + memory-mapped int16 audio.

Reads ``<split>.tar.gz`` from ``--archives-dir`` (``--download`` fetches missing ones from
OpenSLR resource 12 and checks their SHA-256) for the six splits the reference uses
(train-clean-100, train-clean-360, train-other-500, dev-clean, dev-other, test-clean) and writes
the layout ``algoperf_torch/workloads/librispeech_conformer/data.py`` reads::

    <data-dir>/librispeech/spm_model.vocab     SentencePiece model (the reference's file name)
    <data-dir>/librispeech/<split>/audio.int16, index.npz, info.json

As the reference [datasets/librispeech_tokenizer.py, librispeech_preprocess.py; WORKLOADS.md
§6.4, §6.7]:

- Tokenizer: SentencePiece unigram, vocab 1024, character coverage 1.0, other options at their
  defaults (``<unk>`` 0, ``<s>`` 1, ``</s>`` 2), trained on the train-clean-100 transcripts, one
  line per utterance, cut before the line whose characters (newline included) would take the
  total past 1e7. Lines are in sorted utterance-id order (the reference's is ``os.listdir``'s).
- Per utterance (transcript line): skipped if its FLAC is missing, its transcript is longer than
  256 characters, or it has more than 320,000 samples; otherwise its samples (decoded by
  soundfile: the same integers pydub gives) are kept with ``encode(transcript) + [EOS]``.
- Kept + skipped must equal the official utterance counts (28,539 / 104,014 / 148,688 / 2,703 /
  2,864 / 2,620), and the kept totals 263,840 train, 5,348 dev, 2,472 test; ``--allow-partial``
  turns a mismatch into a warning (subsets, tests).

Differences, by design: one int16 sample file + an index per split instead of 543k ``.npy``
files (int64 samples, int32 ids); no ffmpeg (FLAC decoded by soundfile); sorted order.

Idempotent and resumable per split: a split is written in ``librispeech/.partial/<split>/`` and
renamed into place complete, so an interrupted run redoes at most that split and a finished one
does nothing. The tokenizer file is also written to a temporary name and renamed.

    python -m algoperf_torch.data librispeech --data-dir ~/data --archives-dir ~/Downloads
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from algoperf_torch.data.download import SetupError

SPLITS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
)
TOKENIZER_SPLIT = "train-clean-100"
RAW_COUNTS = {  # utterances per archive [datasets/librispeech_preprocess.py]
    "train-clean-100": 28_539,
    "train-clean-360": 104_014,
    "train-other-500": 148_688,
    "dev-clean": 2_703,
    "dev-other": 2_864,
    "test-clean": 2_620,
}
KEPT_COUNTS = {  # after the length filters (WORKLOADS.md §6.7)
    ("train-clean-100", "train-clean-360", "train-other-500"): 263_840,
    ("dev-clean", "dev-other"): 5_348,
    ("test-clean",): 2_472,
}
MAX_TRANSCRIPT_CHARS = 256
MAX_AUDIO_SAMPLES = 320_000
SAMPLE_RATE = 16_000
EOS_ID = 2
OPENSLR = "https://www.openslr.org/resources/12"
SHA256 = {  # the OpenSLR archives (the values torchaudio's LibriSpeech dataset checks)
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archives-dir",
        default=None,
        help="folder holding <split>.tar.gz from openslr.org/12 (default: data-dir)",
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="accept archives whose utterance counts differ from the official ones (a warning)",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help=f"download missing archives from {OPENSLR} (about 60 GB) into --archives-dir",
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        default=list(SPLITS),
        choices=SPLITS,
        metavar="SPLIT",
        help=f"splits to prepare (default: all of {', '.join(SPLITS)})",
    )
    parser.add_argument("--vocab-size", type=int, default=1024, help="tokenizer vocabulary")
    parser.add_argument(
        "--tokenizer-max-chars",
        type=int,
        default=10_000_000,
        help="characters of train-clean-100 transcripts the tokenizer is trained on",
    )


# --- reading an archive --------------------------------------------------------------------


@dataclass
class SplitScan:
    """What one pass over a split's archive found; audio was appended to ``audio_file``."""

    transcripts: dict[str, str] = field(default_factory=dict)
    audio: dict[str, tuple[int, int]] = field(default_factory=dict)  # utt -> (start, length)
    audio_too_long: set[str] = field(default_factory=set)
    samples_written: int = 0


def _member_parts(name: str, split: str, archive: str) -> tuple[str, str] | None:
    """(chapter path, file name) of a ``LibriSpeech/<split>/<spk>/<chapter>/<file>`` member."""
    parts = name.split("/")
    if len(parts) != 5 or parts[0] != "LibriSpeech":
        return None
    if parts[1] != split:
        raise SetupError(
            f"{archive}: member {name} belongs to split {parts[1]!r}, not {split!r} (is the "
            "archive named after its split?)"
        )
    return "/".join(parts[2:4]), parts[4]


def read_transcripts(data: bytes, member: str) -> dict[str, str]:
    """``<utt-id> <TRANSCRIPT>`` lines of a ``.trans.txt`` file."""
    out = {}
    for k, line in enumerate(data.decode("utf-8").splitlines()):
        line = line.strip()
        if not line:
            continue
        utt, _, text = line.partition(" ")
        if not text:
            raise SetupError(f"{member}: line {k + 1} has no transcript: {line!r}")
        out[utt] = text
    return out


def decode_flac(data: bytes, member: str) -> np.ndarray:
    """The 16-bit samples of a 16 kHz mono FLAC file."""
    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=False)
    except Exception as e:  # libsndfile reports corrupt files as several error types
        raise SetupError(f"{member}: not a readable FLAC file ({e})") from None
    if rate != SAMPLE_RATE or samples.ndim != 1:
        raise SetupError(
            f"{member}: {rate} Hz, {samples.ndim} channel dims; LibriSpeech is 16 kHz mono"
        )
    return samples


def scan_archive(archive: str, split: str, audio_file: io.BufferedWriter) -> SplitScan:
    """Stream ``archive`` once: transcripts, and every short-enough FLAC appended as int16."""
    scan = SplitScan()
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = _member_parts(member.name, split, archive)
                if parts is None:
                    continue
                _, filename = parts
                if filename.endswith(".trans.txt"):
                    data = tar.extractfile(member).read()
                    scan.transcripts.update(read_transcripts(data, member.name))
                elif filename.endswith(".flac"):
                    utt = filename[: -len(".flac")]
                    samples = decode_flac(tar.extractfile(member).read(), member.name)
                    if len(samples) > MAX_AUDIO_SAMPLES:
                        scan.audio_too_long.add(utt)
                        continue
                    audio_file.write(samples.astype("<i2").tobytes())
                    scan.audio[utt] = (scan.samples_written, len(samples))
                    scan.samples_written += len(samples)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise SetupError(f"{archive}: unreadable or truncated archive ({e})") from None
    return scan


# --- tokenizer -------------------------------------------------------------------------------


def tokenizer_lines(transcripts: Iterable[str], max_chars: int) -> list[str]:
    """The reference's training text: lines until the one that would pass ``max_chars``
    characters (its newline counted) [datasets/librispeech_tokenizer.py]."""
    lines, count = [], 0
    for text in transcripts:
        count += len(text) + 1
        if count > max_chars:
            break
        lines.append(text)
    return lines


def train_tokenizer(lines: list[str], path: str, vocab_size: int) -> None:
    """SentencePiece unigram model of ``lines`` at ``path`` (written atomically)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        character_coverage=1.0,
        model_type="unigram",
        minloglevel=2,
    )
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model.getvalue())
    os.replace(tmp, path)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- one split -------------------------------------------------------------------------------


def prepare_split(
    archive: str, split: str, root: str, args: argparse.Namespace, log
) -> dict[str, int]:
    """Write ``root/<split>/`` from its archive; returns its counts."""
    import sentencepiece as spm

    tokenizer_path = os.path.join(root, "spm_model.vocab")
    if split != TOKENIZER_SPLIT and not os.path.isfile(tokenizer_path):
        raise SetupError(
            f"{tokenizer_path} not found: it is trained from {TOKENIZER_SPLIT}; prepare that "
            "split first (or with this one)"
        )
    partial = os.path.join(root, ".partial", split)
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    with open(os.path.join(partial, "audio.int16"), "wb") as audio_file:
        scan = scan_archive(archive, split, audio_file)
    utts = sorted(scan.transcripts)
    if not os.path.isfile(tokenizer_path):  # train-clean-100, by the check above
        lines = tokenizer_lines((scan.transcripts[u] for u in utts), args.tokenizer_max_chars)
        log(f"{split}: training the tokenizer on {len(lines)} transcripts")
        train_tokenizer(lines, tokenizer_path, args.vocab_size)
    sp = spm.SentencePieceProcessor(model_file=tokenizer_path)
    counts = {"raw": len(utts), "missing_audio": 0, "transcript_too_long": 0}
    counts["audio_too_long"] = 0
    kept = []
    for utt in utts:  # the reference's order of checks
        if utt not in scan.audio and utt not in scan.audio_too_long:
            counts["missing_audio"] += 1
        elif len(scan.transcripts[utt]) > MAX_TRANSCRIPT_CHARS:
            counts["transcript_too_long"] += 1
        elif utt in scan.audio_too_long:
            counts["audio_too_long"] += 1
        else:
            kept.append(utt)
    counts["kept"] = len(kept)
    orphans = len(set(scan.audio) - set(scan.transcripts))
    expected = RAW_COUNTS[split]
    if counts["raw"] != expected:
        message = f"{split}: {counts['raw']} transcript lines, the official count is {expected}"
        if not args.allow_partial:
            raise SetupError(message + " (pass --allow-partial to accept a subset)")
        log(f"WARNING: {message}")
    texts = [scan.transcripts[u] for u in kept]
    ids = [row + [EOS_ID] for row in sp.encode(texts)] if texts else []
    lengths = np.array([len(r) for r in ids], dtype=np.int64)
    index = {
        "utterance_ids": np.array(kept, dtype=str),
        "audio_start": np.array([scan.audio[u][0] for u in kept], dtype=np.int64),
        "audio_length": np.array([scan.audio[u][1] for u in kept], dtype=np.int64),
        "target_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "targets": np.array([i for r in ids for i in r], dtype=np.int16),
        "transcripts": np.array(texts, dtype=str),
    }
    with open(os.path.join(partial, "index.npz"), "wb") as f:
        np.savez(f, **index)
    info = {
        "split": split,
        "counts": counts,
        "flac_without_transcript": orphans,
        "samples": scan.samples_written,
        "tokenizer_sha256": sha256_of(tokenizer_path),
        "archive": os.path.basename(archive),
    }
    with open(os.path.join(partial, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    os.replace(partial, os.path.join(root, split))  # the split appears complete or not at all
    return counts


# --- the command -----------------------------------------------------------------------------


def fetch_archive(split: str, folder: str, log) -> str:
    from algoperf_torch.data.download import download

    dest = os.path.join(folder, f"{split}.tar.gz")
    log(f"{split}: downloading {OPENSLR}/{split}.tar.gz")
    download(f"{OPENSLR}/{split}.tar.gz", dest, None)
    if sha256_of(dest) != SHA256[split]:
        os.remove(dest)
        raise SetupError(f"{dest}: SHA-256 differs from OpenSLR's; removed, re-run to retry")
    return dest


def verify(root: str, splits: list[str], allow_partial: bool, log) -> list[str]:
    """Problems with the prepared splits (kept totals against the official ones)."""
    problems = []
    for group, want in KEPT_COUNTS.items():
        if not set(group) <= set(splits):
            continue
        kept = 0
        for split in group:
            with open(os.path.join(root, split, "info.json")) as f:
                kept += json.load(f)["counts"]["kept"]
        if kept != want:
            message = f"{' + '.join(group)}: {kept} utterances kept, the official count is {want}"
            if allow_partial:
                log(f"WARNING: {message}")
            else:
                problems.append(message)
    return problems


def run(args: argparse.Namespace) -> int:
    """Prepare what is not in place yet, verify counts; 0 when complete, 1 otherwise."""
    data_dir = os.path.expanduser(args.data_dir)
    archives = os.path.expanduser(args.archives_dir or data_dir)
    root = os.path.join(data_dir, "librispeech")
    os.makedirs(root, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    # train-clean-100 first: the tokenizer is trained from it and every split needs it.
    splits = sorted(set(args.splits), key=SPLITS.index)
    missing = []
    try:
        for split in splits:
            if os.path.isfile(os.path.join(root, split, "info.json")):
                log(f"{split}: already prepared")
                continue
            archive = os.path.join(archives, f"{split}.tar.gz")
            if not os.path.isfile(archive):
                if not args.download:
                    missing.append(
                        f"{split}: archive {archive} not found (download it or pass "
                        "--download, then re-run)"
                    )
                    continue
                os.makedirs(archives, exist_ok=True)
                archive = fetch_archive(split, archives, log)
            log(f"{split}: reading {archive}")
            counts = prepare_split(archive, split, root, args, log)
            log(f"{split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        problems = missing + (verify(root, splits, args.allow_partial, log) if not missing else [])
    except (SetupError, OSError) as e:
        print(f"LibriSpeech setup failed: {e}\nRe-run the same command to resume.", file=sys.stderr)
        return 1
    shutil.rmtree(os.path.join(root, ".partial"), ignore_errors=True)
    if problems:
        print("LibriSpeech is incomplete:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(
        f"LibriSpeech ready in {root}\n  train: python -m algoperf_torch "
        f"workload=librispeech_conformer data.data_dir={data_dir}"
    )
    return 0
