"""WMT de-en from the official WMT releases: tokenizer + memory-mapped token ids, no TFDS.

Builds what the reference reads from TFDS ``wmt17_translate/de-en`` (train) and
``wmt14_translate/de-en`` (validation, test) [datasets/dataset_setup.py ``download_wmt``;
WORKLOADS.md §9.7], from the files statmt.org publishes, given as the ``.tgz`` archives or as the
files extracted from them, in ``--archives-dir``:

  train (WMT17, 5,906,184 pairs), in this fixed order:
    training-parallel-europarl-v7.tgz   training/europarl-v7.de-en.{de,en}
    training-parallel-commoncrawl.tgz   commoncrawl.de-en.{de,en}
    training-parallel-nc-v12.tgz        training/news-commentary-v12.de-en.{de,en}
    rapid2016.tgz                       rapid2016.de-en.{de,en}
  validation (newstest2013, 3,000):     dev.tgz  dev/newstest2013.{de,en}
                                        (or dev/newstest2013-src.de.sgm + -ref.en.sgm)
  test (newstest2014, 3,003):           test-full.tgz  test-full/newstest2014-deen-{src.de,ref.en}.sgm

Each text pair is split on newlines and ``.sgm`` files give their ``<seg id="N">…</seg>`` lines;
pairs with an empty side are dropped (as TFDS's WMT builder). The train pairs are then put in one
fixed pseudo-random order (a permutation seeded with 0 over the concatenation above), standing in
for TFDS's record order, which is itself a hash shuffle of the four corpora; the SentencePiece
model (unigram, vocab 32,000, character coverage 1.0, other options default) is trained on the
first pairs of that order, German line then English line, until 1e7 bytes (§9.4). Ids are the
SentencePiece ids plus EOS (2), stored per split as ``<split>_{inputs,targets}.npy`` (uint16,
concatenated) + ``_offsets.npy`` (int64), read memory-mapped by the loader.

Every output is written to a temporary name and renamed; ``manifest.json`` records each finished
step, so a re-run resumes after the last one and a half-written file is never taken as complete.

An archive the setup needs that is missing from the archives folder (and whose files are not
there extracted either) is downloaded into it first, atomically, from the URL in ``URLS`` (the
statmt.org sources of TFDS's WMT builder) or from ``--mirror``; ``--no-download`` fails instead,
naming what is missing. The newstest2014 test set is read from ``dev.tgz`` as TFDS does, or from
``test-full.tgz`` if that is what the folder holds.

    python -m algoperf_torch.data wmt --data-dir ~/data [--archives-dir ~/downloads/wmt]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tarfile
import tempfile
import zlib

import numpy as np

from algoperf_torch.data.download import SetupError, add_download_arguments, fetch

FOLDER = "wmt"
TOKENIZER = "wmt_sentencepiece_model"
MANIFEST = "manifest.json"
EOS_ID = 2
SHUFFLE_SEED = 0
TOKENIZER_BYTES = int(1e7)
# (archive, member path of the German side, of the English side); the ``.sgm`` kind is parsed
# as SGML segments. Several candidates: the first present wins.
TRAIN_SOURCES = (
    ("training-parallel-europarl-v7.tgz", "training/europarl-v7.de-en.de", "training/europarl-v7.de-en.en"),
    ("training-parallel-commoncrawl.tgz", "commoncrawl.de-en.de", "commoncrawl.de-en.en"),
    ("training-parallel-nc-v12.tgz", "training/news-commentary-v12.de-en.de", "training/news-commentary-v12.de-en.en"),
    ("rapid2016.tgz", "rapid2016.de-en.de", "rapid2016.de-en.en"),
)  # fmt: skip
EVAL_SOURCES = {
    "validation": (
        ("dev.tgz", "dev/newstest2013.de", "dev/newstest2013.en"),
        ("dev.tgz", "dev/newstest2013-src.de.sgm", "dev/newstest2013-ref.en.sgm"),
    ),
    "test": (
        ("dev.tgz", "dev/newstest2014-deen-src.de.sgm", "dev/newstest2014-deen-ref.en.sgm"),
        ("test-full.tgz", "test-full/newstest2014-deen-src.de.sgm", "test-full/newstest2014-deen-ref.en.sgm"),
    ),
}  # fmt: skip
# Where each archive is downloaded from: the URLs of TFDS's WMT builder for the subsets the
# reference's wmt17_translate/de-en (train: europarl_v7, commoncrawl, newscommentary_v12,
# rapid_2016) and wmt14_translate/de-en (newstest2013, newstest2014, both in the WMT19 dev.tgz)
# read [tensorflow/datasets tensorflow_datasets/translate/wmt.py _TRAIN_SUBSETS, _DEV_SUBSETS;
# wmt17.py, wmt14.py]. test-full.tgz (not used by TFDS) is statmt.org's WMT14 test release.
# statmt.org publishes no checksums.
URLS = {
    "training-parallel-europarl-v7.tgz": "http://www.statmt.org/wmt13/training-parallel-europarl-v7.tgz",
    "training-parallel-commoncrawl.tgz": "http://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz",
    "training-parallel-nc-v12.tgz": "http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz",
    "rapid2016.tgz": "http://data.statmt.org/wmt18/translation-task/rapid2016.tgz",
    "dev.tgz": "http://data.statmt.org/wmt19/translation-task/dev.tgz",
    "test-full.tgz": "http://www.statmt.org/wmt14/test-full.tgz",
}  # fmt: skip
COUNTS = {"train": 5_906_184, "validation": 3000, "test": 3003}
SPLITS = ("train", "validation", "test")
_SEG = re.compile(r"<seg id=\"\d+\">(.*)</seg>")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archives-dir",
        default=None,
        help="folder with the WMT .tgz archives or the files extracted from them; missing "
        "archives are downloaded into it (default: <data-dir>/wmt/downloads)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="fail, naming the missing archives, instead of downloading them",
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="accept pair counts that differ from the official ones (a subset, a test)",
    )
    parser.add_argument("--vocab-size", type=int, default=32000, help="SentencePiece vocabulary")
    add_download_arguments(parser, "the statmt.org URLs TFDS uses", checksums=False)


# --- reading the raw files -------------------------------------------------------------------
def _read_member(archives: str, archive: str, member: str) -> str | None:
    """The text of ``member``: extracted under ``archives`` (full path or basename), or read from
    ``archives/archive``; ``None`` when neither exists."""
    for path in (os.path.join(archives, member), os.path.join(archives, os.path.basename(member))):
        if os.path.isfile(path):
            with open(path, encoding="utf-8", newline="") as f:
                return f.read()
    tgz = os.path.join(archives, archive)
    if not os.path.isfile(tgz):
        return None
    try:
        with tarfile.open(tgz, "r:*") as tar:
            try:
                f = tar.extractfile(member)
            except KeyError:
                return None
            if f is None:
                return None
            return f.read().decode("utf-8")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise SetupError(f"{tgz} is not a readable .tgz ({e}); download it again") from None
    except UnicodeDecodeError as e:
        raise SetupError(f"{tgz}:{member} is not UTF-8 text ({e})") from None


def _lines(text: str, member: str) -> list[str]:
    if member.endswith(".sgm"):
        return [m.group(1) for m in map(_SEG.match, text.split("\n")) if m]
    return text.split("\n")


def read_pairs(archives: str, candidates) -> tuple[list[str], list[str], str]:
    """German and English lines of the first candidate present, empty pairs dropped."""
    for archive, de_member, en_member in candidates:
        de_text = _read_member(archives, archive, de_member)
        en_text = _read_member(archives, archive, en_member)
        if de_text is None or en_text is None:
            continue
        de, en = _lines(de_text, de_member), _lines(en_text, en_member)
        if len(de) != len(en):
            raise SetupError(
                f"{archive}: {de_member} has {len(de)} lines but {en_member} has {len(en)}; "
                "the pair is corrupt or truncated, download it again"
            )
        keep = [i for i in range(len(de)) if de[i] and en[i]]
        return [de[i] for i in keep], [en[i] for i in keep], archive
    names = ", ".join(sorted({c[0] for c in candidates}))
    wanted = "; ".join(f"{c[1]} + {c[2]}" for c in candidates)
    raise SetupError(f"missing in {archives}: {names} (or the extracted files {wanted})")


def read_split(archives: str, split: str, log) -> tuple[list[str], list[str]]:
    if split != "train":
        de, en, archive = read_pairs(archives, EVAL_SOURCES[split])
        log(f"  {split}: {len(de)} pairs from {archive}")
        return de, en
    de, en = [], []
    for source in TRAIN_SOURCES:
        d, e, archive = read_pairs(archives, (source,))
        log(f"  train: {len(d)} pairs from {archive}")
        de += d
        en += e
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(de))
    return [de[i] for i in order], [en[i] for i in order]


# --- downloading what is missing ---------------------------------------------------------------
def _present(archives: str, candidate: tuple[str, str, str]) -> bool:
    """The candidate's archive, or both of its files extracted, are in ``archives``."""
    archive, *members = candidate
    if os.path.isfile(os.path.join(archives, archive)):
        return True
    return all(
        os.path.isfile(os.path.join(archives, m))
        or os.path.isfile(os.path.join(archives, os.path.basename(m)))
        for m in members
    )


def missing_archives(archives: str, splits) -> list[str]:
    """Archives to download for ``splits``: for each source none of whose candidates is present,
    its first candidate's archive (in order, once each)."""
    groups = []
    for split in splits:
        groups += [(s,) for s in TRAIN_SOURCES] if split == "train" else [EVAL_SOURCES[split]]
    names: list[str] = []
    for candidates in groups:
        if not any(_present(archives, c) for c in candidates) and candidates[0][0] not in names:
            names.append(candidates[0][0])
    return names


def download_missing(archives: str, names: list[str], mirror: str | None, log) -> None:
    """Fetch each of ``names`` into ``archives``; one error naming every file that failed."""
    failed, errors = [], []
    for name in names:
        log(f"  {name}: not in {archives}, downloading")
        try:
            fetch(name, archives, [mirror or URLS[name].rsplit("/", 1)[0]], None)
        except SetupError as e:
            failed.append(name)
            errors.append(str(e))  # names the URL tried
    if failed:
        raise SetupError(
            f"missing in {archives}: {', '.join(failed)}, and the download failed:\n  "
            + "\n  ".join(errors)
            + f"\nDownload them by hand (or use another --mirror) and put them in --archives-dir "
            f"({archives})"
        )


# --- outputs -----------------------------------------------------------------------------------
def _atomic_npy(path: str, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _load_manifest(root: str) -> dict:
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _save_manifest(root: str, manifest: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=root)
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(root, MANIFEST))


def train_tokenizer(de: list[str], en: list[str], path: str, vocab_size: int) -> int:
    """SentencePiece as the reference trains it [wmt/tokenizer.py]; returns the corpus bytes."""
    import sentencepiece as spm

    folder = os.path.dirname(path)
    with tempfile.TemporaryDirectory(prefix=".sp-", dir=folder) as tmp:
        corpus, size = os.path.join(tmp, "corpus.txt"), 0
        with open(corpus, "wb") as f:
            for d, e in zip(de, en):
                if size >= TOKENIZER_BYTES:
                    break
                for line in (d.encode("utf-8") + b"\n", e.encode("utf-8") + b"\n"):
                    size += len(line)
                    f.write(line)
        prefix = os.path.join(tmp, "sp")
        spm.SentencePieceTrainer.train(
            input=corpus,
            vocab_size=vocab_size,
            character_coverage=1.0,
            model_prefix=prefix,
            model_type="unigram",
            minloglevel=2,
        )
        os.replace(prefix + ".model", path)
    return size


def encode(sp, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ids (each line + EOS) as uint16 and the int64 offsets [N + 1]."""
    ids = sp.encode(lines, out_type=int)
    lengths = np.fromiter((len(x) + 1 for x in ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.empty(int(offsets[-1]), dtype=np.uint16)
    for i, x in enumerate(ids):
        flat[offsets[i] : offsets[i + 1] - 1] = x
        flat[offsets[i + 1] - 1] = EOS_ID
    return flat, offsets


def split_files(split: str) -> list[str]:
    return [
        f"{split}_{side}{kind}.npy" for side in ("inputs", "targets") for kind in ("", "_offsets")
    ]


def run(args: argparse.Namespace) -> int:
    """Prepare every split not finished yet; 0 when complete, 1 otherwise."""
    root = os.path.join(os.path.expanduser(args.data_dir), FOLDER)
    archives = os.path.expanduser(args.archives_dir or os.path.join(root, "downloads"))
    os.makedirs(root, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    try:
        manifest = _load_manifest(root)
        done = manifest.setdefault("splits", {})
        tok_path = os.path.join(root, TOKENIZER)
        todo = [s for s in SPLITS if not _finished(root, done, s)]
        if not os.path.isfile(tok_path) and "train" not in todo:
            todo.insert(0, "train")  # the tokenizer is trained from the train split
        missing = missing_archives(archives, todo)
        if missing and args.no_download:
            urls = "\n  ".join(
                (args.mirror.rstrip("/") + "/" + n) if args.mirror else URLS[n] for n in missing
            )
            raise SetupError(
                f"missing in {archives}: {', '.join(missing)} (--no-download). Download\n  {urls}\n"
                "and put them in --archives-dir, or drop --no-download"
            )
        download_missing(archives, missing, args.mirror, log)
        sp = None
        for split in todo:
            de, en = read_split(archives, split, log)
            _check_count(split, len(de), args.allow_partial, log)
            if split == "train" and not os.path.isfile(tok_path):
                size = train_tokenizer(de, en, tok_path, args.vocab_size)
                manifest["tokenizer"] = {"vocab_size": args.vocab_size, "corpus_bytes": size}
                _save_manifest(root, manifest)
                log(f"  tokenizer: trained on {size} bytes -> {tok_path}")
            if sp is None:
                import sentencepiece as spm

                sp = spm.SentencePieceProcessor(model_file=tok_path)
            for side, lines in (("inputs", de), ("targets", en)):
                flat, offsets = encode(sp, lines)
                _atomic_npy(os.path.join(root, f"{split}_{side}.npy"), flat)
                _atomic_npy(os.path.join(root, f"{split}_{side}_offsets.npy"), offsets)
            done[split] = {"pairs": len(de), "official": len(de) == COUNTS[split]}
            _save_manifest(root, manifest)
            log(f"  {split}: {len(de)} pairs tokenised")
    except SetupError as e:
        print(f"WMT setup failed: {e}\nRe-run the same command to resume.", file=sys.stderr)
        return 1
    log(
        f"WMT ready in {root}\n  train: python -m algoperf_torch workload=wmt data.data_dir={args.data_dir}"
    )
    return 0


def _finished(root: str, done: dict, split: str) -> bool:
    return split in done and all(os.path.isfile(os.path.join(root, f)) for f in split_files(split))


def _check_count(split: str, n: int, allow_partial: bool, log) -> None:
    if n == COUNTS[split]:
        return
    msg = f"{split}: {n} pairs, the official release has {COUNTS[split]}"
    if not allow_partial:
        raise SetupError(msg + " (pass --allow-partial to prepare them anyway)")
    log(f"  warning: {msg}; preparing them (--allow-partial)")
