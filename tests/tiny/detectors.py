"""Tiny OWLv2, Grounding DINO and Florence-2 checkpoints: random weights (seeded) on small configs, with
small tokenizers built here, offline.

Each builder saves the model and its processor with ``save_pretrained``, so the backends load them
through the same code path as the real checkpoints. Every model sees small images (64x64 for OWLv2 and
Grounding DINO, 32x32 for Florence-2), so a forward pass takes milliseconds on a CPU. Their answers are
noise, except for Florence-2's, which can be wired to spell one fixed answer (see
:func:`build_tiny_florence2`); tests check shapes, frames and plumbing, never what a model finds.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from tests.tiny._common import bpe_vocab, make_folder, write_bpe

OWLV2_IMAGE_SIZE = 64
"""Side of the square the tiny OWLv2 sees (4x4 patches of 16 pixels)."""

GROUNDING_DINO_IMAGE_SIZE = 64
"""Shortest side the tiny Grounding DINO's processor resizes to (the longest is at most twice that)."""

FLORENCE2_IMAGE_SIZE = 32
"""Side of the square the tiny Florence-2 sees (8x8 vision tokens after a stride-4 convolution)."""

# Words the tiny tokenizers know whole; anything else falls back to bytes (BPE) or letters (WordPiece).
_WORDS = """person people cup cups bag bags luggage bottle chair table dog cat car bus bicycle plate
bowl fork knife spoon glass tray food bread red blue green left right the of and a photo locate in
image phrases caption"""


def build_tiny_owlv2(path: str | Path, *, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``Owlv2ForObjectDetection`` and its ``Owlv2Processor``.

    Args:
        path: the folder to write (created if missing).
        seed: torch seed of the random weights; the same seed gives the same weights.

    Returns:
        ``path``, ready for ``load_backend("owlv2", weights=f"file:{path}")``.
    """
    import torch
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    folder = make_folder(path)
    # OWLv2 treats a query whose first token id is 0 as padding, so "!" (the pad token) must be id 0
    # and the start token must not be: CLIP's real layout, bytes first and special tokens last.
    vocab, merges = bpe_vocab(_WORDS.split(), end_of_word="</w>")
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    max_tokens = 16
    config = Owlv2Config(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "max_position_embeddings": max_tokens,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "image_size": OWLV2_IMAGE_SIZE,
            "patch_size": 16,
        },
        projection_dim=32,
    )
    torch.manual_seed(seed)
    Owlv2ForObjectDetection(config).save_pretrained(folder)
    vocab_file, merges_file = write_bpe(folder, vocab, merges)
    tokenizer = CLIPTokenizer(
        vocab=vocab_file, merges=merges_file, pad_token="!", model_max_length=max_tokens
    )
    image_processor = Owlv2ImageProcessor(size={"height": OWLV2_IMAGE_SIZE, "width": OWLV2_IMAGE_SIZE})
    processor = Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)  # type: ignore[no-untyped-call]
    processor.save_pretrained(folder)
    return folder


def build_tiny_grounding_dino(path: str | Path, *, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``GroundingDinoForObjectDetection`` and its processor.

    The text side is a 2-layer BERT with a small WordPiece vocabulary (the words above, single letters
    and ``##`` letter pieces), the image side a 4-stage Swin with 8 channels.

    Args:
        path: the folder to write (created if missing).
        seed: torch seed of the random weights.

    Returns:
        ``path``, ready for ``load_backend("grounding-dino", weights=f"file:{path}")``.
    """
    import torch
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    folder = make_folder(path)
    vocab = _wordpiece_vocab(_WORDS.split())
    backbone = SwinConfig(
        window_size=4,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        image_size=GROUNDING_DINO_IMAGE_SIZE,
        out_indices=[2, 3, 4],  # type: ignore[call-arg]  # a backbone option, taken at run time
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config={
            "model_type": "bert",
            "vocab_size": len(vocab),
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 16,
            "max_position_embeddings": 64,
        },
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # the shared box heads are tied across layers, which needs two or more
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=20,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
        disable_custom_kernels=True,
    )
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    tokenizer = BertTokenizer(vocab=vocab, model_max_length=32)
    image_processor = GroundingDinoImageProcessor(
        size={"shortest_edge": GROUNDING_DINO_IMAGE_SIZE, "longest_edge": 2 * GROUNDING_DINO_IMAGE_SIZE}
    )
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)  # type: ignore[no-untyped-call]
    processor.save_pretrained(folder)
    return folder


def build_tiny_florence2(path: str | Path, *, seed: int = 0, answer: str | None = None) -> Path:
    """Save a randomly initialised tiny ``Florence2ForConditionalGeneration`` and its processor.

    The tokenizer is a byte-level BPE (BART's layout: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3,
    then the 256 bytes and merges spelling the words above), followed by Florence-2's location tokens
    ``<loc_0>`` .. ``<loc_999>``, its task markers and ``<image>``.

    Args:
        path: the folder to write (created if missing).
        seed: torch seed of the random weights.
        answer: when given, the decoder is rewired so that greedy decoding spells exactly this text
            (for example ``"cup<loc_100><loc_200><loc_300><loc_400>"``) and then ``</s>``, whatever the
            image and prompt: every decoder layer is silenced, and the output layer maps each token of
            the answer to the next. The answer must not repeat a token, as each token has one successor.
            Without it, the model writes random tokens.

    Returns:
        ``path``, ready for ``load_backend("florence-2", weights=f"file:{path}")``.
    """
    import torch
    from transformers import (
        BartTokenizer,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    folder = make_folder(path)
    vocab, merges = bpe_vocab(_WORDS.split(), end_of_word="", specials=("<s>", "<pad>", "</s>", "<unk>"))
    markers = ["<od>", "</od>", "<ocr>", "</ocr>", "<poly>", "</poly>", "<sep>", "<image>"]
    extra = ["<mask>", *(f"<loc_{i}>" for i in range(1000)), *markers]
    for token in extra:
        vocab[token] = len(vocab)
    grid = FLORENCE2_IMAGE_SIZE // 4
    d_model = 32
    config = Florence2Config(
        text_config={
            "model_type": "bart",
            "vocab_size": len(vocab),
            "d_model": d_model,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "encoder_ffn_dim": 32,
            "decoder_ffn_dim": 32,
            "max_position_embeddings": 256,
            "bos_token_id": 0,
            "pad_token_id": 1,
            "eos_token_id": 2,
            "decoder_start_token_id": 2,
            "forced_bos_token_id": 0,
            "forced_eos_token_id": 2,
            "scale_embedding": False,
        },
        vision_config={
            "depths": [1],
            "patch_size": [7],
            "patch_stride": [4],
            "patch_padding": [3],
            "patch_prenorm": [False],
            "embed_dim": [16],
            "num_heads": [2],
            "num_groups": [2],
            "window_size": 4,
            "drop_path_rate": 0.0,
            "projection_dim": d_model,
            "max_position_embeddings": grid,
        },
        image_token_id=vocab["<image>"],
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config)
    vocab_file, merges_file = write_bpe(folder, vocab, merges)
    tokenizer = BartTokenizer(
        vocab=vocab_file,
        merges=merges_file,
        model_max_length=256,
        extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.add_tokens(extra[:-1])
    if answer is not None:
        _spell(model, [2, 0, *tokenizer.encode(answer, add_special_tokens=False), 2])
    model.generation_config.num_beams = 1
    model.generation_config.do_sample = False
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(
        do_resize=True,
        size={"height": FLORENCE2_IMAGE_SIZE, "width": FLORENCE2_IMAGE_SIZE},
        do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        image_seq_length=grid * grid + 1,
    )
    Florence2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        post_processor_config=_FLORENCE2_POST_PROCESSOR,
    ).save_pretrained(folder)
    return folder


# Florence-2's own parsing rules, as the real checkpoints ship them.
_FLORENCE2_POST_PROCESSOR = {
    "ocr": {"AREA_THRESHOLD": 0.0},
    "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}


def _spell(model: object, chain: list[int]) -> None:
    """Rewire a BART-style decoder so that greedy decoding after ``chain[0]`` follows ``chain``.

    With every decoder layer's output projections zeroed, each layer passes its input through, so the
    final hidden state depends only on the current token (positions are zeroed too). The output layer
    (untied from the input embeddings) then scores, for each token of the chain, its successor highest,
    with a probability of about 0.85.
    """
    import torch

    succ: dict[int, int] = {}
    for token, nxt in itertools.pairwise(chain):
        if succ.get(token, nxt) != nxt:
            raise ValueError(
                f"the answer repeats token {token} with different successors; use distinct tokens"
            )
        succ[token] = nxt
    lm = model.model.language_model  # type: ignore[attr-defined]
    decoder = lm.decoder
    with torch.no_grad():
        for layer in decoder.layers:
            for proj in (layer.self_attn.out_proj, layer.encoder_attn.out_proj, layer.fc2):
                proj.weight.zero_()
                proj.bias.zero_()
        decoder.embed_positions.weight.zero_()
        hidden = decoder.layernorm_embedding(decoder.embed_tokens.weight)
        for layer in decoder.layers:  # BART is post-norm: each sub-layer ends in a layer norm
            hidden = layer.final_layer_norm(layer.encoder_attn_layer_norm(layer.self_attn_layer_norm(hidden)))
        head = model.lm_head  # type: ignore[attr-defined]
        head.weight = torch.nn.Parameter(head.weight.detach().clone() * 0.01)
        for token, nxt in succ.items():
            # a logit of about 9 for the successor: probability ~0.85 against the ~1500 other tokens
            head.weight[nxt] += 9.0 * hidden[token] / hidden[token].norm() ** 2
    # Untie the output layer from the embeddings (the encoder and decoder still share theirs).
    model.config.tie_word_embeddings = False  # type: ignore[attr-defined]


def _wordpiece_vocab(words: list[str]) -> dict[str, int]:
    """A small BERT WordPiece vocabulary: special tokens, punctuation, digits, single letters, ``##``
    letter pieces and ``words`` whole (Grounding DINO splits its prompt on ".")."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(".,;:!?'\"-()/&+") + list("0123456789")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += letters + ["##" + c for c in letters] + ["##" + d for d in "0123456789"]
    tokens += [w for w in dict.fromkeys(words) if w not in tokens]
    return {token: i for i, token in enumerate(tokens)}
