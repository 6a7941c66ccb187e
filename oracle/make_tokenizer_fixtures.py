"""Golden fixtures for @peft/models' tokenizer: a byte-level BPE (GPT-2 style), a byte-fallback BPE
(Llama style), a WordPiece (BERT style) and a byte-level BPE with RoBERTa's post-processor trained on a small text, saved as transformers saves them,
with what transformers' tokenizers give for encode (single, pairs), batch padding and truncation
(right and left), and decode.

run: oracle/.venv/bin/python oracle/make_tokenizer_fixtures.py
"""
import json
import pathlib
import shutil

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

OUT = pathlib.Path(__file__).resolve().parent.parent / "packages/models/test/fixtures/tokenizers"

CORPUS = """
The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced no evidence that any irregularities took place.
The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise and thanks of the City of Atlanta for the manner in which the election was conducted.
It recommended that Fulton legislators act to have these laws studied and revised to the end of modernizing and improving them.
Parameter-efficient fine-tuning adapts a frozen model with a few trainable weights: LoRA, adapters, prefixes and prompts.
Numbers like 1961, 3.14 and 42 appear; so do accents (café, naïve), punctuation!? and "quotes".
""".strip().split("\n") * 20

TEXTS = [
    "The jury said the election was conducted well.",
    "  leading spaces, and trailing  ",
    "café naïve 1961 3.14",
    "Unseen wordz: xylophone quixotic!",
    "",
    "a",
    "LoRA adapters and prompts.",
]
PAIRS = [["The jury said", "the election was fair."], ["Fulton County", "Atlanta"]]


def byte_level_bpe():
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")


def llama_bpe():
    tokenizer = Tokenizer(models.BPE(byte_fallback=True, fuse_unk=True, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>")


def wordpiece():
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def roberta_bpe():
    """RoBERTa's: byte-level BPE, <s> A </s> (pairs: <s> A </s></s> B </s>, one token type), <mask> last."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


def record(tok):
    nonempty = [t for t in TEXTS if t]
    expected = {
        "encode": [{"text": t, "ids": tok(t)["input_ids"], "ids_no_special": tok(t, add_special_tokens=False)["input_ids"]} for t in TEXTS],
        "pairs": [{"text": a, "pair": b, **{k: v for k, v in tok(a, b).items() if k in ("input_ids", "token_type_ids")}} for a, b in PAIRS],
        "decode": [{"ids": tok(t)["input_ids"], "text": tok.decode(tok(t)["input_ids"]),
                    "skip_special": tok.decode(tok(t)["input_ids"], skip_special_tokens=True)} for t in nonempty],
        "batch": [],
    }
    for side in ("right", "left"):
        tok.padding_side = side
        tok.truncation_side = side
        padded = tok(nonempty, padding=True)
        truncated = tok(nonempty, padding="max_length", truncation=True, max_length=6)
        expected["batch"].append({
            "padding_side": side,
            "texts": nonempty,
            "padded": {"input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"]},
            "truncated_max_length_6": {"input_ids": truncated["input_ids"], "attention_mask": truncated["attention_mask"]},
        })
    return expected


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    for name, build in (("byte-level-bpe", byte_level_bpe), ("llama-bpe", llama_bpe), ("wordpiece", wordpiece),
                        ("roberta-bpe", roberta_bpe)):
        tok = build()
        tok.save_pretrained(OUT / name)
        (OUT / name / "expected.json").write_text(json.dumps(record(tok), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
