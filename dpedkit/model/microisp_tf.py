"""The published MicroISP weights (aiff22/MicroISP ``pretrained_weights/MicroISP.ckpt``, a
TensorFlow checkpoint, read with :mod:`dpedkit.model.tfbundle`) as a state dict of
:class:`dpedkit.model.microisp.MicroISP`.

The checkpoint's names, per stage scope ``generator-1`` / ``generator-2`` (``s`` = 1, 2):
``<i>_w<s>_<j>``, ``<i>_b<s>_<j>`` (block ``j`` of branch ``i``), ``<i>_w<s>_out``,
``<i>_b<s>_out`` (kernels ``[H, W, in, out]``); the attentions' unnamed ``Variable``,
``Variable_1`` … in creation order (per attention: four reduce convolutions, then the two
1×1 layers, each kernel then bias); the PReLU slopes ``p_re_lu``, ``p_re_lu_1`` … (one
counter over the whole graph) in call order: per branch the blocks' and attentions'
activations as the forward pass meets them.
"""

from __future__ import annotations

import numpy as np
import torch

from dpedkit.model.microisp import MicroISP


def _kernel(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32).transpose(3, 2, 0, 1)))


def official_state_dict(variables: dict[str, np.ndarray], model: MicroISP | None = None) -> dict[str, torch.Tensor]:
    """Our state dict from the checkpoint's variables (module docstring); raises KeyError naming a missing one."""
    model = model or MicroISP()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    prelu_k = 0

    def prelu_name(scope):
        nonlocal prelu_k
        name = f"{scope}/p_re_lu" + ("" if prelu_k == 0 else f"_{prelu_k}") + "/alpha"
        prelu_k += 1
        return name

    for s, stage_name in ((1, "stage1"), (2, "stage2")):
        scope, stage, var_k = f"generator-{s}", getattr(model, stage_name), 0
        g = len(stage.convs[-1].weight) // 4
        for i in range(g):
            rows = slice(4 * i, 4 * i + 4)
            for j in range(len(stage.convs)):
                sd[f"{stage_name}.convs.{j}.weight"][rows] = _kernel(variables[f"{scope}/{i}_w{s}_{j}"])
                sd[f"{stage_name}.convs.{j}.bias"][rows] = torch.from_numpy(variables[f"{scope}/{i}_b{s}_{j}"])
                sd[f"{stage_name}.acts.{j}.weight"][rows] = torch.from_numpy(variables[prelu_name(scope)].ravel())
                if str(j) not in stage.attention:
                    continue
                pre = f"{stage_name}.attention.{j}"
                layers = [f"reduce.{r}" for r in range(4)] + ["fc1", "fc2"]
                acts = [f"reduce_act.{r}" for r in range(4)] + ["fc1_act"]
                for n, layer in enumerate(layers):
                    for part in ("weight", "bias"):
                        name = f"{scope}/Variable" + ("" if var_k == 0 else f"_{var_k}")
                        var_k += 1
                        value = _kernel(variables[name]) if part == "weight" else torch.from_numpy(variables[name])
                        sd[f"{pre}.{layer}.{part}"][rows] = value
                    if n < len(acts):
                        sd[f"{pre}.{acts[n]}.weight"][rows] = torch.from_numpy(variables[prelu_name(scope)].ravel())
            sd[f"{stage_name}.out.weight"][rows] = _kernel(variables[f"{scope}/{i}_w{s}_out"])
            sd[f"{stage_name}.out.bias"][rows] = torch.from_numpy(variables[f"{scope}/{i}_b{s}_out"])
    return sd
