"""What a Hugging Face config.json says about a model's size: parameters, weight bytes, KV bytes.

Counted per tensor as the Hugging Face modelling code lays them out, for decoder-only
transformers with
- attention: multi-head, grouped-query (`num_key_value_heads`), or DeepSeek's multi-head latent
  attention (MLA: `kv_lora_rank`, `q_lora_rank`, `qk_nope_head_dim`, `qk_rope_head_dim`,
  `v_head_dim`), whose KV cache holds one latent of `kv_lora_rank + qk_rope_head_dim` per layer;
- feed-forward: dense, or mixture-of-experts (Mixtral's `num_local_experts`, DeepSeek's
  `n_routed_experts` + `n_shared_experts` after `first_k_dense_replace` dense layers, Qwen-MoE's
  `num_experts` + one shared expert of `shared_expert_intermediate_size`).
DeepSeek's multi-token-prediction layers (`num_nextn_predict_layers`) are not counted: the
published 671 B is the main model, and TensorRT-LLM loads them only for speculative decoding.

Per family, what its Hugging Face config class and modelling code add (each read in
transformers' `configuration_<family>.py` / `modeling_<family>.py`):
- falcon: a fused query_key_value of `(heads + 2 × kv) × head_dim` where kv is `num_kv_heads`
  under `new_decoder_architecture`, else 1 with `multi_query` (its default) or all heads;
  `ffn_hidden_size` (default 4 × hidden); one LayerNorm per layer, two when `parallel_attn` is
  off or `num_ln_in_parallel_attn` is 2 (its default under the new architecture); biases only
  with `bias`. Custom-code configs (`RefinedWeb`, `RefinedWebModel`) are read as transformers'
  `convert_custom_code_checkpoint.py` converts them.
- gpt_neox, phi, starcoder2, gpt2, opt: LayerNorms with a bias, biased linear layers
  (gpt_neox's attention only with `attention_bias`, its default; starcoder2's with `use_bias`;
  opt's with `enable_bias`), phi's LM head bias and `qk_layernorm`, gpt2's and opt's learned
  positions.
- tied embeddings: `tie_word_embeddings`, else the config class's default (tied for gpt2,
  opt, falcon, starcoder2, gemma). A tied LM head is counted once, as transformers holds it.

`quantization_config` sizes the linear layers' weights: FP8 (`fp8`, `fbgemm_fp8`,
compressed-tensors float 8) at one byte, AWQ and GPTQ 4-bit at half a byte plus a 16-bit scale
and a 4-bit zero per group. Embeddings, the LM head, norms and routers stay at the dataType.
Anything else raises UsageError: a guess would be a wrong plan with exit 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmprep.errors import UsageError

GATED_MLP = {
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "gemma",
    "gemma2",
    "phi3",
    "deepseek_v2",
    "deepseek_v3",
}
QKV_BIAS = {"qwen2", "qwen2_moe"}  # Qwen2 attention has biases on q, k and v
LAYER_NORM = {"gpt2", "opt", "falcon", "gpt_neox", "starcoder2", "phi"}  # LayerNorm (weight and bias), not RMSNorm
# Families whose config names we read; a model_type outside them is refused, not guessed at.
KNOWN_TYPES = GATED_MLP | LAYER_NORM
FALCON_CUSTOM_CODE = {"RefinedWeb", "RefinedWebModel"}  # falcon before transformers had it
# The config class's tie_word_embeddings default where it is True (PretrainedConfig's default;
# Llama, Mistral, Qwen, Phi, DeepSeek and GPT-NeoX set False).
TIED_BY_DEFAULT = {"gpt2", "opt", "falcon", "starcoder2", "gemma", "gemma2"}
QK_NORM = {"qwen3", "qwen3_moe"}  # RMSNorm of head_dim on q and on k, in every layer
FP8_METHODS = {"fp8", "fbgemm_fp8"}
INT4_METHODS = {"awq", "gptq"}


@dataclass(frozen=True)
class Quantization:
    """How the checkpoint stores its linear layers' weights, and its KV cache if it says."""

    method: str  # "none", "fp8", "awq", "gptq"
    bits: int  # bits per quantised weight (16 for none)
    group_size: int = 0  # AWQ/GPTQ: weights per scale
    kv_cache: str = "auto"  # "auto" (the dataType), "fp8", "int8"

    def linear_bytes(self, params: int, width: int) -> float:
        """Bytes of `params` linear-layer weights stored this way (`width`: the dataType's bytes)."""
        if self.method == "none":
            return float(params * width)
        if self.method == "fp8":
            return float(params)  # scales are one float per row or per 128 × 128 block: < 0.1 %
        # 4-bit weights, then per group a 16-bit scale and a 4-bit zero point
        return params * 0.5 + params / self.group_size * 2.5


NO_QUANTIZATION = Quantization("none", 16)


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a decoder-only transformer that decide its memory."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    gated_mlp: bool
    qkv_bias: bool = False  # biases on q, k and v only (Qwen2)
    attention_bias: bool = False  # biases on q, k, v and the output projection
    mlp_bias: bool = False  # biases on the (non-gated) feed-forward's two projections
    norm_bias: bool = False  # LayerNorm (weight and bias) rather than RMSNorm (weight)
    norms_per_layer: int = 2
    qk_norm: bool = False
    lm_head_bias: bool = False
    positions: int = 0  # learned position embeddings (gpt2, opt)
    # mixture of experts (experts == 0: dense)
    experts: int = 0
    experts_per_token: int = 0
    expert_intermediate: int = 0
    shared_experts: int = 0  # DeepSeek: shared experts of expert_intermediate each
    shared_intermediate: int = 0  # Qwen-MoE: one shared expert of this width, with a gate
    dense_layers: int = 0  # leading layers with a dense feed-forward
    # multi-head latent attention (kv_lora_rank == 0: not MLA)
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_dim: int = 0
    qk_rope_dim: int = 0
    v_head_dim: int = 0

    @property
    def moe(self) -> bool:
        return self.experts > 0

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank > 0

    def attention(self) -> int:
        """Linear weights of one attention block."""
        h = self.hidden
        if self.mla:
            qk = self.heads * (self.qk_nope_dim + self.qk_rope_dim)
            q = h * self.q_lora_rank + self.q_lora_rank * qk if self.q_lora_rank else h * qk
            kv = h * (self.kv_lora_rank + self.qk_rope_dim) + self.kv_lora_rank * self.heads * (
                self.qk_nope_dim + self.v_head_dim
            )
            return q + kv + self.heads * self.v_head_dim * h
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        return h * q * 2 + h * kv * 2

    def _mlp(self, width: int) -> int:
        return self.hidden * width * (3 if self.gated_mlp else 2)

    def feed_forward(self, *, active: bool = False) -> int:
        """Linear weights of every feed-forward block (only the routed experts a token uses if `active`)."""
        if not self.moe:
            return self.layers * self._mlp(self.intermediate)
        routed = self.experts_per_token if active else self.experts
        per_moe_layer = routed * self._mlp(self.expert_intermediate) + self.shared_experts * self._mlp(
            self.expert_intermediate
        )
        if self.shared_intermediate:
            per_moe_layer += self._mlp(self.shared_intermediate)
        return self.dense_layers * self._mlp(self.intermediate) + (self.layers - self.dense_layers) * per_moe_layer

    def linear(self, *, active: bool = False) -> int:
        """Weights of the quantisable linear layers (attention and feed-forward; not the LM head)."""
        return self.layers * self.attention() + self.feed_forward(active=active)

    def other(self) -> int:
        """Weights kept at the dataType: embeddings, LM head, norms, biases, routers."""
        h = self.hidden
        norm = 2 if self.norm_bias else 1  # a LayerNorm has a weight and a bias, an RMSNorm a weight
        norms = self.norms_per_layer * h * norm + ((self.q_lora_rank + self.kv_lora_rank) if self.mla else 0)
        norms += 2 * self.head_dim * norm if self.qk_norm else 0  # q and k norms of head_dim
        qkv = (self.heads + 2 * self.kv_heads) * self.head_dim
        bias = qkv + h if self.attention_bias else qkv if self.qkv_bias else 0
        if self.mlp_bias:
            bias += self.intermediate + h
        per_layer = norms + bias
        moe_layers = self.layers - self.dense_layers if self.moe else 0
        router = moe_layers * (h * self.experts + (h if self.shared_intermediate else 0))
        embeddings = self.vocab * h * (1 if self.tied_embeddings else 2) + self.positions * h
        head_bias = self.vocab if self.lm_head_bias else 0
        return self.layers * per_layer + router + embeddings + head_bias + h * norm

    @property
    def parameters(self) -> int:
        return self.linear() + self.other()

    @property
    def active_parameters(self) -> int:
        """Parameters one token passes through (the routed experts it is sent to, not all)."""
        return self.linear(active=True) + self.other()

    def kv_elements_per_token(self) -> int:
        """KV-cache elements one token keeps across all layers."""
        if self.mla:
            return self.layers * (self.kv_lora_rank + self.qk_rope_dim)
        return 2 * self.layers * self.kv_heads * self.head_dim


def _int(config: dict[str, Any], source: str, *names: str, default: int | None = None) -> int:
    for name in names:
        value = config.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    if default is not None:
        return default
    raise UsageError(f"{source}: missing {names[0]}; plan needs a decoder-only transformer's config.json")


def _flag(config: dict[str, Any], name: str, default: bool) -> bool:
    value = config.get(name)
    return default if value is None else bool(value)


def _falcon_from_custom_code(config: dict[str, Any]) -> dict[str, Any]:
    """A custom-code falcon config (`RefinedWeb*`) as transformers' convert_custom_code_checkpoint.py rewrites it."""
    converted = {**config, "model_type": "falcon"}
    for old, new in (("n_head", "num_attention_heads"), ("n_layer", "num_hidden_layers")):
        if old in converted:
            converted[new] = converted.pop(old)
    converted["new_decoder_architecture"] = "n_head_kv" in converted
    if "n_head_kv" in converted:
        converted["num_kv_heads"] = converted.pop("n_head_kv")
    return converted


def _family(config: dict[str, Any], source: str, kind: str, hidden: int, heads: int) -> dict[str, Any]:
    """What a family's config class and modelling code add to the Llama-style layout."""
    if kind == "falcon":
        # configuration_falcon.py: num_kv_heads defaults to the heads, multi_query to True,
        # parallel_attn to True, bias to False; multi_query is ignored under new_decoder_architecture.
        new_arch = _flag(config, "new_decoder_architecture", False)
        if new_arch:
            kv_heads = _int(config, source, "num_kv_heads", default=heads)
        else:
            kv_heads = 1 if _flag(config, "multi_query", True) else heads
        # modeling_falcon.py FalconDecoderLayer: num_ln_in_parallel_attn defaults to 2 under the new architecture.
        lns = config.get("num_ln_in_parallel_attn")
        if lns is None and new_arch:
            lns = 2
        two_norms = not _flag(config, "parallel_attn", True) or lns == 2
        bias = _flag(config, "bias", False)
        return {
            "kv_heads": kv_heads,
            "intermediate": _int(config, source, "ffn_hidden_size", default=4 * hidden),
            "norms_per_layer": 2 if two_norms else 1,
            "attention_bias": bias,
            "mlp_bias": bias,
        }
    if kind == "gpt_neox":
        return {"attention_bias": _flag(config, "attention_bias", True), "mlp_bias": True}
    if kind == "phi":
        return {
            "attention_bias": True,
            "mlp_bias": True,
            "norms_per_layer": 1,
            "lm_head_bias": True,
            "qk_norm": _flag(config, "qk_layernorm", False),  # LayerNorms of head_dim on q and k
        }
    if kind == "starcoder2":
        bias = _flag(config, "use_bias", True)
        return {
            "kv_heads": _int(config, source, "num_key_value_heads", default=2),
            "attention_bias": bias,
            "mlp_bias": bias,
        }
    if kind == "gpt2":
        return {"attention_bias": True, "mlp_bias": True, "positions": _int(config, source, "n_positions")}
    if kind == "opt":
        if _int(config, source, "word_embed_proj_dim", default=hidden) != hidden or not _flag(
            config, "do_layer_norm_before", True
        ):
            raise UsageError(
                f"{source}: an OPT with word_embed_proj_dim other than hidden_size or post-layer norms "
                "(opt-350m) cannot be sized yet"
            )
        bias = _flag(config, "enable_bias", True)
        # OPTLearnedPositionalEmbedding keeps two positions more than max_position_embeddings
        positions = _int(config, source, "max_position_embeddings") + 2
        return {"attention_bias": bias, "mlp_bias": bias, "positions": positions}
    if kind == "gemma2":
        return {"norms_per_layer": 4}  # input, post-attention, pre- and post-feed-forward
    return {}


def read_shape(config: dict[str, Any], source: str = "config.json") -> ModelShape:
    """The dimensions that decide memory, from a Hugging Face config (Llama-style or GPT-2 names)."""
    kind = str(config.get("model_type", "unknown"))
    if kind in FALCON_CUSTOM_CODE:
        config, kind = _falcon_from_custom_code(config), "falcon"
    hidden = _int(config, source, "hidden_size", "n_embd", "d_model")
    heads = _int(config, source, "num_attention_heads", "n_head")
    if kind not in KNOWN_TYPES:
        raise UsageError(
            f"{source}: model_type {kind!r} is not one plan can size ({', '.join(sorted(KNOWN_TYPES))}); "
            "size it by hand with --gpu-memory-gib and the model card"
        )
    layers = _int(config, source, "num_hidden_layers", "n_layer")
    intermediate = _int(config, source, "intermediate_size", "ffn_dim", "n_inner", default=4 * hidden)
    experts = _int(config, source, "num_local_experts", "n_routed_experts", "num_experts", default=0)
    moe: dict[str, Any] = {}
    if experts:
        moe = {
            "experts": experts,
            "experts_per_token": _int(config, source, "num_experts_per_tok"),
            "expert_intermediate": _int(config, source, "moe_intermediate_size", default=intermediate),
            "shared_experts": _int(config, source, "n_shared_experts", default=0),
            "shared_intermediate": _int(config, source, "shared_expert_intermediate_size", default=0),
            "dense_layers": _int(config, source, "first_k_dense_replace", default=0),
        }
        if _int(config, source, "moe_layer_freq", "decoder_sparse_step", default=1) != 1 or config.get(
            "mlp_only_layers"
        ):
            raise UsageError(f"{source}: MoE layers that are not every layer after the dense ones cannot be sized yet")
        if kind in LAYER_NORM:
            raise UsageError(f"{source}: a {kind} config with experts cannot be sized; plan knows no MoE {kind}")
    mla: dict[str, Any] = {}
    if config.get("kv_lora_rank"):
        mla = {
            "q_lora_rank": _int(config, source, "q_lora_rank", default=0),
            "kv_lora_rank": _int(config, source, "kv_lora_rank"),
            "qk_nope_dim": _int(config, source, "qk_nope_head_dim"),
            "qk_rope_dim": _int(config, source, "qk_rope_head_dim"),
            "v_head_dim": _int(config, source, "v_head_dim"),
        }
    fields: dict[str, Any] = {
        "kv_heads": _int(config, source, "num_key_value_heads", default=heads),
        "intermediate": intermediate,
        "norm_bias": kind in LAYER_NORM,
        "qk_norm": kind in QK_NORM,
        **_family(config, source, kind, hidden, heads),
    }
    tied = config.get("tie_word_embeddings")
    return ModelShape(
        model_type=kind,
        hidden=hidden,
        layers=layers,
        heads=heads,
        head_dim=_int(config, source, "head_dim", default=hidden // heads),
        vocab=_int(config, source, "vocab_size"),
        tied_embeddings=kind in TIED_BY_DEFAULT if tied is None else bool(tied),
        gated_mlp=kind in GATED_MLP,
        qkv_bias=kind in QKV_BIAS,
        **fields,
        **moe,
        **mla,
    )


def _kv_from_checkpoint(quant: dict[str, Any], where: str) -> str:
    # compressed-tensors: kv_cache_scheme {type: float, num_bits: 8}; ModelOpt: kv_cache_quant_algo "FP8"/"INT8".
    scheme = quant.get("kv_cache_scheme")
    algo = quant.get("kv_cache_quant_algo")
    if scheme is None and algo is None:
        return "auto"
    if isinstance(scheme, dict):
        known: dict[tuple[Any, Any], str] = {("float", 8): "FP8", ("int", 8): "INT8"}
        algo = known.get((scheme.get("type"), scheme.get("num_bits")), repr(scheme))
    kv = str(algo).lower()
    if kv not in ("fp8", "int8"):
        raise UsageError(f"{where}: KV-cache quantisation {algo} cannot be sized; plan sizes FP8 and INT8 KV caches")
    return kv


def read_quantization(config: dict[str, Any], source: str = "config.json") -> Quantization:
    """The checkpoint's `quantization_config`, or NO_QUANTIZATION; UsageError for a scheme plan cannot size."""
    quant = config.get("quantization_config")
    if quant is None:
        return NO_QUANTIZATION
    where = f"{source}: quantization_config"
    if not isinstance(quant, dict):
        raise UsageError(f"{where}: must be a mapping")
    method = str(quant.get("quant_method", "")).lower()
    kv = _kv_from_checkpoint(quant, where)
    if method in FP8_METHODS:
        return Quantization("fp8", 8, kv_cache=kv)
    if method == "compressed-tensors":
        groups = quant.get("config_groups") or {}
        weights = [g.get("weights") or {} for g in groups.values() if isinstance(g, dict)]
        if weights and all(w.get("type") == "float" and w.get("num_bits") == 8 for w in weights):
            return Quantization("fp8", 8, kv_cache=kv)
        raise UsageError(f"{where}: compressed-tensors weights other than float 8 cannot be sized yet")
    if method in INT4_METHODS:
        bits, group = quant.get("bits", quant.get("w_bit")), quant.get("group_size", quant.get("q_group_size"))
        if bits != 4:
            raise UsageError(f"{where}: {method} with bits={bits!r} cannot be sized; plan sizes 4-bit {method.upper()}")
        if not isinstance(group, int) or isinstance(group, bool) or group <= 0:
            raise UsageError(f"{where}: {method} group_size {group!r} cannot be sized; give a positive group size")
        return Quantization(method, 4, group_size=group, kv_cache=kv)
    raise UsageError(
        f"{where}: quant_method {method or '(none)'!r} cannot be sized; plan sizes fp8, fbgemm_fp8, "
        "compressed-tensors FP8, and 4-bit awq and gptq"
    )
