"""The bundle's tokenizer and the rule that turns a prompt into the text encoder's inputs. The tiny
bundle's SentencePiece unigram model is trained at export time from corpus.txt; a checkpoint's
(`--from`) is the pipeline's tokenizer/spiece.model, with its ids and test vectors read through
transformers (read_checkpoint_tokenizer).

Ids follow UMT5's convention: pad 0, eos 1, unk 2, no bos. A prompt becomes its pieces' ids,
truncated to max_length - 1, then eos, then pad ids up to max_length; the attention mask is 1 on the
ids and the eos, 0 on padding. The C++ worker applies the same rule with libsentencepiece and checks
itself against tokenizer_test_vectors.json.

Training is deterministic: one thread, sentences streamed in file order, the model written to memory
(so no input path or output prefix ends up in the model's trainer spec).
"""

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from .errors import ExportError

CORPUS = Path(__file__).resolve().parent / "corpus.txt"

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2

# Prompts whose ids are pinned in the bundle and in the tests: plain text, punctuation, case,
# digits, runs of spaces, Unicode (accents, CJK, emoji go through byte fallback), the empty prompt,
# and one longer than max_length tokens to exercise truncation.
TEST_PROMPTS = [
    "A red fox trots across a snowy field at dawn.",
    "a cat sleeps on a windowsill",
    "Two astronauts float inside a space station, passing a wrench between them!",
    "  Leading and   repeated   spaces  ",
    "Neon signs at 3 AM, 1080p, 24 fps",
    "Café crème on a café terrace in Zürich",
    "Ça va? ÆØÅ — “quotes”, the ﬁ ligature and ① (NFKC folds these)",
    "一只猫在窗台上睡觉",
    "🦊 in the snow",
    "",
    " ".join(["A long prompt about a sailboat gliding across a calm sea under a pink sky."] * 6),
]


def train_sentencepiece(vocab_size: int, corpus: Path = CORPUS) -> bytes:
    """Trains the unigram model and returns its serialized ModelProto."""
    sentences = [line.strip() for line in corpus.read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        character_coverage=1.0,
        byte_fallback=True,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        minloglevel=2,
    )
    return model.getvalue()


def load_processor(model_bytes: bytes) -> spm.SentencePieceProcessor:
    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(model_bytes)
    return processor


def encode(processor: spm.SentencePieceProcessor, prompt: str, max_length: int,
           pad_id: int = PAD_ID, eos_id: int = EOS_ID) -> Tuple[List[int], List[int]]:
    """(ids, attention_mask), both of length max_length, by the rule in the module docstring."""
    ids = processor.EncodeAsIds(prompt)[: max_length - 1] + [eos_id]
    mask = [1] * len(ids) + [0] * (max_length - len(ids))
    return ids + [pad_id] * (max_length - len(ids)), mask


RULE = ("ids = sentencepiece_encode(prompt)[:max_length-1] + [eos_id], padded with pad_id "
        "to max_length; attention_mask 1 on ids and eos, 0 on padding")


def test_vectors(processor: spm.SentencePieceProcessor, max_length: int) -> Dict:
    cases = []
    for prompt in TEST_PROMPTS:
        ids, mask = encode(processor, prompt, max_length)
        cases.append({"prompt": prompt, "pieces": processor.EncodeAsPieces(prompt),
                      "ids": ids, "attention_mask": mask})
    return {
        "rule": RULE,
        "max_length": max_length, "pad_id": PAD_ID, "eos_id": EOS_ID, "unk_id": UNK_ID,
        "cases": cases,
    }


# ---- checkpoints (--from): the tokenizer/ folder of a diffusers Wan pipeline ----

# WanPipeline's default max_sequence_length: prompts are padded/truncated to 512 tokens.
WAN_MAX_SEQUENCE_LENGTH = 512
SENTENCEPIECE_FILE = "spiece.model"
_LONG_SENTENCE = "A long prompt about a sailboat gliding across a calm sea under a pink sky."


@dataclass(frozen=True)
class CheckpointTokenizer:
    model_bytes: bytes  # spiece.model, written as the bundle's tokenizer.model
    pad_id: int
    eos_id: int
    unk_id: int
    max_length: int
    vocab_size: int  # SentencePiece pieces (the text encoder's table may be larger)
    vectors: Dict  # tokenizer_test_vectors.json, computed with transformers' tokenizer
    # Test prompts on which libsentencepiece + RULE gives other ids than transformers' tokenizer.
    rule_mismatches: List[str]


def _truncation_prompt(tokenizer, max_length: int) -> str:
    """The sentence repeated until it is longer than max_length tokens."""
    once = len(tokenizer(_LONG_SENTENCE, add_special_tokens=False)["input_ids"])
    repeats = max_length // max(1, once) + 2
    return " ".join([_LONG_SENTENCE] * repeats)


def read_checkpoint_tokenizer(
        folder: Path, text_vocab_size: int,
        max_sequence_length: int = WAN_MAX_SEQUENCE_LENGTH) -> CheckpointTokenizer:
    """Reads the pipeline's tokenizer folder. The bundle's tokenizer.model is the folder's
    spiece.model (what libsentencepiece loads); ids, max length and the test vectors come from
    transformers' AutoTokenizer on the same folder, i.e. from the tokenizer WanPipeline uses, so the
    vectors pin the reference behaviour for the worker's tokenizer test."""
    folder = Path(folder)
    model_path = folder / SENTENCEPIECE_FILE
    if not model_path.is_file():
        raise ExportError(f"{model_path}: missing; the bundle needs the SentencePiece model that the "
                          "Wan2.1 diffusers repositories ship in tokenizer/ (tokenizer.json alone "
                          "cannot be read by the worker's libsentencepiece)")
    model_bytes = model_path.read_bytes()
    try:
        processor = load_processor(model_bytes)
    except (RuntimeError, OSError) as error:
        raise ExportError(f"{model_path}: not a SentencePiece model ({error})") from None
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as transformers_logging
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as error:  # transformers raises many types; the message is what matters
        raise ExportError(f"{folder}: transformers' AutoTokenizer cannot load it ({error})") from None
    # Encoding the untruncated pieces of the long prompt makes transformers warn about its length.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        return _checkpoint_tokenizer(folder, model_bytes, processor, tokenizer, text_vocab_size,
                                     max_sequence_length)
    finally:
        transformers_logging.set_verbosity(verbosity)


def _uses_byte_fallback(tokenizer) -> bool:
    """Whether transformers' tokenizer turns characters outside the vocabulary into byte pieces. Its
    fast (tokenizers) T5/UMT5 tokenizer, the one WanPipeline loads from tokenizer.json, does not: it
    gives <unk> (one per run of unknown characters) even where spiece.model has byte fallback on."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer runs spiece.model itself
        return True
    return bool(json.loads(backend.to_str())["model"].get("byte_fallback", False))


def _without_byte_fallback(model_bytes: bytes) -> bytes:
    """spiece.model with byte fallback off: libsentencepiece then emits <unk> for a run of unknown
    characters, as transformers' tokenizer does, instead of UTF-8 byte pieces. The byte pieces keep
    their ids but become UNUSED (SentencePiece refuses BYTE pieces without byte fallback), so no
    encoding produces them."""
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(model_bytes)
    model.trainer_spec.byte_fallback = False
    for piece in model.pieces:
        if piece.type == sentencepiece_model_pb2.ModelProto.SentencePiece.BYTE:
            piece.type = sentencepiece_model_pb2.ModelProto.SentencePiece.UNUSED
    return model.SerializeToString()


def _checkpoint_tokenizer(folder: Path, model_bytes: bytes, processor: spm.SentencePieceProcessor,
                          tokenizer, text_vocab_size: int,
                          max_sequence_length: int) -> CheckpointTokenizer:
    model_path = folder / SENTENCEPIECE_FILE
    if not _uses_byte_fallback(tokenizer):
        model_bytes = _without_byte_fallback(model_bytes)
        processor = load_processor(model_bytes)
    ids = {"pad_id": tokenizer.pad_token_id, "eos_id": tokenizer.eos_token_id,
           "unk_id": tokenizer.unk_token_id}
    for key, value in ids.items():
        if value is None or not 0 <= value < text_vocab_size:
            raise ExportError(f"{folder}: {key}: got {value}, expected a token id below the text "
                              f"encoder's vocab_size {text_vocab_size}")
    if processor.GetPieceSize() > text_vocab_size:
        raise ExportError(f"{model_path}: got {processor.GetPieceSize()} pieces, expected at most "
                          f"the text encoder's vocab_size {text_vocab_size}")
    model_max_length = tokenizer.model_max_length
    max_length = min(max_sequence_length, int(model_max_length)) if model_max_length else \
        max_sequence_length
    prompts = list(TEST_PROMPTS)
    if len(tokenizer(prompts[-1], add_special_tokens=False)["input_ids"]) < max_length:
        prompts.append(_truncation_prompt(tokenizer, max_length))
    cases, mismatches = [], []
    for prompt in prompts:
        encoded = tokenizer(prompt, padding="max_length", max_length=max_length, truncation=True,
                            add_special_tokens=True)
        pieces = tokenizer.convert_ids_to_tokens(
            tokenizer(prompt, add_special_tokens=False)["input_ids"])
        case = {"prompt": prompt, "pieces": pieces, "ids": list(encoded["input_ids"]),
                "attention_mask": list(encoded["attention_mask"])}
        cases.append(case)
        rule_ids, rule_mask = encode(processor, prompt, max_length, ids["pad_id"], ids["eos_id"])
        if (rule_ids, rule_mask) != (case["ids"], case["attention_mask"]):
            first = next((i for i, (a, b) in enumerate(zip(rule_ids, case["ids"])) if a != b), 0)
            mismatches.append(f"prompt {prompt[:40]!r}: libsentencepiece with the bundle rule gives "
                              f"other ids than transformers from position {first} (e.g. byte "
                              "fallback against <unk>); tokenizer_test_vectors.json holds "
                              "transformers' ids")
    vectors = {"rule": RULE, "max_length": max_length, **ids, "cases": cases}
    return CheckpointTokenizer(model_bytes=model_bytes, max_length=max_length,
                               vocab_size=processor.GetPieceSize(), vectors=vectors,
                               rule_mismatches=mismatches, **ids)
