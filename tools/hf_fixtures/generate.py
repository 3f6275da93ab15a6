#!/usr/bin/python3
"""Reference fixtures for `tinymoe moe`: one MoE layer of a HuggingFace model type, in plain PyTorch.

HuggingFace transformers is not installable in tinymoe's build environment, so this script
re-implements, in its own code, the eval-mode forward of one sparse MoE layer of each model type
below, following the semantics (operation order, dtypes, masking) of the HF source it cites:

  mixtral              src/transformers/models/mixtral/modeling_mixtral.py
                       MixtralSparseMoeBlock, MixtralBlockSparseTop2MLP, load_balancing_loss_func
                       (read at commit 00d4b3d2142cb4ced2f51b90614b5d26bc045015)
  qwen2_moe            src/transformers/models/qwen2_moe/modeling_qwen2_moe.py
                       Qwen2MoeSparseMoeBlock, Qwen2MoeMLP, load_balancing_loss_func
                       (read at commit 00a3f9386614dde0dc41cf4e9b8d0abd3af0671d)
  qwen3_moe            src/transformers/models/qwen3_moe/modeling_qwen3_moe.py
                       Qwen3MoeSparseMoeBlock, Qwen3MoeMLP, load_balancing_loss_func
                       (read at commit 00d4b3d2142cb4ced2f51b90614b5d26bc045015)
  olmoe                src/transformers/models/olmoe/modeling_olmoe.py
                       OlmoeSparseMoeBlock, OlmoeMLP, load_balancing_loss_func
                       (read at commit 00dcc6dda6f6d8e69541a6b51f97986a80242367)
  glm4_moe             src/transformers/models/glm4_moe/modeling_glm4_moe.py
                       Glm4MoeMoE, Glm4MoeTopkRouter, Glm4MoeMLP: DeepSeek-V3's block line for line
                       (read at commit a0699c971daff96403489086fcfd07469d20b17f)
  deepseek_v2          src/transformers/models/deepseek_v2/modeling_deepseek_v2.py
                       DeepseekV2MoE, DeepseekV2MoEGate, DeepseekV2MLP
                       (read at commit 03eac6f6d2af7e8562113f0b78d3d2d59a7d843d)
  deepseek_v3          src/transformers/models/deepseek_v3/modeling_deepseek_v3.py
                       DeepseekV3MoE, DeepseekV3TopkRouter, DeepseekV3MLP
                       (read at commit 00b676f8f0489b88652a31d70751cc540dd06305)
  llama4_text          src/transformers/models/llama4/modeling_llama4.py
                       Llama4TextMoe, Llama4Router, Llama4TextExperts, Llama4TextMLP
                       (read at commit 63210d0e3b74c2119b7998ff65bc6a2729283626, with the
                       router_scores transpose that huggingface/transformers#40609 restored)
  gpt_oss              src/transformers/models/gpt_oss/modeling_gpt_oss.py
                       GptOssMLP, GptOssTopKRouter, GptOssExperts (the loop path)
                       (read at commit 6edf5b311854175ff83c59179b3360beca1ceffc)
  switch_transformers  src/transformers/models/switch_transformers/modeling_switch_transformers.py
                       SwitchTransformersSparseMLP, SwitchTransformersTop1Router,
                       SwitchTransformersDenseActDense, router_z_loss_func, load_balancing_loss_func
                       (read at commit 00dcc6dda6f6d8e69541a6b51f97986a80242367, the v4 layout)

Each block is checked against a second, dense formulation (every expert on every token, combined
with a dense [T, E] weight matrix) before anything is written. The file conventions are specified
in docs/hf_check.md, which is the contract for the C++ side.

Usage:  /usr/bin/python3 tools/hf_fixtures/generate.py --out tests/data/hf [--check]
Deterministic: one CPU thread, seeded torch.Generator, safetensors written by hand with sorted
names, so a rerun on the same PyTorch build reproduces identical bytes (--check verifies that).
"""

import argparse
import hashlib
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F
from torch import nn

MIN_MARGIN = 1e-3  # every discrete choice must win by at least this much (see check_* below)


# ----------------------------------------------------------------------------------------------
# safetensors, written by hand (format: 8-byte little-endian header length N, N bytes of JSON
# header {name: {dtype, shape, data_offsets}}, then the raw little-endian tensor bytes).
# ----------------------------------------------------------------------------------------------

def safetensors_bytes(tensors):
    """Serialise {name: f32 tensor} deterministically: names sorted, data packed in that order,
    header padded with spaces to a multiple of 8 bytes (as the reference Rust writer does)."""
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous().reshape(-1)
        values = t.tolist()  # each f32 converts exactly to a Python float and back
        blob = struct.pack("<%df" % len(values), *values)
        header[name] = {
            "dtype": "F32",
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def load_safetensors(data):
    """Parse bytes written by safetensors_bytes (F32 only) back to {name: tensor}."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32"
        lo, hi = info["data_offsets"]
        count = (hi - lo) // 4
        values = struct.unpack("<%df" % count, data[base + lo:base + hi])
        out[name] = torch.tensor(values, dtype=torch.float32).reshape(info["shape"])
    return out


# ----------------------------------------------------------------------------------------------
# Expert MLPs
# ----------------------------------------------------------------------------------------------

class SwiGLUExpertW(nn.Module):
    """MixtralBlockSparseTop2MLP (modeling_mixtral.py): w2(act(w1 x) * w3 x), act = silu."""

    def __init__(self, d, f):
        super().__init__()
        self.w1 = nn.Linear(d, f, bias=False)
        self.w2 = nn.Linear(f, d, bias=False)
        self.w3 = nn.Linear(d, f, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SwiGLUExpertProj(nn.Module):
    """Qwen2MoeMLP (modeling_qwen2_moe.py) and DeepseekV3MLP (modeling_deepseek_v3.py):
    down_proj(act(gate_proj x) * up_proj x), act = silu."""

    def __init__(self, d, f):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class ReluExpert(nn.Module):
    """SwitchTransformersDenseActDense (T5DenseActDense), dense_act_fn = relu, no bias; its
    dropout is the identity in eval mode."""

    def __init__(self, d, f):
        super().__init__()
        self.wi = nn.Linear(d, f, bias=False)
        self.wo = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.wo(F.relu(self.wi(x)))


def combine_topk(x, experts, selected, weights, num_experts):
    """The HF expert loop shared by MixtralSparseMoeBlock / Qwen2MoeSparseMoeBlock /
    DeepseekV3MoE.moe: one-hot [T,k,E] -> per expert the (token, slot) pairs that chose it, expert
    output times the slot's weight, index_add into a zero [T, d] accumulator, experts in
    ascending order."""
    out = torch.zeros(x.shape, dtype=weights.dtype)
    mask = F.one_hot(selected, num_classes=num_experts)  # [T, k, E]
    for e in range(num_experts):
        tok, slot = torch.where(mask[:, :, e])
        if tok.numel() == 0:
            continue
        y = experts[e](x[tok]) * weights[tok, slot].unsqueeze(-1)
        out = out.index_add(0, tok, y.to(out.dtype))
    return out


# ----------------------------------------------------------------------------------------------
# mixtral: MixtralSparseMoeBlock (modeling_mixtral.py)
# ----------------------------------------------------------------------------------------------

class MixtralSparseMoeBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, f, E = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_local_experts"]
        self.num_experts, self.top_k = E, cfg["num_experts_per_tok"]
        self.gate = nn.Linear(d, E, bias=False)
        self.experts = nn.ModuleList([SwiGLUExpertW(d, f) for _ in range(E)])

    def route(self, logits):
        # softmax in f32 over all E experts, then top-k of the probabilities, then always
        # renormalise the k kept probabilities to sum to 1.
        probs = F.softmax(logits, dim=1, dtype=torch.float32)
        weights, selected = torch.topk(probs, self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return selected, weights

    def forward(self, h):
        B, S, d = h.shape
        x = h.reshape(B * S, d)
        logits = self.gate(x)  # router_logits [B*S, E]; eval mode: router_jitter_noise unused
        selected, weights = self.route(logits)
        out = combine_topk(x, self.experts, selected, weights.to(x.dtype), self.num_experts)
        return out.reshape(B, S, d), logits, selected, weights


def hf_topk_load_balancing_loss(router_logits, num_experts, top_k):
    """load_balancing_loss_func of modeling_mixtral.py (Qwen2-MoE has a "Copied from" copy),
    called as XxxForCausalLM does with a tuple of one layer's logits and attention_mask=None:
      p = softmax(logits); sel = topk(p, k); mask = one_hot(sel) [T, k, E];
      tokens_per_expert = mean_T(mask)  -> [k, E]   (one row per top-k slot)
      prob_per_expert   = mean_T(p)     -> [E]
      loss = E * sum_{slot, e} tokens_per_expert[slot, e] * prob_per_expert[e]
    i.e. E * sum_e f_e P_e with f_e = (assignments to e) / T, NOT divided by k: uniform routing
    gives k, not 1. The raw value is returned (the model multiplies by router_aux_loss_coef)."""
    probs = F.softmax(router_logits, dim=-1)
    _, selected = torch.topk(probs, top_k, dim=-1)
    mask = F.one_hot(selected, num_experts)
    tokens_per_expert = torch.mean(mask.float(), dim=0)
    prob_per_expert = torch.mean(probs, dim=0)
    return torch.sum(tokens_per_expert * prob_per_expert.unsqueeze(0)) * num_experts


# ----------------------------------------------------------------------------------------------
# qwen2_moe: Qwen2MoeSparseMoeBlock (modeling_qwen2_moe.py)
# ----------------------------------------------------------------------------------------------

class Qwen2MoeSparseMoeBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, E = cfg["hidden_size"], cfg["num_experts"]
        self.num_experts, self.top_k = E, cfg["num_experts_per_tok"]
        self.norm_topk_prob = cfg["norm_topk_prob"]
        self.gate = nn.Linear(d, E, bias=False)
        self.experts = nn.ModuleList(
            [SwiGLUExpertProj(d, cfg["moe_intermediate_size"]) for _ in range(E)])
        self.shared_expert = SwiGLUExpertProj(d, cfg["shared_expert_intermediate_size"])
        self.shared_expert_gate = nn.Linear(d, 1, bias=False)

    def route(self, logits):
        # as Mixtral, but the k probabilities are renormalised only when norm_topk_prob
        probs = F.softmax(logits, dim=1, dtype=torch.float32)
        weights, selected = torch.topk(probs, self.top_k, dim=-1)
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return selected, weights

    def forward(self, h):
        B, S, d = h.shape
        x = h.reshape(B * S, d)
        logits = self.gate(x)
        selected, weights = self.route(logits)
        out = combine_topk(x, self.experts, selected, weights.to(x.dtype), self.num_experts)
        # shared expert on every token, gated per token by sigmoid(x . w_sg)
        shared = torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        out = out + shared
        return out.reshape(B, S, d), logits, selected, weights


# ----------------------------------------------------------------------------------------------
# qwen3_moe: Qwen3MoeSparseMoeBlock (modeling_qwen3_moe.py); olmoe: OlmoeSparseMoeBlock
# (modeling_olmoe.py). Both are Qwen2-MoE's routed half: softmax in f32, top-k, renormalised only
# with norm_topk_prob; no shared expert. Qwen3-MoE sizes the experts with moe_intermediate_size,
# OLMoE with intermediate_size.
# ----------------------------------------------------------------------------------------------

class SoftmaxTopkSparseMoeBlock(Qwen2MoeSparseMoeBlock):
    intermediate_key = None

    def __init__(self, cfg):
        nn.Module.__init__(self)
        d, E = cfg["hidden_size"], cfg["num_experts"]
        self.num_experts, self.top_k = E, cfg["num_experts_per_tok"]
        self.norm_topk_prob = cfg["norm_topk_prob"]
        self.gate = nn.Linear(d, E, bias=False)
        self.experts = nn.ModuleList([SwiGLUExpertProj(d, cfg[self.intermediate_key]) for _ in range(E)])

    def forward(self, h):
        B, S, d = h.shape
        x = h.reshape(B * S, d)
        logits = self.gate(x)
        selected, weights = self.route(logits)
        out = combine_topk(x, self.experts, selected, weights.to(x.dtype), self.num_experts)
        return out.reshape(B, S, d), logits, selected, weights


class Qwen3MoeSparseMoeBlock(SoftmaxTopkSparseMoeBlock):
    intermediate_key = "moe_intermediate_size"


class OlmoeSparseMoeBlock(SoftmaxTopkSparseMoeBlock):
    intermediate_key = "intermediate_size"


# ----------------------------------------------------------------------------------------------
# deepseek_v2: DeepseekV2MoE + DeepseekV2MoEGate (modeling_deepseek_v2.py)
# ----------------------------------------------------------------------------------------------

class DeepseekV2MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, f = cfg["hidden_size"], cfg["moe_intermediate_size"]
        self.E, self.top_k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
        self.grouped = cfg["topk_method"] == "group_limited_greedy"
        self.n_group, self.topk_group = cfg.get("n_group"), cfg.get("topk_group")  # HF defaults: None
        self.routed_scaling_factor = cfg["routed_scaling_factor"]
        self.gate = nn.Linear(d, self.E, bias=False)  # DeepseekV2MoEGate.weight [E, d]
        self.experts = nn.ModuleList([SwiGLUExpertProj(d, f) for _ in range(self.E)])
        self.shared_experts = SwiGLUExpertProj(d, f * cfg["n_shared_experts"])

    def route(self, logits):
        scores = logits.softmax(dim=-1, dtype=torch.float32)
        if not self.grouped:  # greedy
            weights, selected = torch.topk(scores, k=self.top_k, dim=-1, sorted=False)
        else:  # group_limited_greedy: a group's score is its max
            T = scores.shape[0]
            group_scores = scores.view(T, self.n_group, -1).max(dim=-1).values
            group_idx = torch.topk(group_scores, k=self.topk_group, dim=-1, sorted=False)[1]
            group_mask = torch.zeros_like(group_scores).scatter(1, group_idx, 1)
            score_mask = group_mask.unsqueeze(-1).expand(T, self.n_group, self.E // self.n_group).reshape(T, -1)
            weights, selected = torch.topk(scores.masked_fill(~score_mask.bool(), 0.0), k=self.top_k, dim=-1,
                                           sorted=False)
        # no renormalisation: HF's gate keeps norm_topk_prob without reading it
        return selected, weights * self.routed_scaling_factor

    def forward(self, h):
        B, S, d = h.shape
        x = h.reshape(B * S, d)
        logits = F.linear(x.to(torch.float32), self.gate.weight.to(torch.float32))
        selected, weights = self.route(logits)
        routed = combine_topk(x, self.experts, selected, weights, self.E).to(x.dtype)
        out = routed.reshape(B, S, d) + self.shared_experts(h)
        return out, logits, selected, weights


# ----------------------------------------------------------------------------------------------
# deepseek_v3: DeepseekV3MoE + DeepseekV3TopkRouter (modeling_deepseek_v3.py)
# ----------------------------------------------------------------------------------------------

class DeepseekV3TopkRouter(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.E = cfg["n_routed_experts"]
        self.top_k = cfg["num_experts_per_tok"]
        self.n_group, self.topk_group = cfg["n_group"], cfg["topk_group"]
        self.norm_topk_prob = cfg["norm_topk_prob"]
        self.routed_scaling_factor = cfg["routed_scaling_factor"]
        self.weight = nn.Parameter(torch.empty(self.E, cfg["hidden_size"]))
        # a persistent buffer (in the state dict, not a parameter, no gradient)
        self.register_buffer("e_score_correction_bias", torch.zeros(self.E))

    @torch.no_grad()
    def choose(self, scores):
        """get_topk_indices: selection on s + b, group-limited. Runs without gradient."""
        T = scores.shape[0]
        biased = scores + self.e_score_correction_bias.unsqueeze(0)
        per_group = biased.view(T, self.n_group, self.E // self.n_group)
        group_scores = per_group.topk(2, dim=-1)[0].sum(dim=-1)  # sum of the 2 best per group
        kept_groups = torch.topk(group_scores, k=self.topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores).scatter(1, kept_groups, 1.0)
        expert_mask = group_mask.unsqueeze(-1).expand(T, self.n_group, self.E // self.n_group)
        expert_mask = expert_mask.reshape(T, self.E)
        # HF fills the experts of dropped groups with 0.0 (not -inf); see docs/hf_check.md
        candidates = biased.masked_fill(~expert_mask.bool(), 0.0)
        return torch.topk(candidates, k=self.top_k, dim=-1, sorted=False)[1]

    def forward(self, x):
        logits = F.linear(x.to(torch.float32), self.weight.to(torch.float32))
        scores = logits.sigmoid()
        selected = self.choose(scores)
        weights = scores.gather(1, selected)  # unbiased scores: gradient flows here
        if self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        weights = weights * self.routed_scaling_factor
        return logits, selected, weights


class DeepseekV3MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, f = cfg["hidden_size"], cfg["moe_intermediate_size"]
        self.E = cfg["n_routed_experts"]
        self.experts = nn.ModuleList([SwiGLUExpertProj(d, f) for _ in range(self.E)])
        self.gate = DeepseekV3TopkRouter(cfg)
        self.shared_experts = SwiGLUExpertProj(d, f * cfg["n_shared_experts"])

    def forward(self, h):
        B, S, d = h.shape
        x = h.reshape(B * S, d)
        logits, selected, weights = self.gate(x)
        routed = combine_topk(x, self.experts, selected, weights, self.E).to(x.dtype)
        out = routed.reshape(B, S, d) + self.shared_experts(h)  # shared experts: ungated
        return out, logits, selected, weights


class Glm4MoeMoE(DeepseekV3MoE):
    """Glm4MoeMoE + Glm4MoeTopkRouter (modeling_glm4_moe.py): the same code as DeepSeek-V3's
    (f32 sigmoid scores, bias for the choice only, top-2 group sums, 0.0 fill, +1e-20, scaling,
    shared experts of moe_intermediate_size * n_shared_experts); only the config defaults differ
    (n_group 1, topk_group 1, routed_scaling_factor 1.0), and no loss."""


# ----------------------------------------------------------------------------------------------
# llama4_text: Llama4TextMoe + Llama4Router + Llama4TextExperts (modeling_llama4.py)
# ----------------------------------------------------------------------------------------------

class Llama4TextExperts(nn.Module):
    """Every expert on every row of its own [T, d] block: gate_up_proj [E, d, 2f] and down_proj
    [E, f, d] applied as x @ W (not nn.Linear's x W^T); gate = first f columns, up = last f."""

    def __init__(self, cfg):
        super().__init__()
        E, d, f = cfg["num_local_experts"], cfg["hidden_size"], cfg["intermediate_size"]
        self.E, self.d = E, d
        self.gate_up_proj = nn.Parameter(torch.empty(E, d, 2 * f))
        self.down_proj = nn.Parameter(torch.empty(E, f, d))

    def forward(self, x):  # x: [E * T, d], expert-major
        h = x.view(self.E, -1, self.d)
        gate, up = torch.bmm(h, self.gate_up_proj).chunk(2, dim=-1)
        return torch.bmm(up * F.silu(gate), self.down_proj).view(-1, self.d)


class Llama4TextMoe(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, E = cfg["hidden_size"], cfg["num_local_experts"]
        self.num_experts, self.top_k = E, cfg["num_experts_per_tok"]
        self.experts = Llama4TextExperts(cfg)
        self.router = nn.Linear(d, E, bias=False)  # Llama4Router(nn.Linear)
        self.shared_expert = SwiGLUExpertProj(d, cfg["intermediate_size"])  # Llama4TextMLP

    def route(self, logits):
        # Llama4Router: top-k of the raw logits, scattered into -inf, sigmoid in f32: the chosen
        # experts get sigmoid(logit), the others exactly 0. No renormalisation.
        top, selected = torch.topk(logits, self.top_k, dim=1)
        scores = torch.full_like(logits, float("-inf")).scatter(1, selected, top)
        return selected, torch.sigmoid(scores.float()).to(scores.dtype)  # [T, k], [T, E]

    def forward(self, h):
        B, S, d = h.shape
        x = h.reshape(B * S, d)
        logits = self.router(x)
        selected, scores = self.route(logits)
        # The score scales the expert's INPUT; the expert outputs are summed unweighted. Rows are
        # expert-major (e * T + t), so the [T, E] scores are transposed first (#40609).
        routed_in = x.repeat(self.num_experts, 1) * scores.transpose(0, 1).reshape(-1, 1)
        routed_out = self.experts(routed_in).reshape(self.num_experts, B * S, d).sum(dim=0)
        out = self.shared_expert(x) + routed_out
        return out.reshape(B, S, d), logits, selected, scores.gather(1, selected)


# ----------------------------------------------------------------------------------------------
# gpt_oss: GptOssMLP + GptOssTopKRouter + GptOssExperts (modeling_gpt_oss.py)
# ----------------------------------------------------------------------------------------------

GPT_OSS_LIMIT, GPT_OSS_ALPHA = 7.0, 1.702


class GptOssExperts(nn.Module):
    """x @ W layout: gate_up_proj [E, d, 2f] with gate in the even columns and up in the odd ones,
    biases, the clamps and OpenAI's (up + 1) * gate * sigmoid(1.702 gate)."""

    def __init__(self, cfg):
        super().__init__()
        E, d, f = cfg["num_local_experts"], cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_up_proj = nn.Parameter(torch.empty(E, d, 2 * f))
        self.gate_up_proj_bias = nn.Parameter(torch.empty(E, 2 * f))
        self.down_proj = nn.Parameter(torch.empty(E, f, d))
        self.down_proj_bias = nn.Parameter(torch.empty(E, d))

    def pre_activations(self, x, e):
        gate_up = x @ self.gate_up_proj[e] + self.gate_up_proj_bias[e]
        return gate_up[..., ::2], gate_up[..., 1::2]

    def expert(self, x, e):
        gate, up = self.pre_activations(x, e)
        gate = gate.clamp(min=None, max=GPT_OSS_LIMIT)
        up = up.clamp(min=-GPT_OSS_LIMIT, max=GPT_OSS_LIMIT)
        glu = gate * torch.sigmoid(gate * GPT_OSS_ALPHA)
        return ((up + 1) * glu) @ self.down_proj[e] + self.down_proj_bias[e]


class GptOssMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, E = cfg["hidden_size"], cfg["num_local_experts"]
        self.num_experts, self.top_k = E, cfg["num_experts_per_tok"]
        self.router = nn.Linear(d, E, bias=True)  # GptOssTopKRouter: weight [E, d], bias [E]
        self.experts = GptOssExperts(cfg)

    def route(self, logits):
        # top-k of the logits, softmax over the k chosen values only
        top, selected = torch.topk(logits, self.top_k, dim=-1)
        return selected, F.softmax(top, dim=1, dtype=top.dtype)

    def forward(self, h):
        B, S, d = h.shape
        x = h.reshape(B * S, d)
        logits = self.router(x)
        selected, weights = self.route(logits)
        out = torch.zeros_like(x)
        for e in range(self.num_experts):  # the loop path (CPU / training), index_add per expert
            tok, slot = torch.where(selected == e)
            if tok.numel() == 0:
                continue
            y = self.experts.expert(x[tok], e) * weights[tok, slot, None]
            out = out.index_add(0, tok, y)
        return out.reshape(B, S, d), logits, selected, weights


# ----------------------------------------------------------------------------------------------
# switch_transformers: SwitchTransformersSparseMLP + SwitchTransformersTop1Router
# (modeling_switch_transformers.py, v4 layout; see docs/hf_check.md for the v5 refactor)
# ----------------------------------------------------------------------------------------------

class SwitchTransformersTop1Router(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.E = cfg["num_experts"]
        self.expert_capacity = cfg["expert_capacity"]
        self.classifier = nn.Linear(cfg["d_model"], self.E, bias=cfg["router_bias"])

    def forward(self, h):
        # h: [B, S, d] -- every batch row is one group (sequence) for the capacity count.
        h = h.to(torch.float32)  # router_dtype float32; eval mode: no jitter
        logits = self.classifier(h)  # [B, S, E]
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)
        choice = torch.argmax(probs, dim=-1)
        onehot = F.one_hot(choice, num_classes=self.E)  # [B, S, E]
        # position of each token in its expert's queue, counted within its own sequence
        priority = torch.cumsum(onehot, dim=-2)
        onehot = onehot * (priority <= self.expert_capacity)
        chosen_prob = torch.max(probs, dim=-1).values.unsqueeze(-1)  # [B, S, 1], unmasked
        return onehot, chosen_prob, logits


class SwitchTransformersSparseMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.router = SwitchTransformersTop1Router(cfg)
        self.experts = nn.ModuleDict(
            {"expert_%d" % j: ReluExpert(cfg["d_model"], cfg["d_ff"]) for j in range(cfg["num_experts"])})

    def forward(self, h):
        B, S, d = h.shape
        router_mask, chosen_prob, logits = self.router(h)
        # argmax of the capacity-masked one-hot: a dropped token (all zeros) reports expert 0
        expert_index = torch.argmax(router_mask, dim=-1)
        next_states = torch.zeros_like(h)  # dropped tokens keep 0
        router_mask = router_mask.bool()
        for e in range(router_mask.shape[-1]):
            m = router_mask[:, :, e]
            if m.any():
                next_states = next_states.index_put((m,), self.experts["expert_%d" % e](h[m]))
        out = chosen_prob * next_states
        return out, logits.reshape(B * S, -1), router_mask, expert_index


def switch_router_z_loss(logits_bse):
    """router_z_loss_func: sum over tokens of logsumexp(logits)^2 / (B * S)."""
    B, S, _ = logits_bse.shape
    return torch.sum(torch.logsumexp(logits_bse, dim=-1) ** 2) / (B * S)


def switch_load_balancing_loss(probs_bse, expert_index_bs):
    """load_balancing_loss_func of modeling_switch_transformers.py, fed as
    SwitchTransformersForConditionalGeneration does: probs = softmax(router_logits) [B,S,E],
    expert_index = the SparseMLP's argmax of the capacity-masked mask [B,S] (dropped -> 0).
    Per group b: f_be = mean_S one_hot, P_be = mean_S probs; loss = mean_{b,e}(f*P) * E^2."""
    E = probs_bse.shape[-1]
    mask = F.one_hot(expert_index_bs.to(torch.int64).unsqueeze(2), E)  # [B, S, 1, E]
    mask = torch.max(mask, dim=-2).values.to(torch.float32)  # [B, S, E]
    tokens = torch.mean(mask, dim=-2)
    probs = torch.mean(probs_bse, dim=-2)
    return torch.mean(tokens * probs) * (E ** 2)


# ----------------------------------------------------------------------------------------------
# Dense formulations used only to cross-check the blocks above
# ----------------------------------------------------------------------------------------------

def dense_mix(x, experts, dense_w):
    out = torch.zeros_like(x)
    for e, ex in enumerate(experts):
        out = out + dense_w[:, e:e + 1] * ex(x)
    return out


SOFTMAX_TOPK_TYPES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe")
SIGMOID_GROUP_TYPES = ("deepseek_v3", "glm4_moe")


def dense_forward(model_type, block, cfg, h):
    B, S, d = h.shape
    x = h.reshape(B * S, d)
    if model_type in SOFTMAX_TOPK_TYPES:
        k = block.top_k
        p = torch.softmax(block.gate(x), dim=-1)
        order = torch.argsort(p, dim=-1, descending=True)[:, :k]
        w = p * torch.zeros_like(p).scatter(1, order, 1.0)
        if model_type == "mixtral" or cfg["norm_topk_prob"]:
            w = w / w.sum(-1, keepdim=True)
        out = dense_mix(x, block.experts, w)
        if model_type == "qwen2_moe":
            out = out + torch.sigmoid(x @ block.shared_expert_gate.weight.t()) * block.shared_expert(x)
    elif model_type in SIGMOID_GROUP_TYPES:
        g = block.gate
        s = torch.sigmoid(x @ g.weight.t())
        sb = (s + g.e_score_correction_bias).detach()
        gsz = g.E // g.n_group
        gscore = torch.stack([torch.sort(sb[:, i * gsz:(i + 1) * gsz], dim=-1, descending=True)[0][:, :2].sum(-1)
                              for i in range(g.n_group)], dim=-1)
        keep = torch.argsort(gscore, dim=-1, descending=True)[:, :g.topk_group]
        gmask = torch.zeros_like(gscore).scatter(1, keep, 1.0).repeat_interleave(gsz, dim=-1)
        cand = torch.where(gmask > 0, sb, torch.full_like(sb, -math.inf))
        sel = torch.argsort(cand, dim=-1, descending=True)[:, :g.top_k]
        w = s * torch.zeros_like(s).scatter(1, sel, 1.0)
        if g.norm_topk_prob:
            w = w / w.sum(-1, keepdim=True)
        w = w * g.routed_scaling_factor
        out = dense_mix(x, block.experts, w) + block.shared_experts(x)
    elif model_type == "llama4_text":
        # token by token: sum over the chosen e of expert_e(sigmoid(l_te) x_t), plus the shared expert
        logits = x @ block.router.weight.t()
        chosen = torch.argsort(logits, dim=-1, descending=True)[:, :block.top_k]
        f = block.experts.down_proj.shape[1]
        rows = []
        for t in range(x.shape[0]):
            row = block.shared_expert(x[t:t + 1])
            for e in chosen[t].tolist():
                xin = torch.sigmoid(logits[t, e]) * x[t:t + 1]
                gu = xin @ block.experts.gate_up_proj[e]
                row = row + (F.silu(gu[:, :f]) * gu[:, f:]) @ block.experts.down_proj[e]
            rows.append(row)
        out = torch.cat(rows, dim=0)
    elif model_type == "deepseek_v2":
        p = torch.softmax(x @ block.gate.weight.t(), dim=-1)
        cand = p
        if block.grouped:
            gsz = block.E // block.n_group
            gmax = torch.stack([p[:, i * gsz:(i + 1) * gsz].max(dim=-1).values for i in range(block.n_group)], dim=-1)
            keep = torch.argsort(gmax, dim=-1, descending=True)[:, :block.topk_group]
            gmask = torch.zeros_like(gmax).scatter(1, keep, 1.0).repeat_interleave(gsz, dim=-1)
            cand = torch.where(gmask > 0, p, torch.zeros_like(p))
        chosen = torch.argsort(cand, dim=-1, descending=True)[:, :block.top_k]
        w = p * torch.zeros_like(p).scatter(1, chosen, 1.0) * block.routed_scaling_factor
        out = dense_mix(x, block.experts, w) + block.shared_experts(x)
    elif model_type == "gpt_oss":
        # every expert on every token, weighted by a dense [T, E] softmax over each token's top k
        logits = x @ block.router.weight.t() + block.router.bias
        keep = torch.zeros_like(logits).scatter(1, torch.argsort(logits, dim=-1, descending=True)[:, :block.top_k], 1.0)
        w = torch.softmax(torch.where(keep > 0, logits, torch.full_like(logits, -math.inf)), dim=-1)
        out = dense_mix(x, [lambda z, e=e: block.experts.expert(z, e) for e in range(block.num_experts)], w)
    elif model_type == "switch_transformers":
        classifier = block.router.classifier
        p = torch.softmax(x @ classifier.weight.t() + (0 if classifier.bias is None else classifier.bias), dim=-1)
        choice = torch.argmax(p, dim=-1).reshape(B, S)
        keep = torch.zeros(B, S)
        for b in range(B):
            count = [0] * p.shape[-1]
            for t in range(S):
                count[int(choice[b, t])] += 1
                keep[b, t] = 1.0 if count[int(choice[b, t])] <= cfg["expert_capacity"] else 0.0
        w = torch.zeros_like(p).scatter(1, choice.reshape(-1, 1), 1.0) * keep.reshape(-1, 1) * p
        out = dense_mix(x, [block.experts["expert_%d" % j] for j in range(p.shape[-1])], w)
    return out.reshape(B, S, d)


# ----------------------------------------------------------------------------------------------
# Margins: every discrete choice must be robust to float noise
# ----------------------------------------------------------------------------------------------

def topk_gap(v, k):
    """min over rows of (k-th largest - (k+1)-th largest)."""
    s = torch.sort(v, dim=-1, descending=True)[0]
    return float((s[:, k - 1] - s[:, k]).min())


def check_routing(model_type, block, cfg, x, logits, selected):
    """Return (ok, facts). facts records margins and the properties the case must exhibit."""
    facts = {}
    if model_type == "deepseek_v2" and not block.grouped:
        p = torch.softmax(logits, dim=-1)
        facts["min_topk_prob_gap"] = topk_gap(p, block.top_k)
        facts["experts_used"] = len(set(selected.reshape(-1).tolist()))
        ok = facts["min_topk_prob_gap"] >= MIN_MARGIN and facts["experts_used"] == block.E
    if model_type == "deepseek_v2" and block.grouped:
        p = torch.softmax(logits, dim=-1)
        T, gsz = p.shape[0], block.E // block.n_group
        gmax = p.view(T, block.n_group, gsz).max(dim=-1).values
        facts["min_group_gap"] = topk_gap(gmax, block.topk_group)
        kept = torch.topk(gmax, block.topk_group, dim=-1)[1]
        gmask = torch.zeros_like(gmax).scatter(1, kept, 1.0).repeat_interleave(gsz, dim=-1)
        cand = torch.where(gmask > 0, p, torch.zeros_like(p))
        facts["min_topk_prob_gap_in_kept_groups"] = topk_gap(cand, block.top_k)
        plain = torch.sort(torch.topk(p, block.top_k, dim=-1)[1], dim=-1)[0]
        facts["tokens_where_group_limit_changes_choice"] = int((plain != torch.sort(selected, dim=-1)[0]).any(-1).sum())
        ok = (facts["min_group_gap"] >= MIN_MARGIN and facts["min_topk_prob_gap_in_kept_groups"] >= MIN_MARGIN
              and facts["tokens_where_group_limit_changes_choice"] > 0)
    if model_type == "gpt_oss":
        facts["min_topk_logit_gap"] = topk_gap(logits, block.top_k)
        facts["experts_used"] = len(set(selected.reshape(-1).tolist()))
        # every pre-activation of a chosen expert clear of the clamps (their gradient jumps there),
        # and some of each clamp cutting
        gaps, cuts = [], {"gate_above": 0, "up_above": 0, "up_below": 0}
        flat = x.reshape(-1, x.shape[-1])
        for t in range(flat.shape[0]):
            for e in selected[t].tolist():
                gate, up = block.experts.pre_activations(flat[t], e)
                gaps += [float((gate - GPT_OSS_LIMIT).abs().min()), float((up.abs() - GPT_OSS_LIMIT).abs().min())]
                cuts["gate_above"] += int((gate > GPT_OSS_LIMIT).sum())
                cuts["up_above"] += int((up > GPT_OSS_LIMIT).sum())
                cuts["up_below"] += int((up < -GPT_OSS_LIMIT).sum())
        facts["min_clamp_gap"] = min(gaps)
        facts["clamped_values"] = cuts
        ok = (facts["min_topk_logit_gap"] >= MIN_MARGIN and facts["experts_used"] == block.num_experts
              and facts["min_clamp_gap"] >= MIN_MARGIN and all(n > 0 for n in cuts.values()))
    if model_type == "llama4_text":
        facts["min_topk_logit_gap"] = topk_gap(logits, block.top_k)
        facts["experts_used"] = len(set(selected.reshape(-1).tolist()))
        ok = facts["min_topk_logit_gap"] >= MIN_MARGIN and facts["experts_used"] == block.num_experts
    if model_type in SOFTMAX_TOPK_TYPES:
        p = torch.softmax(logits, dim=-1)
        facts["min_topk_prob_gap"] = topk_gap(p, block.top_k)
        facts["min_topk_logit_gap"] = topk_gap(logits, block.top_k)
        ok = facts["min_topk_prob_gap"] >= MIN_MARGIN
        facts["experts_used"] = len(set(selected.reshape(-1).tolist()))
        ok = ok and facts["experts_used"] == block.num_experts
    if model_type in SIGMOID_GROUP_TYPES:
        g = block.gate
        s = torch.sigmoid(logits)
        sb = s + g.e_score_correction_bias
        T, gsz = sb.shape[0], g.E // g.n_group
        gscore = sb.view(T, g.n_group, gsz).topk(2, dim=-1)[0].sum(-1)
        # every group kept (topk_group == n_group): no group choice to be robust about
        facts["min_group_gap"] = topk_gap(gscore, g.topk_group) if g.topk_group < g.n_group else None
        kept = torch.topk(gscore, g.topk_group, dim=-1)[1]
        gmask = torch.zeros_like(gscore).scatter(1, kept, 1.0).repeat_interleave(gsz, dim=-1)
        cand = torch.where(gmask > 0, sb, torch.full_like(sb, -math.inf))
        facts["min_topk_gap_in_kept_groups"] = topk_gap(cand, g.top_k)
        kth = torch.sort(cand, dim=-1, descending=True)[0][:, g.top_k - 1]
        # the HF 0.0 fill of dropped groups never competes when every chosen s+b is > 0
        facts["min_chosen_biased_score"] = float(kth.min())
        ok = ((facts["min_group_gap"] is None or facts["min_group_gap"] >= MIN_MARGIN) and facts["min_topk_gap_in_kept_groups"] >= MIN_MARGIN
              and facts["min_chosen_biased_score"] >= MIN_MARGIN)
        # properties that make the case discriminating:
        plain_biased = torch.sort(torch.topk(sb, g.top_k, dim=-1)[1], dim=-1)[0]
        unbiased = torch.sort(torch.topk(torch.where(gmask > 0, s, torch.full_like(s, -math.inf)),
                                         g.top_k, dim=-1)[1], dim=-1)[0]
        chosen = torch.sort(selected, dim=-1)[0]
        facts["tokens_where_group_limit_changes_choice"] = int((plain_biased != chosen).any(-1).sum())
        facts["tokens_where_bias_changes_choice"] = int((unbiased != chosen).any(-1).sum())
        # (with one group, as GLM-4.5 has, the group limit cannot change anything)
        ok = ok and (facts["tokens_where_group_limit_changes_choice"] > 0 or g.n_group == 1) \
            and facts["tokens_where_bias_changes_choice"] > 0
    if selected is not None:
        facts["unused_experts"] = sorted(set(range(logits.shape[-1])) - set(selected.reshape(-1).tolist()))
    if model_type == "switch_transformers":
        B, S = x.shape[0], x.shape[1]
        p = torch.softmax(logits, dim=-1)
        facts["min_top1_prob_gap"] = topk_gap(p, 1)
        ok = facts["min_top1_prob_gap"] >= MIN_MARGIN
        choice = torch.argmax(p, dim=-1).reshape(B, S)
        onehot = F.one_hot(choice, p.shape[-1])
        per_seq_keep = (torch.cumsum(onehot, dim=1) <= cfg["expert_capacity"]) & (onehot > 0)
        per_seq_keep = per_seq_keep.any(-1)
        flat = onehot.reshape(B * S, -1)
        global_keep = ((torch.cumsum(flat, dim=0) <= cfg["expert_capacity"]) & (flat > 0)).any(-1).reshape(B, S)
        facts["dropped_tokens"] = int((~per_seq_keep).sum())
        facts["dropped_per_sequence"] = [int((~per_seq_keep[b]).sum()) for b in range(B)]
        facts["tokens_where_global_capacity_would_differ"] = int((per_seq_keep != global_keep).sum())
        facts["dropped_tokens_not_on_expert_0"] = int(((~per_seq_keep) & (choice != 0)).sum())
        ok = ok and all(n > 0 for n in facts["dropped_per_sequence"]) \
            and facts["tokens_where_global_capacity_would_differ"] > 0 \
            and facts["dropped_tokens_not_on_expert_0"] > 0 \
            and facts["dropped_tokens"] <= B * S // 3
    return ok, facts


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------

BLOCKS = {
    "mixtral": MixtralSparseMoeBlock,
    "qwen2_moe": Qwen2MoeSparseMoeBlock,
    "qwen3_moe": Qwen3MoeSparseMoeBlock,
    "olmoe": OlmoeSparseMoeBlock,
    "deepseek_v2": DeepseekV2MoE,
    "deepseek_v3": DeepseekV3MoE,
    "glm4_moe": Glm4MoeMoE,
    "llama4_text": Llama4TextMoe,
    "gpt_oss": GptOssMLP,
    "switch_transformers": SwitchTransformersSparseMLP,
}

SWITCH_CONFIG = {
    "architectures": ["SwitchTransformersForConditionalGeneration"],
    "model_type": "switch_transformers",
    "d_model": 8,
    "d_ff": 16,
    "num_experts": 4,
    "expert_capacity": 2,
    "router_bias": False,
    "router_jitter_noise": 0.01,
    "router_dtype": "float32",
    "router_ignore_padding_tokens": False,
    "dense_act_fn": "relu",
    "dropout_rate": 0.1,
    "router_z_loss_coef": 0.001,
    "router_aux_loss_coef": 0.001,
    "is_encoder_decoder": True,
    "num_layers": 2,
    "num_sparse_encoder_layers": 1,
    "num_decoder_layers": 2,
    "num_sparse_decoder_layers": 1,
    "torch_dtype": "float32",
}

CASES = [
    {
        "name": "mixtral_basic",
        "seed": 1100,
        "input_shape": [2, 6, 8],
        "prefix": "",
        "description": "Mixtral: softmax top-2 of 4 experts, always renormalised; [B, S, d] input.",
        "config": {
            "architectures": ["MixtralForCausalLM"],
            "model_type": "mixtral",
            "hidden_size": 8,
            "intermediate_size": 16,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "hidden_act": "silu",
            "router_aux_loss_coef": 0.02,
            "router_jitter_noise": 0.0,
            "output_router_logits": True,
            "num_hidden_layers": 1,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "mixtral_prefixed",
        "seed": 1200,
        "input_shape": [10, 8],
        "prefix": "model.layers.0.block_sparse_moe.",
        "description": "Mixtral with a [T, d] input (one sequence), weights under the checkpoint "
                       "prefix model.layers.0.block_sparse_moe. and a nonzero router_jitter_noise "
                       "that eval mode must ignore.",
        "config": {
            "architectures": ["MixtralForCausalLM"],
            "model_type": "mixtral",
            "hidden_size": 8,
            "intermediate_size": 12,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "hidden_act": "silu",
            "router_aux_loss_coef": 0.001,
            "router_jitter_noise": 0.1,
            "output_router_logits": True,
            "num_hidden_layers": 1,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "qwen2_moe_norm",
        "seed": 2100,
        "input_shape": [2, 5, 8],
        "prefix": "",
        "description": "Qwen2-MoE: softmax top-2 of 6, renormalised (norm_topk_prob true), plus a "
                       "sigmoid-gated shared expert.",
        "config": {
            "architectures": ["Qwen2MoeForCausalLM"],
            "model_type": "qwen2_moe",
            "hidden_size": 8,
            "intermediate_size": 24,
            "moe_intermediate_size": 8,
            "shared_expert_intermediate_size": 16,
            "num_experts": 6,
            "num_experts_per_tok": 2,
            "norm_topk_prob": True,
            "hidden_act": "silu",
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "router_aux_loss_coef": 0.001,
            "output_router_logits": True,
            "num_hidden_layers": 1,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "qwen2_moe_nonorm",
        "seed": 2200,
        "input_shape": [3, 4, 8],
        "prefix": "",
        "description": "Qwen2-MoE: softmax top-3 of 6 NOT renormalised (norm_topk_prob false, the "
                       "HF default), plus a sigmoid-gated shared expert.",
        "config": {
            "architectures": ["Qwen2MoeForCausalLM"],
            "model_type": "qwen2_moe",
            "hidden_size": 8,
            "intermediate_size": 24,
            "moe_intermediate_size": 8,
            "shared_expert_intermediate_size": 12,
            "num_experts": 6,
            "num_experts_per_tok": 3,
            "norm_topk_prob": False,
            "hidden_act": "silu",
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "router_aux_loss_coef": 0.001,
            "output_router_logits": True,
            "num_hidden_layers": 1,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "qwen3_moe_norm",
        "seed": 2300,
        "input_shape": [2, 5, 8],
        "prefix": "model.layers.0.mlp.",
        "description": "Qwen3-MoE: softmax top-3 of 8, renormalised (norm_topk_prob true, as the "
                       "released models set it), no shared expert; weights under the checkpoint "
                       "prefix model.layers.0.mlp.",
        "config": {
            "architectures": ["Qwen3MoeForCausalLM"],
            "model_type": "qwen3_moe",
            "hidden_size": 8,
            "intermediate_size": 24,
            "moe_intermediate_size": 6,
            "num_experts": 8,
            "num_experts_per_tok": 3,
            "norm_topk_prob": True,
            "hidden_act": "silu",
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "router_aux_loss_coef": 0.001,
            "output_router_logits": True,
            "num_hidden_layers": 1,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "olmoe_nonorm",
        "seed": 2400,
        "input_shape": [12, 8],
        "prefix": "",
        "description": "OLMoE: softmax top-2 of 6 NOT renormalised (norm_topk_prob false, the HF "
                       "default), experts sized by intermediate_size, no shared expert; [T, d] input.",
        "config": {
            "architectures": ["OlmoeForCausalLM"],
            "model_type": "olmoe",
            "hidden_size": 8,
            "intermediate_size": 10,
            "num_experts": 6,
            "num_experts_per_tok": 2,
            "norm_topk_prob": False,
            "hidden_act": "silu",
            "router_aux_loss_coef": 0.01,
            "output_router_logits": True,
            "num_hidden_layers": 1,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "deepseek_v2_grouped",
        "seed": 3300,
        "input_shape": [2, 6, 8],
        "prefix": "model.layers.1.mlp.",
        "description": "DeepSeek-V2: softmax scores, group_limited_greedy top-3 of 8 (4 groups scored by "
                       "their max, keep 2), weights x2.0 not renormalised, two shared experts; weights "
                       "under the checkpoint prefix model.layers.1.mlp.",
        "config": {
            "architectures": ["DeepseekV2ForCausalLM"],
            "model_type": "deepseek_v2",
            "hidden_size": 8,
            "intermediate_size": 32,
            "moe_intermediate_size": 6,
            "n_routed_experts": 8,
            "n_shared_experts": 2,
            "num_experts_per_tok": 3,
            "topk_method": "group_limited_greedy",
            "n_group": 4,
            "topk_group": 2,
            "routed_scaling_factor": 2.0,
            "norm_topk_prob": False,
            "hidden_act": "silu",
            "first_k_dense_replace": 1,
            "num_hidden_layers": 2,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "deepseek_v2_greedy",
        "seed": 3400,
        "input_shape": [10, 8],
        "prefix": "",
        "description": "DeepSeek-V2-Lite's routing: topk_method greedy (no group limit, n_group and "
                       "topk_group absent), softmax top-2 of 6 times routed_scaling_factor 16, one "
                       "shared expert; [T, d] input.",
        "config": {
            "architectures": ["DeepseekV2ForCausalLM"],
            "model_type": "deepseek_v2",
            "hidden_size": 8,
            "intermediate_size": 32,
            "moe_intermediate_size": 5,
            "n_routed_experts": 6,
            "n_shared_experts": 1,
            "num_experts_per_tok": 2,
            "topk_method": "greedy",
            "routed_scaling_factor": 16.0,
            "norm_topk_prob": False,
            "hidden_act": "silu",
            "first_k_dense_replace": 1,
            "num_hidden_layers": 2,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "deepseek_v3_grouped",
        "seed": 3100,
        "input_shape": [2, 6, 8],
        "prefix": "",
        "description": "DeepSeek-V3: sigmoid scores, e_score_correction_bias for selection only, "
                       "group-limited top-2 of 8 (4 groups, keep 2), renormalised, x2.5, one "
                       "ungated shared expert.",
        "config": {
            "architectures": ["DeepseekV3ForCausalLM"],
            "model_type": "deepseek_v3",
            "hidden_size": 8,
            "intermediate_size": 32,
            "moe_intermediate_size": 8,
            "n_routed_experts": 8,
            "n_shared_experts": 1,
            "num_experts_per_tok": 2,
            "n_group": 4,
            "topk_group": 2,
            "norm_topk_prob": True,
            "routed_scaling_factor": 2.5,
            "scoring_func": "sigmoid",
            "topk_method": "noaux_tc",
            "hidden_act": "silu",
            "first_k_dense_replace": 0,
            "num_hidden_layers": 1,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "glm4_moe_ungrouped",
        "seed": 3200,
        "input_shape": [3, 4, 8],
        "prefix": "model.layers.1.mlp.",
        "description": "GLM-4.5: DeepSeek-V3's sigmoid router with e_score_correction_bias, one group "
                       "(n_group 1, as the released models), top-3 of 8, renormalised, x2.5, one "
                       "ungated shared expert; weights under the checkpoint prefix model.layers.1.mlp.",
        "config": {
            "architectures": ["Glm4MoeForCausalLM"],
            "model_type": "glm4_moe",
            "hidden_size": 8,
            "intermediate_size": 32,
            "moe_intermediate_size": 6,
            "n_routed_experts": 8,
            "n_shared_experts": 1,
            "num_experts_per_tok": 3,
            "n_group": 1,
            "topk_group": 1,
            "norm_topk_prob": True,
            "routed_scaling_factor": 2.5,
            "hidden_act": "silu",
            "first_k_dense_replace": 1,
            "num_hidden_layers": 2,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "llama4_text_top1",
        "seed": 5100,
        "input_shape": [2, 6, 8],
        "prefix": "model.layers.0.feed_forward.",
        "description": "Llama 4: top-1 of 4 by logit, the expert's INPUT scaled by sigmoid(logit), "
                       "outputs summed unweighted, plus an ungated shared expert; fused experts "
                       "gate_up_proj [E, d, 2f] / down_proj [E, f, d] (x @ W); weights under the "
                       "checkpoint prefix model.layers.0.feed_forward.",
        "config": {
            "architectures": ["Llama4ForCausalLM"],
            "model_type": "llama4_text",
            "hidden_size": 8,
            "intermediate_size": 6,
            "intermediate_size_mlp": 16,
            "num_local_experts": 4,
            "num_experts_per_tok": 1,
            "hidden_act": "silu",
            "router_aux_loss_coef": 0.001,
            "router_jitter_noise": 0.0,
            "interleave_moe_layer_step": 1,
            "num_hidden_layers": 1,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "gpt_oss_clamped",
        "seed": 6100,
        "input_shape": [2, 6, 8],
        "prefix": "model.layers.0.mlp.",
        "description": "GPT-OSS: router with a bias, top-2 of 4 logits, softmax over the two; experts "
                       "with biases, gate and up interleaved in gate_up_proj [E, d, 2f], both clamps "
                       "at 7 cutting, (up + 1) * gate * sigmoid(1.702 gate); weights under the "
                       "checkpoint prefix model.layers.0.mlp.",
        "config": {
            "architectures": ["GptOssForCausalLM"],
            "model_type": "gpt_oss",
            "hidden_size": 8,
            "intermediate_size": 6,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "swiglu_limit": 7.0,
            "hidden_act": "silu",
            "router_aux_loss_coef": 0.9,
            "output_router_logits": True,
            "num_hidden_layers": 1,
            "torch_dtype": "float32",
        },
    },
    {
        "name": "switch_capacity",
        "seed": 4100,
        "input_shape": [2, 8, 8],
        "prefix": "",
        "description": "Switch Transformers: softmax top-1 of 4, output scaled by the chosen "
                       "probability, expert_capacity 2 per sequence (first come first served), "
                       "tokens over capacity get 0.",
        "config": SWITCH_CONFIG,
    },
    {
        "name": "switch_router_bias",
        "seed": 4200,
        "input_shape": [2, 8, 8],
        "prefix": "encoder.block.1.layer.1.mlp.",
        "description": "Switch Transformers with router_bias true (router.classifier.bias), "
                       "expert_capacity 3 per sequence; weights under the checkpoint prefix "
                       "encoder.block.1.layer.1.mlp.",
        # the same keys in the same order, three values changed
        "config": {**SWITCH_CONFIG, "d_ff": 12, "expert_capacity": 3, "router_bias": True},
    },
]


def init_weights(block, gen, model_type):
    """Fill every tensor of the state dict (sorted names) from gen: matrices N(0, 1/fan_in), the
    softmax routers 1.5x that (logits of O(1) spread), the DeepSeek bias N(0, 0.1^2)."""
    state = block.state_dict()
    with torch.no_grad():
        for name in sorted(state):
            t = state[name]
            if name.endswith("e_score_correction_bias"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
            elif t.dim() == 1 or name.endswith("_bias"):  # GPT-OSS's router and expert biases
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
            elif name == "experts.gate_up_proj" and model_type == "gpt_oss":
                # pre-activations of a few units past +-7, so that both clamps cut
                t.copy_(torch.randn(t.shape, generator=gen) * 3.0)
            else:
                std = 1.0 / math.sqrt(t.shape[1])
                if name in ("gate.weight", "router.classifier.weight", "router.weight") \
                        and model_type not in SIGMOID_GROUP_TYPES:
                    std *= 1.5
                t.copy_(torch.randn(t.shape, generator=gen) * std)


def run_block(model_type, block, cfg, h3):
    """Forward + losses. h3 is [B, S, d] (a [T, d] input is passed as [1, T, d]).
    Returns (output, router_logits [T, E], selected, weights, losses); for Switch `selected` is the
    capacity-masked one-hot [B, S, E] and `weights` the expert index the aux loss sees [B, S]."""
    out, logits, selected, weights = block(h3)
    losses = {}
    if model_type == "mixtral":
        losses["aux_loss"] = hf_topk_load_balancing_loss(logits.detach(), cfg["num_local_experts"],
                                                         cfg["num_experts_per_tok"])
    elif model_type == "gpt_oss":
        # Mixtral's load_balancing_loss_func on the true router logits (docs/hf_check.md 4.7)
        losses["aux_loss"] = hf_topk_load_balancing_loss(logits.detach(), cfg["num_local_experts"],
                                                         cfg["num_experts_per_tok"])
    elif model_type in ("qwen2_moe", "qwen3_moe", "olmoe"):
        losses["aux_loss"] = hf_topk_load_balancing_loss(logits.detach(), cfg["num_experts"],
                                                         cfg["num_experts_per_tok"])
    elif model_type == "switch_transformers":
        B, S = h3.shape[0], h3.shape[1]
        lg = logits.detach().reshape(B, S, -1)
        losses["z_loss"] = switch_router_z_loss(lg)
        # SwitchTransformersForConditionalGeneration: nn.Softmax(dim=-1)(router_logits)
        losses["aux_loss"] = switch_load_balancing_loss(torch.softmax(lg, dim=-1), weights)
    return out, logits, selected, weights, losses


def build_case(case):
    model_type = case["config"]["model_type"]
    cfg = case["config"]
    seed = case["seed"]
    for attempt in range(200):
        gen = torch.Generator().manual_seed(seed + attempt)
        block = BLOCKS[model_type](cfg)
        init_weights(block, gen, model_type)
        block.eval()
        x = torch.randn(case["input_shape"], generator=gen)
        g = torch.randn(case["input_shape"], generator=gen)
        h3 = x.reshape(1, *x.shape) if x.dim() == 2 else x
        with torch.no_grad():
            _, logits, selected, _, _ = run_block(model_type, block, cfg, h3)
        sel = selected if model_type != "switch_transformers" else None
        ok, facts = check_routing(model_type, block, cfg, h3, logits, sel)
        if ok:
            return model_type, block, x, g, seed + attempt, facts
    raise RuntimeError("no seed with sufficient margins for " + case["name"])


def compute(case):
    model_type, block, x, g, seed, facts = build_case(case)
    cfg = case["config"]
    params = dict(block.named_parameters())
    names = sorted(block.state_dict())

    # HF-style forward + autograd of sum(output * grad_output)
    xin = x.clone().requires_grad_(True)
    h3 = xin.reshape(1, *x.shape) if x.dim() == 2 else xin
    block.zero_grad(set_to_none=True)
    out3, logits, selected, weights, losses = run_block(model_type, block, cfg, h3)
    out = out3.reshape(x.shape)
    (out * g).sum().backward()
    grads = {"hidden_states": xin.grad.detach().clone()}
    for n in names:
        p = params.get(n)
        grads[n] = p.grad.detach().clone() if (p is not None and p.grad is not None) \
            else torch.zeros_like(block.state_dict()[n])

    # cross-check against the dense formulation (forward and gradients)
    xin2 = x.clone().requires_grad_(True)
    block.zero_grad(set_to_none=True)
    dense = dense_forward(model_type, block, cfg, xin2.reshape(1, *x.shape) if x.dim() == 2 else xin2)
    (dense.reshape(x.shape) * g).sum().backward()
    def close(a, b):
        return float((a - b).norm()) <= 1e-5 * max(1.0, float(b.norm()))
    assert close(out.detach(), dense.detach().reshape(x.shape)), case["name"] + ": dense forward differs"
    assert close(grads["hidden_states"], xin2.grad), case["name"] + ": dense grad x differs"
    for n in names:
        p = params.get(n)
        ref = p.grad if (p is not None and p.grad is not None) else torch.zeros_like(grads[n])
        assert close(grads[n], ref), case["name"] + ": dense grad differs for " + n
    block.zero_grad(set_to_none=True)

    weights_file = {case["prefix"] + n: t.detach().clone() for n, t in block.state_dict().items()}
    expected = {"output": out.detach(), "router_logits": logits.detach()}
    for k, v in losses.items():
        expected[k] = v.detach().reshape([])
    for n, t in grads.items():
        expected["grad." + n] = t

    routing = {"seed": seed, "margins_and_properties": facts}
    if model_type == "switch_transformers":
        routing["expert_of_token"] = torch.argmax(torch.softmax(logits, -1), -1).tolist()
        routing["kept"] = selected.any(-1).reshape(-1).tolist()  # capacity-masked router_mask
        routing["expert_index_for_aux_loss"] = weights.reshape(-1).tolist()
    else:
        order = torch.argsort(selected, dim=-1)
        routing["selected_experts"] = torch.gather(selected, 1, order).tolist()
        routing["routing_weights"] = [[float("%.9g" % v) for v in row]
                                      for row in torch.gather(weights.detach(), 1, order).tolist()]
    for fname, tensors in (("layer", weights_file), ("input", {"hidden_states": x}),
                           ("grad_output", {"grad_output": g}), ("expected", expected)):
        back = load_safetensors(safetensors_bytes(tensors))
        assert sorted(back) == sorted(tensors), fname
        for n, t in tensors.items():
            assert back[n].shape == t.shape and torch.equal(back[n], t.to(torch.float32)), fname + ":" + n
    files = {
        "config.json": (json.dumps(cfg, indent=2, sort_keys=False) + "\n").encode("utf-8"),
        "layer.safetensors": safetensors_bytes(weights_file),
        "input.safetensors": safetensors_bytes({"hidden_states": x}),
        "grad_output.safetensors": safetensors_bytes({"grad_output": g}),
        "expected.safetensors": safetensors_bytes(expected),
        "routing.json": (json.dumps(routing, indent=1) + "\n").encode("utf-8"),
    }
    manifest_entry = {
        "name": case["name"],
        "model_type": model_type,
        "prefix": case["prefix"],
        "input_shape": case["input_shape"],
        "losses": sorted(losses),
        "seed": seed,
        "description": case["description"],
    }
    return files, manifest_entry


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/hf", help="output folder (one subfolder per case)")
    ap.add_argument("--check", action="store_true",
                    help="do not write: regenerate in memory and compare with the files in --out")
    ap.add_argument("--only", nargs="*", help="case names to generate (default: all)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    manifest = {"generator": "tools/hf_fixtures/generate.py", "contract": "docs/hf_check.md", "cases": []}
    outputs = {}
    for case in CASES:
        if args.only and case["name"] not in args.only:
            continue
        files, entry = compute(case)
        manifest["cases"].append(entry)
        for fname, data in files.items():
            outputs[os.path.join(case["name"], fname)] = data
    if not args.only:
        outputs["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")

    bad = 0
    for rel, data in sorted(outputs.items()):
        path = os.path.join(args.out, rel)
        if args.check:
            try:
                with open(path, "rb") as fh:
                    same = fh.read() == data
            except OSError:
                same = False
            if not same:
                print("DIFFERS: " + path)
                bad += 1
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)
            print("%7d  %s  %s" % (len(data), hashlib.sha256(data).hexdigest()[:12], path))
    if args.check:
        print("%d of %d files differ" % (bad, len(outputs)))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
