"""Offline stand-ins for the text examples: a word-level tokenizer trained on the example's own text.

Online users pass ``--model_name_or_path`` (and ``--dataset_name``) to load a real tokenizer,
model and dataset from the Hub instead.
"""

from __future__ import annotations


def word_tokenizer(texts: list[str], bos_eos: bool = False):
    """A ``PreTrainedTokenizerFast`` over the words of ``texts`` (lower-cased), with pad/unk (and bos/eos)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=special, min_frequency=1))
    if bos_eos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
