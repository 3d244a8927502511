"""The named protocols, each citing its source (paper table, script, commit). The kinds -- knobs, JSON,
hash, variants -- are fastseed.recipe.protocol's.
"""

from __future__ import annotations

import dataclasses
import difflib

from fastseed import FastseedError
from fastseed.recipe.protocol import EPOCH_RULE, Finetune, Phase, CifarProtocol

PICARD_SRC = ("Picard 2021, 'torch.manual_seed(3407) is all you need', arXiv 2109.08203, Table 1; "
              "recipe of the author's CIFAR-10 script (PROTOCOLS.md §1)")

RESNET18_SRC = ("the 'variance of randomness' ResNet-18 study (PROTOCOLS.md §3): torchvision ResNet-18 with "
                "10 outputs, Adam lr 1e-3, batch 128, 10 epochs, plain CE, no augmentation, mean/std 0.5; "
                "test loss = the mean of the per-batch mean losses over 79 test batches of 128, as the original")
# The test loss is the original's figure: test batches of 128, the mean of the per-batch means (the last
# batch holds 16 images, which so weigh 8x), so the study's numbers compare with the original's.
RESNET18 = CifarProtocol(name="resnet18-exp1", source=RESNET18_SRC + "; exp 1: init and data order vary",
                    model="resnet18", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), dtype="float32",
                    optimizer="adam", lr=1e-3, momentum=0.0, nesterov=False, weight_decay=0.0,
                    schedule="constant", epochs=10, batch_size=128, drop_last=False, eval_batch_size=128,
                    ce_weight=1.0, lsce_weight=0.0, lsce_eps=0.0, augment="none", cutout=0,
                    eval_rule="every", headline_rule="last", test_loss="batch_mean")

PRESETS = {
    p.name: p
    for p in [
        # 10,000 seeds in the paper: 90.02 ± 0.23 %, min 89.01, max 90.83. Headline = epoch 21 eval.
        CifarProtocol(name="picard-short", source=PICARD_SRC + ", short runs (22 epochs)"),
        # 500 seeds: 90.70 ± 0.20 %. Same schedule to epoch 21, then flat 0.01; the script's last eval
        # is epoch 41 of 45 (the headline); every epoch is evaluated for Figure 1.
        CifarProtocol(name="picard-long", source=PICARD_SRC + ", long runs (45 epochs), Figure 1",
                 epochs=45, lr_floor_from=22, eval_rule="every"),
        # Same code path as picard-short at CPU scale: 1/8 width, the first 5,000 training images,
        # 4 epochs of 10 batches of 500 (chunks of 500 as in Picard), every epoch evaluated on the
        # full test set. For demos and tests, not for science.
        CifarProtocol(name="smoke", source="fastseed CPU demo: picard-short code path at tiny scale",
                 width=0.125, train_size=5000, epochs=4,
                 lr_warmup_epochs=2, lr_decay_end=4, eval_rule="every", headline_rule="last",
                 eval_batch_size=1000),
        RESNET18,
        # exp 2: the original trains every epoch of every run on ONE permutation (a Subset shuffled once,
        # DataLoader(shuffle=False)): order_rule "once" with the order stream fixed. (`--fix order` on
        # other presets fixes a per-epoch sequence of permutations instead: another protocol.)
        dataclasses.replace(RESNET18, name="resnet18-exp2", fixed=("order",), order_rule="once",
                            source=RESNET18_SRC + "; exp 2: data order fixed (one permutation, reused every "
                                                  "epoch of every run), init varies"),
        # exp 3: the original creates its Adam optimizer once, before the loop over runs, so every run
        # after the first starts from the previous run's Adam moments and step count: a chain, not
        # independent samples. fastseed starts every run with a fresh Adam, and says so here.
        dataclasses.replace(RESNET18, name="resnet18-exp3", fixed=("init",),
                            source=RESNET18_SRC + "; exp 3: init fixed, data order varies. Deviation: the "
                                                  "original chains one Adam optimizer's state across its runs "
                                                  "(created once, before the loop); fastseed starts every run "
                                                  "with a fresh Adam, so runs are independent samples"),
        # airbench94: 94.01 % mean over 1,000 runs in the paper. Every number is the package's
        # (airbench 0.1.8: hyp, make_net94, train, CifarLoader, infer); the net is models/airbench.py.
        # 48 steps of 1,024 an epoch, ceil(48 · 9.9) = 476 steps: 9 epochs and 44 steps of a 10th.
        CifarProtocol(name="fast94", source=(
            "Jordan 2024, '94% on CIFAR-10 in 3.29 seconds on a single GPU', arXiv 2404.00498: airbench94 "
            "as in the PyPI package airbench 0.1.8 (PROTOCOLS.md §4): whitening 2x2 conv + 3 ConvGroups "
            "64/256/256, GELU, BN weights frozen, logits/9; batch 1024, 9.9 epochs, Nesterov SGD 0.85, "
            "lr 11.5 and wd 0.0153 per 1024 examples, loss summed, BN-bias lr x64, triangle lr "
            "0.2 -> 1 at 23 % -> 0.07, label smoothing 0.2, lookahead every 5 steps (0.95^5 (t/T)^3), "
            "translate 2 (reflect) + alternating flip, TTA level 2, eval at the end"),
            model="airbench94", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
            logit_scale=1 / 9, bn_eps=1e-12, bn_momentum=1 - 0.6, dtype="float16",
            epochs=10, train_epochs=9.9, batch_size=1024, eval_batch_size=2000, drop_last=True,
            optimizer="sgd", lr=11.5, momentum=0.85, nesterov=True, weight_decay=0.0153,
            hyper_units="per1024", bias_scaler=64.0, schedule="triangle", lr_triangle=(0.2, 0.23, 0.07),
            ce_weight=0.0, lsce_weight=1.0, lsce_eps=0.2, loss_reduction="sum",
            augment="image", crop_pad=2, pad_mode="reflect", flip=True, flip_rule="alternate", cutout=0,
            whiten_bias_epochs=3, lookahead_every=5, lookahead_decay=0.95, lookahead_power=3.0,
            tta=2, eval_rule="last", headline_rule="last"),
    ]
}


def get_preset(name: str) -> CifarProtocol | Finetune:
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, PRESETS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise FastseedError(f"unknown preset {name!r}{hint}; choose one of: {', '.join(PRESETS)}") from None


# --- ImageNet fine-tuning (Picard Table 2) ------------------------------------------------------------
IMAGENET_SRC = ("Picard 2021, arXiv 2109.08203, Table 2 (50 seeds each): ImageNet fine-tuning, "
                "PROTOCOLS.md §2")
# Phase 1 (linear head): backbone frozen with BatchNorm in train mode, CE + LSCE(0.1), batch 128,
# evaluated every 1,000 steps. Phase 2 (everything trains): plain CE, evaluated every 2,000 steps.
# The supervised ResNet50 (the author's imagenet.py): cosines stepped every 1,000 / 2,000 steps.
RN50_PHASES = (Phase("head", "head", steps=2000, batch_size=128, lr=0.02, t_max=EPOCH_RULE, eta_min=0.001,
                     sched_every=1000, eval_every=1000, lsce_weight=1.0, lsce_eps=0.1),
               Phase("full", "all", steps=24000, batch_size=64, lr=5e-4, t_max=12, eta_min=1e-4,
                     sched_every=2000, eval_every=2000))
# DINO ResNet50 (imagenet_ssl.py at the last commit where its ResNet50 lines were active, "ftlr 0.04"):
# it "required more steps" than the supervised one: 4,000 head steps at lr 0.1, then 24,000 full steps.
DINO_RN50_PHASES = (Phase("head", "head", steps=4000, batch_size=128, lr=0.1, t_max=4000, eta_min=0.001,
                          sched_every=1, eval_every=1000, lsce_weight=1.0, lsce_eps=0.1),
                    Phase("full", "all", steps=24000, batch_size=128, lr=0.04, t_max=24000, eta_min=1e-4,
                          sched_every=1, eval_every=2000))
# DINO ViT-S/16 (imagenet_ssl.py, last commit).
DINO_VIT_PHASES = (Phase("head", "head", steps=2000, batch_size=128, lr=0.01, t_max=2000, eta_min=0.001,
                         sched_every=1, eval_every=1000, lsce_weight=1.0, lsce_eps=0.1),
                   Phase("full", "all", steps=26000, batch_size=128, lr=1e-4, t_max=26000, eta_min=1e-6,
                         sched_every=1, eval_every=2000))
IMAGENET_PRESETS = [
    # 75.48 ± 0.10 [75.25, 75.69] in the paper; ~2 h a seed on a V100. Head: kaiming_uniform_ (a = 0).
    Finetune("imagenet-rn50", IMAGENET_SRC + ", ResNet50 (supervised, torchvision weights)", "resnet50",
             RN50_PHASES, head_init="kaiming-a0"),
    # 75.15 ± 0.08 [74.98, 75.35]; ~3 h a seed.
    Finetune("imagenet-dino-rn50", IMAGENET_SRC + ", ResNet50 SSL (DINO)", "dino_resnet50", DINO_RN50_PHASES,
             head_init="kaiming-a0"),
    # 76.83 ± 0.11 [76.63, 77.09]; ~3 h 40 a seed. Features: the 384-d CLS token. Head: normal(0, 1e-5),
    # which is what head_init None means for the ViT (its hash is the one stores were written under).
    Finetune("imagenet-dino-vits16", IMAGENET_SRC + ", ViT SSL (DINO ViT-S/16)", "dino_vits16", DINO_VIT_PHASES),
]
PRESETS.update({p.name: p for p in IMAGENET_PRESETS})
