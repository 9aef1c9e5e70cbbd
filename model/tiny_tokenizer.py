"""A small byte-level BPE tokenizer, trained locally and deterministically for tiny models.

Rules: nothing is downloaded; the training text is embedded below; the same arguments give the
same ``tokenizer.json`` byte for byte. Byte-level BPE can encode any text, so demos may use any
prompt even though the vocabulary is small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CORPUS", "write_tokenizer"]

CORPUS = """\
Darwin is a network for running large language models on computers that no single person owns.
A model is cut into spans of blocks, and each volunteer node serves one span. The client holds
the embeddings and the head; it sends hidden states from node to node until the last block has
run, then turns the result into the next token. Every node signs what it computed, and other
nodes check a random layer now and then by running it again. A node that lies is caught, and
its reputation falls; a node that tells the truth is trusted a little more each day.
The quick brown fox jumps over the lazy dog. The cat sat on the mat and looked at the moon.
In the morning the market opens early; farmers bring bread, cheese, apples and fresh milk.
Children walk to school along the river, talking about games, stories and the weather.
The old library keeps thousands of books about history, science, music and the sea.
When it rains, the streets grow quiet, and people read, cook, write letters or sleep.
Scientists measure the stars, the wind and the tides, and share what they learn with others.
A good engineer writes small functions, names things for what they are, and tests every path.
Water boils at one hundred degrees; ice melts when the sun is warm; seeds grow into trees.
Numbers like one, two, three, four, five, six, seven, eight, nine and ten are easy to count.
The train leaves the station at noon and arrives in the city before the evening lights.
She opened the window, listened to the birds, and began to paint the hills in green and gold.
"""

DECODER_SPECIALS = ("<pad>", "<s>", "</s>")
ENCODER_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def write_tokenizer(out: Path, *, vocab: int, encoder: bool, add_bos: bool) -> dict[str, int]:
    """Train on `CORPUS`, save a transformers-loadable tokenizer into `out`.

    Returns:
        The special tokens' ids by role (``pad``, ``bos``, ``eos``; ``cls``, ``sep``... for
        encoders), for the model config.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ENCODER_SPECIALS if encoder else DECODER_SPECIALS
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        min_frequency=2,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    ids: dict[str, int] = {}
    for token in specials:
        token_id = tokenizer.token_to_id(token)
        assert token_id is not None, f"trainer dropped special token {token}"
        ids[token] = token_id
    fast: Any = PreTrainedTokenizerFast  # transformers leaves its __init__ untyped
    if encoder:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
        )
        wrapped = fast(
            tokenizer_object=tokenizer,
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
        )
        wrapped.save_pretrained(str(out))
        return {"pad": ids["[PAD]"], "cls": ids["[CLS]"], "sep": ids["[SEP]"]}
    if add_bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B:1", special_tokens=[("<s>", ids["<s>"])]
        )
    wrapped = fast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    wrapped.save_pretrained(str(out))
    return {"pad": ids["<pad>"], "bos": ids["<s>"], "eos": ids["</s>"]}
