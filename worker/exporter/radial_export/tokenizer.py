"""The tiny bundle's tokenizer: a SentencePiece unigram model trained at export time from corpus.txt,
and the rule that turns a prompt into the text encoder's inputs.

Ids follow UMT5's convention: pad 0, eos 1, unk 2, no bos. A prompt becomes its pieces' ids,
truncated to max_length - 1, then eos, then pad ids up to max_length; the attention mask is 1 on the
ids and the eos, 0 on padding. The C++ worker applies the same rule with libsentencepiece and checks
itself against tokenizer_test_vectors.json.

Training is deterministic: one thread, sentences streamed in file order, the model written to memory
(so no input path or output prefix ends up in the model's trainer spec).
"""

import io
from pathlib import Path
from typing import Dict, List, Tuple

import sentencepiece as spm

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


def encode(processor: spm.SentencePieceProcessor, prompt: str, max_length: int) -> Tuple[List[int], List[int]]:
    """(ids, attention_mask), both of length max_length, by the rule in the module docstring."""
    ids = processor.EncodeAsIds(prompt)[: max_length - 1] + [EOS_ID]
    mask = [1] * len(ids) + [0] * (max_length - len(ids))
    return ids + [PAD_ID] * (max_length - len(ids)), mask


def test_vectors(processor: spm.SentencePieceProcessor, max_length: int) -> Dict:
    cases = []
    for prompt in TEST_PROMPTS:
        ids, mask = encode(processor, prompt, max_length)
        cases.append({"prompt": prompt, "pieces": processor.EncodeAsPieces(prompt),
                      "ids": ids, "attention_mask": mask})
    return {
        "rule": "ids = sentencepiece_encode(prompt)[:max_length-1] + [eos_id], padded with pad_id "
                "to max_length; attention_mask 1 on ids and eos, 0 on padding",
        "max_length": max_length, "pad_id": PAD_ID, "eos_id": EOS_ID, "unk_id": UNK_ID,
        "cases": cases,
    }
