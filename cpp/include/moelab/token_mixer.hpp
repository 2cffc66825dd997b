// TokenMixer: what every token mixer (Attention, MultiHeadLatentAttention, GatedDeltaNet)
// shares: its weights behind the layer lock (LayerWeights), a layer id that its caches or states
// carry as their owner, norm weights whose random init is their identity, and the checks and
// locks every forward starts with. TokenMixerOf<Spec> adds the layer's validated spec.
#pragma once

#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "moelab/check.hpp"
#include "moelab/sequence_state.hpp"
#include "moelab/types.hpp"
#include "moelab/weights.hpp"

namespace moelab {

// How a token mixer names itself and its per-sequence state in error messages.
struct MixerNames {
    const char* kind;     // the layer: "Attention", "MLA", "GatedDeltaNet"
    const char* state;    // its per-sequence state: "cache" or "state"
    const char* factory;  // the method that makes one: "new_cache" or "new_state"
};

class TokenMixer : public LayerWeights {
  public:
    // Unique per layer object in this process: the owner its caches or states carry.
    std::uint64_t id() const { return id_; }
    // Uniform in +-1/sqrt(fan_in) per tensor (LayerWeights::init_random), then each norm weight
    // set to its identity (add_norm); deterministic for a seed. Two steps, each waiting for
    // running forwards: a forward that starts between them sees the random norm weights.
    void init_random(std::uint64_t seed);

  protected:
    TokenMixer(MixerNames names, DType weight_dtype)
        : LayerWeights(weight_dtype), names_(names), id_(next_layer_id()) {}
    // Adds a float32 norm weight (fan_in 1) that init_random sets to `identity` (1 for w x,
    // 0 for (1 + w) x); returns its index in weights_.
    std::size_t add_norm(const std::string& name, std::vector<Index> shape, float identity);

    // What a forward holds from its first check to its end.
    struct ForwardLocks {
        std::shared_lock<std::shared_mutex> weights;  // the weights, read-only
        std::unique_lock<std::mutex> state;           // the cache or state, when one is given
        Index pos0 = 0;                               // its length: the first token's position
    };
    // The checks every forward starts with, then its locks: `state` (nullptr: none) must be this
    // layer's and x (T, hidden_size) finite, else std::invalid_argument with nothing changed.
    ForwardLocks begin_forward(const float* x, Index T, Index hidden_size,
                               SequenceState* state) const;
    // Throws std::invalid_argument naming x unless `ok` and the n values of a forward's result
    // y are finite (a float32 overflow: inputs or weights too large). Called before the forward
    // changes its cache or state, which an error leaves as it was.
    static void require_finite_result(const float* y, Index n, bool ok = true);

  private:
    MixerNames names_;
    std::uint64_t id_;
    std::vector<std::pair<std::size_t, float>> norms_;  // (index in weights_, identity value)
};

// A token mixer with its spec, validated before any weight is added.
template <class Spec>
class TokenMixerOf : public TokenMixer {
  public:
    const Spec& spec() const { return spec_; }

  protected:
    TokenMixerOf(const Spec& spec, MixerNames names, DType weight_dtype)
        : TokenMixer(names, weight_dtype), spec_(spec) {
        spec_.validate();
    }
    // begin_forward for x (T, spec().hidden_size).
    ForwardLocks begin_forward(const float* x, Index T, SequenceState* state) const {
        return TokenMixer::begin_forward(x, T, spec_.hidden_size, state);
    }
    // begin_forward, then the positions of x's tokens, pos0 .. pos0 + T - 1, checked against the
    // spec's max_positions (a layer with positions: Attention, MLA; instantiated only for them).
    ForwardLocks begin_positioned_forward(const float* x, Index T, SequenceState* cache) const {
        ForwardLocks locks = begin_forward(x, T, cache);
        require_positions(locks.pos0, T, spec_.max_positions);
        return locks;
    }

    Spec spec_;
};

}  // namespace moelab
